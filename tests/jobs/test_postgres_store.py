"""What only the PostgreSQL store does: notifications, its schema version, and refusing bad settings at start
(each a one-line error naming the setting, no password, exit non-zero, nothing written)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from router.jobs.postgres import SCHEMA_VERSION, PostgresJobStore, redact
from router.jobs.store import JobRecord, JobStoreError, OutboxMessage
from router.models import utc_now
from tests.net import free_port
from tests.postgres_server import PASSWORD, PostgresServer

SCRIPT = Path(sys.executable).parent / "tarash-router"
ROUTES = """
[routes."v"]
kind = "video"
[[routes."v".attempts]]
provider = "mock"
model = "m"
"""


def job(job_id: str, worker: str | None = None) -> JobRecord:
    now = utc_now()
    return JobRecord(id=job_id, kind="video", route="r", request={}, chain=[], worker=worker, created_at=now,
                     updated_at=now)


@contextlib.asynccontextmanager
async def writer_and_listener(
        pg_url: str, **listener_options: Any,
) -> AsyncIterator[tuple[PostgresJobStore, PostgresJobStore, asyncio.Queue[tuple[str, str]]]]:
    """Two stores on one database, as two instances: the writer, the listener (``PostgresJobStore`` options:
    ``listener_options``) and what it hears (``(notice, subject)``), once it is listening (its first notices,
    "look for work" and "reload the circuits", are taken)."""
    writer, listener = PostgresJobStore(pg_url), PostgresJobStore(pg_url, **listener_options)
    await writer.open()
    await listener.open()
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    watching = asyncio.create_task(listener.watch(lambda notice, subject, sent: heard.put_nowait((notice, subject))))
    try:
        assert await asyncio.wait_for(heard.get(), 5) == ("job", "")  # listening (and "look for work")
        assert await asyncio.wait_for(heard.get(), 5) == ("circuit", "")  # what opened while it did not listen
        yield writer, listener, heard
    finally:
        watching.cancel()
        await writer.close()
        await listener.close()


async def test_notifications_reach_every_watcher(pg_url: str) -> None:
    async with writer_and_listener(pg_url) as (writer, _, heard):
        await writer.insert(job("job_free"))
        await writer.insert(job("job_mine", worker="A"), lease_seconds=30)  # leased at once: nobody to wake
        await writer.watch_events("job_free", 30)  # someone on another instance streams it
        await writer.append_event("job_free", 1, "update", {"big": "x" * 10_000})  # the row holds the data
        await writer.request_cancel("job_free")
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
        assert got == [("job", ""), ("event", "job_free"), ("cancel", "job_free")]
        assert heard.empty()


async def test_a_listener_whose_connection_dropped_reconnects_and_says_what_to_look_again_for(pg_url: str) -> None:
    """What was announced while it was down is not replayed: the "job" and "circuit" notices it gives on
    reconnecting make the service claim and reload the open circuits (a cancel is found at the next renewal)."""
    async with writer_and_listener(pg_url) as (writer, listener, heard):
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the server drops the LISTEN connection
            [[dropped]] = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE datname = current_database() AND query LIKE 'LISTEN%'").fetchall()
        assert dropped == 1  # its last statement is a LISTEN until its first heartbeat, 5 s on
        with capture_logs() as logs:
            got = [await asyncio.wait_for(heard.get(), 10) for _ in range(2)]
        assert got == [("job", ""), ("circuit", "")]
        assert [entry["event"] for entry in logs] == ["job_store_listen_lost", "job_store_listen_restored"]
        await writer.request_cancel("job_missing")  # and it hears again
        await writer.insert(job("job_free"))
        assert await asyncio.wait_for(heard.get(), 5) == ("job", "")


async def test_events_are_announced_only_while_someone_watches_the_job(pg_url: str) -> None:
    async with writer_and_listener(pg_url) as (writer, _, heard):
        await writer.insert(job("job_x", worker="A"), lease_seconds=30)
        await writer.append_event("job_x", 1, "update", {})  # nobody watches: stored, announced to nobody
        await writer.watch_events("job_x", 30)
        await writer.append_event("job_x", 2, "update", {})
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the watcher went away: its watch lapsed
            conn.execute("UPDATE tarash_router_jobs SET watched_until = now() - interval '1 second'")
        await writer.append_event("job_x", 3, "update", {})
        await writer.request_cancel("job_x")  # notifications arrive in commit order: this one comes last
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(2)]
        assert got == [("event", "job_x"), ("cancel", "job_x")]
        assert [seq for seq, _, _ in await writer.events("job_x")] == [1, 2, 3]


async def test_schema_is_created_once_with_its_version(pg_url: str) -> None:
    first, second = PostgresJobStore(pg_url), PostgresJobStore(pg_url)
    await asyncio.gather(first.open(), second.open())  # two instances starting together
    await first.insert(job("job_1"))
    await first.close()
    await second.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM tarash_router_meta").fetchall() == [(str(SCHEMA_VERSION),)]
        assert conn.execute("SELECT count(*) FROM tarash_router_jobs").fetchone() == (1,)


async def test_a_newer_schema_is_refused_and_left_untouched(pg_url: str) -> None:
    store = PostgresJobStore(pg_url)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE tarash_router_meta SET value = '99'")
    with pytest.raises(JobStoreError) as caught:
        await PostgresJobStore(pg_url).open()
    message = str(caught.value)
    assert message.startswith("TARASH_ROUTER_JOB_STORE=") and "version 99, newer than this daemon's" in message
    assert PASSWORD not in message and "\n" not in message
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM tarash_router_meta").fetchone() == ("99",)


def test_redact_hides_passwords_in_both_spellings() -> None:
    assert redact("postgresql://app:s3cr3t@db:5432/jobs") == "postgresql://app:***@db:5432/jobs"
    assert redact("postgres://db/jobs?user=app&password=s3cr3t&sslmode=require") == \
        "postgres://db/jobs?user=app&password=***&sslmode=require"
    assert redact("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert "s3cr3t" not in repr(PostgresJobStore("postgresql://app:s3cr3t@db/jobs"))


def serve(tmp_path: Path, job_store: str, **env: str) -> subprocess.CompletedProcess[str]:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    environ = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_LOG_FORMAT": "json",
               "TARASH_ROUTER_JOB_STORE": job_store, **env}
    environ.pop("NOTIFY_SOCKET", None)
    return subprocess.run([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(free_port())], env=environ,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def assert_refused(result: subprocess.CompletedProcess[str], tmp_path: Path, *words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("tarash-router: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tarash-router: TARASH_ROUTER_JOB_STORE"), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.parametrize("url, words", [
    ("mysql://app:pw@127.0.0.1/jobs", ("scheme 'mysql' is not supported",)),
    (f"postgresql://postgres:{PASSWORD}@127.0.0.1/db?colour=blue", ("not a valid PostgreSQL URL", "colour")),
    (f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/db", ('invalid integer value "notaport"',)),
    # libpq quotes this URL whole in its error; Python's urlsplit refuses it ("Invalid IPv6 URL")
    (f"postgresql://postgres:{PASSWORD}@[::1/db", ("not a valid PostgreSQL URL", "IPv6")),
])
def test_an_invalid_url_is_refused_at_start(tmp_path: Path, url: str, words: tuple[str, ...]) -> None:
    assert_refused(serve(tmp_path, url), tmp_path, *words)


def test_a_wrong_password_is_refused_at_start(tmp_path: Path, postgres_server: PostgresServer) -> None:
    result = serve(tmp_path, postgres_server.url(password="wrong-" + PASSWORD[::-1]))
    assert_refused(result, tmp_path, "cannot connect", "password authentication failed")
    assert PASSWORD[::-1] not in result.stderr


#: libpq reads a URL's password up to its "@" (only "/" ends it early): "?", "#" and "[" are the password's.
ODD_PASSWORD = "pw?frag#[x-4711"


def test_a_password_libpq_reads_verbatim_is_never_shown(tmp_path: Path, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE odd_pw_{os.getpid()} LOGIN PASSWORD '{ODD_PASSWORD}'")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO odd_pw_{os.getpid()}")
    url = pg_url.replace(f"postgres:{PASSWORD}@", f"odd_pw_{os.getpid()}:{ODD_PASSWORD}@")
    assert redact(url) == pg_url.replace(f"postgres:{PASSWORD}@", f"odd_pw_{os.getpid()}:***@")
    assert redact(f"postgres://db/jobs?password={ODD_PASSWORD}&user=app") == "postgres://db/jobs?password=***&user=app"
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    environ = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_LOG_FORMAT": "json",
               "TARASH_ROUTER_JOB_STORE": url}
    environ.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(free_port())], env=environ,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline()]
        while lines[-1] and '"event": "listening"' not in lines[-1]:
            lines.append(proc.stderr.readline())
        proc.terminate()
        lines.append(proc.communicate(timeout=30)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
    listening = json.loads(next(line for line in lines if '"event": "listening"' in line))
    assert listening["job_store"] == redact(url)
    for part in (ODD_PASSWORD, "frag", "x-4711"):
        assert part not in "".join(lines)
    assert proc.returncode == 0


def test_an_unreachable_host_is_refused_at_start(tmp_path: Path) -> None:
    assert_refused(serve(tmp_path, f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/db"), tmp_path,
                   "cannot connect")


def test_a_newer_schema_is_refused_at_start(tmp_path: Path, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE tarash_router_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute("INSERT INTO tarash_router_meta VALUES ('schema_version', '7')")
    assert_refused(serve(tmp_path, pg_url), tmp_path, "schema version 7, newer")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('tarash_router_jobs')").fetchone() == (None,)


def test_postgresql_without_the_extra_names_the_extra(tmp_path: Path, pg_url: str) -> None:
    # psycopg made unimportable in the daemon's process, as in an install without the extra.
    blocker = tmp_path / "block" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text("import sys\nsys.modules['psycopg'] = None\nsys.modules['psycopg_pool'] = None\n")
    result = serve(tmp_path, pg_url, PYTHONPATH=str(blocker.parent))
    assert_refused(result, tmp_path, "pip install 'tarash-router[postgres]'")


async def test_an_older_schema_is_migrated_in_place(pg_url: str) -> None:
    from router.jobs.postgres import SQL

    with psycopg.connect(pg_url) as conn:  # a database a version-1 daemon created and used
        conn.execute(SQL["schema"])
        body = json.dumps({"id": "job_old", "kind": "video", "route": "r", "status": "completed"})
        conn.execute("INSERT INTO tarash_router_jobs (id, kind, route, status, created_at, updated_at, request, chain,"
                     " body) VALUES ('job_old', 'video', 'r', 'completed', now(), now(), '{}', '[]', %s)", (body,))
    store = PostgresJobStore(pg_url)
    await store.open()
    try:
        assert (await store.get("job_old")).status == "completed"  # type: ignore[union-attr]
        assert await store.acquire_slot("fal", 1, "a x", 30) and not await store.acquire_slot("fal", 1, "b y", 30)
    finally:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM tarash_router_meta").fetchone() == (str(SCHEMA_VERSION),)


SCHEMA_LOCK = "SELECT pg_advisory_lock(hashtext('tarash_router_schema'))"  # what a migrating instance holds


@pytest.mark.parametrize("hold", [SCHEMA_LOCK, "BEGIN; LOCK TABLE tarash_router_meta IN ACCESS EXCLUSIVE MODE"])
async def test_a_locked_schema_is_a_one_line_error_within_the_timeout(pg_url: str, hold: str) -> None:
    first = PostgresJobStore(pg_url)
    await first.open()  # the tables exist; another session now holds a lock the schema check needs
    await first.close()
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute(hold)
        started = asyncio.get_running_loop().time()
        with pytest.raises(JobStoreError) as caught:
            await PostgresJobStore(pg_url, timeout=0.3).open()
        assert asyncio.get_running_loop().time() - started < 3  # bounded by lock_timeout, not hanging
    message = str(caught.value)
    assert message.startswith("TARASH_ROUTER_JOB_STORE=") and "lock_timeout=300ms" in message
    assert PASSWORD not in message and "\n" not in message


def test_a_locked_schema_at_start_names_the_timeout_and_exits_non_zero(tmp_path: Path, pg_url: str) -> None:
    # Timeouts the operator set (here with PGOPTIONS) are kept and named; the statement's fires first.
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute(SCHEMA_LOCK)
        result = serve(tmp_path, pg_url, PGOPTIONS="-c lock_timeout=60s -c statement_timeout=400ms")
    assert_refused(result, tmp_path, "statement_timeout=400ms", "nothing was changed")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('tarash_router_jobs')").fetchone() == (None,)


async def test_instances_starting_together_on_an_empty_database_create_the_schema_once(pg_url: str) -> None:
    stores = [PostgresJobStore(pg_url) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM tarash_router_meta").fetchall() == [(str(SCHEMA_VERSION),)]


async def test_each_due_webhook_is_claimed_by_one_instance_until_its_try_is_recorded(pg_url: str) -> None:
    a, b = PostgresJobStore(pg_url), PostgresJobStore(pg_url)
    await a.open()
    await b.open()
    try:
        now = utc_now()
        for i in range(8):
            await a.insert(job(f"job_{i}"))
            due = now + timedelta(hours=1) if i == 6 else now  # job_6's next try is not due yet
            await a.put_outbox(OutboxMessage(f"msg_{i}", f"job_{i}", "http://hook", now,
                                             status="waiting" if i == 7 else "pending", next_attempt_at=due))
        mine, theirs = await asyncio.gather(a.claim_outbox("A", now, 10, 30), b.claim_outbox("B", now, 10, 30))
        assert {m.id for m in mine} | {m.id for m in theirs} == {f"msg_{i}" for i in range(6)}
        assert not {m.id for m in mine} & {m.id for m in theirs}  # never both
        assert await b.claim_outbox("B", now, 10, 30) == []  # every claim is live
        tried = (mine or theirs)[0]
        tried.attempts, tried.next_attempt_at = 1, now  # a try recorded (retry due now) ends its claim
        await a.put_outbox(tried)
        assert [m.id for m in await b.claim_outbox("B", now, 10, 30, ids=[tried.id, "msg_6"])] == [tried.id]
        await b.release_outbox("B")  # a clean stop gives its claims up at once
        assert tried.id in {m.id for m in await a.claim_outbox("A", now, 10, 30)}
        await a.put_outbox(OutboxMessage("msg_8", "job_0", "http://hook", now, status="pending", next_attempt_at=now))
        assert [m.id for m in await a.claim_outbox("A", now, 10, 0.2)] == ["msg_8"]
        await asyncio.sleep(0.3)  # A died mid-try: its claim lapses and comes back
        assert [m.id for m in await b.claim_outbox("B", now, 10, 30)] == ["msg_8"]
    finally:
        await a.close()
        await b.close()


async def test_a_try_recorded_after_its_claim_was_taken_over_is_refused(pg_url: str) -> None:
    """Fenced like a job's save: A's try outlives its claim, B claims the message, tries and records it delivered;
    A's late outcome (a retry) must not overwrite that, or the receiver would be sent it once more."""
    a, b = PostgresJobStore(pg_url), PostgresJobStore(pg_url)
    await a.open()
    await b.open()
    try:
        now = utc_now()
        await a.insert(job("job_1"))
        await a.put_outbox(OutboxMessage("msg_1", "job_1", "http://hook", now, status="pending", next_attempt_at=now))
        [late] = await a.claim_outbox("A", now, 10, 0.2)
        await asyncio.sleep(0.3)  # A's claim lapses while its try hangs
        [taken] = await b.claim_outbox("B", now, 10, 30)
        taken.attempts, taken.status, taken.delivered_at = 1, "delivered", now
        assert await b.record_outbox_try(taken, "B")
        late.attempts, late.next_attempt_at = 1, now + timedelta(seconds=5)
        assert not await a.record_outbox_try(late, "A")  # refused: nothing written
        stored = await a.outbox_for_job("job_1")
        assert stored is not None and stored.status == "delivered" and stored.attempts == 1
        assert not await b.record_outbox_try(taken, "B")  # recorded once: the claim ended with it
        assert await a.claim_outbox("A", now, 10, 30) == []  # delivered: nothing left to try
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresJobStore]:
    """An open store on a fresh database."""
    opened = PostgresJobStore(pg_url)
    await opened.open()
    yield opened
    await opened.close()


async def write_transactions(pg_url: str) -> int:
    """Transaction ids assigned so far (each transaction that writes takes one; asking takes one too)."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        return int((await (await conn.execute("SELECT pg_current_xact_id()::text::bigint")).fetchone())[0])


async def test_the_hot_writes_of_one_loop_turn_share_one_transaction(store: PostgresJobStore, pg_url: str) -> None:
    # Inserts, saves and events issued together go out in one pipelined transaction (router.jobs.postgres_batch):
    # 30 inserts in one commit, then 60 saves and events in one more, each caller with its own result.
    jobs = [job(f"job_{i}", worker="a") for i in range(30)]
    before = await write_transactions(pg_url)
    assert await asyncio.gather(*(store.insert(j, lease_seconds=30) for j in jobs)) == [True] * 30
    assert await write_transactions(pg_url) - before == 2  # the inserts' transaction, and the question's
    for j in jobs:
        j.status = "running"
    before = await write_transactions(pg_url)
    writes = [store.save(j) for j in jobs] + [store.append_event(j.id, 1, "update", {"progress_percent": 5})
                                             for j in jobs]
    assert await asyncio.gather(*writes) == [True] * 30 + [None] * 30
    assert await write_transactions(pg_url) - before == 2
    assert [e[1] for e in await store.events("job_7")] == ["update"]
    assert (await store.get("job_7")).status == "running"  # type: ignore[union-attr]
    # Fenced as alone: a save by an instance that does not hold the job is refused, the others are kept.
    stolen = job("job_3", worker="b")
    assert await asyncio.gather(store.save(stolen), store.save(jobs[4])) == [False, True]


async def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_is_kept(store: PostgresJobStore) -> None:
    good, bad = job("job_good", worker="a"), job("job_bad", worker="a")
    results = await asyncio.gather(store.insert(good, lease_seconds=30),
                                   store.insert(bad, lease_seconds=30, body="{not json"),
                                   store.append_event("job_good", 1, "update", {}), return_exceptions=True)
    assert results[0] is True and results[2] is None
    assert isinstance(results[1], psycopg.errors.InvalidTextRepresentation)  # what it raises alone too
    assert await store.get("job_good") is not None and await store.get("job_bad") is None
    assert [e[1] for e in await store.events("job_good")] == ["update"]


async def test_a_release_lands_after_the_writes_issued_before_it(store: PostgresJobStore) -> None:
    # A save still in its batch when the instance releases its jobs (a stop): it is committed first, so it is
    # kept (the lease was still this instance's) and the release then frees the row.
    held = job("job_held", worker="a")
    assert await store.insert(held, lease_seconds=30)
    held.status = "running"
    assert await asyncio.gather(store.save(held), store.release("a")) == [True, None]
    stored = await store.get("job_held")
    assert stored is not None and stored.status == "running" and stored.worker is None


async def test_a_write_whose_caller_stopped_waiting_before_its_batch_went_out_is_not_made(
        store: PostgresJobStore) -> None:
    left = asyncio.create_task(store.insert(job("job_left", worker="a"), lease_seconds=30))
    await asyncio.sleep(0)  # queued for this loop turn's batch
    left.cancel()
    assert await store.insert(job("job_kept", worker="a"), lease_seconds=30)
    assert left.cancelled() and await store.get("job_left") is None


class PoolThatSwallows:
    """psycopg_pool's wait for a free connection, which is Python 3.11's ``asyncio.wait_for``; handed a connection
    in the loop turn its waiting task is cancelled, that ``wait_for`` returns instead of raising."""

    def __init__(self, real: Any) -> None:
        self.real, self.free = real, asyncio.get_running_loop().create_future()

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float) -> AsyncIterator[Any]:
        await asyncio.wait_for(self.free, timeout)
        async with self.real.connection(timeout=timeout) as conn:
            yield conn


async def test_a_cancel_that_met_the_wait_for_a_connection_still_cancels(store: PostgresJobStore) -> None:
    # Swallowed, it left JobService._claim_forever running on after a stop cancelled it, and the stop hung.
    pool = store._pool = PoolThatSwallows(store._pool)  # noqa: SLF001 - the library's wait, not ours
    try:
        reading = asyncio.create_task(store.get("job_x"))
        await asyncio.sleep(0.05)  # waiting for a connection
        pool.free.set_result(None)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
    finally:
        store._pool = pool.real  # noqa: SLF001
