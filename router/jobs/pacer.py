"""``PollPacer``: the waits between status polls of many running jobs, woken from one timer in bounded batches,
and held back, for a bounded time, while the event loop is behind.

Each of 10,000 running jobs sleeping on its own timer wakes on its own deadline, and jobs whose polls were answered
in the same loop iteration slept from the same instant: they come due together again, a poll interval later, and
every due poll starts in one loop iteration. Such bursts grow (a long iteration answers more polls together) and
stalled the loop for 100-500 ms at 10,000 jobs (bench.scale, ``BENCH_STALLS=1``). The pacer keeps the waits in one
heap behind one timer and wakes at most ``batch`` of them per loop iteration: a due poll starts at its deadline
unless more than ``batch`` are due at once, and then in the iterations that follow, a batch each, in deadline order,
with I/O, timers and requests served in between.

While the loop is behind (``LoopLag``: the pacer's own callbacks run late) and API requests are coming in (the job
service calls ``demand``), a due poll is not woken at its deadline but held, up to its *slack* past it
(``PaceQueue``): half the wait before it, at most ``max_defer`` (the ``POLL_DEFER_MAX_SECONDS`` setting, 2.5 s).
Requests a client waits for get the loop first; a poll is background work that only looks at a vendor job running
anyway. However busy the loop stays, no poll starts later than its slack past its deadline, so nothing starves.
Under a sustained overload each job is polled a little less often (its interval plus the slack), and a held poll
moves its job's later polls too: a result is seen at most one interval plus the slack after the vendor finished,
instead of one interval. The first poll right after a submit (``sleep(0)``) has no wait before it and is never
held; nor is anything but a poll's wait: a push wakes its poll without the pacer, a cancel or a shutdown cancels
the sleep at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol

#: Wake-ups per loop iteration. A woken poll costs the loop ~0.3 ms (its call, then its answer an iteration or two
#: later), so an iteration stays near 5-10 ms; the loop's throughput is the same (more, shorter iterations).
#: bench.scale at 10,000 jobs: 64 -> 16 cut stalls > 40 ms from 219 to 55.
POLL_BATCH = 16
#: The default of ``POLL_DEFER_MAX_SECONDS``: the most a poll is held past its time while the loop is behind.
MAX_DEFER_SECONDS = 2.5
#: A poll is held at most this fraction of the wait before it (a 5-s poll 2.5 s, a 2-s image poll 1 s).
DEFER_FRACTION = 0.5
#: A callback of the pacer that ran this much later than it asked for says the loop is behind: an idle loop runs a
#: timer within ~1 ms, one serving requests and polls at a healthy pace turns in a few ms, one saturated by 100
#: concurrent POSTs in 15-30 ms (bench.scale's accept burst).
BEHIND_SECONDS = 0.010
#: ...and it stays behind this long after such a look: a timer that came due near the end of a long turn runs nearly
#: on time, so single looks of a saturated loop flip between behind and not.
BEHIND_WINDOW_SECONDS = 0.100
#: While polls are held, the pacer looks again this often (each look measures the loop's lag).
RECHECK_SECONDS = 0.020
#: Polls yield only while someone uses the API: a request reached the job service within this long
#: (``PollPacer.demand``). A loop busy with polls alone gains nothing from holding them, and each held poll moves
#: its job's later polls too (bench.webhooks, polling only: result p50 0.5 -> 4.9 s after the vendor finished).
DEMAND_WINDOW_SECONDS = 1.0


class Behind(Protocol):
    """Whether the event loop is behind at loop time ``now``, told how late the pacer's callback ran (``late``)."""

    def __call__(self, late: float, now: float) -> bool: ...


class LoopLag:
    """The default ``Behind``: one of the pacer's callbacks ran more than ``threshold`` late within the last
    ``window`` seconds.

    Measured by the pacer itself, on the callbacks it runs anyway, so it costs nothing while no poll is due (and
    then there is nothing to hold); it counts every cause of a slow turn alike (requests, polls, GC). Requests in
    flight would be a worse signal: a synchronous generation or an event stream stays in flight for minutes and
    costs the loop nothing meanwhile."""

    def __init__(self, threshold: float = BEHIND_SECONDS, window: float = BEHIND_WINDOW_SECONDS) -> None:
        self.threshold = threshold
        self.window = window
        self._late_at = -math.inf  # loop time of the last late look

    def __call__(self, late: float, now: float) -> bool:
        if late > self.threshold:
            self._late_at = now
        return now - self._late_at < self.window


class PaceQueue:
    """Which waiters to wake, given the time and whether the loop is behind: the pacer's policy, with no clock and no
    loop of its own (the tests drive it with plain numbers).

    Waiters sleep in ``_waiting`` by deadline. While the loop keeps up, due ones wake in deadline order. While it is
    behind, due ones move to ``_held``, ordered by their latest start (deadline + slack), and wake only then: never
    later, behind or not. Once it caught up, held ones wake first (they are the most overdue). Each waiter is in one
    heap at a time; a cancelled one's entry is dropped when it comes up."""

    def __init__(self) -> None:
        self._waiting: list[tuple[float, int, float, asyncio.Future[None]]] = []  # (deadline, order, slack, waiter)
        self._held: list[tuple[float, int, asyncio.Future[None]]] = []  # (latest start, order, waiter)
        self._order = itertools.count()  # ties keep their order, and futures are never compared

    def add(self, deadline: float, slack: float, waiter: asyncio.Future[None]) -> None:
        heapq.heappush(self._waiting, (deadline, next(self._order), slack, waiter))

    def wake(self, now: float, behind: bool, limit: int) -> int:
        """Wake up to ``limit`` waiters whose time has come at ``now``; how many woke."""
        held, waiting, woken = self._held, self._waiting, 0
        if behind:  # hold what came due; wake only what reached its latest start
            while waiting and waiting[0][0] <= now:
                deadline, order, slack, waiter = heapq.heappop(waiting)
                if not waiter.done():
                    heapq.heappush(held, (deadline + slack, order, waiter))
            while held and held[0][0] <= now and woken < limit:
                woken += _wake(heapq.heappop(held)[2])
            return woken
        while held and woken < limit:
            woken += _wake(heapq.heappop(held)[2])
        while waiting and waiting[0][0] <= now and woken < limit:
            woken += _wake(heapq.heappop(waiting)[3])
        return woken

    def next_at(self, now: float, behind: bool, recheck: float) -> float:
        """When ``wake`` has something to do next (``inf``: nothing waits): a deadline; while something is held, at
        once if the loop keeps up, else its first latest start or ``recheck`` from now, to see if it caught up."""
        held, waiting = self._held, self._waiting
        while held and held[0][2].done():
            heapq.heappop(held)
        while waiting and waiting[0][3].done():
            heapq.heappop(waiting)
        deadline = waiting[0][0] if waiting else math.inf
        if not held:
            return deadline
        if not behind:
            return now
        return min(held[0][0], deadline, now + recheck)


def _wake(waiter: asyncio.Future[None]) -> int:
    if waiter.done():  # a cancelled sleep's entry
        return 0
    waiter.set_result(None)
    return 1


class PollPacer:
    """``sleep(seconds)`` like ``asyncio.sleep``, woken by the pacer's one timer, at most ``batch`` per iteration,
    and up to ``slack(seconds)`` past its time while the loop is ``behind``.

    One per event loop (a job service owns one). A cancelled sleep raises ``CancelledError`` as ``asyncio.sleep``
    does, held or not."""

    def __init__(self, batch: int = POLL_BATCH, *, max_defer: float = MAX_DEFER_SECONDS,
                 fraction: float = DEFER_FRACTION, behind: Behind | None = None,
                 recheck: float = RECHECK_SECONDS) -> None:
        self.batch = batch
        self.max_defer = max_defer
        self.fraction = fraction
        self.behind = behind or LoopLag()
        self.recheck = recheck
        self._queue = PaceQueue()
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf
        self._planned = 0.0  # when the armed callback asked to run: how late it runs is the loop's lag
        self._demand_at = -math.inf  # loop time of the last API request (``demand``)
        #: A timer fires once its deadline is within the clock's resolution, as asyncio decides it (so a poll
        #: never waits longer than asyncio.sleep would).
        self._resolution = time.get_clock_info("monotonic").resolution

    def demand(self) -> None:
        """An API request is being served: while the loop is behind, due polls are held for the next
        ``DEMAND_WINDOW_SECONDS``."""
        self._demand_at = asyncio.get_running_loop().time()

    def slack(self, seconds: float) -> float:
        """How long past its time a sleep of ``seconds`` may be held while the loop is behind."""
        return min(self.max_defer, self.fraction * seconds)

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        seconds = max(0.0, seconds)
        when = loop.time() + seconds
        self._queue.add(when, self.slack(seconds), waiter)
        if when < self._timer_at:
            self._arm(loop, when)
        await waiter

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        now = loop.time()
        if when <= now + self._resolution:  # due: the next iteration
            self._timer_at, self._planned = -math.inf, now
            self._timer = loop.call_soon(self._release, loop)
        else:
            self._timer_at = self._planned = when
            self._timer = loop.call_at(when, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now = loop.time()
        behind = self.behind(now - self._planned, now) and now - self._demand_at < DEMAND_WINDOW_SECONDS
        due = now + self._resolution
        self._queue.wake(due, behind, self.batch)
        at = self._queue.next_at(due, behind, self.recheck)
        if at < math.inf:
            self._arm(loop, at)
