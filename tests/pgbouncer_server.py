"""A real PgBouncer for the tests: Debian's ``pgbouncer`` in transaction pooling mode in front of the session's
PostgreSQL server (``tests/postgres_server.py``), on 127.0.0.1 and a free port.

Transaction pooling is what fleets put in front of PostgreSQL, and the mode that breaks session state: a
client's next transaction may run on another server connection, so prepared statements, ``SET`` and ``LISTEN``
do not carry over. PgBouncer refuses to run as root, so as root it runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.net import free_port
from tests.postgres_server import PASSWORD, USER, PostgresServer

BINARY = Path(os.environ.get("TARASH_TEST_PGBOUNCER", "/usr/sbin/pgbouncer"))


@dataclass
class PgBouncer:
    """One running PgBouncer; ``url(db)`` reaches database ``db`` of the server behind it through the pooler."""

    port: int
    log: Path
    pidfile: Path

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        """PgBouncer's own process (under runuser, not the process this module started)."""
        return int(self.pidfile.read_text().split()[0])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.01)
    raise RuntimeError(f"pgbouncer did not listen on {port} within {within:g} s")


@contextlib.contextmanager
def running_pgbouncer(server: PostgresServer) -> Iterator[PgBouncer]:
    if not BINARY.exists():
        raise RuntimeError(f"PgBouncer not found at {BINARY}: apt-get install pgbouncer (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="tarash-pgbouncer-"))
    os.chmod(root, 0o755)
    bouncer = PgBouncer(free_port(), root / "pgbouncer.log", root / "pgbouncer.pid")
    (root / "userlist.txt").write_text(f'"{USER}" "{PASSWORD}"\n')
    # Every database name maps to the same name on the server ("*"); pool sizes above what the tests open at
    # once, so a test waits on the pooler only where it would on a server of that size.
    (root / "pgbouncer.ini").write_text(f"""\
[databases]
* = host=127.0.0.1 port={server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {bouncer.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {root / 'userlist.txt'}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_reset_query =
logfile = {bouncer.log}
pidfile = {bouncer.pidfile}
""")
    if os.geteuid() == 0:
        for path in (root, root / "userlist.txt", root / "pgbouncer.ini"):
            shutil.chown(path, USER)
    command = [str(BINARY), str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", USER, "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(bouncer.port, process, bouncer.log)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
