// tarash-router status page. Plain JavaScript, no dependencies.
// Everything that came from the daemon (prompts, model names, error messages...) is put on the page with
// textContent or as an attribute value, never parsed as HTML: the page's CSP (Trusted Types, no policy)
// makes any innerHTML assignment throw.
"use strict";

const TOKEN_KEY = "tarash-router.admin-token"; // sessionStorage: this tab only, gone when it closes
const REFRESH_MS = 2000;
const HIDDEN_REFRESH_MS = 30000; // a background tab costs the daemon next to nothing
const PAGE_SIZE = 25;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const ui = {
  tab: "routes",
  routes: null, // last GET /v1/routes
  status: null, // last GET /v1/status
  filter: { status: "", model: "" },
  cursors: [""], // "after" ids of the pages walked so far; the last one is the page shown
  hasMore: false,
  selected: null, // job id in the detail panel
  detail: null, // { id, abort, job, progress, events, previewUrl }
  timer: null,
};

// ---- DOM helpers ------------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

// h("td", {class: "num", title: x}, "text", child): attributes by setAttribute, children as text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

const pill = (text, tone, title) => h("span", { class: `pill ${tone}`, title }, text);
const STATUS_TONE = { completed: "ok", running: "neutral", queued: "neutral", failed: "bad", cancelled: "warn" };
const CIRCUIT_TONE = { closed: "ok", half_open: "warn", open: "bad" };

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const secs = (value) => (value === null || value === undefined ? "–" : value < 10 ? `${value.toFixed(2)} s` : `${value.toFixed(0)} s`);

function progressBar(percent, big) {
  const fill = h("span");
  fill.style.width = `${Math.max(0, Math.min(100, percent || 0))}%`;
  return h("span", { class: big ? "bar big" : "bar", role: "progressbar", "aria-valuenow": percent ?? 0,
    "aria-valuemin": 0, "aria-valuemax": 100 }, fill);
}

// ---- API --------------------------------------------------------------------------------------------------
class AuthError extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(extra) {
  const out = { Accept: "application/json", ...(extra || {}) };
  if (token()) out.Authorization = `Bearer ${token()}`;
  return out;
}

async function api(path, options) {
  const response = await fetch(path, { cache: "no-store", credentials: "omit", ...options, headers: headers(options?.headers) });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new AuthError(response.status === 403
      ? "That token is valid but has no admin scope (API_KEYS entry token:admin)."
      : body?.error?.code === "invalid_api_key" ? "That token is not one of the daemon's API_KEYS." : "");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body?.error?.message || `HTTP ${response.status}`);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

// ---- login ------------------------------------------------------------------------------------------------
function showLogin(message) {
  stopDetail();
  clearTimeout(ui.timer);
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("config").replaceChildren();
  $("live").textContent = "";
  $("login-error").textContent = message || "";
  // Drop whatever an earlier session drew: no data stays on screen without a valid token.
  for (const id of ["routes-table", "models-table", "limits-table", "jobs-table", "traffic-table", "spend-table"]) {
    $(id).tBodies[0].replaceChildren();
  }
  $("job-detail").replaceChildren();
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  $("token").value = "";
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  await refresh();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("");
}

// ---- refresh loop -----------------------------------------------------------------------------------------
async function refresh() {
  clearTimeout(ui.timer);
  try {
    const [routes, status] = await Promise.all([getJson("/v1/routes"), getJson("/v1/status")]);
    ui.routes = routes;
    ui.status = status;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !token();
    $("fetch-error").hidden = true;
    renderHeader();
    renderReloadError();
    renderRoutes();
    renderProviders();
    renderTraffic();
    renderFilterOptions();
    await refreshJobs();
    $("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("live").classList.remove("stale");
  } catch (error) {
    if (error instanceof AuthError) {
      if (token()) sessionStorage.removeItem(TOKEN_KEY);
      showLogin(error.message);
      return;
    }
    $("fetch-error").hidden = false;
    $("fetch-error").textContent = `Cannot reach the daemon: ${error.message}. Retrying…`;
    $("live").classList.add("stale");
  }
  clearTimeout(ui.timer); // another refresh (a filter change, a cancel) may have run meanwhile: one loop only
  ui.timer = setTimeout(refresh, document.hidden ? HIDDEN_REFRESH_MS : REFRESH_MS);
}

function renderHeader() {
  const r = ui.routes;
  $("config").replaceChildren(
    h("span", { title: r.path }, "config "), h("code", {}, r.config_hash.slice(0, 12)),
    ` · loaded ${clock(r.loaded_at)} (${ago(r.loaded_at)}) · ${r.routes.length} routes`,
    r.last_reload ? ` · last reload ${r.last_reload.result} ${clock(r.last_reload.at)}` : "",
  );
}

function renderReloadError() {
  const error = ui.routes.last_reload_error;
  const box = $("reload-error");
  box.hidden = !error;
  if (!error) return;
  box.querySelector(".banner-title").textContent =
    `The last save of routes.toml was rejected (${clock(error.at)}, ${error.problems.length} problem${error.problems.length === 1 ? "" : "s"}). ` +
    `The daemon keeps serving the last good config (${ui.routes.config_hash.slice(0, 12)}).`;
  box.querySelector(".banner-problems").replaceChildren(...error.problems.map((p) => h("li", {}, p)));
}

// ---- routes -----------------------------------------------------------------------------------------------
function renderRoutes() {
  const keys = ui.status.routes || {};
  const rows = ui.routes.routes.map((route) => {
    let alert = false;
    const chain = h("ol", { class: "chain" }, route.attempts.map((attempt, i) => {
      const key = (keys[route.name] || [])[i] || {};
      const badges = [];
      if (key.key === "missing") {
        alert = true;
        badges.push(pill("no key", "bad", `set ${key.env.join(" or ")}`), h("span", { class: "muted" }, ` ${key.env.join(" / ")}`));
      } else if (key.key === "error") {
        alert = true;
        badges.push(pill("unusable", "bad", key.message));
      }
      if (attempt.circuit === "open") { alert = true; badges.push(pill("circuit open", "bad")); }
      if (attempt.circuit === "half_open") badges.push(pill("half-open", "warn"));
      return h("li", { "data-provider": attempt.provider, "data-model": attempt.model },
        h("code", {}, `${attempt.provider} / ${attempt.model}`), h("span", { class: "muted" }, ` · ${attempt.timeout} s`), badges);
    }));
    const defaults = Object.entries(route.defaults || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
    return h("tr", { class: alert ? "alert" : null, "data-route": route.name },
      h("td", {}, h("div", { class: "name" }, route.name), route.description ? h("div", { class: "desc" }, route.description) : null),
      h("td", {}, route.kind), h("td", {}, chain), h("td", { class: "mono muted" }, defaults || "—"));
  });
  $("routes-table").tBodies[0].replaceChildren(...rows);
}

// ---- providers --------------------------------------------------------------------------------------------
function renderProviders() {
  const models = ui.status.models.map((m) => {
    const c = m.circuit;
    const circuitText = c.state === "half_open" ? "half-open" : c.state;
    const circuit = [pill(circuitText, CIRCUIT_TONE[c.state])];
    if (c.retry_in_seconds !== null) circuit.push(h("span", { class: "muted" }, ` probe in ${Math.ceil(c.retry_in_seconds)} s`));
    if (c.failures) circuit.push(h("div", { class: "muted" }, `${c.failures} failure${c.failures === 1 ? "" : "s"} in a row`));
    const r = m.recent;
    const dots = h("span", { class: "dots" }, r.last.map((o) =>
      h("span", { class: `dot ${o.status}`, title: `${o.status}${o.error_type ? ` (${o.error_type})` : ""} · ${o.route} · ${secs(o.seconds)}` })));
    return h("tr", { "data-provider": m.provider, "data-model": m.model, class: c.state === "open" ? "alert" : null },
      h("td", { class: "name" }, m.provider), h("td", {}, h("code", {}, m.model)),
      h("td", { class: "circuit" }, circuit), h("td", {}, m.routes.join(", ") || h("span", { class: "muted" }, "(no route now)")),
      h("td", {}, `${r.success} ok · ${r.failed} failed · ${r.skipped} skipped`),
      h("td", { class: "num" }, secs(r.latency_p50_seconds)), h("td", { class: "num" }, secs(r.latency_max_seconds)), h("td", {}, dots));
  });
  $("models-table").tBodies[0].replaceChildren(...models);
  const limits = ui.status.providers.map((p) => h("tr", { "data-provider": p.provider },
    h("td", { class: "name" }, p.provider),
    h("td", { class: "num" }, p.max_concurrency ? `${p.in_use} / ${p.max_concurrency}` : "—"),
    h("td", { class: "num" }, p.waiting), h("td", { class: "num" }, p.max_concurrency ?? "—"),
    h("td", { class: "num" }, p.requests_per_minute ?? "—")));
  $("limits-table").tBodies[0].replaceChildren(...limits);
  $("limits-table").hidden = limits.length === 0;
  $("limits-empty").hidden = limits.length !== 0;
}

// ---- traffic ----------------------------------------------------------------------------------------------
function sparkline(requests, failures) {
  const width = 4 * requests.length * 2, height = 28, max = Math.max(1, ...requests);
  const chart = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.append(svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
  requests.forEach((count, i) => {
    const x = i * 8, total = (count / max) * (height - 2), failed = (failures[i] / max) * (height - 2);
    if (count) chart.append(svg("rect", { class: "req", x, y: height - total, width: 6, height: total }));
    if (failures[i]) chart.append(svg("rect", { class: "fail", x, y: height - failed, width: 6, height: failed }));
  });
  chart.append(svg("title", {}));
  chart.lastChild.textContent = `requests per minute: ${requests.join(", ")}`;
  return chart;
}

function renderTraffic() {
  const traffic = ui.status.traffic;
  $("traffic-minutes").textContent = traffic.minutes;
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const rows = Object.entries(traffic.routes).sort(([a], [b]) => a.localeCompare(b)).map(([route, s]) =>
    h("tr", { "data-route": route }, h("td", { class: "name" }, route), h("td", {}, sparkline(s.requests, s.failures)),
      h("td", { class: "num" }, sum(s.requests)), h("td", { class: "num" }, sum(s.failures)),
      h("td", { class: "num" }, sum(s.fallbacks)), h("td", { class: "num" }, s.requests[s.requests.length - 1])));
  $("traffic-table").tBodies[0].replaceChildren(...rows);
  $("traffic-table").hidden = rows.length === 0;
  $("traffic-empty").hidden = rows.length !== 0;
  renderSpend(ui.status.spend_today);
}

// spend_today: {currency, day, total, routes: {name: usd}, providers: {name: usd}}, every client summed.
function renderSpend(spend) {
  $("spend").hidden = !spend;
  if (!spend) return;
  const money = (v) => `${Number(v) < 0.01 && Number(v) > 0 ? Number(v).toFixed(4) : Number(v).toFixed(2)} ${spend.currency}`;
  const rows = [];
  for (const [by, values] of [["route", spend.routes], ["provider", spend.providers]]) {
    for (const [name, amount] of Object.entries(values)) {
      rows.push(h("tr", { "data-spend": `${by}:${name}` }, h("td", { class: "muted" }, by), h("td", { class: "name" }, name),
        h("td", { class: "num" }, money(amount))));
    }
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Nothing spent yet today.")));
  $("spend-table").tBodies[0].replaceChildren(...rows);
  $("spend-note").textContent = `Total ${money(spend.total)} on ${spend.day} (UTC), every client: charged costs, ` +
    "else the estimate of a success, from the spend ledger (per client: GET /v1/usage).";
}

// ---- jobs -------------------------------------------------------------------------------------------------
function renderFilterOptions() {
  const select = $("filter-model");
  const names = ui.routes.routes.map((r) => r.name);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === names.join("\n")) return;
  select.replaceChildren(h("option", { value: "" }, "any"), ...names.map((n) => h("option", { value: n }, n)));
  select.value = names.includes(ui.filter.model) ? ui.filter.model : "";
}

function jobsQuery() {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (ui.filter.status) q.set("status", ui.filter.status);
  if (ui.filter.model) q.set("model", ui.filter.model);
  const after = ui.cursors[ui.cursors.length - 1];
  if (after) q.set("after", after);
  return `/v1/jobs?${q}`;
}

async function refreshJobs() {
  const page = await getJson(jobsQuery());
  ui.hasMore = page.has_more;
  ui.lastPage = page.data;
  renderJobs(page.data);
}

function renderJobs(jobs) {
  const rows = jobs.map((job) => h("tr", {
    class: `clickable${job.id === ui.selected ? " selected" : ""}`, "data-job": job.id,
    tabindex: 0, onclick: () => selectJob(job.id), onkeydown: (e) => { if (e.key === "Enter") selectJob(job.id); },
  },
  h("td", {}, h("code", {}, job.id.slice(0, 16))), h("td", { class: "nowrap" }, job.model),
  h("td", {}, pill(job.status, STATUS_TONE[job.status] || "neutral")),
  h("td", { class: "nowrap" }, progressBar(job.status === "completed" ? 100 : job.progress_percent), ` ${job.status === "completed" ? 100 : job.progress_percent ?? 0}%`),
  h("td", { class: "prompt", title: job.prompt || "" }, job.prompt || ""),
  h("td", { class: "muted nowrap", title: job.created_at }, ago(job.created_at))));
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs match.")));
  $("jobs-table").tBodies[0].replaceChildren(...rows);
  $("page-newer").disabled = ui.cursors.length <= 1;
  $("page-older").disabled = !ui.hasMore;
  $("page-label").textContent = `page ${ui.cursors.length}`;
}

function resetPaging() {
  ui.cursors = [""];
  refresh();
}

function pageOlder() {
  if (!ui.hasMore || !ui.lastPage.length) return;
  ui.cursors.push(ui.lastPage[ui.lastPage.length - 1].id);
  refresh();
}

function pageNewer() {
  if (ui.cursors.length > 1) ui.cursors.pop();
  refresh();
}

// ---- one job: live progress over SSE, attempts, preview, cancel ------------------------------------------
function stopDetail() {
  if (!ui.detail) return;
  ui.detail.abort.abort();
  if (ui.detail.previewUrl) URL.revokeObjectURL(ui.detail.previewUrl);
  ui.detail = null;
}

async function selectJob(id) {
  stopDetail();
  ui.selected = id;
  for (const row of $("jobs-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.job === id);
  const detail = { id, abort: new AbortController(), job: null, progress: null, events: [], previewUrl: null };
  ui.detail = detail;
  $("job-detail").hidden = false;
  try {
    detail.job = await getJson(`/v1/jobs/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof AuthError) return showLogin(error.message);
    $("job-detail").replaceChildren(h("p", { class: "error" }, error.message));
    return;
  }
  if (ui.detail !== detail) return;
  renderDetail(detail);
  if (!TERMINAL.has(detail.job.status)) followEvents(detail);
  else loadPreview(detail);
}

function closeDetail() {
  stopDetail();
  ui.selected = null;
  $("job-detail").hidden = true;
  $("job-detail").replaceChildren();
  for (const row of $("jobs-table").tBodies[0].rows) row.classList.remove("selected");
}

// fetch() rather than EventSource: EventSource cannot send the Authorization header.
async function followEvents(detail) {
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(detail.id)}/events`,
      { headers: { Accept: "text/event-stream" }, signal: detail.abort.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) onEvent(detail, event, JSON.parse(data));
      }
    }
  } catch (error) {
    if (detail.abort.signal.aborted) return;
    detail.events.push(`stream ended: ${error.message}`);
  }
  if (ui.detail !== detail) return;
  // The stream ended (result or error): the stored job has the final state and every attempt.
  try {
    detail.job = await getJson(`/v1/jobs/${encodeURIComponent(detail.id)}`);
  } catch (error) {
    return;
  }
  detail.progress = null;
  renderDetail(detail);
  loadPreview(detail);
}

function onEvent(detail, event, data) {
  if (ui.detail !== detail) return;
  if (event === "update") {
    if (data.progress_percent !== null && data.progress_percent !== undefined) detail.progress = data.progress_percent;
    detail.job.status = detail.job.status === "queued" ? "running" : detail.job.status;
    const u = data.update || {};
    const line = u.event === "fallback"
      ? `fallback ${u.from_provider} → ${u.to_provider}: ${u.error_type}`
      : `${data.status}${data.progress_percent !== null && data.progress_percent !== undefined ? ` ${data.progress_percent}%` : ""}`;
    detail.events.push(`${new Date().toLocaleTimeString()} ${line}`);
    if (detail.events.length > 50) detail.events.shift();
  } else {
    detail.events.push(`${new Date().toLocaleTimeString()} ${event}`);
  }
  renderDetail(detail);
}

function attemptItems(job) {
  const attempts = job.execution_metadata?.attempts || [];
  const items = attempts.map((a) => {
    const duration = a.started_at && a.ended_at ? (new Date(a.ended_at) - new Date(a.started_at)) / 1000 : null;
    return h("li", { class: a.status },
      h("div", {}, h("code", {}, `${a.attempt_number}. ${a.provider} / ${a.model}`), pill(a.status, a.status === "success" ? "ok" : a.status === "failed" ? "bad" : "warn"),
        h("span", { class: "muted" }, ` ${secs(duration)}`)),
      a.error_message ? h("div", { class: "err" }, `${a.error_type || "error"}: ${a.error_message}`) : null);
  });
  if (!TERMINAL.has(job.status)) items.push(h("li", { class: "running" }, h("span", { class: "muted" }, "attempt in progress…")));
  return items;
}

function renderDetail(detail) {
  if (ui.detail !== detail) return;
  const job = detail.job;
  const percent = job.status === "completed" ? 100 : detail.progress ?? job.progress_percent ?? 0;
  const cancellable = !TERMINAL.has(job.status);
  const children = [
    h("h3", {}, job.id),
    h("dl", {},
      h("dt", {}, "Route"), h("dd", {}, job.model, h("span", { class: "muted" }, ` (${job.kind})`)),
      h("dt", {}, "Status"), h("dd", { class: "job-status" }, pill(job.status, STATUS_TONE[job.status] || "neutral")),
      h("dt", {}, "Progress"), h("dd", {}, progressBar(percent, true), h("span", { class: "job-progress" }, `${percent}%`)),
      h("dt", {}, "Created"), h("dd", {}, `${clock(job.created_at)} (${ago(job.created_at)})`),
      h("dt", {}, "Updated"), h("dd", {}, clock(job.updated_at))),
    h("div", { class: "muted" }, "Prompt"), h("div", { class: "prompt-full" }, job.prompt ?? ""),
    job.error ? h("p", { class: "error job-error" }, `${job.error.type}: ${job.error.message}`) : null,
    h("h2", {}, "Attempts"), h("ul", { class: "timeline" }, attemptItems(job)),
    detail.events.length ? h("ul", { class: "events" }, detail.events.map((e) => h("li", {}, e))) : null,
    h("div", { class: "preview" }, detail.previewNode || null),
    h("div", { class: "actions" },
      cancellable ? h("button", { type: "button", class: "danger", id: "cancel-job", onclick: () => cancelJob(detail) }, "Cancel job") : null,
      h("button", { type: "button", onclick: closeDetail }, "Close")),
  ];
  $("job-detail").replaceChildren(...children.filter(Boolean));
}

// The media comes from the router's own /content with the token, as a blob: a <video src> could not send it.
async function loadPreview(detail) {
  if (detail.job.status !== "completed" || detail.previewNode) return;
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(detail.id)}/content`, { signal: detail.abort.signal });
    const blob = await response.blob();
    if (ui.detail !== detail) return;
    detail.previewUrl = URL.createObjectURL(blob);
    detail.previewNode = detail.job.kind === "video"
      ? h("video", { src: detail.previewUrl, controls: true, muted: true, loop: true, autoplay: true, playsinline: true, class: "preview-media" })
      : h("img", { src: detail.previewUrl, alt: "generated image", class: "preview-media" });
  } catch (error) {
    if (detail.abort.signal.aborted) return;
    detail.previewNode = h("p", { class: "muted" }, `No preview: ${error.message}`);
  }
  renderDetail(detail);
}

async function cancelJob(detail) {
  try {
    detail.job = await (await api(`/v1/jobs/${encodeURIComponent(detail.id)}`, { method: "DELETE" })).json();
  } catch (error) {
    detail.events.push(`cancel failed: ${error.message}`);
  }
  renderDetail(detail);
  refresh();
}

// ---- tabs and start -----------------------------------------------------------------------------------------
function showTab(name) {
  ui.tab = ["routes", "providers", "jobs", "traffic"].includes(name) ? name : "routes";
  for (const button of document.querySelectorAll(".tab")) button.classList.toggle("active", button.dataset.tab === ui.tab);
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `tab-${ui.tab}`;
  if (location.hash !== `#${ui.tab}`) history.replaceState(null, "", `#${ui.tab}`);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll(".tab")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("filter-status").addEventListener("change", (e) => { ui.filter.status = e.target.value; resetPaging(); });
  $("filter-model").addEventListener("change", (e) => { ui.filter.model = e.target.value; resetPaging(); });
  $("page-older").addEventListener("click", pageOlder);
  $("page-newer").addEventListener("click", pageNewer);
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !$("app").hidden) refresh(); });
  showTab(location.hash.slice(1));
  refresh();
});
