"""SQLite job store: WAL mode; writes on one writer thread that commits them in groups (``group_commit``:
SQLite's single-writer rule holds by construction), reads on a second connection and thread of their own, so a
``GET /v1/jobs/{id}`` never queues behind the writes of 10,000 running jobs. The event loop never blocks.

One process per file: leases still fence every save (the service code is the same on every store), but opening
the file releases every lease, since whoever held them was this process's previous run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from router.jobs.group_commit import GroupCommit
from router.jobs.store import (LIST_REQUEST_FIELDS, TERMINAL, JobRecord, JobStoreError, JobStoreUnavailableError,
                               OnNotice, OutboxMessage, OutboxStatus, SpendEntry, UnreadableRows, encoded_body,
                               job_from, outbox_from, require_timestamps)

#: Bumped when the tables change. Version 2 stores are migrated (MIGRATIONS); older ones are refused.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    request TEXT NOT NULL,
    chain TEXT NOT NULL,
    body TEXT NOT NULL,
    worker TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
-- The status page's route filter: a route with few (or no) jobs must not walk the whole table. Added by
-- IF NOT EXISTS to stores of the same schema version; route never changes after insert, so saves do not touch it.
CREATE INDEX IF NOT EXISTS jobs_route ON jobs(route, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(COALESCE(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Client webhooks (an outbox); IF NOT EXISTS adds it to older stores of this schema version too.
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, created_at);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox(job_id);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS spend (
    client TEXT NOT NULL,
    day TEXT NOT NULL,
    route TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    usd REAL NOT NULL,
    generations INTEGER NOT NULL,
    PRIMARY KEY (client, day, route, provider, model)
);
"""

#: From version N to N + 1.
MIGRATIONS = {
    2: """
ALTER TABLE jobs ADD COLUMN worker TEXT;
ALTER TABLE jobs ADD COLUMN lease_until REAL;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
""",
}

_RECORD = "request, chain, body, worker, cancel_requested, id"
#: The key of lease renewals: they change only ``lease_until``, which no read of one job returns, so such a read
#: need not wait for the renewal of every running job's lease queued before it (one 10,000-row write).
_LEASES = "\0leases"
#: Leases one write of a renewal extends (``renew``).
RENEW_SLICE = 500
#: The key of spend writes: no read of one job sees the spend table (``spend()`` reads wait for every write).
_SPEND = "\0spend"
_BRIEF_RECORD = ("json_object(" + ", ".join(f"'{f}', json_extract(request, '$.{f}')" for f in LIST_REQUEST_FIELDS)
                 + "), '[]', body, worker, cancel_requested, id")
_UNFINISHED = f"status NOT IN ({','.join(repr(s) for s in sorted(TERMINAL))})"
#: What a claim may take (with the time as its one parameter).
_CLAIMABLE = f"{_UNFINISHED} AND (worker IS NULL OR lease_until < ?)"


class SQLiteJobStore:
    """Jobs in one SQLite file (``DATA_DIR/jobs.sqlite3``): request and chain written once, a small mutable
    body rewritten per save, events in their own table. ``clock`` (epoch seconds) times leases."""

    shared = False

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._read_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobstore-read")
        self._db: sqlite3.Connection | None = None  # the writer's
        self._reader: sqlite3.Connection | None = None
        self._writer: GroupCommit | None = None
        self._unreadable = UnreadableRows()

    async def _run(self, fn: Any, *args: Any, key: str | Sequence[str] | None = None) -> Any:
        """A write: ``fn(*args)`` on the writer thread, returning once its transaction is committed. ``key``: the
        one job (or the jobs) whose reads it changes (``GroupCommit.run``); None for a write that may change any."""
        assert self._writer is not None
        try:
            return await self._writer.run(fn, *args, key=key)
        except sqlite3.OperationalError as exc:
            # A full disk, an I/O error, a file made read-only: the service retries what must be written and
            # answers 503 to new jobs (the same path as a PostgreSQL outage).
            raise JobStoreUnavailableError(f"job store {self.path}: {exc}") from exc

    async def _read(self, fn: Any, *args: Any, key: str | None = None, wait: bool = True) -> Any:
        """A read: ``fn(*args)`` on the reader thread, once every write queued before it is committed (a read
        never misses a write issued before it, though it skips the queue of writes issued after it). A read of
        one job (``key``) waits only for the writes it can see (bench.scale at 10,000 jobs: GET p99 171 -> 59 ms
        without the wait for every other job's saves). ``wait=False``: what is committed now, waiting for nothing."""
        if self._writer is not None and wait:
            await self._writer.settled(key)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._read_executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise JobStoreUnavailableError(f"job store {self.path}: {exc}") from exc

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        def connect() -> None:
            try:
                open_db()
                # The reader: WAL lets it read while the writer writes; query_only keeps it a reader.
                self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._reader.execute("PRAGMA query_only=1")
                self._reader.execute("PRAGMA busy_timeout=5000")
            except sqlite3.DatabaseError as exc:  # not a database, damaged, read-only: one line naming the file
                raise JobStoreError(f"job store {self.path}: {exc}; a damaged file must be moved away, and "
                                    "DATA_DIR (TARASH_ROUTER_DATA_DIR) must be writable") from None

        def open_db() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL + WAL: a committed write survives a process kill (-9); only an OS crash may lose the last.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            has_jobs = db.execute("SELECT 1 FROM sqlite_master WHERE name='jobs'").fetchone() is not None
            if version != SCHEMA_VERSION and (version or has_jobs) and version not in MIGRATIONS:
                db.close()
                raise JobStoreError(f"job store {self.path} has schema version {version}, this daemon needs "
                                    f"{SCHEMA_VERSION}; move the file away (stores before version 2 are not migrated)")
            steps = [MIGRATIONS[v] for v in range(version, SCHEMA_VERSION)] if version else []
            # One transaction: a migration that fails half-way leaves the file as it was.
            db.executescript("BEGIN IMMEDIATE;" + "".join(steps) + SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};"
                             f"UPDATE jobs SET worker=NULL, lease_until=NULL WHERE worker IS NOT NULL AND {_UNFINISHED};"
                             "COMMIT;")
            self._db = db

        await self._read(connect)
        assert self._db is not None
        self._writer = GroupCommit(self._db, asyncio.get_running_loop(), name="jobstore-write")

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        for db in (self._db, self._reader):
            if db is not None:
                await self._read(db.close)
        self._db = self._reader = None
        self._read_executor.shutdown(wait=True)

    # ---- jobs ---------------------------------------------------------------------------------------------
    def _record(self, request: str, chain: str, body: str, worker: str | None, cancel_requested: int,
                job_id: str) -> JobRecord | None:
        """The row as a job, or None (reported once, by id) when it cannot be read: one damaged row must not
        stop a start or every list."""
        try:
            return job_from(json.loads(request), json.loads(chain), json.loads(body), worker, bool(cancel_requested))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._unreadable.report(job_id, exc)
            return None

    def _records(self, rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        return [job for row in rows if (job := self._record(*row[:6])) is not None]

    async def insert(self, job: JobRecord, *, lease_seconds: float | None = None, body: str | None = None) -> bool:
        require_timestamps(job)
        leased = bool(job.worker and lease_seconds)
        row = (job.id, job.kind, job.route, job.status, job.owner, job.idempotency_key, job.created_at.isoformat(),
               job.updated_at.isoformat(), json.dumps(job.request), json.dumps(job.chain),
               encoded_body(job, body),
               job.worker if leased else None, self._clock() + lease_seconds if leased else None,  # type: ignore[operator]
               int(job.cancel_requested))

        def insert() -> bool:
            assert self._db is not None
            # DO NOTHING covers uniqueness only (the idempotency index); other constraint errors still raise.
            cursor = self._db.execute(
                "INSERT INTO jobs (id, kind, route, status, owner, idempotency_key, created_at, updated_at, request,"
                " chain, body, worker, lease_until, cancel_requested) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT DO NOTHING", row)
            return cursor.rowcount == 1

        return bool(await self._run(insert, key=job.id))

    async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
        require_timestamps(job)
        args = (job.status, job.updated_at.isoformat(), encoded_body(job, body), job.id,
                job.worker)

        def save() -> bool:
            assert self._db is not None
            cursor = self._db.execute("UPDATE jobs SET status=?, updated_at=?, body=? WHERE id=? AND worker IS ?", args)
            return cursor.rowcount == 1

        return bool(await self._run(save, key=job.id))

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        # The candidates are read first, waiting for no write: a claim that finds none (nearly every one while all
        # jobs run here) writes nothing, and one that finds some is a write of those jobs only, so a read of any
        # other job never waits for it. The write checks each candidate again: one taken, finished or renewed since
        # the read is left alone, and a claim that lost some to another reads again (a job made claimable after
        # the read is the next claim's).
        rows: list[tuple[Any, ...]] = []
        while len(rows) < limit:
            now = self._clock()
            candidates = [job_id for (job_id,) in await self._query(
                f"SELECT id FROM jobs WHERE {_CLAIMABLE} ORDER BY created_at LIMIT ?", now, limit - len(rows),
                wait=False)]
            if not candidates:
                break
            taken = await self._write(
                f"UPDATE jobs SET worker=?, lease_until=? WHERE id IN (SELECT value FROM json_each(?)) AND {_CLAIMABLE}"
                f" RETURNING {_RECORD}, created_at", worker, now + lease_seconds, json.dumps(candidates), now,
                key=candidates)
            rows += taken
            if len(taken) == len(candidates):
                break
        return self._records(sorted(rows, key=lambda row: row[6]))

    async def waiting(self) -> int:
        rows = await self._query(f"SELECT COUNT(*) FROM jobs WHERE {_CLAIMABLE}", self._clock())
        return int(rows[0][0])

    async def renew(self, worker: str, lease_seconds: float) -> dict[str, bool]:
        # In slices, each its own write: one UPDATE of 10,000 running rows held the writer ~45-60 ms, and every
        # insert and save queued behind it (a POST's 202 too); between slices the writes queued meanwhile go first.
        held: dict[str, bool] = {}
        after = ""
        while True:
            rows = await self._write(
                f"UPDATE jobs SET lease_until=? WHERE id IN (SELECT id FROM jobs WHERE id > ? AND worker=? AND"
                f" {_UNFINISHED} ORDER BY id LIMIT ?) RETURNING id, cancel_requested", self._clock() + lease_seconds,
                after, worker, RENEW_SLICE, key=_LEASES)
            held.update((job_id, bool(cancel)) for job_id, cancel in rows)
            if len(rows) < RENEW_SLICE:
                return held
            after = max(job_id for job_id, _ in rows)

    async def release(self, worker: str) -> None:
        await self._write(f"UPDATE jobs SET worker=NULL, lease_until=NULL WHERE worker=? AND {_UNFINISHED}", worker)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        await self._write(f"UPDATE jobs SET cancel_requested=1 WHERE id=? AND {_UNFINISHED}", job_id)
        return await self.get(job_id)

    async def watch(self, on_notice: OnNotice) -> None:
        await asyncio.Event().wait()  # one process: the service hears its own doings directly

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._query(f"SELECT {_RECORD} FROM jobs WHERE id=?", job_id, key=job_id)
        return self._record(*rows[0]) if rows else None

    async def find_idempotent(self, owner: str | None, key: str) -> JobRecord | None:
        rows = await self._query(
            f"SELECT {_RECORD} FROM jobs WHERE COALESCE(owner, '')=? AND idempotency_key=?", owner or "", key
        )
        return self._record(*rows[0]) if rows else None

    async def list(self, *, kind: str | None, owner: str | None, limit: int, after: str | None,
                   status: str | None = None, route: str | None = None, brief: bool = False) -> list[JobRecord]:
        # A brief read takes from the stored request only what list views show: never its inline media.
        sql, args = f"SELECT {_BRIEF_RECORD if brief else _RECORD} FROM jobs WHERE 1=1", []
        for column, value in (("kind", kind), ("status", status), ("route", route)):
            if value:
                sql += f" AND {column}=?"
                args.append(value)
        if owner is not None:
            sql += " AND owner=?"
            args.append(owner)
        if after:
            sql += " AND (created_at, id) < (SELECT created_at, id FROM jobs WHERE id=?)"
            args.append(after)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return self._records(await self._query(sql, *args))

    async def unfinished(self) -> list[JobRecord]:
        rows = await self._query(f"SELECT {_RECORD} FROM jobs WHERE {_UNFINISHED} ORDER BY created_at, id")
        return self._records(rows)

    async def delete(self, job_id: str) -> None:
        def delete() -> None:
            assert self._db is not None
            self._db.execute("DELETE FROM events WHERE job_id=?", (job_id,))
            self._db.execute("DELETE FROM outbox WHERE job_id=?", (job_id,))
            self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

        await self._run(delete)

    async def prune(self, finished_before: datetime) -> list[str]:
        def prune() -> list[str]:
            assert self._db is not None
            ids = [r[0] for r in self._db.execute(
                f"SELECT id FROM jobs WHERE NOT ({_UNFINISHED}) AND updated_at < ?", (finished_before.isoformat(),)
            )]
            for job_id in ids:
                self._db.execute("DELETE FROM events WHERE job_id=?", (job_id,))
                self._db.execute("DELETE FROM outbox WHERE job_id=?", (job_id,))
                self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            return ids

        return await self._run(prune)  # type: ignore[no-any-return]

    @property
    def rows_written(self) -> int:
        """Rows inserted, updated or deleted since the store opened (SQLite's own counter)."""
        return self._db.total_changes if self._db is not None else 0

    # ---- outbox -------------------------------------------------------------------------------------------
    async def put_outbox(self, message: OutboxMessage) -> None:
        row = (message.id, message.job_id, message.status, message.created_at.isoformat(),
               json.dumps(asdict(message), default=str))

        def put() -> None:
            assert self._db is not None
            self._db.execute("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)", row)

        await self._run(put)

    async def outbox_for_job(self, job_id: str) -> OutboxMessage | None:
        rows = await self._query("SELECT body FROM outbox WHERE job_id=? ORDER BY created_at LIMIT 1", job_id)
        return _outbox_message(rows[0][0]) if rows else None

    async def outbox(self, status: OutboxStatus) -> list[OutboxMessage]:
        rows = await self._query("SELECT body FROM outbox WHERE status=? ORDER BY created_at, id", status)
        return [_outbox_message(body) for (body,) in rows]

    async def count(self) -> int:
        return int((await self._query("SELECT COUNT(*) FROM jobs"))[0][0])

    # ---- events -------------------------------------------------------------------------------------------
    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None:
        await self._write("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", job_id, seq, event,
                          json.dumps(data, default=str), key=job_id)

    async def last_seqs(self, job_ids: Sequence[str] | None = None) -> dict[str, int]:
        if job_ids is None:
            return dict(await self._query("SELECT job_id, MAX(seq) FROM events GROUP BY job_id"))
        if not job_ids:
            return {}
        marks = ",".join("?" for _ in job_ids)
        return dict(await self._query(f"SELECT job_id, MAX(seq) FROM events WHERE job_id IN ({marks}) GROUP BY job_id",
                                      *job_ids))

    async def events(self, job_id: str, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        rows = await self._query("SELECT seq, event, data FROM events WHERE job_id=? AND seq>? ORDER BY seq",
                                 job_id, after, key=job_id)
        return [(seq, event, json.loads(data)) for seq, event, data in rows]

    async def _query(self, sql: str, *args: Any, key: str | None = None, wait: bool = True) -> list[tuple[Any, ...]]:
        """A read statement's rows (``key``: it reads only that job's; ``wait``: see ``_read``)."""
        def query() -> list[tuple[Any, ...]]:
            assert self._reader is not None
            return self._reader.execute(sql, args).fetchall()

        return await self._read(query, key=key, wait=wait)  # type: ignore[no-any-return]

    async def _write(self, sql: str, *args: Any, key: str | Sequence[str] | None = None) -> list[tuple[Any, ...]]:
        """A write statement's rows (``RETURNING``), once committed (``key``: see ``_run``)."""
        def write() -> list[tuple[Any, ...]]:
            assert self._db is not None
            return self._db.execute(sql, args).fetchall()

        return await self._run(write, key=key)  # type: ignore[no-any-return]

    # ---- spend (router/budgets.py) ------------------------------------------------------------------------
    async def add_spend(self, entries: list[SpendEntry]) -> None:
        rows = [(e.client, e.day, e.route, e.provider, e.model, e.usd, e.generations) for e in entries]

        def add() -> None:
            assert self._db is not None
            # A write is its own savepoint (group_commit): a generation's spend is recorded whole or not.
            self._db.executemany(
                "INSERT INTO spend VALUES (?,?,?,?,?,?,?) ON CONFLICT (client, day, route, provider, model) "
                "DO UPDATE SET usd = usd + excluded.usd, generations = generations + excluded.generations", rows)

        if rows:
            await self._run(add, key=_SPEND)

    async def spend(self, client: str | None, first_day: str, last_day: str) -> list[SpendEntry]:
        def read() -> list[SpendEntry]:
            assert self._reader is not None
            sql = "SELECT client, day, route, provider, model, usd, generations FROM spend WHERE day BETWEEN ? AND ?"
            args: tuple[Any, ...] = (first_day, last_day)
            if client is not None:
                sql, args = sql + " AND client = ?", (*args, client)
            return [SpendEntry(*row) for row in self._reader.execute(sql + " ORDER BY day, client, route", args)]

        return list(await self._read(read))


def _outbox_message(body: str) -> OutboxMessage:
    return outbox_from(json.loads(body))
