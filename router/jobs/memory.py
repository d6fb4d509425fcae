"""A job store in this process's memory: the plainest implementation of the ``JobStore`` contract.

For unit tests of the job logic and for embedding ``JobService`` where jobs need not outlive the process:
nothing survives it. Records are copied in and out, as a database would, so a caller mutating a record it holds
changes nothing until it saves.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from router.jobs.store import LIST_REQUEST_FIELDS, TERMINAL, JobRecord, OnNotice, OutboxMessage, OutboxStatus, SpendEntry, require_timestamps


class MemoryJobStore:
    """Jobs and their events in dicts. Single event loop, no awaits inside a method: each one is atomic.
    ``clock`` (seconds) times leases."""

    shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._events: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {}
        self._outbox: dict[str, OutboxMessage] = {}
        self._lease_until: dict[str, float] = {}
        self._clock = clock
        self._rows = 0
        self._spend: dict[tuple[str, str, str, str, str], SpendEntry] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # ---- jobs ---------------------------------------------------------------------------------------------
    async def insert(self, job: JobRecord, *, lease_seconds: float | None = None, body: str | None = None) -> bool:
        require_timestamps(job)
        taken = job.id in self._jobs or (
            job.idempotency_key is not None and self._idempotent(job.owner, job.idempotency_key) is not None)
        if taken:
            return False
        self._jobs[job.id] = copy.deepcopy(job)
        if job.worker and lease_seconds:
            self._lease_until[job.id] = self._clock() + lease_seconds
        else:
            self._jobs[job.id].worker = None
        self._rows += 1
        return True

    async def save(self, job: JobRecord, *, body: str | None = None) -> bool:
        require_timestamps(job)
        stored = self._jobs.get(job.id)
        if stored is None or stored.worker != job.worker:
            return False
        # request, chain and the lease columns are not the saver's to change (as in the SQL stores).
        self._jobs[job.id] = copy.deepcopy(job)
        self._jobs[job.id].request, self._jobs[job.id].chain = stored.request, stored.chain
        self._jobs[job.id].cancel_requested = stored.cancel_requested
        self._rows += 1
        return True

    async def claim(self, worker: str, limit: int, lease_seconds: float) -> list[JobRecord]:
        now = self._clock()
        free = [job for job in sorted(self._jobs.values(), key=_newest_first_key) if job.status not in TERMINAL
                and (job.worker is None or self._lease_until.get(job.id, 0.0) < now)][:limit]
        for job in free:
            job.worker = worker
            self._lease_until[job.id] = now + lease_seconds
        self._rows += len(free)
        return [copy.deepcopy(job) for job in free]

    async def waiting(self) -> int:
        now = self._clock()
        return sum(1 for job in self._jobs.values() if job.status not in TERMINAL
                   and (job.worker is None or self._lease_until.get(job.id, 0.0) < now))

    async def renew(self, worker: str, lease_seconds: float) -> dict[str, bool]:
        held = {job.id: job.cancel_requested for job in self._jobs.values()
                if job.worker == worker and job.status not in TERMINAL}
        for job_id in held:
            self._lease_until[job_id] = self._clock() + lease_seconds
        return held

    async def release(self, worker: str) -> None:
        for job in self._jobs.values():
            if job.worker == worker and job.status not in TERMINAL:
                job.worker = None
                self._lease_until.pop(job.id, None)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is not None and job.status not in TERMINAL:
            job.cancel_requested = True
        return copy.deepcopy(job) if job is not None else None

    async def watch(self, on_notice: OnNotice) -> None:
        await asyncio.Event().wait()  # one process: the service hears its own doings directly

    async def get(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return copy.deepcopy(job) if job is not None else None

    async def find_idempotent(self, owner: str | None, key: str) -> JobRecord | None:
        job = self._idempotent(owner, key)
        return copy.deepcopy(job) if job is not None else None

    def _idempotent(self, owner: str | None, key: str) -> JobRecord | None:
        return next((job for job in self._jobs.values()
                     if job.idempotency_key == key and (job.owner or "") == (owner or "")), None)

    async def list(self, *, kind: str | None, owner: str | None, limit: int, after: str | None,
                   status: str | None = None, route: str | None = None, brief: bool = False) -> list[JobRecord]:
        jobs = sorted(self._jobs.values(), key=_newest_first_key, reverse=True)
        if after is not None:
            cursor = self._jobs.get(after)
            if cursor is None:
                return []
            jobs = [job for job in jobs if _newest_first_key(job) < _newest_first_key(cursor)]
        jobs = [job for job in jobs if (not kind or job.kind == kind) and (not status or job.status == status)
                and (not route or job.route == route) and (owner is None or job.owner == owner)]
        jobs = jobs[:limit]
        if brief:  # what list views show, without copying inline media or the chain
            jobs = [replace(job, chain=[], request={k: v for k, v in job.request.items() if k in LIST_REQUEST_FIELDS})
                    for job in jobs]
        return [copy.deepcopy(job) for job in jobs]

    async def unfinished(self) -> list[JobRecord]:
        jobs = sorted((job for job in self._jobs.values() if job.status not in TERMINAL), key=_newest_first_key)
        return [copy.deepcopy(job) for job in jobs]

    async def delete(self, job_id: str) -> None:
        for message_id in [m.id for m in self._outbox.values() if m.job_id == job_id]:
            del self._outbox[message_id]
        self._lease_until.pop(job_id, None)
        if self._jobs.pop(job_id, None) is not None:
            self._rows += 1 + len(self._events.pop(job_id, {}))

    async def prune(self, finished_before: datetime) -> list[str]:
        ids = [job.id for job in self._jobs.values()
               if job.status in TERMINAL and job.updated_at is not None and job.updated_at < finished_before]
        for job_id in ids:
            await self.delete(job_id)
        return ids

    # ---- outbox -------------------------------------------------------------------------------------------
    async def put_outbox(self, message: OutboxMessage) -> None:
        self._outbox[message.id] = copy.deepcopy(message)
        self._rows += 1

    async def outbox_for_job(self, job_id: str) -> OutboxMessage | None:
        found = sorted((m for m in self._outbox.values() if m.job_id == job_id), key=lambda m: m.created_at)
        return copy.deepcopy(found[0]) if found else None

    async def outbox(self, status: OutboxStatus) -> list[OutboxMessage]:
        found = sorted((m for m in self._outbox.values() if m.status == status), key=lambda m: (m.created_at, m.id))
        return [copy.deepcopy(m) for m in found]

    async def count(self) -> int:
        return len(self._jobs)

    @property
    def rows_written(self) -> int:
        return self._rows

    # ---- events -------------------------------------------------------------------------------------------
    async def append_event(self, job_id: str, seq: int, event: str, data: dict[str, Any]) -> None:
        events = self._events.setdefault(job_id, {})
        if seq not in events:
            events[seq] = (event, json.loads(json.dumps(data, default=str)))
            self._rows += 1

    async def events(self, job_id: str, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        events = self._events.get(job_id, {})
        return [(seq, events[seq][0], copy.deepcopy(events[seq][1])) for seq in sorted(events) if seq > after]

    async def last_seqs(self, job_ids: Sequence[str] | None = None) -> dict[str, int]:
        wanted = set(job_ids) if job_ids is not None else None
        return {job_id: max(events) for job_id, events in self._events.items()
                if events and (wanted is None or job_id in wanted)}


    # ---- spend --------------------------------------------------------------------------------------------
    async def add_spend(self, entries: list[SpendEntry]) -> None:
        for entry in entries:
            key = (entry.client, entry.day, entry.route, entry.provider, entry.model)
            held = self._spend.get(key)
            self._spend[key] = entry if held is None else SpendEntry(
                *key, usd=held.usd + entry.usd, generations=held.generations + entry.generations)

    async def spend(self, client: str | None, first_day: str, last_day: str) -> list[SpendEntry]:
        rows = [e for e in self._spend.values()
                if first_day <= e.day <= last_day and (client is None or e.client == client)]
        return sorted(rows, key=lambda e: (e.day, e.client, e.route))


def _newest_first_key(job: JobRecord) -> tuple[datetime, str]:
    assert job.created_at is not None  # required at insert
    return job.created_at, job.id
