"""``tarash-router serve`` as a real process on a loopback port: started, waited for, signalled, killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.net import free_port

SCRIPT = Path(sys.executable).parent / "tarash-router"


class ServedDaemon:
    """One daemon process with JSON logs appended to ``log`` (default ``<data>.log``; a restart on the same
    log keeps the earlier lines) and no sd_notify socket."""

    def __init__(self, routes: Path, data: Path, env: Mapping[str, str] = {}, *, port: int | None = None,
                 log: Path | None = None, name: str = "daemon") -> None:
        self.name, self.port = name, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or data.with_suffix(".log")
        environ = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(data), "TARASH_ROUTER_LOG_FORMAT": "json", **env}
        environ.pop("NOTIFY_SOCKET", None)
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(self.port)],
                                        env=environ, stdout=subprocess.DEVNULL, stderr=self.log)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        """Until ``/readyz`` answers 200 (20 s at most: a loaded machine starts Python slowly)."""
        for _ in range(1000):
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name} did not become ready (exit code {self.process.poll()})")

    async def post_job(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> str:
        """``POST /v1/jobs``; the new job's id (asserting the 202)."""
        async with session.post(self.url + "/v1/jobs", json=body) as response:
            assert response.status == 202, await response.text()
            return str((await response.json())["id"])

    async def until_finished(self, session: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}`` until it is completed or failed (10 s at most); the last answer."""
        for _ in range(500):
            async with session.get(f"{self.url}/v1/jobs/{job_id}") as response:
                job: dict[str, Any] = await response.json()
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.02)
        return job

    async def log_line(self, event: str, timeout: float = 10.0) -> None:
        """Until the log holds a line of ``event``."""
        async with asyncio.timeout(timeout):
            while f'"event": "{event}"' not in self.log_path.read_text(errors="replace"):
                assert self.process.poll() is None, f"{self.name} exited before logging {event}"
                await asyncio.sleep(0.01)

    async def wait(self, timeout: float = 10.0) -> int:
        return await asyncio.to_thread(self.process.wait, timeout)

    def kill(self) -> None:
        """``kill -9`` (if still running) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()
