"""Start the real daemon app on 127.0.0.1 and talk HTTP to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from router.daemon import Daemon as DaemonServices
from router.http.app import create_app
from router.http.keys import DAEMON
from router.http.slow_clients import ConnectionLimits, GuardedAppRunner
from router.reload import RoutesHolder
from router.settings import Settings

MOCK_ROUTES = """
[routes."video-fast"]
kind = "video"
defaults = { aspect_ratio = "9:16" }
[[routes."video-fast".attempts]]
provider = "mock"
model = "mock-video"
timeout = 10
mock = { polling = { status_sequence = ["queued", "processing", "completed"], progress_percentages = [0, 50, 100], delay_between_updates = 0.005 } }

[routes."video-slow"]
kind = "video"
[[routes."video-slow".attempts]]
provider = "mock"
model = "mock-slow"
timeout = 30
max_poll_attempts = 100000
mock = { polling = { status_sequence = ["queued", "processing", "completed"], delay_between_updates = 3600 } }

[routes."video-down"]
kind = "video"
[[routes."video-down".attempts]]
provider = "mock"
model = "mock-down-1"
mock = { responses = [ { error = { type = "ProviderUnavailableError", message = "vendor 503" } } ] }
[[routes."video-down".attempts]]
provider = "mock"
model = "mock-down-2"
mock = { responses = [ { error = { type = "RateLimitError", message = "slow down", retry_after = 7 } } ] }

[routes."image-fast"]
kind = "image"
defaults = { size = "16x16" }
[[routes."image-fast".attempts]]
provider = "mock"
model = "mock-image"
"""


class GuardedTestServer(TestServer):
    """A test server with the daemon's own runner (its slow-client deadlines and connection cap)."""

    def __init__(self, app: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_runner(self, **kwargs: Any) -> GuardedAppRunner:
        return GuardedAppRunner(self.app, limits=self.limits, **kwargs)


class Daemon:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession, routes_path: Path) -> None:
        self.server = server
        self.session = session
        self.routes_path = routes_path
        self.url = str(server.make_url("")).rstrip("/")

    @property
    def state(self) -> DaemonServices:
        return self.server.app[DAEMON]

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        async with self.session.request(method, self.url + path, **kw) as response:
            text = await response.text()
            try:
                import json

                body: Any = json.loads(text)
            except ValueError:
                body = text
            return response.status, body, response.headers


StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[StartDaemon]:
    servers: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(routes: str = MOCK_ROUTES, clock: Any = None, **settings: Any) -> Daemon:
        path = tmp_path / "routes.toml"
        path.write_text(routes)
        config = Settings(_env_file=None, routes=path, data_dir=tmp_path / "data", **settings)
        holder = RoutesHolder.load(path)
        extra = {"clock": clock} if clock is not None else {}
        server = GuardedTestServer(create_app(config, holder, **extra), ConnectionLimits.of(config), host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession()
        servers.append((server, session))
        return Daemon(server, session, path)

    yield start
    for server, session in servers:
        await session.close()
        await server.close()


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> Daemon:
    return await start_daemon()
