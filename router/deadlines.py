"""``CallDeadlines``: long timeouts on a single timer, for a provider's vendor calls and for the attempts of a
daemon's generations.

A timer per call (aiohttp's ``ClientTimeout(total=...)``, or ``asyncio.timeout``) costs a handle, a copy of the
task's context and a heap push when the call starts and a cancel when it ends, and the cancelled handle stays in the
loop's heap until it is due or a cleanup rebuilds the heap: with 10,000 jobs polling, ~10 µs of a ~70 µs poll, and
thousands of dead handles kept. A timeout of ``EXACT_BELOW`` seconds or more is bounded here instead: it is an
``asyncio.Timeout`` with no timer of its own, and one timer, every ``tick`` seconds while such a block is open,
expires those past their deadline (the block raises ``TimeoutError``, as with its own timer), at most a tick late.
A shorter timeout keeps an exact timer.

Vendor calls (one ``CallDeadlines`` per provider pool): a call's connect phase (DNS, TCP, TLS) keeps aiohttp's own
bound of the same length (``ClientTimeout.connect``: a timer only when a new connection is opened, none for a pooled
one), so a call that cannot connect still fails as unreachable, never as a submit that may have gone out; the whole
call's bound therefore expires one tick after that one could. aiohttp rounded deadlines of 5 s or more up to the
next whole second, so a long call ends at most ~2 s late instead of ~1 s. At most the pool's ``CONNECTION_LIMIT``
calls are open at once: a tick's scan is short. The engine's lean client (``providers._engine.wire``) is bounded the
same way (``limit``): a short call by its own exact timer, a long one on the tick, and its connect phase (DNS, TCP
and TLS together) by ``connect_bound``.

Attempts (one ``CallDeadlines`` per daemon, ``block``): an attempt's ``timeout`` of 5 s or more (the defaults are
120 s for an image, 600 s for a video) ends within a second after it is due; a running job holds no timer handle
of its own for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import aiohttp

#: Timeouts of this many seconds or more go on the shared tick.
EXACT_BELOW = 5.0
#: How often the shared timer looks for calls past their deadline.
TICK_SECONDS = 1.0
#: aiohttp's bound on the TCP connect alone. sock_connect, not connect: aiohttp's "connect" also counts the wait for
#: a free pooled connection, which under thousands of concurrent jobs is queueing, not a vendor that cannot be
#: reached (the pool's slots make that wait rare, see sessions.py).
CONNECT_TIMEOUT = 10.0


class CallDeadlines:
    """The open blocks (calls of one provider, or attempts) on one event loop, and the timer that expires the late
    ones."""

    def __init__(self, tick: float = TICK_SECONDS, exact_below: float = EXACT_BELOW) -> None:
        self.tick = tick
        self.exact_below = exact_below
        self._due: dict[int, dict[asyncio.Timeout, None]] = {}  # tick number -> the open blocks due at it
        self._timer: asyncio.TimerHandle | None = None

    def bound(self, seconds: float) -> tuple[AbstractAsyncContextManager[None], aiohttp.ClientTimeout]:
        """How to bound one aiohttp call to ``seconds``: the context to make it in, and the timeouts to give aiohttp."""
        context, exact = self.limit(seconds)
        if exact is not None:
            return context, aiohttp.ClientTimeout(total=exact, sock_connect=CONNECT_TIMEOUT)
        return context, aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=CONNECT_TIMEOUT)

    def limit(self, seconds: float) -> tuple[AbstractAsyncContextManager[None], float | None]:
        """How to bound one call to ``seconds`` made by a client that keeps an exact timeout itself
        (``providers._engine.wire``): the context to make it in, and that timeout (None: the context bounds the
        call on the shared tick). The connect phase's own bound is ``connect_bound(seconds)``."""
        if seconds < self.exact_below:
            return contextlib.nullcontext(), seconds
        return _OnTick(self, seconds + self.tick), None

    def block(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``asyncio.timeout(seconds)`` for a block of code (an attempt): exact below ``exact_below``, else on the
        tick (due after ``seconds``, raised within a tick of it)."""
        return asyncio.timeout(seconds) if seconds < self.exact_below else _OnTick(self, seconds)

    def enter(self, timeout: asyncio.Timeout, seconds: float) -> int:
        """``timeout`` (entered, with no deadline of its own) expires ``seconds`` from now, within a tick. The tick
        it is due at, for ``leave``."""
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + seconds) / self.tick)
        self._due.setdefault(due, {})[timeout] = None
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._expire)
        return due

    def leave(self, timeout: asyncio.Timeout, due: int) -> None:
        """``timeout``'s block ended (or it expired): forget it."""
        bucket = self._due.get(due)
        if bucket is not None:
            bucket.pop(timeout, None)
            if not bucket:
                del self._due[due]

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # One bucket per tick a block is due at (a timing wheel): a tick touches only the blocks it expires, however
        # many are open (10,000 running jobs' attempts), and there are at most a timeout's ticks of buckets.
        for due in [due for due in self._due if due * self.tick <= now]:
            for timeout in self._due.pop(due):
                timeout.reschedule(now)  # expires at once: its task is cancelled, its block raises TimeoutError
        self._timer = loop.call_later(self.tick, self._expire) if self._due else None


class _OnTick:
    """One block bounded by a ``CallDeadlines`` (see ``CallDeadlines.limit`` and ``block``)."""

    __slots__ = ("_deadlines", "_seconds", "_timeout", "_due")

    def __init__(self, deadlines: CallDeadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._timeout = asyncio.Timeout(None)
        self._due = 0

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        self._due = self._deadlines.enter(self._timeout, self._seconds)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> bool | None:
        self._deadlines.leave(self._timeout, self._due)
        return await self._timeout.__aexit__(exc_type, exc, traceback)


def connect_bound(seconds: float) -> float:
    """The bound on opening a connection for a call of ``seconds``: it fails as unreachable before the call's own."""
    return min(CONNECT_TIMEOUT, seconds)
