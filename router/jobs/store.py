"""What a job is, and the whole interface a job store implements (SQLite for one box, PostgreSQL for several,
in-memory for tests and embedding).

Leases: a job runs on the instance (``worker``) that holds its lease. A store hands jobs out with ``claim``
(queued ones, and unfinished ones whose lease lapsed), the holder keeps them with ``renew``, and every ``save``
is fenced by the lease: it writes only while ``job.worker`` still holds the job, so an instance that lost a job
to another can never overwrite the new holder's progress. Lease times are the store's own (PostgreSQL: the
database's clock, which every instance shares); job timestamps are the caller's (below).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol, cast

from router.log_setup import get_logger

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: Where job timestamps come from: ``router.models.utc_now`` in the daemon, a fake clock in tests.
Clock = Callable[[], datetime]


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
    #: The attempt whose submit went out and whose answer (the vendor job id) is not recorded yet: after a
    #: crash in between, the vendor may hold a job nobody knows the id of, so it is never submitted again.
    submitting: int | None = None
    execution_metadata: dict[str, Any] | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    #: Digest of what the client sent with ``idempotency_key``: a retry must send the same thing.
    fingerprint: str | None = None
    #: Attempt number (as a string) -> SHA-256 of the secret in the URL its vendor pushes to (never the secret).
    webhook_tokens: dict[str, str] = field(default_factory=dict)
    #: The id of the client webhook announcing this job's outcome (its ``OutboxMessage``), if one was asked for.
    webhook_id: str | None = None
    #: The instance holding the job's lease (None: nobody; any instance may claim it).
    worker: str | None = None
    #: Someone asked to cancel the job; its lease holder (or the next claimer) does it.
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


OutboxStatus = Literal["waiting", "pending", "delivered", "failed"]


@dataclass
class OutboxMessage:
    """A client webhook: a job's outcome to POST to ``url``. ``waiting`` while the job runs, ``pending`` once it
    ended (due at ``next_attempt_at``), then ``delivered`` or, when retries ran out or the receiver refused it,
    ``failed``. Written at job creation, so a kill at any point loses no callback; ``id`` is the stable
    ``webhook-id`` every retry carries."""

    id: str
    job_id: str
    url: str
    created_at: datetime
    status: OutboxStatus = "waiting"
    attempts: int = 0
    #: When the job ended: retries stop WEBHOOK_RETRY_HOURS after it.
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


def outbox_from(data: dict[str, Any]) -> OutboxMessage:
    """An ``OutboxMessage`` from its JSON form (``asdict`` with ISO timestamps)."""
    data = dict(data)
    for key in ("created_at", "finished_at", "next_attempt_at", "delivered_at"):
        data[key] = datetime.fromisoformat(data[key]) if data.get(key) else None
    return OutboxMessage(**data)


def require_timestamps(job: JobRecord) -> None:
    """Stores keep the caller's timestamps; a job without them is a caller bug, refused before any write."""
    if job.created_at is None or job.updated_at is None:
        raise ValueError(f"job {job.id} has no created_at/updated_at: JobService stamps them from its clock")


class SpendEntry(NamedTuple):
    """Charged USD of one client on one UTC day, per route, provider and model (``generations``: how many
    generations contributed). Recorded from charged costs when a generation ends (router/budgets.py). A tuple: one
    is made for every generation."""

    client: str
    day: str  # YYYY-MM-DD, UTC
    route: str
    provider: str
    model: str
    usd: float
    generations: int = 1


class SpendStore(Protocol):
    """Durable spend per client, the budgets' ledger. The job store implements it (in the same database, so a
    PostgreSQL job store shares spend across instances too)."""

    async def add_spend(self, entries: list[SpendEntry]) -> None:
        """Add each entry to the ledger (summed with what is there for the same client/day/route/provider/model)."""
        ...

    async def spend(self, client: str | None, first_day: str, last_day: str) -> list[SpendEntry]:
        """The ledger's rows for ``client`` (every client when None) from ``first_day`` to ``last_day`` inclusive."""
        ...


#: The request fields a list view shows (``JobStore.list(brief=True)`` needs to return no others).
LIST_REQUEST_FIELDS = ("prompt", "duration_seconds", "aspect_ratio", "resolution")

#: Fields a store keeps in their own columns, outside the JSON body (leases write them, ``save`` never does).
_COLUMNS = ("request", "chain", "worker", "cancel_requested")

#: What ``watch`` reports: a new runnable job (subject ""), a job's new event, a cancel request or a vendor push
#: received by another instance (subject: the job id). With the time it was sent (epoch seconds, the sender's
#: clock) when known.
Notice = Literal["job", "event", "cancel", "slot", "circuit", "push"]
OnNotice = Callable[[Notice, str, float | None], None]


#: ``JobRecord``'s fields that ``job_body`` holds: all but the columns.
_BODY_FIELDS = tuple(f.name for f in fields(JobRecord) if f.name not in _COLUMNS)


def job_body(job: JobRecord) -> dict[str, Any]:
    """The mutable part of a job as JSON-ready data (request and chain are written once, apart). Built by hand,
    the vendor job too: ``asdict`` deep-copied request and chain on every save only to drop them, and the vendor
    job's data (7 µs of each save once a job has one). The values are the job's own, not copies: serialise the
    body before the job changes (every store dumps it at once)."""
    body = {name: getattr(job, name) for name in _BODY_FIELDS}
    vendor = job.vendor_job
    body["vendor_job"] = None if vendor is None else {"attempt_number": vendor.attempt_number, "id": vendor.id,
                                                      "data": vendor.data, "started_at": vendor.started_at}
    for key in ("created_at", "updated_at"):
        body[key] = body[key].isoformat() if body[key] else None
    return body


def encoded_body(job: JobRecord, known: str | None = None) -> str:
    """``job_body`` as the stores write it: one JSON string; ``known`` when the caller encoded it already (the
    ``body=`` of ``insert``/``save``)."""
    return json.dumps(job_body(job), default=str) if known is None else known


def job_from(request: Any, chain: Any, body: dict[str, Any], worker: str | None, cancel_requested: bool) -> JobRecord:
    """The inverse of ``job_body``, with the columns."""
    data = dict(body)
    for key in ("created_at", "updated_at"):
        data[key] = datetime.fromisoformat(data[key]) if data.get(key) else None
    if data.get("vendor_job"):
        data["vendor_job"] = VendorJob(**data["vendor_job"])
    return JobRecord(**data, request=request, chain=chain, worker=worker, cancel_requested=bool(cancel_requested))


@dataclass(frozen=True)
class StoredCopy:
    """A job as a store holds it once a write of it is committed: its body as JSON, as the stores keep it (one
    string: cheap to keep, nothing shared with the live job), and its columns (``request`` and ``chain`` are
    written once and never change)."""

    request: dict[str, Any]
    chain: list[dict[str, Any]]
    body: str
    worker: str | None
    cancel_requested: bool

    @classmethod
    def of(cls, job: JobRecord) -> StoredCopy:
        return cls(job.request, job.chain, encoded_body(job), job.worker, job.cancel_requested)

    def record(self) -> JobRecord:
        """A fresh ``JobRecord``, as a store's read returns it."""
        return job_from(self.request, self.chain, json.loads(self.body), self.worker, self.cancel_requested)


class UnreadableRows:
    """A store's report of rows it cannot read (damaged JSON, a foreign write): each is skipped wherever jobs
    are read and logged once, by id, at error level, so an operator can repair or delete it."""

    def __init__(self) -> None:
        self._reported: set[str] = set()

    def report(self, job_id: str, exc: Exception) -> None:
        if job_id not in self._reported:
            self._reported.add(job_id)
            get_logger("router.jobs").error(
                "job_store_row_unreadable", job_id=job_id, error=f"{type(exc).__name__}: {str(exc)[:200]}",
                hint="the job is skipped; delete or repair its row")


class JobStoreError(RuntimeError):
    """The job store cannot be used as configured (bad URL, refused login, unknown schema...). The message is
    one line, names the setting or file and never holds a password."""


class JobStoreUnavailableError(RuntimeError):
    """The job store cannot be reached right now (database down, connection lost, a timeout): nothing was
    written. Callers retry writes that must happen and answer 503 to requests that need the store."""


class JobStore(SpendStore, Protocol):
    """Persistence for jobs: everything the job runner and the metrics read or write, nothing else. Every method
    is a coroutine and must not block the event loop. ``tests/jobs/test_store_contract.py`` is the contract
    every store passes (SQLite and the in-memory store today: a new store is one line there).

    Timestamps are the caller's: ``JobService`` stamps ``created_at``/``updated_at`` from its clock and the
    store keeps them as given, so retention and ordering follow one clock (a fake one in tests).
    """

    #: True when several instances may share the store (SQLite and memory: one process).
    shared: bool

    async def open(self) -> None:
        """Connect (and create the schema); refuse clearly a store this version cannot read."""
        ...

    async def close(self) -> None: ...

    async def insert(self, job: JobRecord, *, lease_seconds: float | None = None, body: str | None = None) -> bool:
        """Store a new job durably, leased to ``job.worker`` for ``lease_seconds`` when both are given (else
        held by nobody). False (nothing written) when its id or its ``(owner, idempotency_key)`` is taken: the
        check and the write are one atomic step, so concurrent retries cannot create two jobs, on one instance
        or several. ``request`` and ``chain`` are written here once; later saves never change them. ``body``:
        ``encoded_body(job)``, when the caller has it already (the job service's committed copy): not encoded
        twice."""
        ...

    async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
        """Write the job's mutable fields (status, progress, result, error, attempts, vendor job...), fenced:
        only while ``job.worker`` holds the job (a job nobody holds: ``job.worker`` None). False, nothing
        written, when another instance holds it now (or the job is gone). ``body`` as for ``insert``."""
        ...

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        """Lease up to ``limit`` runnable jobs to ``worker``, oldest first: queued ones and unfinished ones nobody
        holds or whose lease lapsed. Concurrent claimers never get the same job."""
        ...

    async def waiting(self) -> int:
        """Unfinished jobs nobody holds (or whose lease lapsed): what a claim could take (``tarash_router_jobs_queued``)."""
        ...

    async def renew(self, worker: str, lease_seconds: float) -> dict[str, bool]:
        """Extend every lease ``worker`` holds on an unfinished job; the ids it still holds, each with whether a
        cancel was requested for it (the holder acts on that even if the request's notice never reached it)."""
        ...

    async def release(self, worker: str) -> None:
        """Give up ``worker``'s leases on unfinished jobs (a clean stop: others may take them at once)."""
        ...

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        """Mark an unfinished job for cancelling and tell its holder; the job (None if there is none)."""
        ...

    async def watch(self, on_notice: OnNotice) -> None:
        """Report what other instances do (new jobs, events, cancel requests) until cancelled. A store only one
        process uses has nothing to report and just waits."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def find_idempotent(self, owner: str | None, key: str) -> JobRecord | None:
        """The job created under ``key`` by ``owner`` (None and "" are the same owner)."""
        ...

    async def list(self, *, kind: str | None, owner: str | None, limit: int, after: str | None,
                   status: str | None = None, route: str | None = None, brief: bool = False) -> list[JobRecord]:
        """Newest first (``created_at``, then id), at most ``limit``, starting after the job ``after`` (an unknown
        id: nothing). Each filter narrows when given; ``owner`` None means every owner. ``brief`` (what list
        views need): ``request`` holds only ``LIST_REQUEST_FIELDS`` and ``chain`` is empty, so no store reads
        inline input media for a list (the contract suite checks it)."""
        ...

    async def unfinished(self) -> list[JobRecord]:
        """Jobs not yet completed, failed or cancelled, oldest first: what a start resumes."""
        ...

    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None:
        """Keep event ``seq`` of a job (its data as JSON: values JSON cannot hold are stored as strings) and tell
        watchers. A number already kept stays as it was (a former holder's late write loses)."""
        ...

    async def events(self, job_id: str, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        """A job's events numbered above ``after``, in ``seq`` order."""
        ...

    async def last_seqs(self, job_ids: Sequence[str] | None = None) -> dict[str, int]:
        """The last event number of each job that has events (of ``job_ids`` only, when given), in one query
        (a claim adopts many jobs at once)."""
        ...

    async def delete(self, job_id: str) -> None:
        """Forget a job and its events (an unknown id is no error)."""
        ...

    async def prune(self, finished_before: datetime) -> list[str]:
        """Delete finished jobs last updated before ``finished_before`` (and their events); their ids."""
        ...

    async def put_outbox(self, message: OutboxMessage) -> None:
        """Store ``message`` (a new one, or a new state of one already stored: same ``id``)."""
        ...

    async def outbox_for_job(self, job_id: str) -> OutboxMessage | None:
        """The client webhook of ``job_id``, if it has one."""
        ...

    async def outbox(self, status: OutboxStatus) -> list[OutboxMessage]:
        """Every client webhook in ``status``, oldest first (a restart reschedules ``pending`` ones and releases
        ``waiting`` ones whose job ended). ``delete`` and ``prune`` remove a job's webhook with the job."""
        ...

    async def count(self) -> int:
        """Jobs kept (``tarash_router_job_store_jobs``)."""
        ...

    @property
    def rows_written(self) -> int:
        """Rows inserted, updated or deleted since the store opened (``tarash_router_job_store_rows_written``)."""
        ...


class SharedJobStore(JobStore, Protocol):
    """A store several instances share (``shared`` is True: PostgreSQL): what only they need, because another
    instance may hold the job or the client webhook. Callers narrow with ``shared_store``."""

    async def add_spend(self, entries: list[SpendEntry], released: Sequence[str] = ()) -> None:
        """``SpendStore.add_spend``, and the reservations ``released`` deleted in the same transaction."""
        ...

    async def reserve_spend(self, client: str, key: str, usd: float, holder: str, lease_seconds: float,
                            windows: Sequence[tuple[str, str, float]]) -> tuple[int, float] | None:
        """Reserve ``usd`` for ``client`` under ``key`` (leased to ``holder``, renewed by its ``renew``) if each
        budget window ``(first_day, last_day, budget)`` has room after the ledger's spend and every instance's
        live reservations, atomically per client. None when reserved; else the first full window's index and
        what it has left."""
        ...

    async def release_reservation(self, key: str) -> None:
        """Delete the reservation ``key`` (a generation admitted and never run)."""
        ...

    async def reserved_spend(self, client: str | None) -> dict[str, float]:
        """USD held by live reservations per client (``client`` only, when given)."""
        ...

    async def record_outbox_try(self, message: OutboxMessage, worker: str) -> bool:
        """Store ``message``'s state after a try ``worker`` made, ending its claim, if ``worker`` still holds
        that claim; False (nothing written) when it lapsed and another instance claimed the message since."""
        ...

    async def claim_outbox(self, worker: str, now: datetime, limit: int, lease_seconds: float,
                           ids: Sequence[str] | None = None) -> list[OutboxMessage]:
        """Claim up to ``limit`` pending messages due by ``now`` (of ``ids`` only, when given) for one try each:
        none that another instance claimed, unless its claim lapsed. ``record_outbox_try`` (or a
        ``put_outbox``) ends the claim."""
        ...

    async def release_outbox(self, worker: str) -> None:
        """Give up ``worker``'s claims (a clean stop): other instances make those tries at once."""
        ...

    async def watch_events(self, job_id: str, seconds: float) -> None:
        """Announce unfinished job ``job_id``'s events (notice ``"event"``) for at least ``seconds`` more: someone
        here streams them or waits for the job's end while another instance may hold it. Events of a job nobody
        watches are stored without a word to anyone (``append_event``)."""
        ...

    async def note_push(self, job_id: str, attempt: int) -> None:
        """Keep a verified vendor push about unfinished job ``job_id`` and announce it (notice ``"push"``)."""
        ...

    async def take_pushes(self, worker: str, job_id: str | None = None) -> set[str]:
        """The jobs ``worker`` holds that have pushes kept (only ``job_id``, when given); the pushes are deleted."""
        ...


def shared_store(store: JobStore) -> SharedJobStore:
    """``store`` as the shared store its ``shared`` flag says it is; ``TypeError`` for a one-process store
    (a caller asking is a bug: it should have checked ``store.shared``)."""
    if not store.shared:
        raise TypeError(f"{type(store).__name__} is not shared by several instances")
    return cast(SharedJobStore, store)
