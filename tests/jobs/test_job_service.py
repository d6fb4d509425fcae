"""JobService as a library: resume after a crash without a second submit, concurrency limit, retention."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import router
from router.handler import PollStatus, ProviderHandler, ProviderJob
from router.jobs import JobService
from router.jobs.sqlite import SQLiteJobStore
from router.models import VideoGenerationConfig, VideoGenerationRequest, VideoGenerationResponse, utc_now
from router.routes import Route

_names = itertools.count()


class Vendor(ProviderHandler):
    """A stepped vendor that counts submits across service instances and completes when told to."""

    requires_api_key = False

    def __init__(self) -> None:
        self.submits = 0
        self.cancels = 0
        self.done = asyncio.Event()
        self.fail_after_accept = False

    def poll_delay(self, config: Any) -> float:
        return 0.005

    async def submit(self, kind, config, request):  # type: ignore[no-untyped-def,override]
        self.submits += 1
        return ProviderJob(id=f"vendor-{self.submits}", data={"n": self.submits})

    async def poll(self, kind, config, job):  # type: ignore[no-untyped-def,override]
        if self.fail_after_accept:
            return PollStatus(status="failed", raw={"reason": "vendor crashed"})
        return PollStatus(status="completed" if self.done.is_set() else "processing", raw={"job": job.id})

    async def fetch_result(self, kind, config, request, job, status):  # type: ignore[no-untyped-def,override]
        return VideoGenerationResponse(request_id="", video=f"https://cdn.example/{job.id}.mp4")

    async def cancel(self, kind, config, job):  # type: ignore[no-untyped-def,override]
        self.cancels += 1


@pytest.fixture
def vendor() -> Any:
    handler = Vendor()
    name = f"vendor-{next(_names)}"
    router.register_provider(name, handler)
    handler.name = name  # type: ignore[attr-defined]
    yield handler
    router.unregister_provider(name)


def route(*providers: str) -> Route:
    chain = tuple(VideoGenerationConfig(provider=p, model="m", poll_interval=0.005) for p in providers)
    return Route(name="r", kind="video", description="", defaults={}, chain=chain)


async def until(predicate: Any, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if await predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def test_resume_after_crash_polls_the_same_vendor_job(tmp_path: Path, vendor: Vendor) -> None:
    first = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await first.start()
    job, _ = await first.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def vendor_job_persisted() -> bool:
        stored = await first.get(job.id)
        return stored is not None and stored.vendor_job is not None

    await until(vendor_job_persisted)
    await first.stop()  # the process goes away; the vendor job keeps running upstream
    assert vendor.cancels == 0 and (await SQLiteJobStore_get(tmp_path, job.id)).status == "running"

    second = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await second.start()
    vendor.done.set()

    async def completed() -> bool:
        stored = await second.get(job.id)
        return stored is not None and stored.status == "completed"

    await until(completed)
    stored = await second.get(job.id)
    assert vendor.submits == 1 and stored.result["video"] == "https://cdn.example/vendor-1.mp4"  # type: ignore[union-attr]
    assert stored.execution_metadata["attempts"][0]["request_id"] == "vendor-1"  # type: ignore[index]
    await second.stop()


async def SQLiteJobStore_get(tmp_path: Path, job_id: str) -> Any:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    await store.open()
    try:
        return await store.get(job_id)
    finally:
        await store.close()


async def test_vendor_failure_after_accept_falls_back(tmp_path: Path, vendor: Vendor) -> None:
    vendor.fail_after_accept = True
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await service.start()
    job, _ = await service.create(route(vendor.name, "mock"), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def finished() -> bool:
        stored = await service.get(job.id)
        return stored is not None and stored.finished

    await until(finished)
    stored = await service.get(job.id)
    assert stored.status == "completed"  # type: ignore[union-attr]
    attempts = stored.execution_metadata["attempts"]  # type: ignore[index]
    assert attempts[0]["error_type"] == "GenerationFailedError" and attempts[1]["provider"] == "mock"
    await service.stop()


async def test_concurrency_limit_keeps_others_queued(tmp_path: Path, vendor: Vendor) -> None:
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"), max_running=2)
    await service.start()
    jobs = [(await service.create(route(vendor.name), VideoGenerationRequest(prompt=str(i))))[0]  # type: ignore[attr-defined]
            for i in range(4)]

    async def two_running() -> bool:
        return vendor.submits == 2

    await until(two_running)
    await asyncio.sleep(0.05)
    statuses = [(await service.get(j.id)).status for j in jobs]  # type: ignore[union-attr]
    assert statuses.count("running") == 2 and statuses.count("queued") == 2 and vendor.submits == 2
    vendor.done.set()

    async def all_done() -> bool:
        return [(await service.get(j.id)).status for j in jobs] == ["completed"] * 4  # type: ignore[union-attr]

    await until(all_done)
    assert vendor.submits == 4
    await service.stop()


async def test_retention_prunes_finished_jobs(tmp_path: Path) -> None:
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"), retention_days=1)
    await service.start()
    job, _ = await service.create(route("mock"), VideoGenerationRequest(prompt="x"))

    async def done() -> bool:
        return (await service.get(job.id)).finished  # type: ignore[union-attr]

    await until(done)
    assert await service.prune() == 0
    stored = await service.get(job.id)
    stored.updated_at = utc_now() - timedelta(days=2)  # type: ignore[union-attr]
    # Write the old timestamp directly (save() would refresh it).
    row = service.store._row(stored)  # type: ignore[attr-defined]  # noqa: SLF001
    await service.store._run(lambda: service.store._db.execute(  # type: ignore[attr-defined]  # noqa: SLF001
        "UPDATE jobs SET updated_at=? WHERE id=?", (row[7], job.id)))
    assert await service.prune() == 1 and await service.get(job.id) is None
    await service.stop()


async def test_job_chain_persists_without_keys(tmp_path: Path) -> None:
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await service.start()
    config = VideoGenerationConfig(provider="mock", model="m", api_key="sk-canary-jobstore-999",
                                   provider_config={"api_key_env": "MY_KEY"})
    job, _ = await service.create(Route("r", "video", "", {}, (config,)), VideoGenerationRequest(prompt="x"))
    await service.stop()
    raw = (tmp_path / "jobs.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("jobs.db-*"))
    assert b"sk-canary-jobstore-999" not in raw and b"MY_KEY" in raw
