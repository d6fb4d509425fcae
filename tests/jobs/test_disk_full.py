"""Issue 12 item 6 on a real full disk: the daemon's DATA_DIR is a small tmpfs that the test fills up.

New jobs get 503 and readiness goes false; accepted jobs wait and finish once there is room again; a vendor job
id that cannot be saved cancels that vendor job and fails the job, never submitting it again; the outage is one
log line when it starts and one when it ends. (Root only: mounting needs it; CI runs as root.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.emulators.fal import FalEmulator
from tests.served import ServedDaemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root")


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); its path (delete it to make room again)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (64 * 1024, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * chunk)
    return filler


async def test_a_full_disk_is_survived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fal = FalEmulator(api_key="fal-disk-full-key-123456")
    filled: list[Path] = []

    @web.middleware
    async def fill_on_submit(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and not filled:
            filled.append(fill(data))  # the disk fills up while the vendor answers the submit
        return response

    fal.app.middlewares.append(fill_on_submit)
    with small_filesystem(tmp_path / "data") as data:
        async with fal:
            routes = tmp_path / "routes.toml"
            routes.write_text(f"""
[routes."slow"]
kind = "video"
[[routes."slow".attempts]]
provider = "mock"
model = "mock-video"
mock = {{ polling = {{ status_sequence = ["queued", "processing", "completed"], delay_between_updates = 0.4 }} }}

[routes."fal"]
kind = "video"
[[routes."fal".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "DISK_FULL_FAL_KEY"
poll_interval = 0.01
""")
            log_path = tmp_path / "daemon.log"
            daemon = ServedDaemon(routes, data, {"TARASH_ROUTER_VENDOR_JOB_SAVE_GRACE_SECONDS": "0.3",
                                                 "DISK_FULL_FAL_KEY": fal.api_key}, log=log_path)
            base = daemon.url
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                    await daemon.ready(http)
                    slow = (await post(http, base + "/v1/jobs", {"model": "slow", "prompt": "a slow fox"}))[1]["id"]
                    vendor = (await post(http, base + "/v1/jobs", {"model": "fal", "prompt": "a fal fox"}))[1]["id"]
                    await until(lambda: asyncio.sleep(0, fal.calls["cancel"]), lambda n: n == 1)  # id unsaved

                    # The disk is full now.
                    status, body, headers = await post(http, base + "/v1/jobs", {"model": "slow", "prompt": "new"})
                    assert status == 503 and body["error"]["code"] == "job_store_unavailable"
                    assert headers["Retry-After"]
                    assert (await get(http, base + "/readyz"))[0] == 503
                    assert "tarash_router_job_store_available 0.0" in (await get(http, base + "/metrics"))[1]
                    await until(lambda: get(http, base + f"/v1/jobs/{slow}"), lambda r: r[0] == 200)
                    await until(lambda: get(http, base + "/metrics"),  # the slow job's writes fail and wait
                                lambda r: 'tarash_router_job_store_errors_total{operation="append_event"}' in r[1]
                                or 'tarash_router_job_store_errors_total{operation="save"}' in r[1])
                    assert (await get(http, base + f"/v1/jobs/{slow}"))[1]["status"] == "running"

                    filled[0].unlink()  # room again
                    done = await until(lambda: get(http, base + f"/v1/jobs/{slow}"),
                                       lambda r: r[1]["status"] == "completed")
                    assert done[1]["result"]["video"]
                    stopped = await until(lambda: get(http, base + f"/v1/jobs/{vendor}"),
                                          lambda r: r[1]["status"] == "failed")
                    assert stopped[1]["error"]["code"] == "job_store_unavailable"
                    assert fal.calls["submit"] == 1  # never submitted again
                    await until(lambda: get(http, base + "/readyz"), lambda r: r[0] == 200)
                    assert (await post(http, base + "/v1/jobs", {"model": "slow", "prompt": "new"}))[0] == 202
            finally:
                daemon.process.terminate()
                await daemon.wait()
                daemon.kill()
            events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
            names = [e["event"] for e in events]
            assert names.count("job_store_unavailable") == 1 and names.count("job_store_recovered") == 1
            assert not [e for e in events if e["event"] == "job_crashed"]


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        text = await response.text()
        return response.status, (json.loads(text) if response.content_type == "application/json" else text)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json(), response.headers


async def until(probe: Any, done: Any, attempts: int = 1000) -> Any:
    """``probe()``'s answer once ``done`` holds for it (10 ms apart; 10 s at most)."""
    answer = None
    for _ in range(attempts):
        with contextlib.suppress(aiohttp.ClientError):
            answer = await probe()
            if done(answer):
                return answer
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached; last answer: {answer!r}"[:500])
