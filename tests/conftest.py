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
