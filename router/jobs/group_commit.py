"""Group commit for the SQLite job store: one writer thread owns the connection and runs every write queued
while it was busy in one transaction, then answers them all at once after the COMMIT.

A write's caller resumes only once its transaction is committed (a 202 is never sent for a job that is not
durable), yet 100 concurrent accepts cost one commit and one wake-up of the event loop, not 100 executor round
trips and 100 commits (#18). Each write runs inside its own savepoint, so a write that fails changes nothing and
fails alone; if SQLite rolls the whole transaction back (a full disk, an I/O error) or the COMMIT fails, every
write of the batch fails with that error: none of them is kept, none is reported kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable, Collection
from typing import Any

#: Writes per transaction at most: bounds how long the first of a burst waits for the last.
MAX_BATCH = 256
#: Callers woken per event-loop iteration when a batch is answered: each resumes its own work (a poll's next
#: step, a response), so a batch of 256 answered at once stalled the loop for tens of ms (bench.scale at 10,000
#: jobs); in slices, I/O and timers are served in between.
SETTLE_SLICE = 16

_Write = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class GroupCommit:
    """The writer thread of one SQLite connection (opened in autocommit mode: ``isolation_level=None``)."""

    def __init__(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._db = db
        self._loop = loop
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._last: asyncio.Future[Any] | None = None  # the latest write queued
        self._last_shared: asyncio.Future[Any] | None = None  # the latest write not confined to one key
        self._last_of: dict[str, asyncio.Future[Any]] = {}  # per key, its latest write not yet answered
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args: Any, key: str | Collection[str] | None = None) -> Any:
        """``fn(*args)`` on the writer thread, in a transaction; its value once that transaction is committed.
        ``key`` says the write changes only what reads of that key see (one job's rows), or of those keys (a
        collection: a claim of some jobs); None: anything."""
        future = self._last = self._loop.create_future()
        if key is None:
            self._last_shared = future
        else:
            keys = (key,) if isinstance(key, str) else tuple(key)
            for one in keys:
                self._last_of[one] = future
            future.add_done_callback(functools.partial(self._answered, keys))
        self._queue.put((fn, args, future))
        return await future

    def _answered(self, keys: tuple[str, ...], future: asyncio.Future[Any]) -> None:
        for key in keys:
            if self._last_of.get(key) is future:
                del self._last_of[key]

    async def settled(self, key: str | None = None) -> None:
        """Wait until every write queued so far is committed (or failed): a read after this sees them all, as
        it would behind one FIFO thread, without waiting for writes queued later. With ``key``, only the writes
        a read of that key can see: that key's, and those not confined to a key (a GET of one job no longer
        waits for the saves of 10,000 others)."""
        waits = [self._last] if key is None else [self._last_shared, self._last_of.get(key)]
        pending = [future for future in waits if future is not None and not future.done()]
        if pending:
            await asyncio.wait(pending)

    async def close(self) -> None:
        """Finish the writes queued so far, then stop the thread."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stop = [first], False
            while len(batch) < MAX_BATCH:
                try:
                    write = self._queue.get_nowait()
                except queue.Empty:
                    break
                if write is None:
                    stop = True
                    break
                batch.append(write)
            outcomes = self._commit(batch)
            futures = [future for _, _, future in batch]
            self._loop.call_soon_threadsafe(settle_in_slices, self._loop, futures, outcomes, 0)
            if stop:
                return

    def _commit(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        try:
            return self._transaction(batch)
        except Exception as exc:  # noqa: BLE001 - BEGIN, a savepoint or COMMIT failed: every caller gets it
            with contextlib.suppress(Exception):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            return [(False, exc)] * len(batch)

    def _transaction(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        for fn, args, _ in batch:
            db.execute("SAVEPOINT write")
            try:
                outcomes.append((True, fn(*args)))
            except Exception as exc:  # noqa: BLE001 - this write's caller gets it
                if not db.in_transaction:  # SQLite rolled back the whole transaction: nothing in it is kept
                    return [(False, exc)] * len(batch)
                db.execute("ROLLBACK TO write")
                outcomes.append((False, exc))
            db.execute("RELEASE write")
        db.execute("COMMIT")
        return outcomes


def settle_in_slices(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[Any]],
                     outcomes: list[tuple[bool, Any]], start: int) -> None:
    """Answer the writes of a committed batch from ``start`` on, ``SETTLE_SLICE`` per loop iteration, in order
    (``outcomes``: ``(True, value)`` or ``(False, exception)`` each); a cancelled caller is skipped."""
    end = min(start + SETTLE_SLICE, len(futures))
    for i in range(start, end):
        future, (ok, value) = futures[i], outcomes[i]
        if future.cancelled():
            continue  # its caller stopped waiting; the write itself is done (or failed) all the same
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    if end < len(futures):
        loop.call_soon(settle_in_slices, loop, futures, outcomes, end)
