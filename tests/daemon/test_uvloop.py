"""The [fast] extra's event loop: uvloop's transports are classes of its own (not ``asyncio.Transport``), so the
lean vendor client and a whole daemon job run under it too, not only under asyncio (the suite's default)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

from providers._engine.wire import WirePool, target
from tests.emulators.fal import FalEmulator
from tests.jobs.test_restart_kill9 import FAL_KEY, FAL_VIDEO_ROUTES
from tests.served import ServedDaemon


def test_the_lean_client_keeps_connections_alive_under_uvloop() -> None:
    async def exchange() -> tuple[list[int], list[bytes], int]:
        peers: set[int] = set()

        async def echo(request: web.Request) -> web.StreamResponse:
            peers.add(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
            if request.method == "GET":  # chunked, in two writes
                response = web.StreamResponse()
                await response.prepare(request)
                await response.write(b'{"a":')
                await response.write(b' 1}')
                await response.write_eof()
                return response
            return web.Response(body=await request.read(), content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        pool = WirePool()
        try:
            statuses, bodies = [], []
            for method, body in (("GET", None), ("POST", b'{"prompt": "a fox"}'), ("GET", None)):
                answer = await pool.request(method, target(f"http://localhost:{port}/echo"), {}, body,
                                            content_type="application/json", connect_timeout=5, timeout=5)
                statuses.append(answer.status)
                bodies.append(answer.body)
        finally:
            pool.close()
            await runner.cleanup()
        return statuses, bodies, len(peers)

    statuses, bodies, connections = uvloop.run(exchange())
    assert statuses == [200, 200, 200]
    assert bodies == [b'{"a": 1}', b'{"prompt": "a fox"}', b'{"a": 1}']
    assert connections == 1  # one kept-alive connection for all three


async def test_a_fal_job_completes_on_a_daemon_running_uvloop(tmp_path: Path) -> None:
    async with FalEmulator(polls_to_complete=3) as fal:
        routes = tmp_path / "routes.toml"
        routes.write_text(FAL_VIDEO_ROUTES.format(url=fal.url))
        daemon = ServedDaemon(routes, tmp_path / "data", {**FAL_KEY, "TARASH_ROUTER_EVENT_LOOP": "uvloop"})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await daemon.ready(session)
                job = await daemon.until_finished(session, await daemon.post_job(session, {"model": "video",
                                                                                          "prompt": "a fox"}))
        finally:
            daemon.kill()
        assert job["status"] == "completed", job
        assert fal.calls["submit"] == 1
