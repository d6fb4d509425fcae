"""The daemon with its event loop saturated (a task that blocks it 20 ms per iteration, so the pacer sees it
behind and holds due polls up to their slack): every job still completes, with exactly one vendor submit each,
against the fal emulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.daemon.conftest import StartDaemon
from tests.emulators.fal import FalEmulator


@contextlib.asynccontextmanager
async def saturated_loop(block_seconds: float = 0.02) -> AsyncIterator[None]:
    """Every loop iteration takes at least ``block_seconds``: the pacer's timers run late, so it is behind."""

    async def hog() -> None:
        while True:
            time.sleep(block_seconds)  # on purpose: CPU the loop cannot give to anything else
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fal_route(fal: FalEmulator) -> str:
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "EMULATED_FAL_KEY"
poll_interval = 0.05
max_poll_attempts = 1000
timeout = 60
"""


async def test_jobs_finish_with_one_submit_each_while_the_loop_is_saturated(
        start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATED_FAL_KEY", "test-key")
    async with FalEmulator(polls_to_complete=4) as fal:
        daemon = await start_daemon(fal_route(fal))
        async with saturated_loop():
            ids = []
            for i in range(8):
                status, body, _ = await daemon.request("POST", "/v1/jobs",
                                                       json={"model": "video", "prompt": f"fox {i}"})
                assert status == 202, body
                ids.append(body["id"])
            async with asyncio.timeout(30):
                while True:
                    jobs = [(await daemon.request("GET", f"/v1/jobs/{job_id}"))[1] for job_id in ids]
                    if all(job["status"] not in ("queued", "running") for job in jobs):
                        break
                    await asyncio.sleep(0.05)
        assert [job["status"] for job in jobs] == ["completed"] * 8
        assert all(job["result"]["video"].startswith(fal.url) for job in jobs)
        assert fal.calls["submit"] == 8 and not fal.repeated_submits()
        assert fal.calls["status"] >= 8 * 4  # each job polled until its vendor job ended
