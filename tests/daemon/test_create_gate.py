"""The create gate: past MAX_CREATES_IN_PROGRESS, a keep-alive connection is not read until a create ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from router.http.create_gate import CreateGate
from router.http.keys import CREATE_GATE
from router.http.slow_clients import ConnectionLimits
from tests.daemon.conftest import Daemon, GuardedTestServer, StartDaemon


class FakeConnection:
    def __init__(self, alive: bool = True) -> None:
        self.alive, self.reading = alive, True

    def park(self) -> None:
        self.reading = False

    def unpark(self) -> bool:
        self.reading = True
        return self.alive


class FakeRequest(dict):  # type: ignore[type-arg]
    """What ``held`` needs of a request: somewhere to put its mark."""


async def test_a_full_gate_parks_the_connection_and_each_create_that_ends_unparks_one() -> None:
    gate = CreateGate(limit=2)
    first, second, late = FakeConnection(), FakeConnection(), FakeConnection()
    with gate.held(FakeRequest()), gate.held(FakeRequest()):
        with gate.held(FakeRequest()):
            pass
        gate.after_response(first)  # two still in progress: full
        gate.after_response(second)
        assert (first.reading, second.reading, gate.parked) == (False, False, 2)
    # Both ended: each let one connection read again, oldest first.
    assert (first.reading, second.reading, gate.parked, gate.in_progress) == (True, True, 0, 0)
    gate.after_response(late)  # not full: keeps reading
    assert late.reading and gate.parked == 0


async def test_a_closed_connection_takes_no_turn() -> None:
    gate = CreateGate(limit=1)
    gone, waiting = FakeConnection(alive=False), FakeConnection()
    with gate.held(FakeRequest()):
        gate.after_response(gone)
        gate.after_response(waiting)
    assert waiting.reading and gate.parked == 0


async def test_a_parked_connection_is_read_again_after_the_longest_park_whatever_the_count() -> None:
    gate = CreateGate(limit=1, max_park=0.01)
    parked = FakeConnection()
    with gate.held(FakeRequest()):  # a create that outlasts the park
        gate.after_response(parked)
        assert not parked.reading
        while not parked.reading:
            await asyncio.sleep(0.005)
        assert gate.parked == 0


async def test_no_limit_never_parks() -> None:
    gate = CreateGate(limit=0)
    connection = FakeConnection()
    with gate.held(FakeRequest()), gate.held(FakeRequest()):
        gate.after_response(connection)
    assert connection.reading and gate.parked == 0


# ---- through aiohttp, with the daemon's own connection handler ----------------------------------------------
@pytest.fixture
async def gated() -> AsyncIterator[tuple[str, asyncio.Event, list[str], CreateGate]]:
    """A server whose ``/hold`` create lasts until the event is set and whose ``/quick`` create ends at once."""
    release, seen, gate = asyncio.Event(), [], CreateGate(limit=1)

    async def hold(request: web.Request) -> web.Response:
        with gate.held(request):
            await release.wait()
        return web.json_response({})

    async def quick(request: web.Request) -> web.Response:
        seen.append(request.query["n"])
        with gate.held(request):
            pass
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hold", hold)
    app.router.add_post("/quick", quick)
    server = GuardedTestServer(app, ConnectionLimits(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), release, seen, gate
    finally:
        await server.close()


async def test_the_next_request_on_a_parked_connection_waits_for_a_create_to_end(
        gated: tuple[str, asyncio.Event, list[str], CreateGate]) -> None:
    url, release, seen, gate = gated
    async with aiohttp.ClientSession() as holder, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as batch:
        holding = asyncio.create_task(holder.post(url + "/hold"))
        while gate.in_progress == 0:
            await asyncio.sleep(0.005)
        async with batch.post(url + "/quick?n=1") as response:  # answered; then its connection is parked
            assert response.status == 200
        assert gate.parked == 1
        second = asyncio.create_task(batch.post(url + "/quick?n=2"))
        await asyncio.sleep(0.05)  # time for the request to arrive, were the connection read
        assert seen == ["1"] and not second.done()
        release.set()  # the held create ends: the parked connection is read again
        async with await second as response:
            assert response.status == 200
        assert seen == ["1", "2"] and gate.parked == 0
        (await holding).release()


async def test_the_daemon_bounds_its_creates_and_accepts_every_job(start_daemon: StartDaemon) -> None:
    daemon: Daemon = await start_daemon(max_creates_in_progress=2)
    gate = daemon.server.app[CREATE_GATE]
    assert gate.limit == 2

    async def batch(session: aiohttp.ClientSession, client: int) -> list[str]:
        ids = []
        for n in range(5):
            async with session.post(daemon.url + "/v1/jobs", json={"model": "video-fast", "prompt": f"{client} {n}"}
                                    ) as response:
                assert response.status == 202, await response.text()
                ids.append((await response.json())["id"])
        return ids

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        ids = [i for chunk in await asyncio.gather(*(batch(session, c) for c in range(16))) for i in chunk]
    assert len(set(ids)) == 80
    assert (gate.in_progress, gate.parked) == (0, 0)
