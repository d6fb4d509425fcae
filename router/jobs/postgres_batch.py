"""Group commit for the PostgreSQL job store: the hot writes (a job's insert, its saves, its events) issued in one
event-loop turn, or while earlier batches are out, go to the database together: one transaction, its statements
pipelined on one pooled connection, one commit (#18).

Alone, each write took a pool checkout, a round trip and a commit (a WAL flush on the server): at 10,000 jobs the
instance spent 2.2-3.4 ms of CPU per accepted job and PostgreSQL committed ~4.6 times a job. Pipelined, psycopg's
client CPU per statement halves (114 -> 58 µs in batches of 20) and the round trips and commits are one a batch:
0.95-1.25 ms per job, 0.05 commits, 613-802 jobs accepted a second instead of 230-349 (``bench.instances``).

A write's caller resumes once its batch is committed, with its own statement's rows and row count. If a statement
fails, PostgreSQL rolls the whole transaction back and every write of that batch is made again alone (autocommit,
as the store writes otherwise), so a failing write fails alone and the others are kept; if the database cannot be
reached (or the commit's answer is lost), every write of the batch gets the error each would have got alone, and
none is reported kept. A write whose caller stopped waiting before its batch went out is dropped, as a call alone
that was never sent. Batches run on at most ``MAX_BATCHES_OUT`` connections at once, so a slow batch does not hold
up the writes queued behind it; a caller's writes never overlap (it awaits each), so their order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from router.jobs.group_commit import settle_in_slices

#: Statements per transaction at most: bounds how long the first of a burst waits for the last.
MAX_BATCH = 100
#: Batches written at once, each on its own pooled connection.
MAX_BATCHES_OUT = 2

#: A statement's result: its rows (empty without a result set) and its row count.
Result = tuple[list[tuple[Any, ...]], int]
_Write = tuple[str, Mapping[str, Any], asyncio.Future[Result]]


class PostgresGroupCommit:
    """Batches the writes ``run`` is given. ``connection`` is the store's pooled-connection context (it maps an
    unreachable database to ``JobStoreUnavailableError``); ``alone`` makes one write by itself; ``sql`` names the
    statements."""

    def __init__(self, connection: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
                 alone: Callable[[str, Mapping[str, Any]], Awaitable[Result]], sql: Mapping[str, str]) -> None:
        self._connection = connection
        self._alone = alone
        self._sql = sql
        self._queued: list[_Write] = []
        self._out: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def run(self, name: str, params: Mapping[str, Any]) -> Result:
        """Statement ``name`` with ``params``, in the next batch; its result once that batch is committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queued.append((name, params, future))
        self._start_soon()
        return await future

    async def settled(self) -> None:
        """Until no write is queued or out: each committed or failed (what is queued goes out now)."""
        while self._queued or self._out:
            self._start()
            if self._out:
                await asyncio.wait(set(self._out))

    def _start_soon(self) -> None:
        # At the end of this loop turn: the writes the turn issues share the batch.
        if not self._scheduled and len(self._out) < MAX_BATCHES_OUT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._queued and len(self._out) < MAX_BATCHES_OUT:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            # A write whose caller stopped waiting before it went out is not made, as a call alone would not be
            # (a create whose client went away: its job is not left in the store to be claimed later).
            batch = [write for write in batch if not write[2].done()]
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._write(batch), name="job store batch")
            self._out.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._out.discard(task)
        if self._queued:
            self._start_soon()

    async def _write(self, batch: list[_Write]) -> None:
        loop, futures = asyncio.get_running_loop(), [future for _, _, future in batch]
        outcomes: list[tuple[bool, Any]]
        try:
            outcomes = [(True, result) for result in await self._together(batch)]
        except _StatementFailed:  # nothing of the batch was kept: each write again, alone
            for name, params, future in batch:
                try:
                    outcome: tuple[bool, Any] = (True, await self._alone(name, params))
                except Exception as exc:  # noqa: BLE001 - its caller gets it
                    outcome = (False, exc)
                settle_in_slices(loop, [future], [outcome], 0)
            return
        except Exception as exc:  # noqa: BLE001 - the database unreachable: every caller gets it
            outcomes = [(False, exc)] * len(batch)
        # A slice of the callers woken per loop turn, as SQLite's batches are: each resumes its own work (a job's
        # next step, a response), and 100 of them at once would stall the loop.
        settle_in_slices(loop, futures, outcomes, 0)

    async def _together(self, batch: list[_Write]) -> list[Result]:
        import psycopg

        async with self._connection() as conn:
            try:
                async with conn.transaction(), conn.pipeline():
                    cursors = [await conn.execute(self._sql[name], params) for name, params, _ in batch]
            except psycopg.Error as exc:
                if conn.broken:
                    raise  # the database unreachable (the store's connection says so): for every write
                raise _StatementFailed from exc  # rolled back on a connection that still works
        return [(await cursor.fetchall() if cursor.description else [], max(cursor.rowcount, 0))
                for cursor in cursors]


class _StatementFailed(Exception):
    """A statement of the batch (or its commit) failed: nothing of it was kept."""
