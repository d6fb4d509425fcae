"""Recent activity from the daemon's own numbers: traffic per route per minute and the last attempt outcomes
per provider/model, for the status page (no Prometheus server needed).

Bounded by construction: minute buckets older than the window are dropped as new minutes start, each
provider/model keeps its last ``RECENT_ATTEMPTS`` outcomes, and the keys are route names and provider/model
pairs from the routes file (observers are created for configured routes only).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from router.errors import GenerationCancelledError, TarashError
from router.models import AnyConfig, AttemptMetadata, ExecutionMetadata
from router.observers import ChainObserver

#: Minutes of traffic kept (and shown).
WINDOW_MINUTES = 15
#: Attempt outcomes kept per provider/model.
RECENT_ATTEMPTS = 50


@dataclass
class RouteMinute:
    """One route's counts in one minute."""

    requests: int = 0
    failures: int = 0
    fallbacks: int = 0


class AttemptOutcome(NamedTuple):
    """One attempt's end (a tuple: made for every attempt, read only by the status page)."""

    ended_at: float  # Unix time
    route: str
    status: str  # "success" | "failed" | "skipped"
    seconds: float
    error_type: str | None


@dataclass
class _Minute:
    start: int  # Unix minute (seconds // 60)
    routes: dict[str, RouteMinute] = field(default_factory=dict)


class Activity:
    """Rolling counters fed by a chain observer per generation. ``clock`` is injectable for tests."""

    def __init__(self, window_minutes: int = WINDOW_MINUTES, clock: Callable[[], float] = time.time) -> None:
        self.window = window_minutes
        self._clock = clock
        self._minutes: deque[_Minute] = deque()
        self._attempts: dict[tuple[str, str], deque[AttemptOutcome]] = {}

    def observer(self, route: str, kind: str) -> ChainObserver:
        """An observer for one generation on ``route`` (one of the daemon's observer factories)."""
        return _ActivityObserver(self, route)

    # ---- recording ----------------------------------------------------------------------------------------
    def _route_minute(self, route: str) -> RouteMinute:
        minute = int(self._clock() // 60)
        if not self._minutes or self._minutes[-1].start != minute:
            self._minutes.append(_Minute(minute))
            while self._minutes[0].start <= minute - self.window:
                self._minutes.popleft()
        routes = self._minutes[-1].routes
        counts = routes.get(route)
        if counts is None:
            counts = routes[route] = RouteMinute()
        return counts

    def request_finished(self, route: str, failed: bool) -> None:
        counts = self._route_minute(route)
        counts.requests += 1
        counts.failures += int(failed)

    def fell_back(self, route: str) -> None:
        self._route_minute(route).fallbacks += 1

    def attempt_finished(self, route: str, provider: str, model: str, status: str, seconds: float,
                         error_type: str | None) -> None:
        recent = self._attempts.get((provider, model))
        if recent is None:
            recent = self._attempts[(provider, model)] = deque(maxlen=RECENT_ATTEMPTS)
        recent.append(AttemptOutcome(self._clock(), route, status, seconds, error_type))

    # ---- reading ------------------------------------------------------------------------------------------
    def traffic(self) -> dict[str, Any]:
        """Per route, one count per minute of the window, oldest first (the current minute last)."""
        now = int(self._clock() // 60)
        first = now - self.window + 1
        routes: dict[str, dict[str, list[int]]] = {}
        for bucket in self._minutes:
            if bucket.start < first:
                continue
            for route, counts in bucket.routes.items():
                series = routes.setdefault(route, {"requests": [0] * self.window, "failures": [0] * self.window,
                                                   "fallbacks": [0] * self.window})
                index = bucket.start - first
                series["requests"][index] = counts.requests
                series["failures"][index] = counts.failures
                series["fallbacks"][index] = counts.fallbacks
        return {"minutes": self.window, "first_minute_at": first * 60, "routes": routes}

    def attempts(self, provider: str, model: str) -> list[AttemptOutcome]:
        """The last outcomes of ``provider``/``model``, oldest first."""
        return list(self._attempts.get((provider, model), ()))

    def known_models(self) -> list[tuple[str, str]]:
        return list(self._attempts)


def summarize(outcomes: list[AttemptOutcome]) -> dict[str, Any]:
    """Counts per outcome and latency of the attempts that were sent (skipped ones never reached a vendor)."""
    sent = sorted(o.seconds for o in outcomes if o.status != "skipped")
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in ("success", "failed", "skipped")}
    return {
        **counts,
        "latency_p50_seconds": round(sent[len(sent) // 2], 3) if sent else None,
        "latency_max_seconds": round(sent[-1], 3) if sent else None,
        "last": [{"ended_at": o.ended_at, "route": o.route, "status": o.status, "seconds": round(o.seconds, 3),
                  "error_type": o.error_type} for o in outcomes[-10:]],
    }


class _ActivityObserver(ChainObserver):
    __slots__ = ("activity", "route", "_started")

    def __init__(self, activity: Activity, route: str) -> None:
        self.activity = activity
        self.route = route
        self._started = 0.0

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None:
        self._started = time.perf_counter()

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        seconds = time.perf_counter() - self._started if self._started else 0.0
        self.activity.attempt_finished(self.route, config.provider, config.model, attempt.status, seconds,
                                       type(error).__name__ if error is not None else None)

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None:
        self.activity.fell_back(self.route)

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        if isinstance(error, GenerationCancelledError):
            return  # a cancel (or a restart's detach) is not a failure of the route
        self.activity.request_finished(self.route, failed=error is not None)
