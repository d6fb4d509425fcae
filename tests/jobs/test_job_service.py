"""JobService as a library: resume after a crash without a second submit, concurrency limit, retention."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import router
from router.handler import PollStatus, ProviderHandler, ProviderJob
from router.jobs import JobRecord, JobService, JobStore
from router.jobs import service as service_module
from router.jobs.memory import MemoryJobStore
from router.jobs.service import IdempotencyKeyReusedError
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import encoded_body
from router.models import VideoGenerationConfig, VideoGenerationRequest, VideoGenerationResponse, utc_now
from router.orchestrator import ChainObserver
from router.routes import Route
from tests.jobs.stores import STORES, FakeClock
from tests.waiting import until

_names = itertools.count()


class Vendor(ProviderHandler):
    """A stepped vendor that counts submits across service instances and completes when told to."""

    requires_api_key = False

    def __init__(self) -> None:
        self.submits = 0
        self.cancels = 0
        self.done = asyncio.Event()
        self.fail_after_accept = False
        self.submit_gate: asyncio.Event | None = None  # when set, submits wait for it
        self.video_url = "https://cdn.example/{id}.mp4"

    def poll_delay(self, config: Any) -> float:
        return 0.005

    async def submit(self, kind, config, request):  # type: ignore[no-untyped-def,override]
        self.submits += 1
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        return ProviderJob(id=f"vendor-{self.submits}", data={"n": self.submits})

    async def poll(self, kind, config, job):  # type: ignore[no-untyped-def,override]
        if self.fail_after_accept:
            return PollStatus(status="failed", raw={"reason": "vendor crashed"})
        return PollStatus(status="completed" if self.done.is_set() else "processing", raw={"job": job.id})

    async def fetch_result(self, kind, config, request, job, status):  # type: ignore[no-untyped-def,override]
        return VideoGenerationResponse(request_id="", video=self.video_url.format(id=job.id))

    async def cancel(self, kind, config, job):  # type: ignore[no-untyped-def,override]
        self.cancels += 1


def register() -> Any:
    handler = Vendor()
    name = f"vendor-{next(_names)}"
    router.register_provider(name, handler)
    handler.name = name  # type: ignore[attr-defined]
    return handler


@pytest.fixture
def vendor() -> Any:
    handler = register()
    yield handler
    router.unregister_provider(handler.name)


@pytest.fixture
def second_vendor() -> Any:
    handler = register()
    yield handler
    router.unregister_provider(handler.name)


def route(*providers: str) -> Route:
    chain = tuple(VideoGenerationConfig(provider=p, model="m", poll_interval=0.005) for p in providers)
    return Route(name="r", kind="video", description="", defaults={}, chain=chain)


@pytest.fixture(params=sorted(STORES))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """Each store of the contract suite, for the service tests that need no restart."""
    kind = STORES[request.param]
    return kind.make(kind.storage_for(request))


async def completed_in(service: JobService, job_id: str) -> bool:
    """For ``until``: the job as the service answers it has completed."""
    return (await service.get(job_id)).status == "completed"  # type: ignore[union-attr]


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


async def test_a_crash_between_submit_and_its_answer_never_submits_again(tmp_path: Path, vendor: Vendor) -> None:
    vendor.submit_gate = asyncio.Event()  # the submit is out; its answer never comes back to this process
    first = JobService(SQLiteJobStore(tmp_path / "jobs.db"), submit_grace=0)
    await first.start()
    job, _ = await first.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def submit_recorded() -> bool:
        stored = await first.get(job.id)
        return vendor.submits == 1 and stored is not None and stored.submitting == 1

    await until(submit_recorded)
    await first.stop()  # the process goes away before the vendor's answer is recorded
    vendor.submit_gate.set()

    second = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await second.start()

    async def ended() -> bool:
        stored = await second.get(job.id)
        return stored is not None and stored.finished

    await until(ended)
    stored = await second.get(job.id)
    assert vendor.submits == 1  # the vendor may hold a job from the first submit: never a second one
    assert stored.status == "failed" and stored.error["code"] == "ambiguous_submit"  # type: ignore[union-attr,index]
    await second.stop()


async def SQLiteJobStore_get(tmp_path: Path, job_id: str) -> Any:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    await store.open()
    try:
        return await store.get(job_id)
    finally:
        await store.close()


async def test_vendor_failure_after_accept_falls_back(any_store: JobStore, vendor: Vendor) -> None:
    vendor.fail_after_accept = True
    service = JobService(any_store)
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


async def test_concurrency_limit_keeps_others_queued(any_store: JobStore, vendor: Vendor) -> None:
    service = JobService(any_store, max_running=2)
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


class SlowClaims(MemoryJobStore):
    """A store whose claims wait for a gate, as a loaded database's do: a create can land meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        await self.gate.wait()
        return await super().claim(worker, limit, lease_seconds)


async def test_a_claim_in_flight_and_a_create_never_share_a_slot(vendor: Vendor) -> None:
    store = SlowClaims()
    service = JobService(store, max_running=1)
    await service.start()
    await asyncio.sleep(0.01)  # the claim loop's first claim, counting one free slot, waits at the gate
    creating = [asyncio.create_task(service.create(route(vendor.name), VideoGenerationRequest(prompt=str(i))))
                for i in range(2)]  # type: ignore[attr-defined]
    await asyncio.sleep(0.01)
    store.gate.set()
    jobs = [job for job, _ in await asyncio.gather(*creating)]

    async def one_submitted() -> bool:
        return vendor.submits >= 1

    await until(one_submitted)
    await asyncio.sleep(0.05)
    statuses = [(await service.get(j.id)).status for j in jobs]  # type: ignore[union-attr]
    assert sorted(statuses) == ["queued", "running"] and vendor.submits == 1
    vendor.done.set()

    async def all_done() -> bool:
        return [(await service.get(j.id)).status for j in jobs] == ["completed"] * 2  # type: ignore[union-attr]

    await until(all_done)
    await service.stop()


class LapsingLeases(MemoryJobStore):
    """A store whose lease clock the test moves (as when the store was unreachable past the lease, so no
    renewal reached it), and that tells each claim's jobs."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(clock=lambda: self.now)
        self.claimed: list[str] = []

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        jobs = await super().claim(worker, limit, lease_seconds)
        self.claimed += [job.id for job in jobs]
        return jobs


async def test_a_lapsed_lease_of_a_job_running_here_is_claimed_back_not_started_twice(
        vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "CLAIM_POLL_SECONDS", 0.02)  # nobody announces a lapsed lease: the poll finds it
    store = LapsingLeases()
    service = JobService(store)
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def polling() -> bool:
        return vendor.submits == 1 and (await service.get(job.id)).vendor_job is not None  # type: ignore[union-attr]

    await until(polling)
    store.now += 3600  # its lease lapsed while the job runs on here

    async def claimed_back() -> bool:
        return job.id in store.claimed

    await until(claimed_back)
    await asyncio.sleep(0.02)  # an adopt of the claim would launch now
    assert len([t for t in asyncio.all_tasks() if t.get_name() == f"job {job.id}"]) == 1
    vendor.done.set()

    await until(lambda: completed_in(service, job.id))
    assert [event for _, event, _ in await store.events(job.id)].count("result") == 1 and vendor.submits == 1
    await service.stop()


async def test_retention_prunes_finished_jobs(any_store: JobStore) -> None:
    clock = FakeClock()
    service = JobService(any_store, retention_days=1, clock=clock)
    await service.start()
    job, _ = await service.create(route("mock"), VideoGenerationRequest(prompt="x"))

    async def done() -> bool:
        return (await service.get(job.id)).finished  # type: ignore[union-attr]

    await until(done)
    assert await service.prune() == 0
    clock.advance(timedelta(days=1) - timedelta(seconds=1))
    assert await service.prune() == 0 and await service.get(job.id) is not None
    clock.advance(timedelta(seconds=2))
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


async def stored(tmp_path: Path, job_id: str) -> JobRecord:
    job = await SQLiteJobStore_get(tmp_path, job_id)
    assert job is not None
    return job  # type: ignore[no-any-return]


async def test_resume_continues_the_chain_where_it_was(tmp_path: Path, vendor: Vendor, second_vendor: Vendor) -> None:
    """Attempt 1 failed after acceptance; the process dies while attempt 2 is submitting (no vendor id yet).
    The restart never runs attempt 1 again, and never submits attempt 2 again: the vendor may hold that job,
    so attempt 2 ends ambiguous (a video chain stops there by default)."""
    vendor.fail_after_accept = True
    second_vendor.submit_gate = asyncio.Event()
    first = JobService(SQLiteJobStore(tmp_path / "jobs.db"), submit_grace=0)
    await first.start()
    job, _ = await first.create(route(vendor.name, second_vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def second_attempt_submitting() -> bool:
        return second_vendor.submits == 1

    await until(second_attempt_submitting)
    await first.stop()
    interrupted = await stored(tmp_path, job.id)
    assert interrupted.status == "running" and len(interrupted.attempts) == 1 and interrupted.vendor_job is None
    assert interrupted.submitting == 2

    second_vendor.submit_gate.set()
    second_vendor.done.set()
    second = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await second.start()

    async def ended() -> bool:
        return (await second.get(job.id)).finished  # type: ignore[union-attr]

    await until(ended)
    ended_job = await second.get(job.id)
    attempts = ended_job.execution_metadata["attempts"]  # type: ignore[index,union-attr]
    assert vendor.submits == 1 and second_vendor.submits == 1
    assert [a["provider"] for a in attempts] == [vendor.name, second_vendor.name]  # type: ignore[attr-defined]
    assert attempts[0]["error_type"] == "GenerationFailedError" and attempts[1]["error_type"] == "AmbiguousSubmitError"
    assert ended_job.status == "failed" and ended_job.error["code"] == "ambiguous_submit"  # type: ignore[union-attr,index]
    await second.stop()


async def test_cancel_right_after_create_never_runs_it(tmp_path: Path, vendor: Vendor) -> None:
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    cancelled = await service.cancel(job.id)  # before the job's task had a chance to start
    assert cancelled is not None and cancelled.status == "cancelled"
    assert [e for e, _ in [item async for item in service.events(job.id)]] == ["error"]
    await service.stop()
    restarted = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await restarted.start()
    await asyncio.sleep(0.02)
    assert vendor.submits == 0 and (await restarted.get(job.id)).status == "cancelled"  # type: ignore[union-attr]
    await restarted.stop()


async def test_cancel_a_queued_job_at_once(any_store: JobStore, vendor: Vendor) -> None:
    service = JobService(any_store, max_running=1)
    await service.start()
    running, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="1"))  # type: ignore[attr-defined]
    waiting, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="2"))  # type: ignore[attr-defined]

    async def first_submitted() -> bool:
        return vendor.submits == 1

    await until(first_submitted)
    assert (await service.cancel(waiting.id)).status == "cancelled"  # type: ignore[union-attr]
    assert (await service.get(running.id)).status == "running" and vendor.cancels == 0  # type: ignore[union-attr]
    vendor.done.set()

    async def first_completed() -> bool:
        return (await service.get(running.id)).status == "completed"  # type: ignore[union-attr]

    await until(first_completed)
    assert vendor.submits == 1
    await service.stop()


async def test_idempotency_key_one_job_even_when_retries_race(any_store: JobStore, vendor: Vendor) -> None:
    service = JobService(any_store)
    await service.start()
    request = VideoGenerationRequest(prompt="x")
    results = await asyncio.gather(*(service.create(route(vendor.name), request, owner="alice",  # type: ignore[attr-defined]
                                                    idempotency_key="k1") for _ in range(5)))
    assert len({job.id for job, _ in results}) == 1 and sum(created for _, created in results) == 1
    # Keys are per owner: bob's "k1" is another job.
    bobs, created = await service.create(route(vendor.name), request, owner="bob", idempotency_key="k1")  # type: ignore[attr-defined]
    assert created and bobs.id != results[0][0].id
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        await service.create(route(vendor.name), VideoGenerationRequest(prompt="other"), owner="alice",  # type: ignore[attr-defined]
                             idempotency_key="k1")
    assert caught.value.job.id == results[0][0].id

    async def both_submitted() -> bool:
        return vendor.submits >= 2

    await until(both_submitted)
    await asyncio.sleep(0.02)  # room for a wrong third submit to show up
    await service.stop()
    assert vendor.submits == 2


async def test_events_end_with_the_outcome_even_if_its_event_was_lost(tmp_path: Path) -> None:
    """A kill between saving the finished record and writing its event: subscribers still get the result."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    await store.open()
    await store.insert(JobRecord(id="job_done", kind="video", route="r", request={"prompt": "x"}, chain=[],
                                 status="completed", result={"video": "https://cdn.example/v.mp4"},
                                 created_at=utc_now(), updated_at=utc_now()))
    await store.append_event("job_done", 1, "update", {"status": "processing"})
    await store.close()
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await service.start()
    events = [item async for item in service.events("job_done")]
    assert events == [("update", {"status": "processing"}), ("result", {"video": "https://cdn.example/v.mp4"})]
    await service.stop()


async def test_a_job_that_cannot_run_fails_instead_of_hanging(tmp_path: Path) -> None:
    """An unfinished job whose stored request no longer validates (e.g. written by another version)."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    await store.open()
    await store.insert(JobRecord(id="job_odd", kind="video", route="r", request={"prompt": ["not", "a", "string"]},
                                 chain=[{"provider": "mock", "model": "m"}], status="running",
                                 created_at=utc_now(), updated_at=utc_now()))
    await store.close()
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await service.start()
    events = [item async for item in service.events("job_odd")]
    job = await service.get("job_odd")
    assert job is not None and job.status == "failed" and job.error["code"] == "internal_error"  # type: ignore[index]
    assert events == [("error", job.error)]
    await service.stop()


async def test_prune_and_delete_remove_local_media_copies(tmp_path: Path) -> None:
    media = tmp_path / "media"
    clock = FakeClock()
    service = JobService(SQLiteJobStore(tmp_path / "jobs.db"), retention_days=1, media_dir=media, clock=clock)
    await service.start()
    old, _ = await service.create(route("mock"), VideoGenerationRequest(prompt="old"))
    gone, _ = await service.create(route("mock"), VideoGenerationRequest(prompt="deleted"))

    async def both_done() -> bool:
        return all([(await service.get(j.id)).finished for j in (old, gone)])  # type: ignore[union-attr]

    await until(both_done)
    media.mkdir(exist_ok=True)
    for job in (old, gone):
        (media / f"{job.id}.mp4").write_bytes(b"video")
    await service.delete(gone.id)
    assert not (media / f"{gone.id}.mp4").exists() and await service.get(gone.id) is None
    clock.advance(timedelta(days=2))
    assert await service.prune() == 1 and not (media / f"{old.id}.mp4").exists()
    await service.stop()


class HoldAfterSuccess(ChainObserver):
    """Another observer (metrics, logs) that is slow to hear an attempt succeeded: the process dies meanwhile."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def attempt_finished(self, attempt: Any, config: Any, error: Any) -> None:
        if error is None:
            self.reached.set()
            await asyncio.Event().wait()


async def test_kill_after_a_successful_attempt_does_not_run_the_next_one(
    tmp_path: Path, vendor: Vendor, second_vendor: Vendor
) -> None:
    hold = HoldAfterSuccess()
    vendor.done.set()
    first = JobService(SQLiteJobStore(tmp_path / "jobs.db"), observers=lambda route, kind: [hold])
    await first.start()
    job, _ = await first.create(route(vendor.name, second_vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    await asyncio.wait_for(hold.reached.wait(), 2)
    await first.stop()  # between the attempt's success and the job's completed record

    second = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await second.start()

    async def completed() -> bool:
        return (await second.get(job.id)).status == "completed"  # type: ignore[union-attr]

    await until(completed)
    done = await second.get(job.id)
    assert vendor.submits == 1 and second_vendor.submits == 0  # re-polled the finished vendor job, no fallback
    assert done.result["video"] == "https://cdn.example/vendor-1.mp4"  # type: ignore[index,union-attr]
    assert [a["status"] for a in done.execution_metadata["attempts"]] == ["success"]  # type: ignore[index,union-attr]
    await second.stop()


async def test_result_is_saved_before_the_media_copy(tmp_path: Path, vendor: Vendor) -> None:
    """A slow vendor CDN must not hold the result hostage: the job is completed before the copy starts, and a
    kill during the copy leaves it completed (served from the vendor URL)."""
    copying = asyncio.Event()

    async def slow_cdn(request: web.Request) -> web.StreamResponse:
        copying.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/{name}", slow_cdn)
    async with TestServer(app, host="127.0.0.1") as cdn:
        vendor.video_url = str(cdn.make_url("/")) + "{id}.mp4"
        vendor.done.set()
        service = JobService(SQLiteJobStore(tmp_path / "jobs.db"), media_dir=tmp_path / "media")
        await service.start()
        job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
        await asyncio.wait_for(copying.wait(), 2)
        assert (await service.get(job.id)).status == "completed"  # type: ignore[union-attr]
        await service.stop()
    restarted = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await restarted.start()
    stored_job = await restarted.get(job.id)
    assert stored_job.status == "completed" and "local_copy" not in stored_job.result["provider_metadata"]  # type: ignore[index,union-attr]
    assert vendor.submits == 1
    await restarted.stop()


async def test_an_older_job_store_is_refused_clearly(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "jobs.db")
    old.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, body TEXT)")
    old.commit()
    old.close()
    with pytest.raises(RuntimeError, match="schema version 0, this daemon needs 3"):
        await SQLiteJobStore(tmp_path / "jobs.db").open()


class HeldSaves(SQLiteJobStore):
    """A SQLite store whose saves wait for a gate before they are written, and that counts its reads of one job."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.gate.set()
        self.gets = 0

    async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
        await self.gate.wait()
        return await super().save(job, body=body)

    async def get(self, job_id: str) -> JobRecord | None:
        self.gets += 1
        return await super().get(job_id)


async def test_a_job_running_here_is_read_from_its_last_committed_record_never_from_a_state_not_yet_written(
        tmp_path: Path, vendor: Vendor) -> None:
    """On a store only this process writes, a GET of a running job is answered from memory (no wait behind the
    store's writer and reader threads), and is exactly what the store would answer: never a write still going out."""
    store = HeldSaves(tmp_path / "jobs.sqlite3")
    service = JobService(store)
    await service.start()

    async def same_as_stored(job_id: str) -> JobRecord:
        gets = store.gets
        answered = await service.get(job_id)
        assert store.gets == gets  # from memory
        stored = await store.get(job_id)
        assert stored is not None and answered == service._with_progress(stored)  # noqa: SLF001 - same live progress
        return answered

    store.gate.clear()  # the submit record (the job's first save) waits
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    assert job.status == "running" and job.submitting == 1  # in the running record, not in the store yet
    queued = await same_as_stored(job.id)
    assert queued.status == "queued" and queued.submitting is None
    store.gate.set()

    async def polling() -> bool:
        return (await service.get(job.id)).vendor_job is not None  # type: ignore[union-attr]

    await until(polling)
    running = await same_as_stored(job.id)
    assert running.status == "running" and running.vendor_job is not None and vendor.submits == 1
    vendor.done.set()

    await until(lambda: completed_in(service, job.id))
    assert (await service.get(job.id)) == await store.get(job.id)
    await service.stop()


async def test_each_write_of_a_job_running_here_is_encoded_once_for_the_store_and_the_committed_copy(
        tmp_path: Path, vendor: Vendor) -> None:
    class BodiesSeen(SQLiteJobStore):
        given: list[bool] = []

        async def insert(self, job: JobRecord, **kw: Any) -> bool:
            self.given.append(kw.get("body") == encoded_body(job))
            return await super().insert(job, **kw)

        async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
            self.given.append(body == encoded_body(job))
            return await super().save(job, body=body)

    store = BodiesSeen(tmp_path / "jobs.sqlite3")
    service = JobService(store)
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    vendor.done.set()

    await until(lambda: completed_in(service, job.id))
    await service.stop()
    assert len(store.given) >= 4 and all(store.given)  # insert, submit record, vendor job, end (at least)


async def test_a_store_other_processes_write_is_read_every_time(vendor: Vendor) -> None:
    """Another instance may take a job over and change it: on a shared store the service never answers from memory."""
    class Shared(MemoryJobStore):
        shared = True
        gets = 0

        async def get(self, job_id: str) -> JobRecord | None:
            self.gets += 1
            return await super().get(job_id)

    store = Shared()
    service = JobService(store)
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    await service.get(job.id)
    assert store.gets == 1
    vendor.done.set()
    await service.stop()


class CountedClaims(MemoryJobStore):
    claims = 0

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        self.claims += 1
        return await super().claim(worker, limit, lease_seconds)


async def test_a_freed_slot_claims_only_when_a_job_may_be_waiting_for_one(
        vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 running jobs ending made a claim each (a scan of every unfinished row) though nothing waited; a job
    queued for lack of room still gets the slot its predecessor frees at once, without the claim poll."""
    monkeypatch.setattr(service_module, "CLAIM_POLL_SECONDS", 3600.0)
    store = CountedClaims()
    service = JobService(store, max_running=1)
    await service.start()
    await asyncio.sleep(0.01)
    assert store.claims == 1  # the start's

    quick, _ = await service.create(route("mock"), VideoGenerationRequest(prompt="quick"))
    await until(lambda: completed_in(service, quick.id))
    await asyncio.sleep(0.02)
    assert store.claims == 1  # its end freed a slot nothing waited for
    running, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="a"))  # type: ignore[attr-defined]
    waiting, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="b"))  # type: ignore[attr-defined]
    await asyncio.sleep(0.02)
    assert (await service.get(waiting.id)).status == "queued" and store.claims == 1  # type: ignore[union-attr]
    vendor.done.set()
    await until(lambda: completed_in(service, waiting.id))  # claimed once the first one's slot was free
    await asyncio.sleep(0.02)
    # That claim filled the room, so another job may have been left waiting: its end claims once more.
    assert store.claims == 3 and vendor.submits == 2
    await service.stop()


class HeldTerminalEvents(MemoryJobStore):
    """A store whose terminal events wait for a gate, and that counts lease renewals."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.renewals = 0

    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None:
        if event in ("result", "error"):
            await self.gate.wait()
        await super().append_event(job_id, seq, event, data)

    async def renew(self, worker: str, lease_seconds: float) -> dict[str, bool]:
        self.renewals += 1
        return await super().renew(worker, lease_seconds)


async def test_a_lease_renewal_never_cuts_off_a_job_finished_here_while_it_stores_its_outcome(vendor: Vendor) -> None:
    """A finished job holds no lease, so a renewal leaves it out; its task, still storing the terminal event (or
    releasing its webhook), is not cancelled as if another instance had taken the job."""
    store = HeldTerminalEvents()
    service = JobService(store, lease_seconds=0.03)  # a renewal every 10 ms
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]
    vendor.done.set()

    async def saved_completed() -> bool:
        return (await store.get(job.id)).status == "completed"  # type: ignore[union-attr]

    await until(saved_completed)
    renewals = store.renewals

    async def renewed_since() -> bool:
        return store.renewals >= renewals + 2

    await until(renewed_since)  # while its terminal event waits
    store.gate.set()

    async def result_stored() -> bool:
        return "result" in [event for _, event, _ in await store.events(job.id)]

    await until(result_stored)
    await service.stop()


async def test_a_cancel_asked_elsewhere_whose_notice_never_came_is_carried_out_at_the_next_renewal(
        vendor: Vendor) -> None:
    """Another instance marks the job (``request_cancel``) but its notice is lost (the LISTEN connection was down,
    or a transaction pooler dropped it): the holder's next lease renewal says so, and it cancels the job and its
    vendor job."""
    store = MemoryJobStore()  # its watch hears nothing, as a lost notice
    service = JobService(store, lease_seconds=0.03)  # a renewal every 10 ms
    await service.start()
    job, _ = await service.create(route(vendor.name), VideoGenerationRequest(prompt="x"))  # type: ignore[attr-defined]

    async def submitted() -> bool:
        return vendor.submits == 1 and (await store.get(job.id)).vendor_job is not None  # type: ignore[union-attr]

    await until(submitted)
    await store.request_cancel(job.id)  # as DELETE on an instance that does not hold the job does

    async def cancelled() -> bool:
        return (await store.get(job.id)).status == "cancelled"  # type: ignore[union-attr]

    await until(cancelled)
    assert vendor.cancels == 1 and vendor.submits == 1
    await service.stop()
