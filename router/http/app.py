"""The app factory: the daemon's services (``router.daemon``) behind aiohttp, with its middlewares and routes.

Nothing imports this module but the CLI and tests: handlers read the services from ``request.app[DAEMON]``
(``router.http.keys``), and the services' lifetime is the app's (``cleanup_ctx``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from router.daemon import Daemon
from router.http import jobs_api, middleware, native, openai_compat, ops, ui, usage, webhooks_api
from router.http.errors import error_middleware
from router.http.create_gate import CreateGate
from router.http.fast_path import FastPath
from router.http.intake import Limits
from router.http.keys import CREATE_GATE, DAEMON, INTAKE_LIMITS
from router.http.slow_clients import CONNECTION_FRONT
from router.jobs import JobStore
from router.jobs.store import Clock
from router.models import utc_now
from router.reload import RoutesHolder
from router.sdnotify import Notifier
from router.settings import Settings


def create_app(settings: Settings, routes: RoutesHolder, *, notifier: Notifier | None = None,
               job_store: JobStore | None = None, clock: Clock = utc_now) -> web.Application:
    """Build the daemon's aiohttp application. The routes holder is loaded (and valid) already; the job store
    is the one the settings choose unless ``job_store`` is given."""
    daemon = Daemon.build(settings, routes, notifier=notifier, job_store=job_store, clock=clock)
    auth = middleware.AuthCheck(settings)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            middleware.access_middleware(daemon.metrics),
            error_middleware,
            middleware.admission_middleware(settings, auth),
        ],
    )
    app[DAEMON] = daemon
    app[CREATE_GATE] = CreateGate(settings.max_creates_in_progress)
    app[INTAKE_LIMITS] = Limits(settings.max_prompt_chars)
    if settings.fast_path:
        app[CONNECTION_FRONT] = FastPath(app, settings, auth)
    for module in (ops, openai_compat, native, jobs_api, ui, usage, webhooks_api):
        module.setup(app)
    for route in app.router.routes():
        # aiohttp takes an Expect handler only per route, as it is added (no public setter): one place for all.
        route._expect_handler = middleware.continue_after_admission  # type: ignore[attr-defined]
    app.cleanup_ctx.append(_daemon_running)
    return app


async def _daemon_running(app: web.Application) -> AsyncIterator[None]:
    async with app[DAEMON].running():
        yield
