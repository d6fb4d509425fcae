"""Group commit (router/jobs/group_commit.py): concurrent writes share transactions, each caller resumes only
after its write is committed, and a failing write (or a failing COMMIT) never reports another write as kept."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.jobs import sqlite as sqlite_module
from router.jobs.group_commit import GroupCommit
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import JobRecord
from router.models import utc_now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[GroupCommit, sqlite3.Connection, list[str]]]:
    path = tmp_path / "t.sqlite3"
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript("CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                       "CREATE TABLE t (id INTEGER PRIMARY KEY, parent INTEGER"
                       " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    writer = GroupCommit(conn, asyncio.get_running_loop(), name="test-writer")
    other = sqlite3.connect(path)  # a second connection sees only what is committed
    yield writer, other, statements
    await writer.close()
    other.close()
    conn.close()


async def held(writer: GroupCommit, key: str | list[str] | None = None,
               ) -> tuple[threading.Event, asyncio.Future[object]]:
    """Keep the writer thread busy until the event is set, so what is queued meanwhile forms one batch (with
    ``key``: a write of that key's, or of those keys')."""
    gate, busy = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        gate.wait(10)

    holding = asyncio.ensure_future(writer.run(hold, key=key))
    await asyncio.to_thread(busy.wait, 10)
    return gate, holding


def insert(conn: sqlite3.Connection, row_id: int, parent: int | None = None) -> int:
    conn.execute("INSERT INTO t VALUES (?, ?)", (row_id, parent))
    return row_id


async def test_concurrent_writes_share_commits_and_are_durable_when_they_return(
        db: tuple[GroupCommit, sqlite3.Connection, list[str]]) -> None:
    writer, other, statements = db
    conn = writer._db  # noqa: SLF001

    async def write(i: int) -> None:
        assert await writer.run(insert, conn, i) == i
        # Committed before the caller resumes: another connection sees it.
        assert other.execute("SELECT COUNT(*) FROM t WHERE id=?", (i,)).fetchone()[0] == 1

    gate, holding = await held(writer)
    writes = asyncio.gather(*(write(i) for i in range(500)))
    await asyncio.sleep(0)  # every write queued
    gate.set()
    await asyncio.gather(holding, writes)
    assert statements.count("COMMIT") == 1 + 2  # the held batch, then 500 writes in MAX_BATCH = 256 per transaction


async def test_a_failing_write_fails_alone_and_leaves_nothing(
        db: tuple[GroupCommit, sqlite3.Connection, list[str]]) -> None:
    writer, other, _ = db
    conn = writer._db  # noqa: SLF001

    def two_rows_then_a_duplicate(conn: sqlite3.Connection) -> None:
        insert(conn, 100)
        insert(conn, 1)  # taken by the first write below: this write fails as a whole

    results = await asyncio.gather(writer.run(insert, conn, 1), writer.run(two_rows_then_a_duplicate, conn),
                                   writer.run(insert, conn, 2), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert [row[0] for row in other.execute("SELECT id FROM t ORDER BY id")] == [1, 2]  # no row 100


async def test_a_failing_commit_fails_every_write_of_the_batch(
        db: tuple[GroupCommit, sqlite3.Connection, list[str]]) -> None:
    writer, other, _ = db
    conn = writer._db  # noqa: SLF001
    # A deferred foreign key is checked at COMMIT: the row without a parent makes the whole COMMIT fail.
    gate, holding = await held(writer)
    batch = asyncio.gather(writer.run(insert, conn, 1), writer.run(insert, conn, 2, 99), return_exceptions=True)
    await asyncio.sleep(0)
    gate.set()
    await holding
    results = await batch
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    assert await writer.run(insert, conn, 3) == 3  # the writer goes on
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1


async def test_a_store_read_sees_every_write_queued_before_it(tmp_path: Path) -> None:
    """Reads have their own connection, yet a read never misses a write issued before it (as behind one FIFO
    thread): a webhook's delivery recorded just before a GET shows in that GET."""
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    try:
        record = JobRecord(id="job_1", kind="video", route="video", request={}, chain=[], worker="w")
        record.created_at = record.updated_at = utc_now()
        assert await store.insert(record, lease_seconds=30)
        assert store._writer is not None  # noqa: SLF001
        gate, holding = await held(store._writer)  # noqa: SLF001
        record.status = "running"
        saving = asyncio.ensure_future(store.save(record))
        await asyncio.sleep(0)  # the save is queued, not yet committed
        reading = asyncio.ensure_future(store.get("job_1"))
        await asyncio.sleep(0.05)
        assert not reading.done()  # it waits for the save queued before it
        gate.set()
        await asyncio.gather(holding, saving)
        read = await reading
        assert read is not None and read.status == "running"
    finally:
        await store.close()


async def test_a_read_of_one_key_waits_for_that_keys_writes_and_shared_ones_only(
        db: tuple[GroupCommit, sqlite3.Connection, list[str]]) -> None:
    writer, _, _ = db
    gate, holding = await held(writer, "job_a")  # job_a's write, still going on
    async with asyncio.timeout(5):
        await writer.settled("job_b")  # nothing of job_b's is queued: no wait behind job_a's write
    waiting = [asyncio.ensure_future(writer.settled(key)) for key in ("job_a", None)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)  # a read of job_a, and a read of everything, wait for it
    gate.set()
    await asyncio.gather(holding, *waiting)

    gate, shared = await held(writer)  # a write confined to no key: every read waits for it
    read_b = asyncio.ensure_future(writer.settled("job_b"))
    await asyncio.sleep(0.05)
    assert not read_b.done()
    gate.set()
    await asyncio.gather(shared, read_b)


async def test_a_write_of_several_keys_holds_reads_of_each_of_them_only(
        db: tuple[GroupCommit, sqlite3.Connection, list[str]]) -> None:
    """A claim of some jobs is such a write: a read of one of them waits for it, a read of another job does not."""
    writer, _, _ = db
    gate, holding = await held(writer, ["job_a", "job_b"])
    async with asyncio.timeout(5):
        await writer.settled("job_c")
    waiting = [asyncio.ensure_future(writer.settled(key)) for key in ("job_a", "job_b", None)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)
    gate.set()
    await asyncio.gather(holding, *waiting)
    assert writer._last_of == {}  # noqa: SLF001 - answered: no key remembers it


def _job(job_id: str, worker: str | None = None) -> JobRecord:
    record = JobRecord(id=job_id, kind="video", route="video", request={}, chain=[], worker=worker)
    record.created_at = record.updated_at = utc_now()
    return record


async def test_a_sqlite_claim_that_finds_nothing_writes_nothing_and_one_that_finds_some_holds_only_theirs(
        tmp_path: Path) -> None:
    """With every job running here, a claim is a read: a GET never waits behind it (bench.scale at 10,000 jobs)."""
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    try:
        assert await store.insert(_job("job_running", worker="A"), lease_seconds=30)
        assert store._writer is not None  # noqa: SLF001
        # The writer is busy with a third job's write: a claim that finds nothing does not queue behind it.
        gate, holding = await held(store._writer, key="job_other")  # noqa: SLF001
        async with asyncio.timeout(5):
            assert await store.claim("A", 10, 30) == []
        gate.set()
        await holding
        assert await store.insert(_job("job_queued"))
        gate, holding = await held(store._writer, key="job_other")  # noqa: SLF001 - now the claim's write queues
        claiming = asyncio.ensure_future(store.claim("A", 10, 30))
        await asyncio.sleep(0.05)
        assert not claiming.done()
        async with asyncio.timeout(5):  # a read of another job skips the claim in the queue
            assert (await store.get("job_running")).worker == "A"  # type: ignore[union-attr]
        reading = asyncio.ensure_future(store.get("job_queued"))
        await asyncio.sleep(0.05)
        assert not reading.done()  # the claimed job's read waits for its claim
        gate.set()
        await holding
        assert [job.id for job in await claiming] == ["job_queued"]
        assert (await reading).worker == "A"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_sqlite_renewal_goes_in_slices_that_writes_queued_meanwhile_go_between(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One UPDATE of every running row held the writer ~45-60 ms at 10,000 jobs, and each insert and save with it."""
    monkeypatch.setattr(sqlite_module, "RENEW_SLICE", 2)
    now = [0.0]
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3", clock=lambda: now[0])
    await store.open()
    try:
        mine = [f"job_{i}" for i in range(5)]
        for job_id in mine:
            assert await store.insert(_job(job_id, worker="A"), lease_seconds=10)
        assert await store.insert(_job("job_other", worker="B"), lease_seconds=10)
        assert store._writer is not None  # noqa: SLF001
        gate, holding = await held(store._writer, key="job_x")  # noqa: SLF001 - the first slice queues
        now[0] = 5.0
        renewing = asyncio.ensure_future(store.renew("A", 10))
        await asyncio.sleep(0.01)
        record = _job("job_0", worker="A")
        record.status = "running"
        saving = asyncio.ensure_future(store.save(record))  # queued after the first slice, before the second
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(holding, saving)
        assert not renewing.done()  # the save did not wait for the whole renewal
        assert await renewing == dict.fromkeys(mine, False)  # every lease of A's, over three slices
        now[0] = 12.0  # past the first leases: only B's lapsed
        assert [job.id for job in await store.claim("C", 10, 10)] == ["job_other"]
    finally:
        await store.close()
