"""sd_notify messages reach a datagram socket the way systemd reads them; the unit file verifies."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.sdnotify import Notifier

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "tarash-router.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_lifecycle_messages(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready()
    assert received(sock) == ["READY=1", "STATUS=serving"]
    assert notifier.reloading()
    reloading = received(sock)
    assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
    assert notifier.stopping()
    assert received(sock)[0] == "STOPPING=1"


def test_abstract_socket_address() -> None:
    name = f"tarash-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready("x")
        assert received(sock) == ["READY=1", "STATUS=x"]


async def test_watchdog_pings_at_half_the_interval(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval == 0.02
    task = asyncio.create_task(notifier.watchdog())
    sock.setblocking(False)
    pings = []
    loop = asyncio.get_running_loop()
    for _ in range(2):
        pings.append((await asyncio.wait_for(loop.sock_recv(sock, 100), 1)).decode())
    task.cancel()
    assert pings == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_for_another_pid_is_ignored() -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None


async def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and not notifier.stopping()
    await asyncio.wait_for(notifier.watchdog(), 0.1)  # returns at once


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this interpreter, keep every other line.
    text = UNIT.read_text().replace("/opt/tarash-router/.venv/bin/tarash-router", sys.executable)
    unit = tmp_path / "tarash-router.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "tarash-router.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
    assert "Type=notify" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
