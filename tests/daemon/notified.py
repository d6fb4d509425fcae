"""``tarash-router serve`` as a real process that speaks sd_notify to a socket the test reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.net import free_port

SCRIPT = Path(sys.executable).parent / "tarash-router"


@dataclass
class NotifiedDaemon:
    proc: subprocess.Popen[bytes]
    base: str
    notify: socket.socket

    async def message(self) -> str:
        """The next sd_notify datagram (10 s bound: a loaded machine starts Python slowly)."""
        loop = asyncio.get_running_loop()
        return (await asyncio.wait_for(loop.sock_recv(self.notify, 1024), 10)).decode()

    async def exit_code(self) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 10)

    def stderr(self) -> str:
        return self.proc.stderr.read().decode() if self.proc.stderr else ""


@contextlib.asynccontextmanager
async def notified_daemon(tmp_path: Path, routes: Path, *, stdout: int = subprocess.DEVNULL
                          ) -> AsyncIterator[NotifiedDaemon]:
    """Serve ``routes`` with JSON logs on stderr (a pipe) and NOTIFY_SOCKET set; killed on the way out."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "TARASH_ROUTER_LOG_FORMAT": "json",
           "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port)], env=env,
                            stdout=stdout, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        yield NotifiedDaemon(proc, f"http://127.0.0.1:{port}", notify)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
