"""The app factory and the state every handler reads (no globals: one ``DaemonState`` per app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from router.errors import ProviderBusyError
from router.health import CircuitBreakers
from router.limits import ClientRateLimiter, ProviderLimit, ProviderLimits
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
    client_limiter: ClientRateLimiter | None = None
    route_in_flight: dict[str, int] = field(default_factory=dict)
    _limits: tuple[str, ProviderLimits] | None = None

    def provider_limits(self) -> ProviderLimits:
        """Limits of the current routes file, rebuilt only when it changes."""
        snapshot = self.routes.current
        if self._limits is None or self._limits[0] != snapshot.config_hash:
            self._limits = (snapshot.config_hash, ProviderLimits({
                name: ProviderLimit(spec.max_concurrency, spec.requests_per_minute)
                for name, spec in snapshot.providers.items()
            }))
        return self._limits[1]

    def observers(self, route: str, kind: str) -> list[ChainObserver]:
        """Fresh observers for one generation on ``route`` (metrics, logs...)."""
        return [factory(route, kind) for factory in self.observer_factories]

    async def generate(
        self, route: Route, request: AnyRequest, on_progress: Callable[[Any], Any] | None = None,
        request_id: str | None = None,
    ) -> AnyResponse:
        """Run ``request`` through ``route``'s chain with the daemon's observers, breakers and limits.

        A route at its ``max_concurrency`` sheds the request (429 + Retry-After) before any attempt; a provider at
        its limit is skipped so the chain moves on to one with room.
        """
        running = self.route_in_flight.get(route.name, 0)
        if route.max_concurrency is not None and running >= route.max_concurrency:
            if self.metrics is not None:
                self.metrics.request_rejected(route.name, route.kind)
            raise ProviderBusyError(f"route {route.name!r} is at its max_concurrency of {route.max_concurrency}; "
                                    "retry shortly or use /v1/jobs", retry_after=1.0, code="route_busy")
        self.route_in_flight[route.name] = running + 1
        try:
            return await run_chain(
                route.kind, route.config, request, on_progress, observers=self.observers(route.name, route.kind),
                request_id=request_id, chain=route.chain, breakers=self.breakers, limits=self.provider_limits(),
            )
        finally:
            self.route_in_flight[route.name] -= 1


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
        metrics=Metrics(routes=lambda: routes.current.routes),  # only configured names become labels
        client_limiter=ClientRateLimiter(settings.client_requests_per_minute) if settings.client_requests_per_minute else None,
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
            middleware.client_rate_middleware,
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
