"""A loopback webhook receiver (records every POST, answers scripted statuses, then 200) and a daemon whose\nPUBLIC_URL is itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router.http.app import create_app
from router.http.keys import DAEMON
from router.reload import RoutesHolder
from router.settings import Settings
from tests.net import free_port, serving


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    #: Statuses to answer, in order; once used up every POST gets 200.
    script: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    async def wait(self, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        status = state.script.pop(0) if state.script else 200
        state.received.append(Received(request.path, dict(request.headers), await request.read(), status))
        state.arrived.set()
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    async with serving(app) as state.url:
        yield state


class Router:
    """A daemon on a fixed loopback port whose PUBLIC_URL is itself (so vendors can reach its webhooks)."""

    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.url = str(server.make_url("")).rstrip("/")

    @property
    def daemon(self) -> Any:
        return self.server.app[DAEMON]

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, **kw) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text.startswith(("{", "[")) else text)

    async def create(self, body: dict[str, Any], path: str = "/v1/jobs") -> str:
        status, answer = await self.call("POST", path, json=body)
        assert status in (200, 202), answer
        return str(answer["id"])

    async def finished(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                _, job = await self.call("GET", f"/v1/jobs/{job_id}")
                if job["status"] in ("completed", "failed", "cancelled"):
                    return job  # type: ignore[no-any-return]
                await asyncio.sleep(0.01)

    async def webhook_ended(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The job once its webhook is recorded delivered or failed: the receiver hears a try before the router
        has written what it answered."""
        async with asyncio.timeout(timeout):
            while True:
                _, job = await self.call("GET", f"/v1/jobs/{job_id}")
                if job.get("webhook", {}).get("status") in ("delivered", "failed"):
                    return job  # type: ignore[no-any-return]
                await asyncio.sleep(0.01)

    async def metric(self, name: str, **labels: str) -> float:
        _, text = await self.call("GET", "/metrics")
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}}") or (not labels and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


StartRouter = Callable[..., Awaitable[Router]]


@pytest.fixture
async def start_router(tmp_path: Path) -> AsyncIterator[StartRouter]:
    """``await start_router(routes_toml, **settings)``; ``port=`` reuses a port (a restart), ``data=`` a dir."""
    running: list[Router] = []

    async def start(routes: str, *, port: int | None = None, **settings: Any) -> Router:
        port = port or free_port()
        path = tmp_path / "routes.toml"
        path.write_text(routes)
        settings.setdefault("public_url", f"http://127.0.0.1:{port}")
        config = Settings(_env_file=None, routes=path, data_dir=tmp_path / "data", **settings)
        server = TestServer(create_app(config, RoutesHolder.load(path)), host="127.0.0.1", port=port)
        await server.start_server()
        router = Router(server, aiohttp.ClientSession())
        running.append(router)
        return router

    yield start
    for router in running:
        await stop(router)


async def stop(router: Router) -> None:
    """A graceful stop (jobs detach and resume at the next start). Stopping twice is harmless."""
    if not router.session.closed:
        await router.session.close()
        await router.server.close()
