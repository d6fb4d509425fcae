"""``tarash-router serve --workers N``: a supervisor process over N worker processes on one port.

Each worker is a plain ``serve`` (``python -m router.cli serve --worker-index K``) that binds the port itself
with ``SO_REUSEPORT``: the kernel spreads new connections over the workers' own accept queues, so no worker's
busy loop makes the others wait on a shared queue and no accept wakes every process at once. The supervisor
serves no HTTP. It checks the port is free and keeps a bound, non-listening ``SO_REUSEPORT`` socket on it (the
port, 0 resolved, stays the cluster's while a worker restarts), starts the workers, and then only watches:

- **sd_notify.** Each worker's ``NOTIFY_SOCKET`` is a datagram socket of the supervisor's (one per worker), so
  workers speak the same protocol they speak to systemd and only the supervisor (systemd's main PID) talks to
  systemd: ``READY=1`` once every worker said it, ``RELOADING=1``/``READY=1`` around a reload (SIGHUP forwarded
  to every worker, READY once each answered), ``STOPPING=1``, ``WATCHDOG=1``. With a systemd watchdog, workers
  get the same ``WATCHDOG_USEC`` and a worker silent that long is killed and restarted.
- **Signals.** SIGHUP, SIGUSR1 (log pending tasks) and SIGTERM/SIGINT are forwarded to every worker; a stop waits
  for all of them.
- **Restarts.** A worker that exits unexpectedly is restarted after a backoff (0.1 s doubling to 10 s); one that
  exits ``MAX_CRASHES`` times within ``CRASH_WINDOW_SECONDS`` stops the whole service with exit code 1 (systemd's
  ``Restart=on-failure`` takes over). A worker that fails before the first ``READY`` (a bad job store, say) ends
  the start with its own exit code: restarting it would only repeat the error.
- **Metrics.** A fresh directory per start is every worker's ``PROMETHEUS_MULTIPROC_DIR`` (see router.metrics);
  a dead worker's live gauges are removed from it (``mark_process_dead``), its counters stay in the sums.

Every worker is its own instance on the PostgreSQL job store (``<INSTANCE_ID>-w<k>``; leases keep them from
running one job twice), so a restarted worker takes its own jobs back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from router.log_setup import get_logger
from router.metrics import MULTIPROCESS_ENV
from router.sdnotify import Notifier

log = get_logger("router.workers")

#: A worker slot that exits this many times within the window gives up the whole service.
MAX_CRASHES = 5
CRASH_WINDOW_SECONDS = 60.0
#: First restart delay, doubled per crash in the window, capped.
RESTART_BASE_SECONDS, RESTART_MAX_SECONDS = 0.1, 10.0
#: How long a reload waits for every worker's READY=1 before telling systemd it is done anyway.
RELOAD_WAIT_SECONDS = 10.0
#: After the shutdown grace, how long a stopping worker may take before it is killed.
STOP_MARGIN_SECONDS = 10.0
EXIT_CRASHING = 1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class PortError(OSError):
    """The address cannot be bound (in use, or not an address of this host)."""


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Check ``host:port`` is free (a bind without ``SO_REUSEPORT`` fails if anything holds it, even another
    ``--workers`` cluster) and hold it with bound, non-listening ``SO_REUSEPORT`` sockets, one per address of
    ``host``. Returns the port (0 resolved) and the sockets, which the workers' own binds join."""
    held: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            address = (address[0], port, *address[2:])
            with socket.socket(family, kind, proto) as probe:  # free right now, for anyone?
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT of the last run is not "in use"
                probe.bind(address)
                port = probe.getsockname()[1]
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address[0], port, *address[2:]))
    except OSError as exc:
        for sock in held:
            sock.close()
        raise PortError(exc.errno, exc.strerror or str(exc)) from exc
    return port, held


def die_with(parent_pid: int) -> bool:
    """Have the kernel SIGTERM this worker when its supervisor dies (even by SIGKILL: no orphan keeps the port or
    its job leases); False when the supervisor is already gone. Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent_pid


@dataclass
class Worker:
    """One worker slot: its notify socket, the process running in it now, what it last said."""

    index: int
    notify: socket.socket
    process: asyncio.subprocess.Process | None = None
    pid: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reloaded: asyncio.Event = field(default_factory=asyncio.Event)
    reloading: bool = False
    last_ping: float = 0.0
    crashes: deque[float] = field(default_factory=deque)

    @property
    def serving(self) -> bool:
        """Said READY (so its signal handlers are set) and still running."""
        return self.ready.is_set() and self.process is not None and self.process.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        """``sig`` to its process (gone already: nothing to do)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def receive(self, now: float) -> None:
        """Read the datagrams waiting on this slot's notify socket."""
        while True:
            try:
                message = self.notify.recv(4096).decode(errors="replace")
            except (BlockingIOError, InterruptedError):
                return
            fields = set(message.split("\n"))
            self.last_ping = now
            if "RELOADING=1" in fields:
                self.reloading = True
            if "READY=1" in fields:
                self.ready.set()
                if self.reloading:
                    self.reloading = False
                    self.reloaded.set()

    def drain(self) -> None:
        """Forget what a previous process in this slot sent and nobody read."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self.notify.recv(4096):
                pass


@dataclass
class Supervisor:
    """Runs ``count`` workers until SIGTERM/SIGINT (see the module docstring). ``command(k)`` is worker k's argv;
    ``env`` the environment every worker starts from; each worker's instance id is ``<instance_id>-w<k>``."""

    count: int
    command: Callable[[int], list[str]]
    env: dict[str, str]
    instance_id: str
    url: str
    shutdown_grace: float
    notifier: Notifier = field(default_factory=Notifier)
    #: Print the "listening" line for a person at a terminal (console log format).
    announce: bool = False
    #: First restart delay (doubled per crash in the window, capped at RESTART_MAX_SECONDS).
    restart_base: float = RESTART_BASE_SECONDS
    clock: Callable[[], float] = time.monotonic
    workers: list[Worker] = field(default_factory=list, init=False)
    _serving: bool = field(default=False, init=False)  # every worker was ready once: from then on exits restart
    _stopping: bool = field(default=False, init=False)
    _failed: int | None = field(default=None, init=False)  # the exit code, once a crashing worker stops the service
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _reloads: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    async def run(self) -> int:
        """Start the workers, supervise them until stopped, stop them; the exit code."""
        run_dir = Path(tempfile.mkdtemp(prefix="tarash-router-", dir=os.environ.get("RUNTIME_DIRECTORY")))
        metrics_dir = run_dir / "metrics"
        metrics_dir.mkdir()
        loop = asyncio.get_running_loop()
        try:
            for k in range(1, self.count + 1):
                notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                notify.bind(str(run_dir / f"w{k}.sock"))
                notify.setblocking(False)
                worker = Worker(k, notify)
                self.workers.append(worker)
                loop.add_reader(notify.fileno(), self._heard, worker)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop)
            loop.add_signal_handler(signal.SIGHUP, self._sighup)
            loop.add_signal_handler(signal.SIGUSR1, self._sigusr1)
            return await self._supervise(run_dir, metrics_dir)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            for worker in self.workers:
                loop.remove_reader(worker.notify.fileno())
                worker.notify.close()
            shutil.rmtree(run_dir, ignore_errors=True)

    async def _supervise(self, run_dir: Path, metrics_dir: Path) -> int:
        slots = {asyncio.ensure_future(self._keep(worker, run_dir, metrics_dir)) for worker in self.workers}
        early = await self._first_ready(slots)
        if early is None:
            self._serving = True
            log.info("workers_ready", url=self.url, workers=self.count, pids=[w.pid for w in self.workers],
                     instance_id=self.instance_id)
            if self.announce:
                print(f"tarash-router listening on {self.url} ({self.count} workers)", file=sys.stderr, flush=True)
            self.notifier.ready(f"serving on {self.url} with {self.count} workers")
            watches = [asyncio.ensure_future(self.notifier.watchdog()), asyncio.ensure_future(self._watch_workers())]
            await self._wake.wait()
            for task in watches:
                task.cancel()
        self._stopping = True
        log.info("workers_stopping", workers=self.count, grace_seconds=self.shutdown_grace)
        self.notifier.stopping()
        codes = await self._stop_all(slots)
        if early is not None:
            return early
        if self._failed is not None:
            return self._failed
        unclean = {worker.index: code for worker, code in zip(self.workers, codes, strict=True) if code}
        if unclean:
            log.error("workers_stopped_unclean", exit_codes=unclean)
            return EXIT_CRASHING
        log.info("stopped")
        return 0

    async def _first_ready(self, slots: set[asyncio.Future[None]]) -> int | None:
        """Wait until every worker said READY=1 (None), or one exited first (its exit code; 0 when stopped)."""
        readies = {asyncio.ensure_future(worker.ready.wait()) for worker in self.workers}
        stop = asyncio.ensure_future(self._wake.wait())
        pending: set[asyncio.Future[object]] = {*readies, stop, *slots}
        try:
            while not all(worker.ready.is_set() for worker in self.workers):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stop in done or done & slots:
                    break
        finally:
            for task in (*readies, stop):
                task.cancel()
        if all(worker.ready.is_set() for worker in self.workers):
            return None
        failed = next((w for w in self.workers if w.process is not None and w.process.returncode is not None), None)
        if failed is None or failed.process is None:
            return 0  # stopped while starting
        code = failed.process.returncode or 0
        log.error("worker_failed_to_start", worker=failed.index, pid=failed.pid, exit_code=code)
        return code if code > 0 else EXIT_CRASHING

    def _heard(self, worker: Worker) -> None:
        worker.receive(self.clock())

    async def _keep(self, worker: Worker, run_dir: Path, metrics_dir: Path) -> None:
        """Run worker slot ``worker``: start it, and restart it with backoff each time it exits unexpectedly."""
        while True:
            worker.drain()
            worker.ready.clear()
            worker.reloading = False
            env = {**self.env, MULTIPROCESS_ENV: str(metrics_dir),
                   "NOTIFY_SOCKET": str(run_dir / f"w{worker.index}.sock"),
                   "TARASH_ROUTER_INSTANCE_ID": f"{self.instance_id}-w{worker.index}"}
            worker.process = await asyncio.create_subprocess_exec(*self.command(worker.index), env=env)
            worker.pid = worker.process.pid
            worker.last_ping = self.clock()
            code = await worker.process.wait()
            mark_process_dead(worker.pid, str(metrics_dir))
            if self._stopping or not self._serving:
                return  # stopped, or the first start failed (_first_ready ends the start with its code)
            now = self.clock()
            worker.crashes.append(now)
            while worker.crashes[0] < now - CRASH_WINDOW_SECONDS:
                worker.crashes.popleft()
            reason = {"exit_code": code, "signal": signal.Signals(-code).name if code < 0 else None}
            if len(worker.crashes) >= MAX_CRASHES:
                log.error("workers_crashing", worker=worker.index, pid=worker.pid, **reason,
                          crashes=len(worker.crashes), window_seconds=CRASH_WINDOW_SECONDS,
                          hint="the worker keeps exiting (see its last lines above); the service stops")
                self._failed = EXIT_CRASHING
                self._stop()
                return
            delay = min(RESTART_MAX_SECONDS, self.restart_base * 2 ** (len(worker.crashes) - 1))
            log.error("worker_exited", worker=worker.index, pid=worker.pid, **reason, restart_in_seconds=delay)
            self.notifier.status(f"worker {worker.index} restarting")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if self._stopping:
                return

    async def _watch_workers(self) -> None:
        """With a systemd watchdog: kill (so it restarts) a ready worker that has not pinged for WatchdogSec."""
        interval = self.notifier.watchdog_interval  # half of WatchdogSec, which workers were given too
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval / 2)
            now = self.clock()
            for worker in self.workers:
                if worker.serving and now - worker.last_ping > 2 * interval:
                    log.error("worker_hung", worker=worker.index, pid=worker.pid,
                              silent_seconds=round(now - worker.last_ping, 1))
                    worker.signal(signal.SIGKILL)

    def _sighup(self) -> None:
        task = asyncio.ensure_future(self._reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        """Every ready worker reloads routes.toml; READY=1 to systemd once each has answered (or after a wait).
        A worker still starting reads the file as it is, and is not signalled before its handler is set."""
        self.notifier.reloading()
        try:
            live = [w for w in self.workers if w.serving]
            for worker in live:
                worker.reloaded.clear()
                worker.signal(signal.SIGHUP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELOAD_WAIT_SECONDS):
                    await asyncio.gather(*(w.reloaded.wait() for w in live))
        finally:
            self.notifier.ready()

    def _sigusr1(self) -> None:
        """Each ready worker logs its pending tasks (``router.diagnostics``); one still starting has no handler yet."""
        for worker in self.workers:
            if worker.serving:
                worker.signal(signal.SIGUSR1)

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _stop_all(self, slots: set[asyncio.Future[None]]) -> list[int]:
        """SIGTERM every worker and wait for them (killing any still there after the grace); their exit codes."""
        running = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        wait = self.shutdown_grace + STOP_MARGIN_SECONDS
        deadline = asyncio.get_running_loop().time() + wait
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                async with asyncio.timeout_at(deadline):
                    await worker.process.wait()
            except TimeoutError:
                log.error("worker_stop_timeout", worker=worker.index, pid=worker.pid, waited_seconds=wait)
                worker.process.kill()
                await worker.process.wait()
        await asyncio.gather(*slots, return_exceptions=True)
        return [(w.process.returncode or 0) if w.process is not None else 0 for w in self.workers]
