"""``CallDeadlines``: the per-call timeouts of one provider's calls, the long ones on a single timer.

A timer per call (aiohttp's ``ClientTimeout(total=...)``) costs a handle, a copy of the task's context and a heap
push when the call starts and a cancel when it ends, and the cancelled handle stays in the loop's heap until it is
due or a cleanup rebuilds the heap: with 10,000 jobs polling, ~10 µs of a ~70 µs poll, and thousands of dead
handles kept. A call of ``EXACT_BELOW`` seconds or more is bounded here instead: it is an ``asyncio.Timeout`` with
no timer of its own, and one timer per provider, every ``tick`` seconds while such a call is open, expires those
past their deadline (the call raises ``TimeoutError``, as with its own timer). Its connect phase (DNS, TCP, TLS)
keeps aiohttp's own bound of the same length (``ClientTimeout.connect``: a timer only when a new connection is
opened, none for a pooled one), so a call that cannot connect still fails as unreachable, never as a submit that
may have gone out; the whole call's bound therefore expires one tick after that one could. aiohttp rounded
deadlines of 5 s or more up to the next whole second, so a long call ends at most ~2 s late instead of ~1 s. At
most the pool's ``CONNECTION_LIMIT`` calls are open at once: a tick's scan is short. A shorter timeout keeps
aiohttp's exact ``total``. The engine's lean client (``providers._engine.wire``) is bounded the same way
(``limit``): a short call by its own exact timer, a long one on the tick, and its connect phase (DNS, TCP and TLS
together) by ``connect_bound``.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import aiohttp

#: Call timeouts of this many seconds or more go on the shared tick.
EXACT_BELOW = 5.0
#: How often the shared timer looks for calls past their deadline.
TICK_SECONDS = 1.0
#: aiohttp's bound on the TCP connect alone. sock_connect, not connect: aiohttp's "connect" also counts the wait for
#: a free pooled connection, which under thousands of concurrent jobs is queueing, not a vendor that cannot be
#: reached (the pool's slots make that wait rare, see sessions.py).
CONNECT_TIMEOUT = 10.0


class CallDeadlines:
    """The open calls of one provider on one event loop, and the timer that expires the late ones."""

    def __init__(self, tick: float = TICK_SECONDS, exact_below: float = EXACT_BELOW) -> None:
        self.tick = tick
        self.exact_below = exact_below
        self._open: dict[asyncio.Timeout, float] = {}  # each call's timeout -> its deadline (loop time)
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

    def enter(self, timeout: asyncio.Timeout, seconds: float) -> None:
        """``timeout`` (entered, with no deadline of its own) expires ``seconds`` from now, within a tick."""
        loop = asyncio.get_running_loop()
        self._open[timeout] = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._expire)

    def leave(self, timeout: asyncio.Timeout) -> None:
        """``timeout``'s call ended (or it expired): forget it."""
        self._open.pop(timeout, None)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for timeout, deadline in list(self._open.items()):
            if deadline <= now:
                del self._open[timeout]
                timeout.reschedule(now)  # expires at once: its task is cancelled, its block raises TimeoutError
        self._timer = loop.call_later(self.tick, self._expire) if self._open else None


class _OnTick:
    """One call bounded by its pool's ``CallDeadlines`` (see ``CallDeadlines.bound``)."""

    __slots__ = ("_deadlines", "_seconds", "_timeout")

    def __init__(self, deadlines: CallDeadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._timeout = asyncio.Timeout(None)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        self._deadlines.enter(self._timeout, self._seconds)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> bool | None:
        self._deadlines.leave(self._timeout)
        return await self._timeout.__aexit__(exc_type, exc, traceback)


def connect_bound(seconds: float) -> float:
    """The bound on opening a connection for a call of ``seconds``: it fails as unreachable before the call's own."""
    return min(CONNECT_TIMEOUT, seconds)
