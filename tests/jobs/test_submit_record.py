"""When a submit is recorded as going out, and what a stop does with the submits going out.

Recorded only once its HTTP call holds a connection slot of the provider's pool: a job still queued for a
connection when the process died sent nothing, and after the restart it is submitted normally, once; a job whose
request was out ends ``ambiguous_submit`` after the restart, never submitted again. A graceful stop (SIGTERM) lets
the submits going out be answered and recorded first, so a rolling restart leaves nothing ambiguous. The real fal
handler against the fal emulator.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers._engine.sessions import close_sessions, pool_for
from router.jobs import JobService
from router.jobs.sqlite import SQLiteJobStore
from router.models import VideoGenerationConfig, VideoGenerationRequest
from router.routes import Route
from tests.emulators._base import Fault
from tests.emulators.fal import FalEmulator
from tests.jobs.test_restart_kill9 import FAL_KEY, FAL_VIDEO_ROUTES
from tests.served import ServedDaemon
from tests.waiting import until


@pytest.fixture
async def fal(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FalEmulator]:
    monkeypatch.setenv("FAL_KEY", "test-key")
    async with FalEmulator(polls_to_complete=2) as emu:
        yield emu
        await close_sessions()  # this loop's provider pools (made with one slot below) go with it


def fal_route(fal: FalEmulator) -> Route:
    config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3", base_url=fal.url, poll_interval=0.01)
    return Route(name="video", kind="video", description="", defaults={}, chain=(config,))


def prompt_body(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt}  # what the fal handler sends for a bare prompt


async def test_a_crash_while_a_submit_waits_for_a_connection_submits_it_once_after_the_restart(
        tmp_path: Path, fal: FalEmulator) -> None:
    pool = pool_for("fal", limit=1)  # the provider's pool, with one connection
    fal.inject(Fault.HANG, step="submit")  # the first submit goes out and is never answered: it keeps the slot
    first = JobService(SQLiteJobStore(tmp_path / "jobs.db"), submit_grace=0)
    await first.start()
    out, _ = await first.create(fal_route(fal), VideoGenerationRequest(prompt="out"))

    async def out_is_out() -> bool:
        stored = await first.get(out.id)
        return fal.submits_of(prompt_body("out")) == 1 and stored is not None and stored.submitting == 1

    await until(out_is_out)
    waiting, _ = await first.create(fal_route(fal), VideoGenerationRequest(prompt="waiting"))

    async def queued_for_the_slot() -> bool:
        return pool.slots.locked() and waiting.id in first._tasks  # noqa: SLF001

    await until(queued_for_the_slot)
    await asyncio.sleep(0.05)  # it stays there: the only slot is held
    held = await first.get(waiting.id)
    assert held is not None and held.submitting is None and held.status == "queued"  # nothing recorded: nothing sent
    await first.stop()  # the process goes away (no grace: as a kill would)
    await close_sessions()  # and its connections with it

    second = JobService(SQLiteJobStore(tmp_path / "jobs.db"))
    await second.start()

    async def both_ended() -> bool:
        jobs = [await second.get(job_id) for job_id in (out.id, waiting.id)]
        return all(job is not None and job.finished for job in jobs)

    await until(both_ended)
    ended_out, ended_waiting = await second.get(out.id), await second.get(waiting.id)
    assert ended_waiting is not None and ended_waiting.status == "completed"
    assert fal.submits_of(prompt_body("waiting")) == 1  # submitted once, after the restart
    assert ended_out is not None and ended_out.status == "failed"
    assert ended_out.error is not None and ended_out.error["code"] == "ambiguous_submit"
    assert fal.submits_of(prompt_body("out")) == 1  # its request was out: never a second one
    assert fal.repeated_submits() == {}
    await second.stop()


async def test_sigterm_while_a_submit_is_out_records_its_answer_then_the_restart_resumes_it(tmp_path: Path) -> None:
    """A rolling restart: SIGTERM while the vendor holds a submit; the stop waits for its answer, records the
    vendor job id and exits; the next start polls that job to the end. One submit, nothing ambiguous."""
    async with FalEmulator(polls_to_complete=3) as fal:
        fal.submit_gate = asyncio.Event()
        routes = tmp_path / "routes.toml"
        routes.write_text(FAL_VIDEO_ROUTES.format(url=fal.url))
        daemon = ServedDaemon(routes, tmp_path / "data", FAL_KEY)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await daemon.ready(session)
                job_id = await daemon.post_job(session, {"model": "video", "prompt": "a fox"})
                await until(lambda: fal.calls["submit"] == 1)  # out, and held by the vendor
                daemon.process.send_signal(signal.SIGTERM)
                await daemon.log_line("waiting_for_submits")  # the stop waits for it...
                fal.submit_gate.set()  # ...and the vendor answers
                assert await daemon.wait() == 0
                daemon.kill()
                daemon = ServedDaemon(routes, tmp_path / "data", FAL_KEY, port=daemon.port)
                await daemon.ready(session)
                job = await daemon.until_finished(session, job_id)
        finally:
            daemon.kill()
        assert job["status"] == "completed", job
        assert fal.calls["submit"] == 1 and len(fal.jobs) == 1 and fal.calls["cancel"] == 0
        assert job["execution_metadata"]["attempts"][0]["request_id"] == next(iter(fal.jobs))
