"""The status page in a real browser: Debian's Chromium driven by Playwright, against ``tarash-router serve``
running as a process with mock routes and a fal emulator route.

Screenshots go to the test's tmp dir; set ``TARASH_UI_SCREENSHOT_DIR`` to keep them too (the README's image
is made that way: ``TARASH_UI_SCREENSHOT_DIR=docs/images pytest tests/ui``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from tests.net import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed")
#: Offline, quiet, no sandbox (CI runs as root): the flags the project's brief asks for.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCRIPT = Path(sys.executable).parent / "tarash-router"
WAIT_MS = 10_000  # every expectation polls; this is only the give-up point on a loaded machine
ADMIN_TOKEN = "ui-admin-token-9f8e7d6c"
USER_TOKEN = "ui-user-token-1a2b3c4d"
HOSTILE_PROMPT = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold?</b> a fox'

MOCK_ROUTES = """
[routes."video-live"]
kind = "video"
description = "mock video reporting progress"
[[routes."video-live".attempts]]
provider = "mock"
model = "mock-video"
timeout = 60
mock = { polling = { status_sequence = ["queued", "processing", "processing", "processing", "processing", "processing", "processing", "processing", "completed"], progress_percentages = [0, 10, 20, 30, 45, 60, 75, 90, 100], delay_between_updates = 0.5 } }

[routes."video-hold"]
kind = "video"
description = "a job that waits until cancelled"
[[routes."video-hold".attempts]]
provider = "mock"
model = "mock-hold"
timeout = 600
max_poll_attempts = 100000
mock = { polling = { status_sequence = ["queued", "processing", "completed"], delay_between_updates = 3600 } }

[routes."image-quick"]
kind = "image"
[[routes."image-quick".attempts]]
provider = "mock"
model = "mock-image"

[routes."video-keyed"]
kind = "video"
description = "an attempt whose key is not set"
[[routes."video-keyed".attempts]]
provider = "openai"
model = "sora-2"
api_key_env = "UI_TEST_NO_SUCH_KEY"
[[routes."video-keyed".attempts]]
provider = "mock"
model = "mock-video"
"""

FAL_ROUTE = """
[routes."video-fal"]
kind = "video"
description = "fal (emulator) first, then the mock"
[[routes."video-fal".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
base_url = "{url}"
api_key_env = "UI_TEST_FAL_KEY"
poll_interval = 0.01
timeout = 30
[[routes."video-fal".attempts]]
provider = "mock"
model = "mock-video"
timeout = 30
"""


class Served:
    def __init__(self, url: str, routes: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.routes, self.proc, self.log = url, routes, proc, log

    async def post_job(self, session: aiohttp.ClientSession, model: str, prompt: str,
                       headers: dict[str, str] | None = None) -> str:
        async with session.post(f"{self.url}/v1/jobs", json={"model": model, "prompt": prompt},
                                headers=headers) as response:
            assert response.status == 202, await response.text()
            return str((await response.json())["id"])

    async def until_finished(self, session: aiohttp.ClientSession, job: str) -> dict[str, Any]:
        for _ in range(WAIT_MS // 10):
            async with session.get(f"{self.url}/v1/jobs/{job}") as response:
                body: dict[str, Any] = await response.json()
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job} did not finish")


@asynccontextmanager
async def serve(tmp_path: Path, routes: str, **env: str) -> AsyncIterator[Served]:
    """``tarash-router serve`` as a process on a free loopback port, until the block ends (SIGTERM)."""
    path = tmp_path / "routes.toml"
    path.write_text(routes)
    port = free_port()
    log = tmp_path / "daemon.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TARASH_ROUTER_") and k != "OPENAI_API_KEY"}
    environ.update({"TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_LOG_FORMAT": "json",
                    "TARASH_ROUTER_RELOAD_DEBOUNCE_MS": "20",
                    # The fal emulator's media URLs are loopback ones, which the SSRF guard refuses by default.
                    "TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS": "true", **env})
    with log.open("wb") as out:
        proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(path), "--port", str(port)], env=environ,
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for _ in range(2000):
                try:
                    async with session.get(url + "/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.01)
        yield Served(url, path, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Watch:
    """Console errors and page errors of a page: CSP or Trusted Types violations would show up here."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)


Shoot = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
def shoot(tmp_path: Path) -> Shoot:
    keep = os.environ.get("TARASH_UI_SCREENSHOT_DIR")

    async def take(page: Page, name: str) -> None:
        target = tmp_path / f"{name}.png"
        await page.screenshot(path=str(target), full_page=True)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, Path(keep) / target.name)

    return take


async def test_status_page_end_to_end(tmp_path: Path, fal_emulator: Any, shoot: Shoot) -> None:
    routes = MOCK_ROUTES + FAL_ROUTE.format(url=fal_emulator.url)
    async with serve(tmp_path, routes, UI_TEST_FAL_KEY=fal_emulator.api_key, TARASH_ROUTER_CIRCUIT_THRESHOLD="1",
                     TARASH_ROUTER_CIRCUIT_COOLDOWN_SECONDS="600") as daemon, browser() as chromium, \
            aiohttp.ClientSession() as http:
        page = await chromium.new_page(viewport={"width": 1440, "height": 640})
        watch = Watch(page)
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        await page.goto(daemon.url + "/ui/")
        expect.set_options(timeout=WAIT_MS)

        # Routes: every route with its chain; the attempt without a key says so.
        table = page.locator("#routes-table")
        for name in ("video-live", "video-hold", "video-keyed", "video-fal"):
            await expect(table.locator(f"tr[data-route='{name}']")).to_be_visible()
        keyed = table.locator("tr[data-route='video-keyed'] li[data-provider='openai']")
        await expect(keyed).to_contain_text("no key")
        await expect(keyed).to_contain_text("UI_TEST_NO_SUCH_KEY")
        await expect(page.locator("#login")).to_be_hidden()

        # A fal job through the emulator: its video (a vendor URL) previews through the router's /content.
        fal_job = await daemon.post_job(http, "video-fal", "[[polls:3]] a fox through fal")
        await daemon.until_finished(http, fal_job)  # its success would close the circuit the next job opens
        # A failing fal submit opens the circuit (threshold 1); the chain falls back to the mock.
        await daemon.post_job(http, "video-fal", "[[fault:server_error]] a fox, fal down")
        await page.click("[data-tab=providers]")
        fal_row = page.locator("#models-table tr[data-provider='fal']")
        await expect(fal_row.locator(".circuit")).to_contain_text("open", timeout=WAIT_MS)
        await expect(fal_row.locator(".circuit")).to_contain_text("probe in")
        await expect(fal_row.locator(".dot.failed")).to_have_count(1)
        await page.click("[data-tab=routes]")
        await expect(table.locator("tr[data-route='video-fal'] li[data-provider='fal']")).to_contain_text("circuit open")

        # A broken save shows its problem (with its TOML path) within seconds; the page goes on working.
        daemon.routes.write_text(routes.replace("timeout = 60", "timeout = -5", 1))
        banner = page.locator("#reload-error")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text('routes."video-live".attempts[0].timeout')
        await expect(banner).to_contain_text("-5")
        await expect(table.locator("tr[data-route='video-live']")).to_be_visible()
        await shoot(page, "status-page")
        daemon.routes.write_text(routes)  # the fix clears it
        await expect(banner).to_be_hidden()
        await expect(page.locator("#config")).to_contain_text("last reload unchanged")  # back to the served config

        # Jobs: a hostile prompt is text; live progress over SSE; the preview plays; cancel works.
        hostile = await daemon.post_job(http, "video-live", HOSTILE_PROMPT)
        await page.click("[data-tab=jobs]")
        await page.select_option("#filter-status", "running")
        row = page.locator(f"#jobs-table tr[data-job='{hostile}']")
        await expect(row).to_be_visible()
        await expect(row.locator(".prompt")).to_have_text(HOSTILE_PROMPT)
        await row.click()
        progress = page.locator("#job-detail .job-progress")
        await expect(progress).to_have_text(re.compile(r"^([1-8]\d|9\d?|[1-9])%$"))  # mid-way: 1..99 %
        first = int((await progress.text_content() or "0").rstrip("%"))
        await page.wait_for_function(
            "first => parseInt(document.querySelector('#job-detail .job-progress').textContent) > first", arg=first,
            timeout=WAIT_MS)
        await expect(page.locator("#job-detail .prompt-full")).to_have_text(HOSTILE_PROMPT)
        await expect(page.locator("#job-detail .job-status")).to_have_text("completed")
        await expect(progress).to_have_text("100%")
        await expect_video_plays(page)
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("#jobs-table img, #jobs-table script, #job-detail img, #job-detail b").count() == 0

        await page.select_option("#filter-status", "")
        fal_row = page.locator(f"#jobs-table tr[data-job='{fal_job}']")
        await fal_row.click()
        await expect(page.locator("#job-detail .timeline li.success")).to_contain_text("fal / fal-ai/veo3/fast")
        await expect_video_plays(page)
        await shoot(page, "status-page-jobs")

        held = await daemon.post_job(http, "video-hold", "a job to cancel")
        await page.select_option("#filter-model", "video-hold")
        await page.locator(f"#jobs-table tr[data-job='{held}']").click()
        await expect(page.locator("#job-detail .job-status")).to_have_text("running")
        await page.click("#cancel-job")
        await expect(page.locator("#job-detail .job-status")).to_have_text("cancelled")
        await expect(page.locator(f"#jobs-table tr[data-job='{held}']")).to_contain_text("cancelled")
        async with http.get(f"{daemon.url}/v1/jobs/{held}") as response:
            assert (await response.json())["status"] == "cancelled"

        # Traffic: the generations above, per route.
        await page.click("[data-tab=traffic]")
        await expect(page.locator("#traffic-table tr[data-route='video-fal'] td.num").first).to_have_text("2")
        # Spend today: the fal job's charge (the emulator reports billable units as fal does), by route and provider.
        await expect(page.locator("#spend tr[data-spend='provider:fal'] td.num")).to_have_text(re.compile(r"^0\.\d+ USD$"))
        await expect(page.locator("#spend tr[data-spend='route:video-fal']")).to_be_visible()
        await shoot(page, "status-page-traffic")
        assert watch.problems == []
        # Offline by construction: every request the page made went to the daemon (or was one of its own blobs).
        assert fetched and all(url.startswith((daemon.url + "/", "blob:")) for url in fetched), fetched


async def expect_video_plays(page: Page) -> None:
    await page.wait_for_function(
        "() => { const v = document.querySelector('#job-detail video'); return v && v.readyState >= 1 && v.videoWidth > 0; }",
        timeout=WAIT_MS)
    assert (await page.locator("#job-detail video").get_attribute("src") or "").startswith("blob:")


async def test_without_a_token_the_page_shows_the_login_and_no_data(tmp_path: Path, shoot: Shoot) -> None:
    keys = f"{ADMIN_TOKEN}:admin,{USER_TOKEN}"
    async with serve(tmp_path, MOCK_ROUTES, TARASH_ROUTER_API_KEYS=keys) as daemon, browser() as chromium, \
            aiohttp.ClientSession() as http:
        job = await daemon.post_job(http, "video-live", "a secret-ish prompt", {"Authorization": f"Bearer {USER_TOKEN}"})
        context = await chromium.new_context(viewport={"width": 1280, "height": 720})
        page = await context.new_page()
        watch = Watch(page)
        await page.goto(daemon.url + "/ui/")
        expect.set_options(timeout=WAIT_MS)
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.locator("#app")).to_be_hidden()
        body = await page.locator("body").inner_text()
        for leaked in ("video-live", "mock-video", job, "secret-ish"):
            assert leaked not in body and leaked not in await page.content()
        await shoot(page, "status-page-login")

        # A token without the admin scope is refused, with the reason; so is a wrong one.
        await page.fill("#token", USER_TOKEN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_contain_text("no admin scope")
        await page.fill("#token", "not-a-token")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_contain_text("not one of the daemon's API_KEYS")
        await expect(page.locator("#app")).to_be_hidden()

        await page.fill("#token", ADMIN_TOKEN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#routes-table tr[data-route='video-live']")).to_be_visible()
        await page.click("[data-tab=jobs]")
        await expect(page.locator(f"#jobs-table tr[data-job='{job}']")).to_be_visible()  # admins see every job
        # Pages of 25 by cursor: 31 jobs are a full page and a page of 6.
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for i in range(30):
            await daemon.post_job(http, "image-quick", f"image {i}", admin)
        rows = page.locator("#jobs-table tbody tr[data-job]")
        await expect(page.locator("#jobs-table tbody tr[data-job]").first).to_contain_text("image-quick")
        await expect(rows).to_have_count(25)
        await page.click("#page-older")
        await expect(page.locator("#page-label")).to_have_text("page 2")
        await expect(rows).to_have_count(6)
        await expect(page.locator(f"#jobs-table tr[data-job='{job}']")).to_be_visible()  # the oldest, last
        await expect(page.locator("#page-older")).to_be_disabled()
        await page.click("#page-newer")
        await expect(rows).to_have_count(25)
        await page.select_option("#filter-model", "video-live")
        await expect(rows).to_have_count(1)
        # Kept for the tab: a reload stays signed in; never in the URL or a cookie; a new tab asks again.
        await page.reload()
        await expect(page.locator("#routes-table tr[data-route='video-live']")).to_be_attached()
        assert ADMIN_TOKEN not in page.url and await context.cookies() == []
        other = await context.new_page()
        await other.goto(daemon.url + "/ui/")
        await expect(other.locator("#login")).to_be_visible()
        await other.close()
        # Forgetting the token takes the data off the screen.
        await page.click("#logout")
        await expect(page.locator("#login")).to_be_visible()
        assert await page.locator("#routes-table tbody tr").count() == 0
        assert "video-live" not in await page.locator("body").inner_text()
        assert watch.problems == []
    assert ADMIN_TOKEN not in daemon.log.read_text() and USER_TOKEN not in daemon.log.read_text()
