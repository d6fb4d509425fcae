"""The daemon's services, built from settings, with no HTTP in them.

``Daemon.build`` is where the daemon is assembled: the circuit breakers, the metrics, the observers every
generation gets, the job store (chosen here, from settings) and the job runner. ``Generations`` runs a
synchronous generation for the daemon: route admission (``max_concurrency``: 429), the provider limits of the
live routes file, then the orchestrator. ``router/http`` only translates HTTP to calls on these and back; the
library (``router.api``) calls the orchestrator directly and needs none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from router.activity import Activity
from router.attempt_log import AttemptLogger
from router.breakers import CircuitBreakers
from router.budgets import BudgetExceededError, Budgets
from router.cluster import SharedVendorState
from router.deadlines import CallDeadlines
from router.errors import ProviderBusyError, TarashError
from router.ids import Ids
from router.jobs import JobService, JobStore
from router.jobs.postgres import LISTEN_SETTING, PostgresJobStore, redact
from router.jobs.postgres import SETTING as JOB_STORE_SETTING
from router.jobs.service import default_instance_id
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import Clock, JobStoreError
from router.limits import ClientRateLimiter, ProviderLimit, ProviderLimits
from router.log_setup import redactor
from router.metrics import Metrics
from router.models import AnyRequest, AnyResponse, Kind, utc_now
from router.observers import ChainObserver, ProgressCallback
from router.orchestrator import Generation, run_generation
from router.reload import RoutesHolder
from router.routes import Route
from router.sdnotify import Notifier
from router.settings import Settings
from router.jobs.view import job_view
from router.webhooks.inbound import REPLICATE_SECRET_ENV, InboundWebhooks
from router.webhooks.outbound import OutboundWebhooks

#: Builds one observer for one generation on a route (metrics, attempt logs...).
ObserverFactory = Callable[[str, str], ChainObserver]


class Generations:
    """Synchronous generations on the live routes: resolve a route, admit the request, run its chain."""

    def __init__(self, routes: RoutesHolder, breakers: CircuitBreakers, metrics: Metrics,
                 observer_factories: Sequence[ObserverFactory], budgets: Budgets | None = None) -> None:
        self.routes = routes
        self.budgets = budgets
        self.breakers = breakers
        self.metrics = metrics
        self._observer_factories = list(observer_factories)
        self._in_flight: dict[str, int] = {}  # per route, against its max_concurrency
        self._limits = ProviderLimits()
        self._limits_hash: str | None = None  # the config hash ``_limits`` was last brought up to date with
        #: Several instances on one PostgreSQL job store: limits hold for the cluster (router/cluster.py).
        self.shared: SharedVendorState | None = None
        self._ids = Ids()  # the generations' request ids
        #: The attempts' long timeouts on one tick (``router.deadlines``), shared with the job service.
        self.deadlines = CallDeadlines()

    def route(self, model: str, kind: Kind) -> Route:
        """The route named ``model`` in the live config (``RouteNotFoundError``, ``RouteKindError`` otherwise,
        counted as a rejected request). Read once per request: it keeps this config to the end."""
        snapshot = self.routes.current
        try:
            return snapshot.resolve(model, kind)
        except TarashError:
            # Only configured names become labels: a hostile model string is counted as "unknown".
            self.metrics.request_rejected(model if model in snapshot.routes else "unknown", kind)
            raise

    def build_request(self, route: Route, fields: dict[str, Any]) -> AnyRequest:
        """The spec request from client ``fields`` and the route's defaults; pydantic's ``ValidationError``
        (counted as a rejected request) when a field is refused."""
        try:
            return route.build_request(fields)
        except ValidationError:
            self.metrics.request_rejected(route.name, route.kind)
            raise

    def provider_limits(self) -> ProviderLimits:
        """Limits of the current routes file. A reload updates them in place (``ProviderLimit.update``): slots
        held by running attempts keep counting, so an edit never admits a second set beside the first."""
        snapshot = self.routes.current
        if self._limits_hash != snapshot.config_hash:
            current = self._limits.limits
            self._limits.limits = {name: self._updated(current.get(name), spec.max_concurrency,
                                                       spec.requests_per_minute)
                                   for name, spec in snapshot.providers.items()}
            self._limits_hash = snapshot.config_hash
        self._limits.shared = self.shared  # set once the store is open, after the first call may have come
        return self._limits

    @staticmethod
    def _updated(limit: ProviderLimit | None, max_concurrency: int | None,
                 requests_per_minute: int | None) -> ProviderLimit:
        if limit is None:
            return ProviderLimit(max_concurrency, requests_per_minute)
        limit.update(max_concurrency, requests_per_minute)
        return limit

    def observers(self, route: str, kind: str) -> list[ChainObserver]:
        """Fresh observers for one generation on ``route``."""
        return [factory(route, kind) for factory in self._observer_factories]

    async def admit(self, client: str, route: Route, request: AnyRequest, key: str | None = None) -> str | None:
        """Check ``client``'s budget for ``request`` and reserve its estimate under ``key`` (a new one by default;
        ``BudgetExceededError``, counted as a rejected request, when it cannot cover it). The reservation key,
        None without budgets. Whoever admits either runs the generation (``generate``, whose spend recorder ends
        the reservation) or ``release``s it."""
        if self.budgets is None:
            return None
        try:
            return await self.budgets.admit(client, route, request, key)
        except BudgetExceededError:
            self.metrics.request_rejected(route.name, route.kind)
            raise

    async def release(self, client: str, reservation: str | None) -> None:
        """End an admitted request's reservation without running it."""
        if self.budgets is not None and reservation is not None:
            await self.budgets.release(client, reservation)

    async def generate(self, route: Route, request: AnyRequest, on_progress: ProgressCallback | None = None,
                       client: str = "anonymous", reservation: str | None = None) -> AnyResponse:
        """Run ``request`` through ``route``'s chain with the daemon's observers, breakers and limits.

        A route at its ``max_concurrency`` sheds the request (``ProviderBusyError``: 429 + Retry-After) before
        any attempt; a provider at its limit is skipped so the chain moves on to one with room. ``client``'s budget
        is checked first (``BudgetExceededError``: 402) unless ``reservation`` says ``admit`` already did.
        """
        running = self._in_flight.get(route.name, 0)
        if route.max_concurrency is not None and running >= route.max_concurrency:
            self.metrics.request_rejected(route.name, route.kind)
            await self.release(client, reservation)
            raise ProviderBusyError(f"route {route.name!r} is at its max_concurrency of {route.max_concurrency}; "
                                    "retry shortly or use /v1/jobs", retry_after=1.0, code="route_busy")
        key = reservation or await self.admit(client, route, request)
        observers = self.observers(route.name, route.kind)
        if self.budgets is not None:
            observers.append(self.budgets.recorder(client, route.name, key))
        self._in_flight[route.name] = running + 1
        try:
            return await run_generation(Generation(
                route.kind, request, route.chain, generation_id=self._ids.next(), on_progress=on_progress,
                observers=observers, breakers=self.breakers, limits=self.provider_limits(), policies=route.policies,
                deadlines=self.deadlines,
            ))
        finally:
            self._in_flight[route.name] -= 1


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_job_store(settings: Settings) -> JobStore:
    """The job store the settings ask for: SQLite in ``DATA_DIR`` when ``JOB_STORE`` is empty, PostgreSQL for a
    ``postgresql://`` (or ``postgres://``) URL. ``JobStoreError`` (one line, no password) for anything else."""
    url = settings.job_store.get_secret_value().strip()
    listen = settings.job_store_listen.get_secret_value().strip()
    if listen and not url.startswith(POSTGRES_SCHEMES):
        raise JobStoreError(f"{LISTEN_SETTING} is set, but {JOB_STORE_SETTING} is not a PostgreSQL URL: "
                            "only the PostgreSQL job store listens for notifications")
    if listen and not listen.startswith(POSTGRES_SCHEMES):
        raise JobStoreError(f"{LISTEN_SETTING}={redact(listen) if '://' in listen else '***'}: "
                            "give a postgresql:// URL (the server itself, or a session-mode pool)")
    if not url:
        return SQLiteJobStore(settings.data_dir / "jobs.sqlite3")
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresJobStore(url, listen_url=listen or None)
    scheme = url.partition("://")[0] if "://" in url else "(none)"
    raise JobStoreError(f"{JOB_STORE_SETTING}={redact(url) if '://' in url else '***'}: scheme {scheme!r} is not "
                        "supported; leave it empty for SQLite in DATA_DIR or give a postgresql:// URL")


def describe_job_store(settings: Settings) -> str:
    """The job store for logs: SQLite's file, or the PostgreSQL URL (and the LISTEN one when it has its own)
    without their passwords."""
    url = settings.job_store.get_secret_value().strip()
    listen = settings.job_store_listen.get_secret_value().strip()
    if not url:
        return f"sqlite:{settings.data_dir / 'jobs.sqlite3'}"
    return f"{redact(url)} (LISTEN {redact(listen)})" if listen else redact(url)


@dataclass
class Daemon:
    """Everything a running daemon holds, each piece built once per process by ``build``."""

    settings: Settings
    #: The live routes file (swapped atomically on reload).
    routes: RoutesHolder
    #: Per provider/model circuits, shared by synchronous generations and jobs.
    breakers: CircuitBreakers
    metrics: Metrics
    #: Synchronous generations: admission, limits, the chain.
    generations: Generations
    #: Durable jobs: the runner over the job store chosen by ``open_job_store``.
    jobs: JobService
    #: systemd's notify socket (a no-op without systemd).
    notifier: Notifier
    #: Recent traffic and attempt outcomes, for the status page (``GET /v1/status``).
    activity: Activity
    #: Per-client token buckets, when ``CLIENT_REQUESTS_PER_MINUTE`` is set.
    client_limiter: ClientRateLimiter | None = None
    #: Vendor webhooks, when ``PUBLIC_URL`` is set.
    inbound: InboundWebhooks | None = None
    #: Client budgets and usage (``[clients]`` in routes.toml), on the job store's spend ledger.
    budgets: Budgets | None = None
    #: Client webhooks, when ``WEBHOOK_SECRET`` is set.
    outbound: OutboundWebhooks | None = None

    @classmethod
    def build(cls, settings: Settings, routes: RoutesHolder, *, notifier: Notifier | None = None,
              job_store: JobStore | None = None, clock: Clock = utc_now) -> Daemon:
        """Assemble the daemon for a loaded (valid) routes holder. ``job_store`` overrides the settings' choice;
        ``clock`` is the wall clock of job timestamps, retention and the budgets' UTC days and months."""
        breakers = CircuitBreakers(settings.circuit_threshold, settings.circuit_cooldown_seconds)
        metrics = Metrics(routes=lambda: routes.current.routes)  # only configured names become labels
        metrics.watch_breakers(breakers)
        routes.listeners.append(metrics.config_reloaded)
        activity = Activity()
        store = job_store or open_job_store(settings)
        instance_id = settings.instance_id or default_instance_id()
        # On a shared store, reservations are rows leased to this instance (renewed with its job leases).
        budgets = Budgets(store, lambda: routes.current.clients, clock,  # type: ignore[arg-type]
                          holder=instance_id, lease_seconds=settings.job_lease_seconds)
        generations = Generations(routes, breakers, metrics, [AttemptLogger, metrics.observer, activity.observer],
                                  budgets)
        if store.shared:
            generations.shared = SharedVendorState(store, instance_id, settings.job_lease_seconds, breakers)
        # Client tokens and keys are taught to the log redactor where they are read; these secrets here (whole, and
        # their base64 part without "whsec_").
        webhook_secrets = (settings.webhook_secret.get_secret_value(), os.environ.get(REPLICATE_SECRET_ENV, ""))
        redactor.add_values([form for secret in webhook_secrets for form in (secret, secret.removeprefix("whsec_"))])
        inbound = InboundWebhooks(
            settings.public_url, store, poll_interval=settings.webhook_poll_interval,
            max_body_bytes=settings.webhook_max_body_bytes, metrics=metrics,
            replicate_secret=os.environ.get(REPLICATE_SECRET_ENV) or None, instance_id=instance_id,
        ) if settings.public_url else None
        # Built even without WEBHOOK_SECRET: a client's own secret ([clients] webhook_secret_env, hot-reloaded)
        # may sign its webhooks; with neither, webhook_url is refused at create time.
        outbound = OutboundWebhooks(
            store, settings.webhook_secret.get_secret_value(), view=job_view,
            retry_for=timedelta(hours=settings.webhook_retry_hours), base_delay=settings.webhook_retry_base_seconds,
            allow_private=settings.allow_private_webhook_urls, metrics=metrics,
            client_secret_env=lambda owner: routes.current.client_webhook_secret_env(owner),
            instance_id=instance_id, claim_seconds=settings.job_lease_seconds,
        )
        jobs = JobService(
            store,
            budgets=budgets,
            clock=clock,
            max_running=settings.max_running_jobs,
            retention_days=settings.job_retention_days,
            observers=generations.observers,
            breakers=breakers,
            metrics=metrics,
            limits=generations.provider_limits,
            push=inbound,
            outbound=outbound,
            media_dir=(settings.media_dir or settings.data_dir / "media") if settings.keep_media_copy else None,
            instance_id=instance_id,
            lease_seconds=settings.job_lease_seconds,
            vendor_job_grace=settings.vendor_job_save_grace_seconds,
            deadlines=generations.deadlines,
        )
        if generations.shared is not None:
            jobs.notice_listeners.append(generations.shared.on_notice)
            if inbound is not None:  # pushes other instances received for jobs held here
                jobs.notice_listeners.append(inbound.on_notice)
        limiter = (ClientRateLimiter(settings.client_requests_per_minute)
                   if settings.client_requests_per_minute else None)
        return cls(settings, routes, breakers, metrics, generations, jobs, notifier or Notifier({}), activity, limiter,
                   inbound, budgets, outbound)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start the job runner (resuming unfinished jobs) and the loop-lag sampler; stop both on exit."""
        await self.jobs.start()
        if self.generations.shared is not None:
            await self.generations.shared.load_circuits()
        if self.outbound is not None:
            await self.outbound.start()  # after the store opened; it delivers what a previous process left
        self.metrics.track(self.metrics.job_store_writes, lambda: self.jobs.store.rows_written)
        lag = asyncio.create_task(self.metrics.watch_loop())
        try:
            yield
        finally:
            lag.cancel()
            if self.generations.shared is not None:
                await self.generations.shared.close()
            if self.outbound is not None:
                await self.outbound.stop()
            await self.jobs.stop()
            if self.inbound is not None:
                await self.inbound.close()
