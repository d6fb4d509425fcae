"""The job stores the contract suite (``test_store_contract.py``) runs against, and a fake clock.

Adding a store is one line in ``STORES``: a name and how to make the store over its storage: a test's directory,
or the value of another fixture (PostgreSQL: ``pg_url``, a fresh database on the session's real server).
``durable`` says whether a new store object over the same storage sees what the last one wrote (a restart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from router.jobs import JobStore
from router.jobs.memory import MemoryJobStore
from router.jobs.postgres import PostgresJobStore
from router.jobs.sqlite import SQLiteJobStore
from router.models import utc_now


@dataclass(frozen=True)
class StoreKind:
    make: Callable[[Any], JobStore]  # a new (unopened) store over this storage
    durable: bool
    #: The fixture whose value is the storage.
    storage: str = "tmp_path"

    def storage_for(self, request: pytest.FixtureRequest) -> Any:
        return request.getfixturevalue(self.storage)


STORES: dict[str, StoreKind] = {
    "sqlite": StoreKind(lambda directory: SQLiteJobStore(directory / "jobs.sqlite3"), durable=True),
    "memory": StoreKind(lambda directory: MemoryJobStore(), durable=False),
    "postgres": StoreKind(PostgresJobStore, durable=True, storage="pg_url"),
    # The same server behind PgBouncer in transaction pooling mode, as fleets run it.
    "pgbouncer": StoreKind(PostgresJobStore, durable=True, storage="pgbouncer_url"),
}


class FakeClock:
    """A clock for ``JobService(clock=...)``: it moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by
