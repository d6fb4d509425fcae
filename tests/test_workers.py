"""The ``--workers`` supervisor (router.workers) over small real worker processes that speak sd_notify as a
``serve`` worker does: READY only once every worker is, a reload answered by each, a stop, a worker that fails
at start, a worker that keeps crashing. (tests/daemon/test_workers.py runs real ``serve`` workers.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import structlog.testing

from router.sdnotify import Notifier
from router.workers import EXIT_CRASHING, Supervisor

#: A fake worker: ``argv[1]`` its mode, ``argv[2]`` a directory it records what happened in.
FAKE_WORKER = r"""
import os, signal, socket, sys, time
mode, where, index = sys.argv[1], sys.argv[2], sys.argv[3]
with open(os.path.join(where, f"starts-{index}"), "a") as f:
    f.write(f"{os.getpid()}\n")
if mode == "fail":
    sys.exit(2)
def say(*fields):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(os.environ["NOTIFY_SOCKET"])
        s.sendall("\n".join(fields).encode())
def hup(*_):
    open(os.path.join(where, f"hup-{index}"), "a").write("x")
    say("RELOADING=1")
    say("READY=1")
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while mode == "late" and not os.path.exists(os.path.join(where, "go")):
    time.sleep(0.01)
say("READY=1", "STATUS=serving")
open(os.path.join(where, f"ready-{index}"), "a").write("x")
while mode == "crash":
    if os.path.exists(os.path.join(where, "go")):
        sys.exit(3)
    time.sleep(0.01)
ping = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
while True:  # "hang": alive but never pings the watchdog
    if ping and mode != "hang":
        say("WATCHDOG=1")
    time.sleep(ping or 0.01)
"""


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A socket standing in for systemd's notify socket, and the environment pointing at it."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, {"NOTIFY_SOCKET": str(path)}
    sock.close()


def supervisor(tmp_path: Path, modes: list[str], environ: dict[str, str], **kw: float) -> Supervisor:
    """A supervisor whose "systemd" is ``environ`` and whose workers run ``FAKE_WORKER`` in ``modes``; they get
    systemd's WATCHDOG_USEC as the CLI passes it on."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    env = {**os.environ, **{k: v for k, v in environ.items() if k == "WATCHDOG_USEC"}}
    return Supervisor(len(modes), lambda k: [sys.executable, str(script), modes[k - 1], str(tmp_path), str(k)],
                      env, "test", "http://127.0.0.1:1", 1.0, Notifier(environ), **kw)


async def heard(sock: socket.socket, timeout: float = 20.0) -> list[str]:
    """The next message the supervisor sent to "systemd"."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                await asyncio.sleep(0.01)


async def until(path: Path, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not path.exists():
            await asyncio.sleep(0.01)


async def test_ready_when_every_worker_is_a_reload_answered_by_each_and_a_stop(
        tmp_path: Path, systemd: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = systemd
    run = asyncio.create_task(supervisor(tmp_path, ["ok", "late"], environ).run())
    await until(tmp_path / "ready-1")
    await until(tmp_path / "starts-2")  # and waits for "go"
    await asyncio.sleep(0.02)  # for the supervisor to read worker 1's READY=1
    with pytest.raises(BlockingIOError):
        sock.recv(4096)  # no READY=1 while one worker is not ready
    (tmp_path / "go").touch()
    assert "READY=1" in await heard(sock)
    os.kill(os.getpid(), signal.SIGHUP)
    assert "RELOADING=1" in await heard(sock)
    assert "READY=1" in await heard(sock)  # sent once both workers answered the forwarded SIGHUP
    assert (tmp_path / "hup-1").exists() and (tmp_path / "hup-2").exists()
    os.kill(os.getpid(), signal.SIGTERM)
    assert "STOPPING=1" in await heard(sock)
    assert await asyncio.wait_for(run, 20) == 0
    for index in (1, 2):
        pid = int((tmp_path / f"starts-{index}").read_text().split()[0])
        assert not Path(f"/proc/{pid}").exists()  # stopped and reaped


async def test_a_worker_that_fails_at_start_ends_the_start_with_its_exit_code(
        tmp_path: Path, systemd: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = systemd
    run = supervisor(tmp_path, ["ok", "fail"], environ)
    assert await asyncio.wait_for(run.run(), 20) == 2
    assert (tmp_path / "starts-2").read_text().count("\n") == 1  # not restarted: it would only fail again
    assert "READY=1" not in (await heard(sock))  # STOPPING=1, never READY
    assert not Path(f"/proc/{run.workers[0].pid}").exists()  # the other worker stopped (maybe before it started)


async def test_a_worker_that_keeps_crashing_is_restarted_then_stops_the_service_with_exit_1(
        tmp_path: Path, systemd: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = systemd
    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(supervisor(tmp_path, ["ok", "crash"], environ, restart_base=0.001).run())
        assert "READY=1" in await heard(sock)
        (tmp_path / "go").touch()  # from now on worker 2 exits with 3 as soon as it is ready
        assert await asyncio.wait_for(run, 60) == EXIT_CRASHING
    assert (tmp_path / "starts-2").read_text().count("\n") == 5  # the first start and four restarts
    assert (tmp_path / "starts-1").read_text().count("\n") == 1
    exits = [entry for entry in logs if entry["event"] == "worker_exited"]
    assert len(exits) == 4 and {(e["worker"], e["exit_code"]) for e in exits} == {(2, 3)}
    assert [e["restart_in_seconds"] for e in exits] == [0.001, 0.002, 0.004, 0.008]  # the backoff doubles
    assert any(entry["event"] == "workers_crashing" for entry in logs)


async def test_with_a_watchdog_the_supervisor_pings_and_a_worker_that_stops_pinging_is_killed_and_restarted(
        tmp_path: Path, systemd: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = systemd
    environ = {**environ, "WATCHDOG_USEC": "1000000"}  # WatchdogSec=1 s: pings every 0.5 s
    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(supervisor(tmp_path, ["ok", "hang"], environ, restart_base=0.001).run())
        assert "READY=1" in await heard(sock)
        assert "WATCHDOG=1" in await heard(sock)  # the supervisor's own ping to systemd
        starts = tmp_path / "starts-2"
        async with asyncio.timeout(20):
            while starts.read_text().count("\n") < 2:  # killed for its silence, then started again
                await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(run, 20) == 0
    hung = [entry for entry in logs if entry["event"] == "worker_hung"]
    assert hung and {entry["worker"] for entry in hung} == {2}
    assert [e["signal"] for e in logs if e["event"] == "worker_exited"][0] == "SIGKILL"
    assert (tmp_path / "starts-1").read_text().count("\n") == 1  # the worker that pings is left alone
