"""kill -9 the daemon while a job polls its vendor job; after a restart the job completes, submitted once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.net import free_port
from tests.emulators.fal import FalEmulator

SCRIPT = Path(sys.executable).parent / "tarash-router"


def start(routes: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(data), "TARASH_ROUTER_LOG_FORMAT": "json",
           "EMULATED_FAL_KEY": "test-key"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError("daemon did not become ready")


async def test_kill_9_mid_poll_then_resume_without_resubmitting(tmp_path: Path) -> None:
    async with FalEmulator(polls_to_complete=40) as fal:
        routes = tmp_path / "routes.toml"
        routes.write_text(f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "EMULATED_FAL_KEY"
poll_interval = 0.02
max_poll_attempts = 1000
""")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        daemon = start(routes, tmp_path / "data", port)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await wait_ready(session, base)
                async with session.post(base + "/v1/jobs", json={"model": "video", "prompt": "a fox"}) as response:
                    assert response.status == 202
                    job_id = (await response.json())["id"]
                while fal.calls["status"] < 3:  # the vendor job exists and is being polled
                    await asyncio.sleep(0.01)
                daemon.send_signal(signal.SIGKILL)
                await asyncio.get_running_loop().run_in_executor(None, daemon.wait)
                polls_before = fal.calls["status"]
                daemon = start(routes, tmp_path / "data", port)
                await wait_ready(session, base)
                for _ in range(500):
                    async with session.get(f"{base}/v1/jobs/{job_id}") as response:
                        job = await response.json()
                    if job["status"] in ("completed", "failed"):
                        break
                    await asyncio.sleep(0.02)
        finally:
            daemon.kill()
            daemon.wait()
        assert job["status"] == "completed", job
        assert fal.calls["submit"] == 1  # resumed the vendor job: never paid for a second one
        assert fal.calls["status"] > polls_before and fal.calls["cancel"] == 0
        assert job["result"]["video"].startswith(fal.url) and len(fal.jobs) == 1
        assert job["execution_metadata"]["attempts"][0]["request_id"] == next(iter(fal.jobs))
