"""The daemon's cyclic-GC thresholds, set by how many jobs it is running (#18).

A young collection walks every young object that is still alive: on a daemon answering synchronous requests that is
the few requests in flight, and collecting less often costs nothing but memory between collections, so the young
threshold is high (``LIGHT``: 3 % of a synchronous request's instructions, against the thresholds below, by
``bench.instructions``). Thousands of running jobs change that: a pause is as long as the generations it walks, and
the young threshold counts allocations net of deallocations, of old objects too, so each finished poll frees objects
an older collection promoted; a young generation of "2,500" held 3,000-17,000 objects and a middle collection (young
+ 3 young generations' survivors) walked up to ~50,000: 55-95 ms. ``HEAVY``'s 1,000 halved a run's longest middle
pause (median ~40 ms against ~73 over 15 and 6 runs of ``bench.scale --jobs 10000``, 2026-12-01 evening) for the
same GC CPU in all; every young threshold above it made longer pauses there. In both, a full collection walks every
object of every job (0.3-0.8 s with 10,000 in memory): 400 middle ones, and CPython's own rule (25 % more long-lived
objects than the last one saw), keep it rare. Earlier rounds: 700/10/10 -> 50,000/2/50 -> 10,000/3/50 -> 2,500/3/400
-> 1,000/3/400 (docs/performance.md).

The band changes with hysteresis (``HEAVY`` from ``HEAVY_AT`` running jobs, ``LIGHT`` again below ``LIGHT_BELOW``),
checked once a second: a burst of thousands of jobs reaches ``HEAVY`` within a second of crossing ``HEAVY_AT``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

Thresholds = tuple[int, int, int]

#: Synchronous requests and a few jobs (CPython's default: 700, 10, 10).
LIGHT: Thresholds = (10_000, 3, 400)
#: Thousands of running jobs: shorter pauses (see the module's docstring).
HEAVY: Thresholds = (1_000, 3, 400)
HEAVY_AT = 1_000
LIGHT_BELOW = 500


class GcTuning:
    """Keeps ``gc``'s thresholds in the band ``running()`` (the jobs running here) calls for."""

    def __init__(self, running: Callable[[], int], light: Thresholds | None = None,
                 heavy: Thresholds | None = None) -> None:
        self._running = running
        # Read at construction, not definition: a benchmark sets both bands to try other thresholds (bench._gc_serve).
        self._light, self._heavy = light or LIGHT, heavy or HEAVY
        self.current: Thresholds | None = None

    def apply(self) -> None:
        """Set the band for the jobs running now (nothing when it is already set)."""
        running = self._running()
        heavy = running >= HEAVY_AT or (self.current == self._heavy and running >= LIGHT_BELOW)
        wanted = self._heavy if heavy else self._light
        if wanted != self.current:
            gc.set_threshold(*wanted)
            self.current = wanted

    async def run(self, interval: float = 1.0) -> None:
        """``apply`` every ``interval`` seconds until cancelled."""
        while True:
            self.apply()
            await asyncio.sleep(interval)
