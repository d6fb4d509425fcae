"""PostgreSQL job store: several daemon instances share one database (``TARASH_ROUTER_JOB_STORE``).

Every statement is in ``postgres.sql``. Connections come from a psycopg pool (``prepare_threshold=None``, so a
PgBouncer in transaction mode in between works); LISTEN has its own dedicated connection, reconnected with
backoff, since a pooled connection may serve anyone between two notifications. That connection needs a session of
its own on the server, which a transaction pooler does not give: ``listen_url`` (``JOB_STORE_LISTEN``) can point
it past the pooler, and each (re)connection sends itself a probe notification to find out whether notices arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from importlib import resources
from typing import Any

from router.jobs.postgres_batch import PostgresGroupCommit, Result
from router.jobs.store import (LIST_REQUEST_FIELDS, JobRecord, JobStoreError, JobStoreUnavailableError, Notice,
                               OnNotice, OutboxMessage, OutboxStatus, SpendEntry, encoded_body, job_from, outbox_from,
                               require_timestamps)
from router.log_setup import get_logger, redactor

log = get_logger("router.jobs.postgres")

SETTING = "TARASH_ROUTER_JOB_STORE"
LISTEN_SETTING = "TARASH_ROUTER_JOB_STORE_LISTEN"
#: Bumped when the tables change; MIGRATIONS[n] (a statement name in postgres.sql) takes version n to n + 1.
SCHEMA_VERSION = 6
MIGRATIONS: dict[int, str] = {1: "migrate_1", 2: "migrate_2", 3: "migrate_3", 4: "migrate_4", 5: "migrate_5"}
CHANNELS: dict[str, Notice] = {"tarash_router_jobs": "job", "tarash_router_events": "event",
                               "tarash_router_cancel": "cancel", "tarash_router_slots": "slot",
                               "tarash_router_circuits": "circuit", "tarash_router_pushes": "push"}
#: Statements that change rows (for the rows-written metric).
_WRITES = frozenset({"insert", "save", "claim", "renew", "release", "request_cancel", "delete", "prune",
                     "append_event", "watch_events", "put_outbox", "slot_acquire", "slot_release", "bucket_take",
                     "circuit_open", "circuit_close", "note_push", "take_pushes", "claim_outbox", "release_outbox",
                     "record_outbox_try"})
#: In the JSON the stores write: an escaped backslash, a valid surrogate pair (both kept), or what jsonb refuses
#: to hold: ``\u0000`` and a lone surrogate, which json.dumps writes for a vendor's text that has them.
_UNSTORABLE = re.compile(r"\\\\|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u(0000|d[89a-f][0-9a-f]{2})", re.I)
#: How long an operation waits for a connection while the database is known to be down.
DOWN_TIMEOUT_SECONDS = 1.0
#: Preparing the schema is given up client-side after this many store timeouts (the server's lock_timeout and
#: statement_timeout, one and two store timeouts, answer first).
SCHEMA_CLIENT_BOUND = 3
#: A pooled connection that answered this recently is handed out without a check round trip.
CHECK_IDLE_SECONDS = 1.0
#: The LISTEN connection checks it is alive this often when nothing arrives.
HEARTBEAT_SECONDS = 5.0
#: The channel of the probe each LISTEN connection sends itself through the pool (not a notice the service hears),
#: and how long it waits for it (a notice takes milliseconds; this is for a loaded server).
PROBE_CHANNEL = "tarash_router_probe"
PROBE_SECONDS = 5.0


def load_sql(text: str) -> dict[str, str]:
    """``-- name: x`` sections of a SQL file -> ``{"x": "statement"}``."""
    statements: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = chunk.partition("\n")
        statements[name.strip()] = body.strip()
    return statements


SQL = load_sql(resources.files("router.jobs").joinpath("postgres.sql").read_text())


#: A URL's password where libpq reads it: ``scheme://user:PASSWORD@``, ending at the first "@" (only a "/" before
#: it means there is none), so "?", "#" and "[" are the password's; and the value of each ``password=`` parameter.
#: urlsplit reads such URLs otherwise (a "?" starts its query) or refuses them (an unbalanced "[").
_USERINFO_PASSWORD = re.compile(r"^([^:/?#]+://[^:@/]*:)([^@/]*)(?=@)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)")


def redact(url: str) -> str:
    """The URL with its password (user:PASSWORD@ or ?password=) replaced by ``***``: safe to log."""
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***", url, count=1))


def _holder_prefix(worker: str) -> str:
    """A LIKE pattern for every slot holder string of ``worker``."""
    return worker.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + " %"


def _passwords(url: str) -> list[str]:
    """The passwords ``redact`` hides in ``url``, as written there."""
    return [match[2] for pattern in (_USERINFO_PASSWORD, _QUERY_PASSWORD) for match in pattern.finditer(url)
            if match[2]]


def jsonb(text: str) -> str:
    """JSON text ``text`` as a jsonb column takes it: NUL and lone surrogates (a vendor's answer may hold either;
    the API refuses them in requests) become U+FFFD. Without this jsonb refuses the write (UntranslatableCharacter)
    and the job's outcome or event is not stored. Most texts have neither escape and skip the scan."""
    if "\\u0000" not in text and "\\ud" not in text and "\\uD" not in text:
        return text
    return _UNSTORABLE.sub(lambda m: "\\ufffd" if m[3] else m[0], text)


def _dumps(value: Any) -> str:
    return jsonb(json.dumps(value, default=str))


class PostgresJobStore:
    """Jobs in PostgreSQL, shared by every instance pointed at the same database."""

    shared = True

    def __init__(self, url: str, *, listen_url: str | None = None, pool_size: int = 10, timeout: float = 10.0,
                 probe_seconds: float = PROBE_SECONDS) -> None:
        self.url = url
        #: Where the LISTEN connection goes when that is not ``url`` (past a transaction pooler).
        self.listen_url = listen_url or None
        #: How long a LISTEN connection waits for its probe before it says notices are lost.
        self.probe_seconds = probe_seconds
        self.pool_size = pool_size
        #: Bound on connecting and on every statement (a store that hangs is a store that is down).
        self.timeout = timeout
        self._pool: Any = None
        self._batch: PostgresGroupCommit | None = None
        self._written = 0
        self._down = False
        #: When each pooled connection last answered a statement (see ``_check_idle``).
        self._answered_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        # The log redactor's safety net: a line that ever quotes a connection string loses its passwords.
        redactor.add_values([*_passwords(url), *_passwords(listen_url or "")])

    def __repr__(self) -> str:
        listen = f", listen_url={redact(self.listen_url)!r}" if self.listen_url else ""
        return f"PostgresJobStore({redact(self.url)!r}{listen})"

    def _error(self, what: str, exc: BaseException | None = None, *, listen: bool = False) -> JobStoreError:
        """A one-line error naming the setting (``JOB_STORE_LISTEN`` for the LISTEN connection when it has its own
        URL); no password in it (libpq may echo parts of the URL)."""
        detail = f": {' '.join(str(exc).split())}" if exc is not None and str(exc) else ""
        setting, url = (LISTEN_SETTING, self.listen_url) if listen and self.listen_url else (SETTING, self.url)
        message = f"{setting}={redact(url)}: {what}{detail}"
        for secret in [*_passwords(self.url), *_passwords(self.listen_url or "")]:
            message = message.replace(secret, "***")
        return JobStoreError(message)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            import psycopg  # noqa: F401 - the extra installs both
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise JobStoreError(f"{SETTING} selects PostgreSQL, which needs the postgres extra: "
                                "pip install 'tarash-router[postgres]'") from None
        conn = await self._connect_checked()
        async with conn:
            if self.listen_url:  # refused at start, before anything is written, not found by a silent loop later
                await (await self._connect_checked(listen=True)).close()
            await self._prepare_schema_bounded(conn)
        # The pool would log each failed reconnection; this store logs an outage once (the job service).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self._pool = self._new_pool()
        await self._pool.open(wait=True, timeout=self.timeout)
        self._batch = PostgresGroupCommit(self._connection, self._alone, SQL)

    async def _connect_checked(self, *, listen: bool = False) -> Any:
        """A connection to ``url`` (``listen_url`` with ``listen``), or the one-line error naming its setting: an
        invalid URL, or one that cannot connect within the store's timeout."""
        import psycopg

        url = self.listen_url if listen and self.listen_url else self.url
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise self._error("not a valid PostgreSQL URL", exc, listen=listen) from None
        try:
            async with asyncio.timeout(self.timeout):
                return await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(self.timeout)))
        except (psycopg.Error, TimeoutError) as exc:
            raise self._error("cannot connect", exc, listen=listen) from None

    def _new_pool(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        return AsyncConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, open=False, timeout=self.timeout, name="tarash-router",
            kwargs={"autocommit": True, "prepare_threshold": None, "connect_timeout": max(1, int(self.timeout))},
            check=self._check_idle,
        )

    async def _check_idle(self, conn: Any) -> None:
        """The pool's check before handing a connection out: a connection broken by a database restart is found
        (and replaced) before use. Checking is a round trip, so one that answered a statement less than
        ``CHECK_IDLE_SECONDS`` ago is trusted (that halved the round trips of every store operation)."""
        from psycopg_pool import AsyncConnectionPool

        if time.monotonic() - self._answered_at.get(conn, -CHECK_IDLE_SECONDS) >= CHECK_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)

    async def _replace_pool(self) -> None:
        """A fresh pool once the database is back: the old one's reconnection backoff doubles without bound (1 s,
        2 s, 4 s... after a minute down it may wait another minute), this one connects at once."""
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)
        if old is not None:
            await old.close(timeout=0)

    async def _prepare_schema_bounded(self, conn: Any) -> None:
        """``_prepare_schema`` under ``lock_timeout`` and ``statement_timeout`` (the store's timeout and twice
        it, unless the role, the database or ``PGOPTIONS`` set their own), and a client-side bound for a server that stops
        answering: a schema another session keeps locked is a one-line error, never a start that hangs."""
        import psycopg

        settings = {"lock_timeout": "?", "statement_timeout": "?"}
        try:
            async with asyncio.timeout(SCHEMA_CLIENT_BOUND * self.timeout):
                await self._prepare_schema(conn, settings)
        except psycopg.errors.LockNotAvailable:
            raise self._error(f"preparing the job-store schema waited longer than lock_timeout="
                              f"{settings['lock_timeout']} for a lock: another session holds the schema lock or a "
                              "lock on a tarash_router_* table (nothing was changed; raise lock_timeout with "
                              "PGOPTIONS or ALTER ROLE ... SET lock_timeout)") from None
        except psycopg.errors.QueryCanceled:
            raise self._error(f"preparing the job-store schema took longer than statement_timeout="
                              f"{settings['statement_timeout']} (nothing was changed; raise statement_timeout with "
                              "PGOPTIONS or ALTER ROLE ... SET statement_timeout)") from None
        except TimeoutError:
            raise self._error(f"the database did not answer within {SCHEMA_CLIENT_BOUND * self.timeout:g} s while "
                              "preparing the job-store schema (nothing was changed)") from None
        except psycopg.Error as exc:
            raise self._error("cannot prepare the job-store schema", exc) from None

    async def _prepare_schema(self, conn: Any, settings: dict[str, str]) -> None:
        """Create the tables on first start, migrate an older schema, refuse a newer one (writing nothing).
        ``settings`` gets the timeouts in force (for the error message)."""
        async with conn.transaction():
            row = await (await conn.execute(SQL["schema_timeouts"], {"ms": int(self.timeout * 1000)})).fetchone()
            settings["lock_timeout"], settings["statement_timeout"] = row
            await conn.execute(SQL["schema_lock"])
            exists = (await (await conn.execute(SQL["has_store"])).fetchone())[0]
            if not exists:
                await conn.execute(SQL["schema"])
                version = 1
            else:
                row = await (await conn.execute(SQL["schema_version"])).fetchone()
                version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise self._error(f"the database holds job-store schema version {version}, newer than this "
                                  f"daemon's {SCHEMA_VERSION}; upgrade tarash-router (nothing was changed)")
            if version < SCHEMA_VERSION and any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
                raise self._error(f"the database holds job-store schema version {version}, which this daemon "
                                  f"cannot migrate to {SCHEMA_VERSION} (nothing was changed)")
            for step in range(version, SCHEMA_VERSION):
                await conn.execute(SQL[MIGRATIONS[step]])
                log.info("job_store_migrated", store=redact(self.url), schema_version=step + 1)

    async def close(self) -> None:
        if self._batch is not None:
            await self._batch.settled()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, bounded by ``timeout``; the database unreachable is ``JobStoreUnavailableError``."""
        import psycopg
        from psycopg_pool import PoolTimeout

        assert self._pool is not None, "open() the store first"
        # Once the database failed, fail fast until it answers again: a request is told 503 in a second, and a
        # job's optional writes do not hold up its polling for the full timeout each.
        timeout = DOWN_TIMEOUT_SECONDS if self._down else self.timeout
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            async with asyncio.timeout(timeout), self._pool.connection(timeout=timeout) as conn:
                if task is not None and task.cancelling() > cancels:
                    # Cancelled while it waited for a free connection, yet handed one: Python 3.11's
                    # asyncio.wait_for, which the pool waits with, returns instead of raising when the cancel
                    # meets the wake-up. Swallowed, the cancel of a stop left a job loop running on, and the stop
                    # waiting for it forever.
                    raise asyncio.CancelledError
                yield conn
                self._answered_at[conn] = time.monotonic()
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError, OSError) as exc:
            self._down = True
            raise JobStoreUnavailableError(self._error("unreachable", exc).args[0]) from None
        self._down = False

    async def _rows(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        rows, count = await self._alone(name, params)
        if name in _WRITES:
            self._written += count
        return rows

    async def _alone(self, name: str, params: Mapping[str, Any]) -> Result:
        """Statement ``name`` by itself (autocommit): its rows and row count."""
        async with self._connection() as conn:
            cursor = await conn.execute(SQL[name], params)
            rows = await cursor.fetchall() if cursor.description else []
        return rows, max(cursor.rowcount, 0)

    async def _batched(self, name: str, **params: Any) -> Result:
        """A hot write (an insert, a save, an event), committed with the others of its loop turn
        (``router.jobs.postgres_batch``)."""
        assert self._batch is not None, "open() the store first"
        rows, count = await self._batch.run(name, params)
        self._written += count
        return rows, count

    @property
    def rows_written(self) -> int:
        """Rows this instance inserted, updated or deleted since the store opened."""
        return self._written

    # ---- jobs ---------------------------------------------------------------------------------------------
    async def insert(self, job: JobRecord, *, lease_seconds: float | None = None, body: str | None = None) -> bool:
        require_timestamps(job)
        rows, _ = await self._batched(
            "insert", id=job.id, kind=job.kind, route=job.route, status=job.status, owner=job.owner,
            idempotency_key=job.idempotency_key, created_at=job.created_at, updated_at=job.updated_at,
            request=jsonb(json.dumps(job.request)), chain=jsonb(json.dumps(job.chain)),
            body=jsonb(encoded_body(job, body)),
            worker=job.worker if lease_seconds else None, lease=lease_seconds or 0.0,
        )
        return bool(rows)

    async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
        require_timestamps(job)
        _, count = await self._batched("save", status=job.status, updated_at=job.updated_at, id=job.id,
                                       worker=job.worker, body=jsonb(encoded_body(job, body)))
        return count == 1

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        rows = await self._rows("claim", worker=worker, limit=limit, lease=lease_seconds)
        return sorted((job_from(*row) for row in rows), key=lambda job: (job.created_at, job.id))

    async def waiting(self) -> int:
        return int((await self._rows("waiting"))[0][0])

    async def renew(self, worker: str, lease_seconds: float) -> dict[str, bool]:
        await self._rows("slots_renew", prefix=_holder_prefix(worker), lease=lease_seconds)
        await self._rows("reservations_renew", holder=worker, lease=lease_seconds)
        return dict(await self._rows("renew", worker=worker, lease=lease_seconds))

    async def release(self, worker: str) -> None:
        if self._batch is not None:
            await self._batch.settled()  # a save or an insert still out would otherwise land after the release
        await self._rows("slots_release", prefix=_holder_prefix(worker))
        await self._rows("release", worker=worker)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        await self._rows("request_cancel", id=job_id)
        return await self.get(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._rows("get", id=job_id)
        return job_from(*rows[0]) if rows else None

    async def find_idempotent(self, owner: str | None, key: str) -> JobRecord | None:
        rows = await self._rows("find_idempotent", owner=owner or "", key=key)
        return job_from(*rows[0]) if rows else None

    async def list(self, *, kind: str | None, owner: str | None, limit: int, after: str | None,
                   status: str | None = None, route: str | None = None, brief: bool = False) -> list[JobRecord]:
        rows = await self._rows("list", kind=kind or None, owner=owner, after=after or None, limit=limit,
                                status=status or None, route=route or None,
                                fields=list(LIST_REQUEST_FIELDS) if brief else None)
        return [job_from(*row) for row in rows]

    async def unfinished(self) -> list[JobRecord]:
        return [job_from(*row) for row in await self._rows("unfinished")]

    async def delete(self, job_id: str) -> None:
        await self._rows("delete", id=job_id)

    async def prune(self, finished_before: datetime) -> list[str]:
        return [row[0] for row in await self._rows("prune", before=finished_before)]

    async def count(self) -> int:
        return int((await self._rows("count"))[0][0])

    # ---- events -------------------------------------------------------------------------------------------
    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None:
        await self._batched("append_event", job_id=job_id, seq=seq, event=event, data=_dumps(data))

    async def watch_events(self, job_id: str, seconds: float) -> None:
        await self._rows("watch_events", id=job_id, seconds=seconds)

    async def events(self, job_id: str, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        return [(seq, event, data) for seq, event, data in await self._rows("events", job_id=job_id, after=after)]

    async def last_seqs(self, job_ids: Sequence[str] | None = None) -> dict[str, int]:
        if job_ids is not None and not job_ids:
            return {}
        return dict(await self._rows("last_seqs", ids=list(job_ids) if job_ids is not None else None))  # type: ignore[arg-type]

    # ---- outbox (client webhooks) ---------------------------------------------------------------------------
    async def put_outbox(self, message: OutboxMessage) -> None:
        await self._rows("put_outbox", id=message.id, job_id=message.job_id, status=message.status,
                         created_at=message.created_at, body=_dumps(asdict(message)),
                         due_at=message.next_attempt_at)

    async def record_outbox_try(self, message: OutboxMessage, worker: str) -> bool:
        rows = await self._rows("record_outbox_try", id=message.id, status=message.status, worker=worker,
                                body=_dumps(asdict(message)), due_at=message.next_attempt_at)
        return bool(rows)

    async def claim_outbox(self, worker: str, now: datetime, limit: int, lease_seconds: float,
                           ids: Sequence[str] | None = None) -> list[OutboxMessage]:
        if limit <= 0 or (ids is not None and not ids):
            return []
        rows = await self._rows("claim_outbox", worker=worker, now=now, limit=limit, lease=lease_seconds,
                                ids=list(ids) if ids is not None else None)
        return [outbox_from(body) for (body,) in rows]

    async def release_outbox(self, worker: str) -> None:
        await self._rows("release_outbox", worker=worker)

    async def outbox_for_job(self, job_id: str) -> OutboxMessage | None:
        rows = await self._rows("outbox_for_job", job_id=job_id)
        return outbox_from(rows[0][0]) if rows else None

    async def outbox(self, status: OutboxStatus) -> list[OutboxMessage]:
        return [outbox_from(body) for (body,) in await self._rows("outbox", status=status)]

    # ---- vendor webhooks relayed to the job's holder (router/webhooks/inbound.py) ------------------------------
    async def note_push(self, job_id: str, attempt: int) -> None:
        await self._rows("note_push", id=job_id, attempt=attempt)

    async def take_pushes(self, worker: str, job_id: str | None = None) -> set[str]:
        return {row[0] for row in await self._rows("take_pushes", worker=worker, id=job_id)}

    # ---- spend (router/budgets.py) ------------------------------------------------------------------------
    async def add_spend(self, entries: list[SpendEntry], released: Sequence[str] = ()) -> None:
        if not entries and not released:
            return
        # One transaction: a generation's spend is recorded whole or not at all, and its reservation goes with it
        # (counted until its spend is, so no admission in between sees neither).
        async with self._connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                if entries:
                    await cursor.executemany(SQL["add_spend"], [
                        {"client": e.client, "day": e.day, "route": e.route, "provider": e.provider,
                         "model": e.model, "usd": e.usd, "generations": e.generations} for e in entries])
                if released:
                    await cursor.executemany(SQL["release_reservation"], [{"key": key} for key in released])
        self._written += len(entries)

    async def reserve_spend(self, client: str, key: str, usd: float, holder: str, lease_seconds: float,
                            windows: Sequence[tuple[str, str, float]]) -> tuple[int, float] | None:
        """Reserve ``usd`` for ``client`` under ``key`` if every budget window ``(first_day, last_day, budget)``
        has room for it after the ledger's spend and every live reservation, cluster-wide (one admission per
        client at a time). None when reserved; else the first window without room and what it has left."""
        # The lock and the check-and-insert pipelined: one round trip and a commit (five before).
        async with self._connection() as conn:
            async with conn.pipeline(), conn.transaction():
                await conn.execute(SQL["budget_lock"], {"client": client})
                cursor = await conn.execute(SQL["reserve_within"], {
                    "client": client, "key": key, "usd": usd, "holder": holder, "lease": lease_seconds,
                    "first_days": [w[0] for w in windows], "last_days": [w[1] for w in windows],
                    "budgets": [w[2] for w in windows]})
            row = await cursor.fetchone()
        return None if row is None else (row[0] - 1, row[1])

    async def release_reservation(self, key: str) -> None:
        await self._rows("release_reservation", key=key)

    async def reserved_spend(self, client: str | None) -> dict[str, float]:
        return dict(await self._rows("reserved_spend", client=client))

    async def spend(self, client: str | None, first_day: str, last_day: str) -> list[SpendEntry]:
        rows = await self._rows("spend", client=client, first_day=first_day, last_day=last_day)
        return [SpendEntry(*row) for row in rows]

    # ---- what instances share about vendors (router/cluster.py) --------------------------------------------
    async def acquire_slot(self, provider: str, limit: int, holder: str, lease_seconds: float) -> bool:
        """Lease one of ``provider``'s ``limit`` slots to ``holder`` ("<worker> <random>"); False if all are held."""
        rows = await self._rows("slot_acquire", provider=provider, limit=limit, holder=holder, lease=lease_seconds)
        if not rows:
            await self._rows("slots_ensure", provider=provider, limit=limit)
            rows = await self._rows("slot_acquire", provider=provider, limit=limit, holder=holder, lease=lease_seconds)
        return bool(rows)

    async def release_slot(self, provider: str, holder: str) -> None:
        await self._rows("slot_release", provider=provider, holder=holder)

    async def take_token(self, provider: str, per_minute: int) -> float:
        """Take one of ``provider``'s request tokens: 0.0, or the seconds until one will be there."""
        if await self._rows("bucket_take", provider=provider, rate=float(per_minute)):
            return 0.0
        rows = await self._rows("bucket_wait", provider=provider, rate=float(per_minute))
        return max(float(rows[0][0]) if rows else 0.0, 0.01)

    async def open_circuit(self, provider: str, model: str, failures: int) -> None:
        await self._rows("circuit_open", provider=provider, model=model, failures=failures)

    async def close_circuit(self, provider: str, model: str) -> None:
        await self._rows("circuit_close", provider=provider, model=model)

    async def open_circuits(self) -> list[tuple[str, str, int, float]]:
        """(provider, model, failures, seconds since it opened) of every open circuit."""
        return [(p, m, f, float(age)) for p, m, f, age in await self._rows("circuits")]

    # ---- notifications ------------------------------------------------------------------------------------
    async def watch(self, on_notice: OnNotice) -> None:
        """LISTEN on a dedicated connection. On every (re)connect, report a "job" and a "circuit" notice: whatever
        was missed while the connection was down is found by what they start: a claim, the kept vendor pushes
        taken, the open circuits reloaded (a missed cancel is found at the next lease renewal, a missed event by
        the streams' one-second read)."""
        import psycopg

        delay, down = 0.1, False
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await psycopg.AsyncConnection.connect(self.listen_url or self.url, autocommit=True,
                                                                 connect_timeout=max(1, int(self.timeout)))
                async with conn:
                    async with asyncio.timeout(self.timeout):  # a server that accepts but never answers
                        for channel in (*CHANNELS, PROBE_CHANNEL):
                            await conn.execute(f"LISTEN {channel}")
                    if down:
                        await self._replace_pool()
                        log.info("job_store_listen_restored")
                    delay, down = 0.1, False
                    on_notice("job", "", None)
                    on_notice("circuit", "", None)
                    probe, probe_by = await self._send_probe(), time.monotonic() + self.probe_seconds
                    while True:
                        wait = HEARTBEAT_SECONDS if probe is None else max(0.0, probe_by - time.monotonic())
                        async for notice in conn.notifies(timeout=min(wait, HEARTBEAT_SECONDS)):
                            if notice.channel == PROBE_CHANNEL:
                                probe = None if notice.payload == probe else probe
                                continue
                            subject, _, sent = notice.payload.rpartition(" ")
                            with contextlib.suppress(ValueError):
                                on_notice(CHANNELS[notice.channel], subject, float(sent))
                        if probe is not None and time.monotonic() >= probe_by:
                            probe = None  # said once per connection
                            self._probe_unheard()
                        async with asyncio.timeout(self.timeout):
                            await conn.execute("SELECT 1")
            except (psycopg.Error, TimeoutError, OSError) as exc:
                if not down:  # once per outage
                    log.warning("job_store_listen_lost",
                                error=self._error("LISTEN connection lost", exc, listen=True).args[0])
                down = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send_probe(self) -> str | None:
        """A notification to this instance's LISTEN connection, sent through the pool as every notice is; its
        payload, or None when it could not be sent (the store is down: the listener's heartbeat finds out)."""
        payload = secrets.token_hex(8)
        try:
            await self._rows("probe", channel=PROBE_CHANNEL, payload=payload)
        except JobStoreUnavailableError:
            return None
        return payload

    def _probe_unheard(self) -> None:
        """A probe sent through the pool never reached the LISTEN connection: notices are lost, so cancels, pushes
        and events from other instances reach this one late or not at all (a transaction pooler in between)."""
        if self.listen_url:
            hint = f"check that {LISTEN_SETTING} reaches the server directly or through a session-mode pool"
        else:
            hint = (f"a transaction-mode pooler (PgBouncer) between {SETTING} and the server gives LISTEN no session "
                    f"of its own; set {LISTEN_SETTING} to the server's own address or a session-mode pool")
        log.warning("job_store_notices_lost", error=self._error(
            f"a notification sent through the store did not reach the LISTEN connection within "
            f"{self.probe_seconds:g} s; {hint}", listen=True).args[0])
