from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, running_server

pytest_plugins = ["tests.emulators.pytest_plugin"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL 15, started once for the session (see tests/postgres_server.py)."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session's server: its URL (password included)."""
    return postgres_server.new_database()


@pytest.fixture(autouse=True)
def _emulator_media_urls_are_fetchable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every vendor here is a loopback emulator, so the media URLs they answer are private addresses the SSRF
    guard refuses. Tests of the guard itself remove this (``monkeypatch.delenv``)."""
    monkeypatch.setenv("TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS", "true")
    yield
