"""Loopback helpers the tests share."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a daemon or server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: web.Application, **runner: Any) -> AsyncIterator[str]:
    """``app`` served on a free loopback port for the block; yields its base URL (``http://127.0.0.1:PORT``).
    ``runner`` goes to ``web.AppRunner`` (e.g. ``shutdown_timeout``)."""
    app_runner = web.AppRunner(app, access_log=None, **runner)
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{app_runner.addresses[0][1]}"
    finally:
        await app_runner.cleanup()
