"""Moving job history from SQLite to PostgreSQL with ``tarash-router jobs export`` / ``import`` (the real CLI)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from router.cli import main
from router.jobs.postgres import PostgresJobStore
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import JobRecord, SpendEntry, VendorJob
from router.models import utc_now


async def fill(path: Path) -> list[JobRecord]:
    store = SQLiteJobStore(path)
    await store.open()
    now = utc_now()
    jobs = [JobRecord(id=f"job_{i}", kind="video", route="r", request={"prompt": str(i)}, chain=[{"provider": "fal"}],
                      status=status, created_at=now, updated_at=now, owner="alice", idempotency_key=f"k{i}",
                      vendor_job=VendorJob(1, f"vendor-{i}") if status == "running" else None)
            for i, status in enumerate(["completed", "running", "failed"])]
    for job in jobs:
        await store.insert(job)
        await store.append_event(job.id, 1, "update", {"progress_percent": 50})
    await store.add_spend([SpendEntry("alice", "2026-12-01", "r", "fal", "m", 0.75, 2)])
    await store.close()
    return jobs


def test_jobs_move_from_sqlite_to_postgresql(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARASH_ROUTER_DATA_DIR", str(tmp_path / "data"))
    jobs = asyncio.run(fill(tmp_path / "data" / "jobs.sqlite3"))
    exported = tmp_path / "jobs.jsonl"
    assert main(["jobs", "export", "--out", str(exported)]) == 0
    assert len(exported.read_text().splitlines()) == 4
    monkeypatch.setenv("TARASH_ROUTER_JOB_STORE", pg_url)
    assert main(["jobs", "import", str(exported)]) == 0
    assert main(["jobs", "import", str(exported)]) == 0  # again: every job already there, nothing doubled
    err = capsys.readouterr().err
    assert "imported 3 jobs (3 events)" in err and "imported 0 jobs (0 events), 1 spend entries; 3 jobs already" in err
    assert pg_url.split("@")[0].split(":")[-1] not in err  # the password is never printed

    async def check() -> None:
        store = PostgresJobStore(pg_url)
        await store.open()
        try:
            for job in jobs:
                assert await store.get(job.id) == job  # every field, vendor job included; nobody holds it
                assert await store.events(job.id) == [(1, "update", {"progress_percent": 50})]
            assert [j.id for j in await store.claim("new", 10, 30)] == ["job_1"]  # the unfinished one resumes
            # The ledger adds up what is imported (imported twice here): import a file once.
            assert sum(e.usd for e in await store.spend("alice", "2026-12-01", "2026-12-01")) == pytest.approx(1.5)
        finally:
            await store.close()

    asyncio.run(check())


def test_a_line_that_is_not_an_export_is_refused(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARASH_ROUTER_JOB_STORE", pg_url)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "spend", "client": "a", "day": "2026-12-01", "route": "r", "provider": "p", "model": "m", '
                   '"usd": 1.0, "generations": 1}\nnot json\n')
    assert main(["jobs", "import", str(bad)]) == 1
    assert "line 2: not an exported job or spend entry" in capsys.readouterr().err
