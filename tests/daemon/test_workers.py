"""``tarash-router serve --workers 2`` as a subprocess on a real PostgreSQL job store, talked to over HTTP: both
workers serve the one port, /metrics on either counts every request, a routes.toml edit and a SIGHUP reach both,
sd_notify speaks for all, kill -9 of a worker restarts it, SIGTERM ends all with exit 0; SQLite is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.test_metrics_docs import METRICS_MD
from tests.net import free_port
from tests.test_docs import table_rows

SCRIPT = Path(sys.executable).parent / "tarash-router"
ROUTES = """
[routes."img"]
kind = "image"
[[routes."img".attempts]]
provider = "mock"
model = "mock-image"
"""
IMAGE = {"model": "img", "prompt": "x", "size": "8x8"}


class Workers:
    """A ``serve --workers 2`` process; its stderr (the supervisor's and every worker's JSON lines) in a file."""

    def __init__(self, tmp_path: Path, store: str, env: dict[str, str] | None = None) -> None:
        self.routes = tmp_path / "routes.toml"
        self.routes.write_text(ROUTES)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "serve.log"
        environ = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_LOG_FORMAT": "json",
                   "TARASH_ROUTER_JOB_STORE": store, "TARASH_ROUTER_INSTANCE_ID": "box", **(env or {})}
        if "NOTIFY_SOCKET" not in (env or {}):
            environ.pop("NOTIFY_SOCKET", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(SCRIPT), "serve", "--routes", str(self.routes), "--port", str(self.port), "--workers", "2"],
                env=environ, stdout=subprocess.DEVNULL, stderr=log)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        found = []
        for raw in self.log_path.read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if event is None or line.get("event") == event:
                found.append(line)
        return found

    def pids(self) -> dict[int, int]:
        """Worker slot -> the pid of the latest worker process that said "listening" in it."""
        return {line["worker"]: line["pid"] for line in self.lines("listening")}

    async def until(self, check: Any, what: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            assert self.process.poll() is None, f"serve exited ({self.process.returncode}) waiting for {what}"
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@asynccontextmanager
async def workers(tmp_path: Path, store: str, env: dict[str, str] | None = None) -> AsyncIterator[Workers]:
    daemon = Workers(tmp_path, store, env)
    try:
        await daemon.until(lambda: daemon.lines("workers_ready"), "both workers ready")
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        for pid in daemon.pids().values():  # a worker a failed test left behind must not hold the port or leases
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def served_by(daemon: Workers, count: int) -> dict[int, int]:
    """``count`` image generations, each on a new connection (the kernel picks a worker per connection); how
    many each worker slot served, from its access lines."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(count):
            async with session.post(daemon.url + "/v1/images/generations", json=IMAGE,
                                    headers={"X-Request-ID": f"t{i}-{time.monotonic_ns()}"}) as response:
                assert response.status == 200, await response.text()
    served: dict[int, int] = {}
    for line in daemon.lines("http_request"):
        if line["path"] == "/v1/images/generations":
            served[line["worker"]] = served.get(line["worker"], 0) + 1
    return served


async def metric(session: aiohttp.ClientSession, url: str, series: str) -> float:
    async with session.get(url + "/metrics", headers={"Connection": "close"}) as response:
        for line in (await response.text()).splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


REQUESTS = 'tarash_router_requests_total{kind="image",outcome="success",route="img"}'
HTTP_OK = 'tarash_router_http_requests_total{method="POST",path="/v1/images/generations",status="200"}'


async def test_both_workers_serve_the_port_metrics_count_every_request_and_sigterm_ends_all(
        tmp_path: Path, pg_url: str) -> None:
    async with workers(tmp_path, pg_url) as daemon:
        pids = daemon.pids()
        assert set(pids) == {1, 2} and len(set(pids.values())) == 2
        sent = 0
        while True:  # new connections until both workers have served some (the kernel's hash spreads them)
            served = await served_by(daemon, 10)
            sent += 10
            if len(served) == 2 or sent >= 200:
                break
        assert set(served) == {1, 2} and sum(served.values()) == sent, served
        instances = {line["worker"]: line["instance_id"] for line in daemon.lines("listening")}
        assert instances == {1: "box-w1", 2: "box-w2"}  # each its own instance on the job store
        async with aiohttp.ClientSession() as session:
            for _ in range(6):  # whichever worker answers the scrape, it counts every worker's requests
                assert await metric(session, daemon.url, REQUESTS) == sent
                assert await metric(session, daemon.url, HTTP_OK) == sent
            async with session.get(daemon.url + "/metrics") as response:
                exposed = list(text_string_to_metric_families(await response.text()))
        documented = {name: cells[0] for name, cells in table_rows(METRICS_MD.read_text()).items()
                      if name.startswith("tarash_router_")}
        for family in exposed:  # the same names and types as one process (docs/metrics.md)
            name = family.name + ("_total" if family.type == "counter" else "")
            assert documented.get(name) == family.type, (name, family.type)
        assert daemon.stop() == 0
        assert {line["worker"] for line in daemon.lines("stopped") if "worker" in line} == {1, 2}
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())


async def test_an_edit_and_a_sighup_reach_both_workers_and_sd_notify_speaks_for_all(
        tmp_path: Path, pg_url: str) -> None:
    notify_path = tmp_path / "notify.sock"
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(notify_path))
    systemd.setblocking(False)
    heard: list[str] = []

    def messages() -> list[str]:
        while True:
            try:
                heard.append(systemd.recv(4096).decode())
            except BlockingIOError:
                return heard

    try:
        async with workers(tmp_path, pg_url, {"NOTIFY_SOCKET": str(notify_path)}) as daemon:
            await daemon.until(lambda: any("READY=1" in m for m in messages()), "READY=1")
            assert len(daemon.lines("listening")) == 2  # READY=1 came after both workers listened
            assert sum("READY=1" in m for m in heard) == 1
            def reloaded(since: int, unchanged: bool) -> set[int]:
                return {line["worker"] for line in daemon.lines()[since:]
                        if line.get("event") == "routes_reloaded" and line["unchanged"] is unchanged}

            heard.clear()  # SIGHUP first: the file is untouched, so every reload now is the signal's
            daemon.process.send_signal(signal.SIGHUP)
            await daemon.until(lambda: reloaded(0, True) == {1, 2}, "SIGHUP reloaded by both workers")
            await daemon.until(lambda: any("READY=1" in m for m in messages()), "READY=1 after the reload")
            assert "RELOADING=1" in heard[0] and "READY=1" in heard[-1]
            since = len(daemon.lines())
            daemon.routes.write_text(ROUTES.replace('"img"', '"pic"'))
            await daemon.until(lambda: reloaded(since, False) == {1, 2}, "the edit reloaded by both workers")
            async with aiohttp.ClientSession() as session:
                for _ in range(4):
                    async with session.post(daemon.url + "/v1/images/generations", headers={"Connection": "close"},
                                            json={**IMAGE, "model": "pic"}) as response:
                        assert response.status == 200  # whichever worker: the new route
            heard.clear()
            assert daemon.stop() == 0
            assert any("STOPPING=1" in m for m in messages())
    finally:
        systemd.close()


async def test_kill_9_of_a_worker_restarts_it_and_its_counts_stay_in_the_metrics(
        tmp_path: Path, pg_url: str) -> None:
    async with workers(tmp_path, pg_url) as daemon:
        before = daemon.pids()
        served = await served_by(daemon, 20)
        os.kill(before[1], signal.SIGKILL)
        exited = await daemon.until(lambda: daemon.lines("worker_exited"), "the supervisor to see the kill")
        assert exited[0]["worker"] == 1 and exited[0]["signal"] == "SIGKILL"
        await daemon.until(lambda: daemon.pids()[1] != before[1], "worker 1 restarted")
        assert daemon.pids()[2] == before[2]
        await daemon.until(lambda: len(daemon.lines("listening")) == 3, "the new worker listening")
        served = await served_by(daemon, 20)
        assert sum(served.values()) == 40
        async with aiohttp.ClientSession() as session:
            # the killed worker's requests are still counted (its files stay; only its live gauges go)
            assert await metric(session, daemon.url, REQUESTS) == 40
        assert daemon.stop() == 0


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts: it holds no socket and runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_kill_9_of_the_supervisor_stops_every_worker(tmp_path: Path, pg_url: str) -> None:
    # A grace of 2 s: a worker's own bound on its stop (grace + 10 s) then falls inside the 30 s waited here, so a
    # stop that hangs ends in a shutdown_timed_out line naming what it waited on.
    async with workers(tmp_path, pg_url, {"TARASH_ROUTER_SHUTDOWN_GRACE_SECONDS": "2"}) as daemon:
        pids = daemon.pids()
        daemon.process.kill()
        daemon.process.wait()
        # The kernel sends each worker SIGTERM (PR_SET_PDEATHSIG): no orphan keeps the port or its job leases.
        try:
            await asyncio.wait_for(_until_all_gone(list(pids.values())), 30)
        except TimeoutError:
            for pid in pids.values():  # each live worker logs what its tasks wait on (router.diagnostics)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(1.0)
            raise AssertionError(f"workers alive 30 s after the supervisor's SIGKILL: {_where(daemon, pids)}; "
                                 f"their tasks: {daemon.lines('tasks')}") from None
        stopped = {line["worker"] for line in daemon.lines("stopped") if "worker" in line}
        assert stopped == {1, 2}, daemon.lines("shutdown_timed_out")  # a clean stop each (leases released)


async def test_sigusr1_to_the_supervisor_has_every_worker_log_what_its_tasks_wait_on(tmp_path: Path,
                                                                                     pg_url: str) -> None:
    async with workers(tmp_path, pg_url) as daemon:
        daemon.process.send_signal(signal.SIGUSR1)
        lines = await daemon.until(lambda: len({line["worker"] for line in daemon.lines("tasks")}) == 2 and
                                   daemon.lines("tasks"), "a tasks line from each worker")
        for line in lines:
            assert line["count"] == len(line["tasks"]) > 0
            assert all(task["task"] and isinstance(task["waits_in"], list) for task in line["tasks"])
        assert daemon.process.poll() is None and all(not gone(pid) for pid in daemon.pids().values())


async def _until_all_gone(pids: list[int]) -> None:
    while not all(gone(pid) for pid in pids):
        await asyncio.sleep(0.01)


def _where(daemon: Workers, pids: dict[int, int]) -> dict[int, Any]:
    """What each live worker last logged and where its threads wait (kernel wait channels): for a failure that
    happened once under load and never alone."""
    found: dict[int, Any] = {}
    for slot, pid in pids.items():
        if gone(pid):
            continue
        threads = {}
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                threads[task.name] = (task / "wchan").read_text() or "running"
        events = [line.get("event") for line in daemon.lines() if line.get("worker") == slot]
        found[slot] = {"pid": pid, "last_events": events[-8:], "threads": threads}
    return found


def test_two_workers_with_the_sqlite_store_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text(ROUTES)
    env = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_JOB_STORE": ""}
    done = subprocess.run([str(SCRIPT), "serve", "--routes", str(tmp_path / "routes.toml"), "--workers", "2",
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tarash-router: --workers 2 needs the PostgreSQL job store (TARASH_ROUTER_JOB_STORE=postgresql://...): "
        "with SQLite each worker would resume the others' jobs and pay the vendor twice"]
    assert not (tmp_path / "data").exists()  # nothing written


def test_two_workers_on_a_port_in_use_is_the_cannot_listen_line(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text(ROUTES)
    env = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "TARASH_ROUTER_LOG_FORMAT": "json",
           "TARASH_ROUTER_JOB_STORE": "postgresql://router@127.0.0.1:1/router"}  # never reached: the port fails first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([str(SCRIPT), "serve", "--routes", str(tmp_path / "routes.toml"), "--workers", "2",
                               "--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    [line] = [json.loads(raw) for raw in done.stderr.strip().splitlines()]
    assert line["event"] == "cannot_listen" and line["address"] == f"127.0.0.1:{port}"
    assert "pick another --port" in line["hint"]
