"""The app factory and the state every handler reads (no globals: one ``DaemonState`` per app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from router.health import CircuitBreakers
from router.http import middleware
from router.http.errors import error_middleware
from router.models import AnyRequest, AnyResponse
from router.orchestrator import ChainObserver, run_chain
from router.reload import RoutesHolder
from router.routes import Route
from router.sdnotify import Notifier
from router.settings import Settings

ObserverFactory = Callable[[str, str], ChainObserver]


@dataclass
class DaemonState:
    settings: Settings
    routes: RoutesHolder
    breakers: CircuitBreakers
    notifier: Notifier = field(default_factory=lambda: Notifier({}))
    metrics: Any = None  # router.metrics.Metrics, when enabled
    jobs: Any = None  # router.jobs.JobService, when the job store is open
    observer_factories: list[ObserverFactory] = field(default_factory=list)

    def observers(self, route: str, kind: str) -> list[ChainObserver]:
        """Fresh observers for one generation on ``route`` (metrics, logs...)."""
        return [factory(route, kind) for factory in self.observer_factories]

    async def generate(
        self, route: Route, request: AnyRequest, on_progress: Callable[[Any], Any] | None = None,
        request_id: str | None = None,
    ) -> AnyResponse:
        """Run ``request`` through ``route``'s chain with the daemon's observers and circuit breakers."""
        return await run_chain(
            route.kind, route.config, request, on_progress, observers=self.observers(route.name, route.kind),
            request_id=request_id, chain=route.chain, breakers=self.breakers,
        )


STATE = web.AppKey("state", DaemonState)


def create_app(settings: Settings, routes: RoutesHolder, *, notifier: Notifier | None = None) -> web.Application:
    """Build the daemon's aiohttp application. The routes holder is loaded (and valid) already."""
    from router.http import native, openai_compat, ops  # local: modules register their handlers
    from router.logs import AttemptLogger
    from router.metrics import Metrics

    state = DaemonState(
        settings=settings,
        routes=routes,
        breakers=CircuitBreakers(settings.circuit_threshold, settings.circuit_cooldown_seconds),
        notifier=notifier or Notifier({}),
        metrics=Metrics(),
    )
    state.observer_factories.append(AttemptLogger)
    state.observer_factories.append(state.metrics.observer)
    state.metrics.watch_breakers(state.breakers)
    routes.listeners.append(state.metrics.config_reloaded)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            middleware.request_id_middleware,
            state.metrics.http_middleware(),
            error_middleware,
            middleware.auth_middleware(settings),
        ],
    )
    app[STATE] = state
    for module in (ops, openai_compat, native):
        module.setup(app)
    _setup_jobs(app)
    return app


def _setup_jobs(app: web.Application) -> None:
    from router.http import jobs_api

    jobs_api.setup(app)
