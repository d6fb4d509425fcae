"""Event-loop lag in the daemon, measured exactly: the same 100-ms timer as ``tarash_router_event_loop_lag_seconds``
(``Metrics.watch_loop``), but every lateness kept, so a p99 under the histogram's 50-ms bucket bound can be shown.

Used by ``bench._gc_serve`` (always on: ten timers a second cost nothing measurable). ``on_new_event_loops`` is the
hook both this and ``bench._stalls`` use to start on the daemon's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: As ``Metrics.watch_loop``'s default: a timer this long, its lateness observed.
INTERVAL_SECONDS = 0.1


def on_new_event_loops(start: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    """Call ``start(loop)`` from inside every event loop asyncio creates from now on (the daemon's)."""
    base = type(asyncio.get_event_loop_policy())

    class Policy(base):  # type: ignore[misc, valid-type]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            loop.call_soon(start, loop)
            return loop

    asyncio.set_event_loop_policy(Policy())


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class LagRecorder:
    """Every lateness of a repeating 100-ms timer on the daemon's loop."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    def install(self) -> None:
        on_new_event_loops(self._start)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # as Metrics.watch_loop does, so the figures are the metric's, unbucketed
            started = loop.time()
            await asyncio.sleep(INTERVAL_SECONDS)
            self.lags.append(max(0.0, loop.time() - started - INTERVAL_SECONDS))

    def summary(self) -> dict[str, Any]:
        lags = self.lags
        return {"timer_s": INTERVAL_SECONDS, "n": len(lags),
                **{f"p{p}_ms": round(quantile(lags, p / 100) * 1000, 1) for p in (50, 99, 99.9)},
                "max_ms": round(max(lags, default=float("nan")) * 1000, 1),
                "over_50ms": sum(1 for lag in lags if lag > 0.05)}
