"""The console script as a real process: serve, sd_notify, SIGHUP reload, graceful SIGTERM, check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
from tests.daemon.notified import SCRIPT, notified_daemon
from tests.net import free_port

ROUTES = """
[routes."video-half-second"]
kind = "video"
[[routes."video-half-second".attempts]]
provider = "mock"
model = "mock-video"
mock = { polling = { status_sequence = ["queued", "processing", "completed"], delay_between_updates = 0.25 } }
"""


async def until_one_video_runs(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        async with session.get(base + "/metrics") as response:
            if 'tarash_router_jobs_in_flight{kind="video"} 1.0' in await response.text():
                return
        assert time.monotonic() < deadline, "the generation never started"
        await asyncio.sleep(0.01)


async def until_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the daemon answers /healthz: a loaded machine may take seconds to start a Python process, so the
    bound is generous and a daemon that exited fails at once."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the daemon never answered /healthz (exit code {proc.poll()})")


async def test_serve_as_a_subprocess(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    async with notified_daemon(tmp_path, routes, stdout=subprocess.PIPE) as daemon:
        assert (await daemon.message()).startswith("READY=1")
        base = daemon.base
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(base + "/v1/models") as response:
                assert [m["id"] for m in (await response.json())["data"]] == ["video-half-second"]
            # SIGHUP reloads (RELOADING=1, then READY=1 again).
            routes.write_text(ROUTES.replace("video-half-second", "video-renamed"))
            daemon.proc.send_signal(signal.SIGHUP)
            assert (await daemon.message()).startswith("RELOADING=1")
            assert (await daemon.message()).startswith("READY=1")
            async with session.get(base + "/v1/models") as response:
                assert [m["id"] for m in (await response.json())["data"]] == ["video-renamed"]
            # SIGTERM with a request in flight: it finishes, then the process exits 0.
            in_flight = asyncio.create_task(session.post(base + "/v1/video/generations",
                                                         json={"model": "video-renamed", "prompt": "x"}))
            await asyncio.sleep(0.2)
            daemon.proc.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status == 200 and (await response.json())["status"] == "completed"
        assert (await daemon.message()).startswith("STOPPING=1")
        assert await daemon.exit_code() == 0
        err = daemon.stderr()
    assert "listening on" not in err and '"event": "stopped"' in err


def test_refuses_public_bind_without_keys(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text(ROUTES)
    result = subprocess.run([str(SCRIPT), "serve", "--host", "0.0.0.0", "--port", "0"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, env={**os.environ, "TARASH_ROUTER_API_KEYS": ""})
    assert result.returncode == 2 and "refusing_to_start" in result.stderr


def test_check_prints_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(ROUTES.replace('provider = "mock"', 'provider = "nope"\ntimeout = 0\napi_key = "sk-live-1"'))
    result = subprocess.run([str(SCRIPT), "check", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert 'routes."video-half-second".attempts[0].provider: unknown provider' in result.stderr
    assert 'routes."video-half-second".attempts[0].timeout' in result.stderr
    assert 'attempts[0].api_key: keys never live in routes.toml' in result.stderr
    assert "sk-live-1" not in result.stderr
    good = subprocess.run([str(SCRIPT), "check", str(Path(__file__).parents[2] / "routes.toml")],
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "OK" in good.stdout


def test_routes_table_and_generate(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text(ROUTES)
    table = subprocess.run([str(SCRIPT), "routes"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and "video-half-second  video  mock/mock-video (600s)" in table.stdout
    out = tmp_path / "fox.mp4"
    gen = subprocess.run([str(SCRIPT), "generate", "video", "--model", "video-half-second", "--prompt", "fox",
                          "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert gen.returncode == 0, gen.stderr
    assert out.read_bytes()[4:8] == b"ftyp" and "100% completed" in gen.stderr


async def test_slow_header_clients_are_cut_off(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    port = free_port()
    env = {**os.environ, "TARASH_ROUTER_HEADER_TIMEOUT_SECONDS": "0.3", "TARASH_ROUTER_DATA_DIR": str(tmp_path / "d")}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            await until_healthy(session, f"http://127.0.0.1:{port}", proc)
            # A prompt client is unaffected.
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and never finishes the head
        await writer.drain()
        closed_after = asyncio.get_running_loop().time()
        answer = await asyncio.wait_for(reader.read(), 5)  # read() returns at EOF: the daemon hung up on us
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"header_timeout"' in answer
        assert asyncio.get_running_loop().time() - closed_after < 3
        writer.close()
    finally:
        proc.terminate()
        proc.wait()


async def test_sigint_after_the_grace_period_cuts_a_stuck_request_and_exits_0(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.replace("0.25", "3600"))  # a vendor job that never finishes
    port = free_port()
    env = {**os.environ, "TARASH_ROUTER_SHUTDOWN_GRACE_SECONDS": "0.3", "TARASH_ROUTER_LOG_FORMAT": "json",
           "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data")}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await until_healthy(session, base, proc)
            stuck = asyncio.create_task(session.post(base + "/v1/video/generations",
                                                     json={"model": "video-half-second", "prompt": "x"}))
            await until_one_video_runs(session, base)
            started = loop.time()
            proc.send_signal(signal.SIGINT)
            assert await loop.run_in_executor(None, proc.wait, 10) == 0
            assert loop.time() - started < 5
            try:
                response = await stuck
            except aiohttp.ClientError:
                pass  # cut: the grace period ran out
            else:
                assert response.status >= 500
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "attempt_finished" and e["error_type"] == "GenerationCancelledError" for e in events)
    assert any(e["event"] == "http_request" and e["path"] == "/v1/video/generations" and e["status"] == 499
               for e in events)
    assert events[-1]["event"] == "stopped"


async def test_sigterm_drains_a_request_on_the_fast_path_then_cuts_it(tmp_path: Path) -> None:
    # A raw connection whose first request is a plain generation: served by router.http.fast_path, not aiohttp,
    # so the runner's graceful shutdown must reach it too (wait the grace, cancel, close, exit 0).
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.replace("0.25", "3600"))
    port = free_port()
    env = {**os.environ, "TARASH_ROUTER_SHUTDOWN_GRACE_SECONDS": "0.3", "TARASH_ROUTER_DATA_DIR": str(tmp_path / "d")}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as session:
            await until_healthy(session, f"http://127.0.0.1:{port}", proc)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = b'{"model": "video-half-second", "prompt": "x"}'
            writer.write(b"POST /v1/video/generations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body)
            await until_one_video_runs(session, f"http://127.0.0.1:{port}")
        started = loop.time()
        proc.send_signal(signal.SIGTERM)
        assert await loop.run_in_executor(None, proc.wait, 10) == 0
        assert loop.time() - started < 5
        assert await asyncio.wait_for(reader.read(), 5) == b""  # cut after the grace: closed, nothing half-written
        writer.close()
    finally:
        proc.terminate()
        proc.wait()
