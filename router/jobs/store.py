"""What a job is, and the small interface a job store implements (SQLite here; see README for PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass
class VendorJob:
    """The vendor job an attempt owns: persisted the moment the vendor returns its id."""

    attempt_number: int
    id: str
    data: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None


@dataclass
class JobRecord:
    """One job. ``chain`` holds the attempt configs (never keys) as they were when the job was created, so a
    resumed job reaches the same vendor deployment even if routes.toml changed since."""

    id: str
    kind: Literal["video", "image"]
    route: str
    request: dict[str, Any]
    chain: list[dict[str, Any]]
    status: JobStatus = "queued"
    progress_percent: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    vendor_job: VendorJob | None = None
    execution_metadata: dict[str, Any] | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    #: Digest of what the client sent with ``idempotency_key``: a retry must send the same thing.
    fingerprint: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class JobStore(Protocol):
    """Persistence for jobs. Every method is a coroutine and must not block the event loop."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(self, job: JobRecord) -> bool:
        """Store a new job durably. False (nothing written) when its ``(owner, idempotency_key)`` is taken:
        the check and the write are one atomic step, so concurrent retries cannot create two jobs."""
        ...

    async def save(self, job: JobRecord) -> None: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def find_idempotent(self, owner: str | None, key: str) -> JobRecord | None: ...

    async def list(self, *, kind: str | None, owner: str | None, limit: int, after: str | None,
                   status: str | None = None, route: str | None = None) -> list[JobRecord]:
        """Newest first, at most ``limit``, older than job ``after``; each filter narrows when given."""
        ...

    async def unfinished(self) -> list[JobRecord]: ...

    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None: ...

    async def events(self, job_id: str) -> list[tuple[int, str, dict[str, Any]]]: ...

    async def last_seqs(self) -> dict[str, int]: ...

    async def delete(self, job_id: str) -> None: ...

    async def prune(self, finished_before: datetime) -> list[str]:
        """Delete finished jobs last updated before ``finished_before`` (and their events); their ids."""
        ...

    async def count(self) -> int: ...
