"""The built-in status page at ``/ui`` and the read-only JSON it needs beyond the public API.

The page is static files shipped in the package (``router/http/static``), plain JavaScript, no CDN and no build
step. It reads ``/v1/routes``, ``/v1/jobs`` (and their SSE streams) and ``GET /v1/status`` below, with the admin
token the operator typed in (kept in the tab's sessionStorage). The files themselves carry no data, so they are
served without a token; every byte of data comes from the token-checked API.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from router.activity import summarize
from router.daemon import Daemon
from router.errors import TarashError
from router.http.answers import json_response
from router.http.bodies import query_int
from router.http.errors import ApiError
from router.http.jobs_api import _visible_job, send_media, video_content
from router.http.keys import DAEMON
from router.http.middleware import require_admin
from router.registry import handler_for, key_env_names, resolve_api_key

#: Strict: our own scripts and styles only, no inline code, no string-to-HTML sinks (Trusted Types with no
#: policy makes ``innerHTML = "..."`` throw), media from our own origin or blobs fetched with the token.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:", "media-src 'self' blob:",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    "require-trusted-types-for 'script'", "trusted-types 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate each load (ETag answers 304) so an upgraded daemon never serves yesterday's script.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


#: Explicit types (the system's mimetypes table varies by machine); nosniff makes the browser hold us to them.
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
ASSETS = web.AppKey("ui_assets", dict)


def load_assets() -> dict[str, StaticFile]:
    """Every file of the shipped static folder, read once at start (a handful of small files)."""
    assets: dict[str, StaticFile] = {}
    for entry in resources.files("router.http").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            content_type = CONTENT_TYPES[suffix]
            assets[entry.name] = StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


async def asset(request: web.Request) -> web.Response:
    """``/ui/`` (the page) and ``/ui/<file>``; only names of shipped files answer, anything else is a 404."""
    name = request.match_info.get("name") or "index.html"
    found: StaticFile | None = request.app[ASSETS].get(name)
    if found is None:
        raise ApiError(404, f"no such file: /ui/{name}", "not_found_error", "not_found")
    headers = {**SECURITY_HEADERS, "ETag": found.etag}
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if found.content_type.startswith("text/") else None
    return web.Response(body=found.body, content_type=found.content_type, charset=charset, headers=headers)


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


# ---- GET /v1/status ---------------------------------------------------------------------------------------
def key_status(config: Any) -> dict[str, Any]:
    """Whether an attempt has its key right now: ``present``, ``missing`` or ``not_needed``, and the env vars
    it is read from (names only, never a value)."""
    try:
        handler = handler_for(config)
    except TarashError as exc:
        return {"key": "error", "env": [], "message": exc.message}
    names = list(key_env_names(handler, config))
    try:
        resolved = resolve_api_key(handler, config)
    except TarashError:
        return {"key": "missing", "env": names}
    return {"key": "present" if resolved.api_key else "not_needed", "env": names}


async def status_view(daemon: Daemon) -> dict[str, Any]:
    snapshot = daemon.routes.current
    activity = daemon.activity
    used_by: dict[tuple[str, str], list[str]] = {}
    routes: dict[str, list[dict[str, Any]]] = {}
    for route in snapshot.routes.values():
        routes[route.name] = [key_status(config) for config in route.chain]
        for config in route.chain:
            used_by.setdefault((config.provider, config.model), []).append(route.name)
    models = list(dict.fromkeys([*used_by, *daemon.breakers.snapshot(), *activity.known_models()]))
    limits = daemon.generations.provider_limits().limits
    return {
        "object": "status",
        "config_hash": snapshot.config_hash,
        "routes": routes,
        "models": [
            {"provider": provider, "model": model, "routes": used_by.get((provider, model), []),
             "circuit": daemon.breakers.details(provider, model), "recent": summarize(activity.attempts(provider, model))}
            for provider, model in models
        ],
        "providers": [
            {"provider": name, "max_concurrency": limit.max_concurrency,
             "requests_per_minute": limit.requests_per_minute, "in_use": limit.in_use, "waiting": limit.waiting}
            for name, limit in sorted(limits.items())
        ],
        "traffic": activity.traffic(),
        "spend_today": await spend_today(daemon),
    }


async def spend_today(daemon: Daemon) -> dict[str, Any] | None:
    """Spend today (UTC) per route and provider, every client summed, from the durable spend ledger the budgets
    keep (charged costs, else the estimate of a success): it survives restarts. None without a ledger."""
    if daemon.budgets is None:
        return None
    day = daemon.budgets.clock().astimezone(UTC).date().isoformat()
    routes: dict[str, float] = {}
    providers: dict[str, float] = {}
    for entry in await daemon.budgets.spend(None, day, day):
        routes[entry.route] = routes.get(entry.route, 0.0) + entry.usd
        providers[entry.provider] = providers.get(entry.provider, 0.0) + entry.usd
    return {"currency": "USD", "day": day, "total": round(sum(routes.values()), 6),
            "routes": {k: round(v, 6) for k, v in sorted(routes.items())},
            "providers": {k: round(v, 6) for k, v in sorted(providers.items())}}


async def status(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(await status_view(request.app[DAEMON]))


# ---- GET /v1/jobs/{id}/content ----------------------------------------------------------------------------
async def job_content(request: web.Request) -> web.StreamResponse:
    """A finished job's media, whatever its kind: the video, or image ``index`` (default 0)."""
    job = await _visible_job(request)
    if job.kind == "video":
        return await video_content(request)
    if job.status != "completed" or not job.result:
        raise ApiError(409 if not job.finished else 404, f"job {job.id} is {job.status}, no content yet",
                       code="content_not_ready")
    images = job.result.get("images") or []
    index = query_int(request, "index", 0)
    if not 0 <= index < len(images):
        raise ApiError(404, f"job {job.id} has {len(images)} image(s); no index {index}", "not_found_error",
                       "not_found", param="index")
    return await send_media(request, images[index], job.result.get("content_type") or "image/png")


def setup(app: web.Application) -> None:
    app[ASSETS] = load_assets()
    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", asset)
    app.router.add_get("/ui/{name}", asset)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/jobs/{id}/content", job_content)
