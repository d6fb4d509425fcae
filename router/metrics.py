"""Prometheus metrics, fed by the orchestrator's attempt events (one place) and the HTTP layer.

Opt-in: a ``Metrics`` owns its own ``CollectorRegistry``, so importing ``router`` registers nothing global.
Library users create one and pass ``metrics.observer(route, kind)`` to ``run_chain(observers=...)``.
Label values come from config (route, provider, model) or fixed sets, never from client text.

Router overhead (``tarash_router_overhead_seconds``) is, per generation, the time from the moment it is handed to
the orchestrator (``observer()`` is called) to the end of its chain, minus the time inside its attempts (from each
``attempt_started`` to its ``attempt_finished``: handler call, vendor HTTP, polling sleeps, retries, waiting for a
provider slot). What is left is the router's own work around the vendor calls: observer delivery and job-store
writes between attempts, fallback decisions, building the result's metadata. HTTP parsing and serialisation and a
job's time in the queue are outside it (see the HTTP counter and ``tarash_router_jobs_queued``).

Several worker processes (``serve --workers N``): the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before a worker
imports prometheus-client, so every value lives in that directory's files and ``render`` merges them (counters
summed, histograms merged, each gauge by the mode it is declared with: see docs/metrics.md). Values that are read
rather than counted (rows written, circuit states) are sampled into their gauges every loop-lag tick there, since
a function gauge is only ever seen by its own process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Container
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from router.breakers import STATE_VALUES, CircuitBreakers
from router.errors import ERROR_CLASSES, GenerationCancelledError, TarashError
from router.models import AnyConfig, AttemptMetadata, ExecutionMetadata
from router.observers import ChainObserver
from router.pricing import counted_cost

#: Seconds-long image attempts and up-to-30-minute video attempts in one bucket set.
ATTEMPT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800)
#: Router overhead is sub-millisecond to tens of milliseconds.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
KNOWN_ERRORS = frozenset(ERROR_CLASSES) | {"AllAttemptsFailedError"}
#: aiohttp accepts any token as a method: anything else is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: prometheus-client's switch to multiprocess mode, read by it when it is first imported.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _error_label(error: TarashError | None) -> str:
    if error is None:
        return ""
    name = type(error).__name__
    return name if name in KNOWN_ERRORS else "other"


class Metrics:
    """Every metric of docs/metrics.md: the spec's set, plus router overhead, HTTP requests, jobs and circuit state.

    ``routes`` returns the configured route names (the daemon passes the live config's): any other ``route``
    given to ``observer``/``request_rejected`` is counted as ``"unknown"``. Without it (library use) the caller's
    route names are used as given. More collectors: register them on ``self.registry``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 routes: Callable[[], Container[str]] | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._routes = routes
        #: ``serve --workers N``: the directory every worker's values are written to (None: this process only).
        self.multiprocess_dir: str | None = os.environ.get(MULTIPROCESS_ENV) or None
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
        r = self.registry
        self.requests = Counter("tarash_router_requests", "Generations by route and outcome",
                                ["route", "kind", "outcome"], registry=r)
        self.request_duration = Histogram("tarash_router_request_duration_seconds",
                                          "Wall time of a generation across all attempts", ["route", "kind"],
                                          buckets=ATTEMPT_BUCKETS, registry=r)
        self.attempts = Counter("tarash_router_attempts", "Provider attempts",
                                ["route", "provider", "model", "outcome", "error_type"], registry=r)
        self.attempt_duration = Histogram("tarash_router_attempt_duration_seconds", "Duration of one attempt",
                                          ["route", "provider", "model", "outcome"], buckets=ATTEMPT_BUCKETS,
                                          registry=r)
        self.fallbacks = Counter("tarash_router_fallbacks", "Fallbacks from one provider to the next",
                                 ["route", "from_provider", "to_provider"], registry=r)
        self.cost = Counter("tarash_router_cost_usd", "USD spent per attempt: the charged cost (basis=charged), or "
                            "the estimate for a success whose charge is unknown (basis=estimated)",
                            ["route", "provider", "model", "basis"], registry=r)
        self.jobs_in_flight = Gauge("tarash_router_jobs_in_flight", "Generations running now", ["kind"], registry=r,
                                    multiprocess_mode="livesum")
        self.reloads = Counter("tarash_router_config_reloads", "routes.toml reloads", ["result"], registry=r)
        self.webhooks_received = Counter("tarash_router_webhooks_received", "Vendor webhooks by provider and result",
                                         ["provider", "result"], registry=r)
        self.webhook_deliveries = Counter("tarash_router_webhook_deliveries", "Client webhook tries by result",
                                          ["result"], registry=r)
        self.last_reload = Gauge("tarash_router_config_last_reload_success_timestamp_seconds",
                                 "Unix time of the last successful routes load", registry=r,
                                 multiprocess_mode="livemin")
        self.last_reload_ok = Gauge("tarash_router_config_last_reload_successful",
                                    "1 if the last routes.toml load was valid, 0 while a bad edit is being ignored",
                                    registry=r, multiprocess_mode="livemin")
        self.overhead = Histogram("tarash_router_overhead_seconds",
                                  "Router time per generation not spent inside provider attempts",
                                  ["route", "kind"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.http_requests = Counter("tarash_router_http_requests", "HTTP requests by route template and status",
                                     ["method", "path", "status"], registry=r)
        self.circuit_state = Gauge("tarash_router_provider_circuit_state",
                                   "Circuit breaker state (0 closed, 1 half-open, 2 open)",
                                   ["provider", "model"], registry=r, multiprocess_mode="livemax")
        self.queue_depth = Gauge("tarash_router_jobs_queued", "Jobs waiting for a worker", registry=r,
                                 multiprocess_mode="livemostrecent")
        self.job_store_size = Gauge("tarash_router_job_store_jobs", "Jobs kept in the job store", registry=r,
                                    multiprocess_mode="livemax")
        self.job_store_writes = Gauge("tarash_router_job_store_rows_written", "Rows the job store has written "
                                      "since start (rate() of it is the write rate)", registry=r,
                                      multiprocess_mode="sum")
        self.lease_takeovers = Counter("tarash_router_job_lease_takeovers", "Jobs this instance claimed that had "
                                       "been started before (another instance's lapsed lease, or a restart)",
                                       registry=r)
        self.claim_batch_size = Histogram("tarash_router_job_claim_batch_size", "Jobs taken by one claim",
                                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.notify_lag = Histogram("tarash_router_job_store_notify_lag_seconds", "From a job-store notification "
                                    "being sent (database clock) to this instance hearing it",
                                    buckets=OVERHEAD_BUCKETS, registry=r)
        self.store_errors = Counter("tarash_router_job_store_errors", "Job-store operations that failed",
                                    ["operation"], registry=r)
        self.job_store_available = Gauge("tarash_router_job_store_available", "1 while the job store writes, "
                                         "0 during an outage (full disk, database down)", registry=r,
                                         multiprocess_mode="livemin")
        self.loop_lag = Histogram("tarash_router_event_loop_lag_seconds", "How late a 100 ms timer fires: "
                                  "time the event loop was busy elsewhere", buckets=OVERHEAD_BUCKETS, registry=r)
        self._breakers: CircuitBreakers | None = None
        #: Labelled children by (metric, label values): ``labels()`` validates and locks on every call, eight
        #: times a request. Label sets are bounded (config names, fixed sets), as the registry's own are.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._routes_series: dict[tuple[str, str], _RouteSeries] = {}
        self.last_reload.set_to_current_time()  # created once a valid config is loaded
        self.last_reload_ok.set(1)
        self.reloads.labels("success")
        self.reloads.labels("failure")

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per label set."""
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def route_series(self, route: str, kind: str) -> _RouteSeries:
        """The series a generation on ``route`` (a label already: ``route_label``) ends with, found together once per
        route (at its first end, as each was before: no series shows before it counts)."""
        found = self._routes_series.get((route, kind))
        if found is None:
            found = self._routes_series[(route, kind)] = _RouteSeries(
                self, route, kind, self.child(self.jobs_in_flight, kind),
                self.child(self.request_duration, route, kind), self.child(self.overhead, route, kind))
        return found

    # ---- generation events --------------------------------------------------------------------------------
    def observer(self, route: str, kind: str) -> ChainObserver:
        """The observer to pass to ``run_chain(observers=...)`` for one generation on ``route``."""
        return _MetricsObserver(self, self.route_label(route), kind)

    def request_rejected(self, route: str | None, kind: str) -> None:
        """A request refused before any attempt (bad field, unknown model, shed load)."""
        self.requests.labels(self.route_label(route), kind, "rejected").inc()

    def route_label(self, route: str | None) -> str:
        """``route`` if it is a configured route name, else ``"unknown"``: client text never becomes a label."""
        if route is None or (self._routes is not None and route not in self._routes()):
            return "unknown"
        return route

    # ---- config -------------------------------------------------------------------------------------------
    def config_reloaded(self, success: bool, snapshot: Any = None) -> None:
        """A ``RoutesHolder`` listener: count the reload, stamp the time of a good one."""
        self.reloads.labels("success" if success else "failure").inc()
        self.last_reload_ok.set(1 if success else 0)
        if success:
            self.last_reload.set_to_current_time()

    def watch_breakers(self, breakers: CircuitBreakers) -> None:
        self._breakers = breakers

    def track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Let ``gauge`` show ``read()``: read at each scrape in one process, sampled every loop-lag tick across
        worker processes (the scraped worker cannot call another process's function)."""
        if self.multiprocess_dir is None:
            gauge.set_function(read)
        else:
            self._sampled.append((gauge, read))

    async def watch_loop(self, interval: float = 0.1) -> None:
        """Sample event-loop lag until cancelled (and, across workers, the tracked gauges and circuits)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - started - interval))
            if self.multiprocess_dir is not None:
                self._sample()

    def _sample(self) -> None:
        """Write what is read, not counted, into the gauges: the circuits, and the tracked gauges across workers."""
        if self._breakers is not None:
            for (provider, model), state in self._breakers.snapshot().items():
                self.child(self.circuit_state, provider, model).set(STATE_VALUES[state])
        for gauge, read in self._sampled:
            gauge.set(read())

    # ---- exposition ---------------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition: this process's registry, or every worker's values merged (``--workers``)."""
        self._sample()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)
        return generate_latest(merged), CONTENT_TYPE_LATEST

    def http_request(self, request: web.Request, status: int) -> None:
        """Count one answered HTTP request (the access middleware calls it with the status it logs)."""
        # The route template ("/v1/jobs/{id}"), never the raw path: bounded cardinality.
        route = request.match_info.route.resource
        self.http_answered(request.method, route.canonical if route is not None else "unmatched", status)

    def http_answered(self, method: str, path: str, status: int) -> None:
        """Count one answered HTTP request to the route template ``path`` (the fast path's, or ``http_request``'s)."""
        self.child(self.http_requests, method if method in HTTP_METHODS else "other", path, str(status)).inc()


class _RouteSeries:
    """One route's generation series, looked up together: the in-flight gauge, the two durations, and the request
    counter per outcome (``Metrics.child``'s, created at its first use)."""

    __slots__ = ("in_flight", "duration", "overhead", "_metrics", "_route", "_kind")

    def __init__(self, metrics: Metrics, route: str, kind: str, in_flight: Any, duration: Any, overhead: Any) -> None:
        self.in_flight, self.duration, self.overhead = in_flight, duration, overhead
        self._metrics, self._route, self._kind = metrics, route, kind

    def requests(self, outcome: str) -> Any:
        return self._metrics.child(self._metrics.requests, self._route, self._kind, outcome)


class _MetricsObserver(ChainObserver):
    __slots__ = ("m", "route", "kind", "started", "in_attempts", "_attempt_started", "_open")

    def __init__(self, metrics: Metrics, route: str, kind: str) -> None:
        self.m, self.route, self.kind = metrics, route, kind
        self.started = time.perf_counter()
        self.in_attempts = 0.0
        self._attempt_started = 0.0
        metrics.child(metrics.jobs_in_flight, kind).inc()
        self._open = True

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None:
        self._attempt_started = time.perf_counter()

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        elapsed = time.perf_counter() - self._attempt_started
        self.in_attempts += elapsed
        outcome = attempt.status  # "success" | "failed" | "skipped", set by the orchestrator
        error_label = _error_label(error)
        self.m.child(self.m.attempts, self.route, config.provider, config.model, outcome, error_label).inc()
        self.m.child(self.m.attempt_duration, self.route, config.provider, config.model, outcome).observe(elapsed)
        usd, basis = counted_cost(attempt)
        if usd:
            self.m.child(self.m.cost, self.route, config.provider, config.model, basis).inc(usd)

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None:
        self.m.child(self.m.fallbacks, self.route, from_config.provider, to_config.provider).inc()

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        if not self._open:
            return
        self._open = False
        total = time.perf_counter() - self.started
        outcome = "success" if error is None else "cancelled" if isinstance(error, GenerationCancelledError) else "failed"
        series = self.m.route_series(self.route, self.kind)
        series.requests(outcome).inc()
        series.duration.observe(total)
        series.overhead.observe(max(0.0, total - self.in_attempts))
        series.in_flight.dec()
