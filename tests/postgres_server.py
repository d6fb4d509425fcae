"""A real PostgreSQL server for the tests: Debian's binaries, a temp data dir, 127.0.0.1 on a free port.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user (the data dir is made
theirs). One server per test session; each test that asks for ``pg_url`` gets a fresh database on it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.net import free_port

BIN = Path(os.environ.get("TARASH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER, PASSWORD = "postgres", "pg-test-secret-7731"


@dataclass
class PostgresServer:
    """One running server. ``url(db)`` is a libpq URL with the password in it."""

    data: Path
    port: int
    log: Path
    _names: Iterator[int] = itertools.count(1)

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, *args: str) -> list[str]:
        # As root, every server command runs as the postgres user (initdb and postgres refuse root).
        return ["runuser", "-u", USER, "--", *args] if os.geteuid() == 0 else list(args)

    def ctl(self, *args: str) -> None:
        subprocess.run(self._as_owner(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                      "-t", "60", *args), check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("stop", "-m", mode)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        # Bounded like every network wait: a stuck server fails this test instead of hanging the session.
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10,
                             options="-c statement_timeout=30000") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {BIN}: apt-get install postgresql (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="tarash-pg-"))
    os.chmod(root, 0o755)  # the postgres user must reach its data dir inside
    data, pwfile = root / "data", root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, USER)
        shutil.chown(pwfile, USER)
    server = PostgresServer(data, free_port(), root / "server.log")
    subprocess.run(server._as_owner(str(BIN / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),  # noqa: SLF001
                                    "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"),
                   check=True, stdout=subprocess.DEVNULL)
    with (data / "postgresql.conf").open("a") as conf:
        # Loopback only; sockets in the temp dir (no /var/run/postgresql needed). fsync off: a test server
        # never outlives an OS crash, and a killed server still keeps every committed write (the page cache).
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {server.port}\nunix_socket_directories = '{root}'\n"
                   "fsync = off\nfull_page_writes = off\nmax_connections = 200\n")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
