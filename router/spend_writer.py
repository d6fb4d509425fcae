"""Spend entries written to the ledger in batches, off the request's path.

Writing each generation's spend as it ended cost a job-store round trip per request (on SQLite an executor
trip and a transaction: the largest single cost of a synchronous request). Entries now wait here for
``DELAY_SECONDS`` and every generation that ended meanwhile goes into the same write, summed per ledger row.
Whoever reads the ledger (budget checks, ``GET /v1/usage``, the status page) calls ``flush`` first, so reads see
every recorded spend, and the daemon flushes at shutdown, so a clean stop loses nothing. A ``kill -9`` (or a
crash) loses what was recorded in the last ``DELAY_SECONDS`` plus a write in flight (README, "Cost").
"""

from __future__ import annotations

import asyncio
from typing import Any

from router.jobs.store import SpendEntry, SpendStore, shared_store
from router.log_setup import get_logger

log = get_logger("router.budgets")

#: How long a recorded spend waits for others to share its write: at one request a millisecond, ~250 requests.
#: Each write is a transaction on the store's thread, and a request that coincides with one waits for the GIL:
#: at 50 ms (20 writes a second at c = 1) they set the p99 of a synchronous request (1.60 against 1.44-1.50 ms at
#: 0.25-1 s, docs/performance.md); longer would widen what a ``kill -9`` loses for little more.
DELAY_SECONDS = 0.25
#: After a failed write (the store is down), the next try; entries are kept until one succeeds.
RETRY_SECONDS = 1.0


class SpendWriter:
    """Batches ``SpendEntry`` writes to ``store``: ``add`` buffers, one task writes, ``flush`` waits for it."""

    def __init__(self, store: SpendStore, delay: float = DELAY_SECONDS) -> None:
        self.store = store
        self.delay = delay
        self._unwritten: list[SpendEntry] = []
        #: Reservations (on a shared store) deleted with the next write: their spend is in it.
        self._released: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[BaseException | None] | None = None

    def add(self, entries: list[SpendEntry], released: str | None = None) -> None:
        """Buffer ``entries``; they are written within ``delay`` seconds (or sooner, by ``flush``). ``released``:
        a reservation of a shared store, deleted in the same write (it counts against the budget until then)."""
        if released is not None:
            self._released.append(released)
        if entries or released is not None:
            self._unwritten += entries
            self._schedule(self.delay)

    async def flush(self) -> None:
        """Write everything buffered now, and wait until it is in the store; a store error is raised (the
        entries stay buffered and are retried)."""
        while self._unwritten or self._released or self._writing is not None:
            if self._timer is not None:  # what waits for its delay goes now
                self._timer.cancel()
                self._timer = None
            error = await asyncio.shield(self._start())
            if error is not None:
                raise error

    def _schedule(self, delay: float) -> None:
        if self._timer is None and self._writing is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> asyncio.Task[BaseException | None]:
        self._timer = None
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())
        return self._writing

    async def _write(self) -> BaseException | None:
        """Write one batch: everything buffered. Entries added during the write wait ``delay`` for company too:
        written as soon as it ended, writes ran back to back under load (one every ~10 ms at 2,400 requests a
        second instead of one per ``delay``, each a transaction and two thread hand-offs)."""
        retry_in = self.delay
        try:
            batch, self._unwritten = self._unwritten, []
            released, self._released = self._released, []
            if batch or released:
                try:
                    if released:
                        await shared_store(self.store).add_spend(summed(batch), released)  # type: ignore[arg-type]
                    else:
                        await self.store.add_spend(summed(batch))
                except BaseException as exc:
                    self._unwritten[:0] = batch  # nothing of a failed batch is lost: tried again
                    self._released[:0] = released
                    if not isinstance(exc, Exception):
                        raise
                    log.warning("spend_write_failed", entries=len(batch), error=str(exc),
                                retry_in_seconds=RETRY_SECONDS)
                    retry_in = RETRY_SECONDS
                    return exc
            return None
        finally:
            self._writing = None
            if self._unwritten or self._released:
                self._schedule(retry_in)


def summed(entries: list[SpendEntry]) -> list[SpendEntry]:
    """One entry per ledger row (client, day, route, provider, model), USD and generations added up."""
    rows: dict[tuple[str, ...], Any] = {}
    for entry in entries:
        key = (entry.client, entry.day, entry.route, entry.provider, entry.model)
        held = rows.get(key)
        rows[key] = entry if held is None else SpendEntry(*key, held.usd + entry.usd,
                                                          held.generations + entry.generations)
    return list(rows.values())
