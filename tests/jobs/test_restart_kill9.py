"""kill -9 the daemon while a job polls its vendor job; after a restart the job completes, submitted once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.emulators.fal import FalEmulator
from tests.served import ServedDaemon

FAL_KEY = {"EMULATED_FAL_KEY": "test-key"}
FAL_VIDEO_ROUTES = """
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{url}"
api_key_env = "EMULATED_FAL_KEY"
poll_interval = 0.02
max_poll_attempts = 1000
"""


async def test_kill_9_mid_poll_then_resume_without_resubmitting(tmp_path: Path) -> None:
    async with FalEmulator(polls_to_complete=40) as fal:
        routes = tmp_path / "routes.toml"
        routes.write_text(FAL_VIDEO_ROUTES.format(url=fal.url))
        daemon = ServedDaemon(routes, tmp_path / "data", FAL_KEY)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await daemon.ready(session)
                job_id = await daemon.post_job(session, {"model": "video", "prompt": "a fox"})
                while fal.calls["status"] < 3:  # the vendor job exists and is being polled
                    await asyncio.sleep(0.01)
                daemon.kill()
                polls_before = fal.calls["status"]
                daemon = ServedDaemon(routes, tmp_path / "data", FAL_KEY, port=daemon.port)
                await daemon.ready(session)
                job = await daemon.until_finished(session, job_id)
        finally:
            daemon.kill()
        assert job["status"] == "completed", job
        assert fal.calls["submit"] == 1  # resumed the vendor job: never paid for a second one
        assert fal.calls["status"] > polls_before and fal.calls["cancel"] == 0
        assert job["result"]["video"].startswith(fal.url) and len(fal.jobs) == 1
        assert job["execution_metadata"]["attempts"][0]["request_id"] == next(iter(fal.jobs))
