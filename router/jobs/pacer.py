"""``PollPacer``: the waits between status polls of many running jobs, woken from one timer in bounded batches.

Each of 10,000 running jobs sleeping on its own timer wakes on its own deadline, and jobs whose polls were answered
in the same loop iteration slept from the same instant: they come due together again, a poll interval later, and
every due poll starts in one loop iteration. Such bursts grow (a long iteration answers more polls together) and
stalled the loop for 100-500 ms at 10,000 jobs (bench.scale, ``BENCH_STALLS=1``). The pacer keeps the waits in one
heap behind one timer and wakes at most ``batch`` of them per loop iteration: a due poll starts at its deadline
unless more than ``batch`` are due at once, and then in the iterations that follow, a batch each, in deadline order,
with I/O, timers and requests served in between.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time

#: Wake-ups per loop iteration. A woken poll costs the loop ~0.3 ms (its call, then its answer an iteration or two
#: later), so an iteration stays near 5-10 ms; the loop's throughput is the same (more, shorter iterations).
#: bench.scale at 10,000 jobs: 64 -> 16 cut stalls > 40 ms from 219 to 55.
POLL_BATCH = 16


class PollPacer:
    """``sleep(seconds)`` like ``asyncio.sleep``, woken by the pacer's one timer, at most ``batch`` per iteration.

    One per event loop (a job service owns one). A cancelled sleep raises ``CancelledError`` as ``asyncio.sleep``
    does; its heap entry is dropped when it comes due."""

    def __init__(self, batch: int = POLL_BATCH) -> None:
        self.batch = batch
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties keep their order, and futures are never compared
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf
        #: A timer fires once its deadline is within the clock's resolution, as asyncio decides it (so a poll
        #: never waits longer than asyncio.sleep would).
        self._resolution = time.get_clock_info("monotonic").resolution

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        when = loop.time() + max(0.0, seconds)
        heapq.heappush(self._heap, (when, next(self._order), waiter))
        if when < self._timer_at:
            self._arm(loop, when)
        await waiter

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        heap, due, woken = self._heap, loop.time() + self._resolution, 0
        while heap and heap[0][0] <= due and woken < self.batch:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():  # a cancelled sleep's entry
                waiter.set_result(None)
                woken += 1
        if not heap:
            return
        if heap[0][0] <= due:  # more due now: the next batch in the next iteration, after the I/O that came in
            self._timer_at = -math.inf
            self._timer = loop.call_soon(self._release, loop)
        else:
            self._arm(loop, heap[0][0])
