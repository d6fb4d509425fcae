"""Event-loop lag in the daemon, unbucketed: every value ``Metrics.watch_loop`` observes into
``tarash_router_event_loop_lag_seconds`` (how late its 100-ms timer fired) is also kept, so a p99 under the
histogram's 50-ms bucket bound can be shown. The metric itself is unchanged.

Used by ``bench._gc_serve`` (always on: it adds one list append to ten observations a second).
"""

from __future__ import annotations

from typing import Any

from router.metrics import Metrics


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
    """The loop-lag metric's observations, as the daemon makes them."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    def install(self) -> None:
        """Wrap ``Metrics.watch_loop`` (before the daemon starts) so its histogram's observations are kept too."""
        watch_loop, lags = Metrics.watch_loop, self.lags

        async def recorded(metrics: Metrics, interval: float = 0.1) -> None:
            observe = metrics.loop_lag.observe

            def kept(value: float) -> None:
                lags.append(value)
                observe(value)

            metrics.loop_lag.observe = kept  # type: ignore[method-assign]
            await watch_loop(metrics, interval)

        Metrics.watch_loop = recorded  # type: ignore[method-assign]

    def summary(self) -> dict[str, Any]:
        lags = self.lags
        return {"timer_s": 0.1, "n": len(lags),
                **{f"p{p}_ms": round(quantile(lags, p / 100) * 1000, 1) for p in (50, 99, 99.9)},
                "max_ms": round(max(lags, default=float("nan")) * 1000, 1),
                "over_50ms": sum(1 for lag in lags if lag > 0.05)}
