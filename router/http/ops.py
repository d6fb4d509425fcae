"""Operations endpoints: liveness, readiness, the live routes, Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from router.http.answers import json_response
from router.http.keys import DAEMON
from router.http.middleware import require_admin


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    checks = {"config": daemon.routes.current is not None, "job_store": daemon.jobs.ready}
    ok = all(checks.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503)


async def routes(request: web.Request) -> web.Response:
    require_admin(request)
    daemon = request.app[DAEMON]
    snapshot = daemon.routes.current
    circuits = daemon.breakers.snapshot()
    error = daemon.routes.last_error
    last = daemon.routes.last_reload
    return json_response({
        "config_hash": snapshot.config_hash,
        "loaded_at": snapshot.loaded_at.isoformat(),
        "path": snapshot.path,
        "last_reload_error": {"at": error.at.isoformat(), "problems": error.problems} if error else None,
        # Since start-up (null before the first reload): also moves for a reload that found nothing new.
        "last_reload": {"at": last.at.isoformat(), "result": last.result, "config_hash": last.config_hash}
        if last else None,
        "routes": [
            {**(view := route.describe()), "attempts": [
                {**attempt, "circuit": circuits.get((config.provider, config.model), "closed")}
                for attempt, config in zip(view["attempts"], route.chain, strict=True)
            ]}
            for route in snapshot.routes.values()
        ],
    })


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[DAEMON].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/routes", routes)
    app.router.add_get("/metrics", metrics)
