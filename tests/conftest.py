import asyncio
import io
import itertools
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import router
from tests.pgbouncer_server import PgBouncer, running_pgbouncer
from tests.postgres_server import PostgresServer, running_server

pytest_plugins = ["tests.emulators.pytest_plugin"]

# uvloop is a test dependency (tests/daemon/test_uvloop.py runs under it), and EVENT_LOOP=auto would pick it for
# every daemon process the suite starts: those run on asyncio, what a plain install gets.
os.environ.setdefault("TARASH_ROUTER_EVENT_LOOP", "asyncio")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (``kill``, ``timeout``) ends the run as Ctrl-C does, so the fixtures' finalizers still run: by
    default it killed pytest outright, and the session's PostgreSQL server and any daemon or emulator a test had
    started kept running (one was found an hour later, under a benchmark)."""
    _terminate_as_interrupt()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _terminate_as_interrupt()  # again: an event loop that handled SIGTERM in a test puts back the default as it closes


def _terminate_as_interrupt() -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def _provider_names() -> Iterator[int]:
    return itertools.count()


@pytest.fixture
def provider(_provider_names: Iterator[int]) -> Iterator[Any]:
    """``provider(handler)`` registers a handler under a fresh name and returns the name; unregistered after."""
    added: list[str] = []

    def add(handler: Any) -> str:
        name = f"test-{next(_provider_names)}"
        router.register_provider(name, handler)
        added.append(name)
        return name

    yield add
    for name in added:
        router.unregister_provider(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL 15, started once for the session (see tests/postgres_server.py)."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session's server: its URL (password included)."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction pooling mode in front of the session's server (tests/pgbouncer_server.py)."""
    with running_pgbouncer(postgres_server) as bouncer:
        yield bouncer


@pytest.fixture
def pgbouncer_url(postgres_server: PostgresServer, pgbouncer: PgBouncer) -> str:
    """A fresh empty database on the session's server, reached through PgBouncer: its URL."""
    return pgbouncer.url(postgres_server.new_database().rsplit("/", 1)[1])


@pytest.fixture(autouse=True)
def _emulator_media_urls_are_fetchable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every vendor here is a loopback emulator, so the media URLs they answer are private addresses the SSRF
    guard refuses. Tests of the guard itself remove this (``monkeypatch.delenv``)."""
    monkeypatch.setenv("TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS", "true")
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Iterator[None]:
    """A timed-out async test waits in the event loop's select(), which is all pytest-timeout's traceback shows:
    print where each of the loop's tasks is waiting first."""
    yield
    if settings.method != "signal":
        return
    fail = signal.getsignal(signal.SIGALRM)

    def on_timeout(signum: int, frame: Any) -> None:
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no loop running: a sync test
            tasks = set()
        terminal = item.config.get_terminal_writer()
        for task in tasks:
            stack = io.StringIO()
            task.print_stack(file=stack)
            terminal.sep("~", title=f"asyncio {task.get_name()}")
            terminal.write(stack.getvalue())
        fail(signum, frame)  # type: ignore[operator]

    signal.signal(signal.SIGALRM, on_timeout)
