"""A bound on the job creates the daemon works on at once, kept by holding back keep-alive connections.

A batch client with 100 ``POST /v1/jobs`` in flight makes each event-loop turn run ~100 creates' steps, so every
other request (a ``GET /v1/jobs/{id}``, a probe) waits several long turns (#18: GET p99 55-88 ms while 10,000
jobs were accepted; 31-37 ms with the same client sending 24 at a time, at the same accept rate). Holding the
waiting creates as parsed requests costs memory and collector time (a semaphore tried that: -20 % accept rate,
+40 MiB). So the bound is kept below the parser: once a create's response is sent while ``limit`` creates are in
progress, that connection stops being read, and its next request waits in the kernel's socket buffer, costing
the process nothing; each create that ends lets the longest-parked connection read again, and all of them are
read once no create is in progress.

The bound is soft: a new connection's first request is always read (nothing is known of it yet; a client that
opens a connection per request is not held back), and a parked connection is read again after
``MAX_PARK_SECONDS`` whatever the count, so creates that keep the gate full cannot starve it. Responses are the
same; only when they come changes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from aiohttp import web

#: Longest a connection stays parked, whatever the count: a safety net, far above the wait a busy gate gives
#: (76 parked connections ahead of it at 1,000 creates a second: ~76 ms).
MAX_PARK_SECONDS = 1.0


class Parkable(Protocol):
    """A connection the gate can stop reading and read again (``router.http.slow_clients``)."""

    def park(self) -> None: ...

    def unpark(self) -> bool:
        """Read again; False if the connection is gone (then it takes no turn)."""


class CreateGate:
    """Counts creates in progress and parks the connections that would push the count past ``limit``
    (0: no bound)."""

    def __init__(self, limit: int, *, max_park: float = MAX_PARK_SECONDS) -> None:
        self.limit = limit
        self.max_park = max_park
        self.in_progress = 0
        self._parked: deque[tuple[Parkable, float]] = deque()  # oldest first, with the loop time it must go by
        self._sweep: asyncio.TimerHandle | None = None

    @contextmanager
    def held(self, request: web.Request) -> Iterator[None]:
        """Around one create's work: counted while it runs, its end lets a parked connection read again
        (``_release``), and once its response is sent its own connection is parked if the gate is full."""
        request[HELD_BY] = self
        self.in_progress += 1
        try:
            yield
        finally:
            self.in_progress -= 1
            self._release()

    def _release(self) -> None:
        """A create ended: below the limit one parked connection reads again (oldest first); once none is in
        progress, all do (the first wave of a batch can park more connections than creates are left to end)."""
        turns = len(self._parked) if self.in_progress == 0 else int(self.in_progress < self.limit)
        while turns and self._parked:
            if self._parked.popleft()[0].unpark():
                turns -= 1

    def after_response(self, connection: Parkable) -> None:
        """Called once the response to a held create is sent: park ``connection`` if the gate is full."""
        if self.limit and self.in_progress >= self.limit:
            connection.park()
            loop = asyncio.get_running_loop()
            self._parked.append((connection, loop.time() + self.max_park))
            if self._sweep is None:
                self._sweep = loop.call_later(self.max_park, self._expire)

    def _expire(self) -> None:
        """Unpark every connection parked ``max_park`` ago (one timer for all: parking is in deadline order)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._parked and self._parked[0][1] <= now:
            self._parked.popleft()[0].unpark()
        self._sweep = loop.call_at(self._parked[0][1], self._expire) if self._parked else None

    @property
    def parked(self) -> int:
        """Connections parked now."""
        return len(self._parked)


#: Set on a request by ``CreateGate.held``: its connection asks this gate once the response is sent.
HELD_BY = web.RequestKey("held_by", CreateGate)
