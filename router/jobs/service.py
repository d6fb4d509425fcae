"""``JobService``: accepts jobs durably, runs them through the orchestrator with bounded concurrency,
persists every vendor job id the moment it exists, and resumes unfinished jobs after a restart.

Resume rule: an attempt whose vendor job id was persisted is resumed by polling that job (no second submit,
no second bill); an attempt without one starts where the chain was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from router.breakers import CircuitBreakers
from router.errors import GenerationCancelledError, TarashError, error_body
from router.jobs.store import Clock, JobRecord, JobStore, VendorJob
from router.limits import ProviderLimits
from router.metrics import Metrics
from router.models import (
    CONFIG_TYPES,
    REQUEST_TYPES,
    AnyConfig,
    AnyRequest,
    AnyUpdate,
    AttemptMetadata,
    ExecutionMetadata,
    media_form,
    utc_now,
)
from router.observers import ChainObserver
from router.orchestrator import Generation, ResumePoint, run_generation
from router.provider_job import ProviderJob
from router.routes import Route

if TYPE_CHECKING:  # router.budgets imports the store protocol from this package
    from router.budgets import Budgets

log = structlog.get_logger(logger_name="router.jobs")

ObserversFor = Callable[[str, str], Sequence[ChainObserver]]
PRUNE_EVERY_SECONDS = 3600.0
Event = tuple[int, str, dict[str, Any]]
TERMINAL_EVENTS = ("result", "error")


class IdempotencyKeyReusedError(Exception):
    """An idempotency key came back with a different request than the job it names."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"Idempotency-Key {job.idempotency_key!r} was used for a different request (job {job.id})")
        self.job = job


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-like values (bytes are hashed, so uploaded files count too)."""

    def encode(value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            return hashlib.sha256(value).hexdigest()
        return str(value)

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=encode).encode()).hexdigest()


class JobService:
    def __init__(
        self,
        store: JobStore,
        *,
        max_running: int = 64,
        retention_days: float = 7.0,
        observers: ObserversFor = lambda route, kind: (),
        breakers: CircuitBreakers | None = None,
        metrics: Metrics | None = None,
        limits: Callable[[], ProviderLimits] = ProviderLimits,
        media_dir: Path | None = None,
        clock: Clock = utc_now,
        push: Any = None,
        budgets: Budgets | None = None,
        outbound: Any = None,
    ) -> None:
        self.store = store
        #: Records each job's spend for its owner's budget when the job ends.
        self.budgets = budgets
        #: Job timestamps and retention read this clock (tests pass a fake one to age jobs).
        self.clock = clock
        #: ``router.webhooks.inbound.InboundWebhooks`` when vendors may push completions (PUBLIC_URL set).
        self.push = push
        #: ``router.webhooks.outbound.OutboundWebhooks`` when client webhooks are on (WEBHOOK_SECRET set).
        self.outbound = outbound
        self.retention = timedelta(days=retention_days)
        self._slots = asyncio.Semaphore(max_running)
        self._observers = observers
        self._breakers = breakers
        self._metrics = metrics
        self._limits = limits
        #: When set, finished videos given as vendor URLs are copied here (vendor URLs expire).
        self.media_dir = media_dir
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: The records running jobs mutate as they go: progress lives here, not in a store write per poll.
        self._live: dict[str, JobRecord] = {}
        self._queued: set[str] = set()  # launched, waiting for a slot (or not even started yet)
        self._subscribers: dict[str, list[asyncio.Queue[Event]]] = {}
        self._seq: dict[str, int] = {}
        self._stopping = False
        self._pruner: asyncio.Task[None] | None = None
        self.ready = False

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, prune old jobs, and resume every unfinished one."""
        await self.store.open()
        self._stopping = False
        await self.prune()
        last_seqs = await self.store.last_seqs()
        for job in await self.store.unfinished():
            self._seq[job.id] = last_seqs.get(job.id, 0)
            log.info("job_resumed", job_id=job.id, status=job.status,
                     vendor_job=job.vendor_job.id if job.vendor_job else None)
            self._launch(job)
        self._pruner = asyncio.create_task(self._prune_forever())
        self.ready = True

    async def stop(self) -> None:
        """Detach from running jobs without cancelling their vendor jobs: they resume at the next start."""
        self.ready = False
        self._stopping = True
        tasks = [*self._tasks.values(), *([self._pruner] if self._pruner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.close()

    # ---- API ----------------------------------------------------------------------------------------------
    async def create(
        self, route: Route, request: AnyRequest, *, owner: str | None = None, idempotency_key: str | None = None,
        request_fingerprint: str | None = None, webhook_url: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Persist a job and start it; returns ``(job, created)``. The job is durable before this returns.

        A known ``idempotency_key`` (per owner) returns the existing job with ``created=False``, also when two
        retries race; a different request under the same key raises ``IdempotencyKeyReusedError``.
        ``request_fingerprint`` identifies what the client sent (default: the route and the request).
        ``webhook_url`` (checked by the caller; needs ``outbound``) gets the job's outcome POSTed to it."""
        if idempotency_key and request_fingerprint is None:
            request_fingerprint = fingerprint(route.name, request.model_dump(mode="json"))
        job = JobRecord(
            id=f"job_{uuid.uuid4().hex}",
            kind=route.kind,
            route=route.name,
            request=request.model_dump(mode="json"),
            # Never a key: api_key is excluded from every config dump.
            chain=[config.model_dump(mode="json", exclude={"fallback_configs"}) for config in route.chain],
            owner=owner,
            idempotency_key=idempotency_key,
            fingerprint=request_fingerprint if idempotency_key else None,
        )
        job.created_at = job.updated_at = self.clock()
        if webhook_url is not None:
            assert self.outbound is not None, "webhook_url needs an OutboundWebhooks"
            message = self.outbound.new_message(job.id, webhook_url)
            job.webhook_id = message.id
            await self.store.put_outbox(message)  # before the job: once the job exists, so does its webhook
        if not await self.store.insert(job):
            assert idempotency_key is not None  # only the idempotency index can refuse a fresh id
            if webhook_url is not None:
                await self.store.delete(job.id)  # the webhook of a job that was never created
            existing = await self.store.find_idempotent(owner, idempotency_key)
            if existing is None:  # pruned or deleted in between: the key is free again
                return await self.create(route, request, owner=owner, idempotency_key=idempotency_key,
                                         request_fingerprint=request_fingerprint, webhook_url=webhook_url)
            if existing.fingerprint is not None and existing.fingerprint != request_fingerprint:
                raise IdempotencyKeyReusedError(existing)
            return existing, False
        self._seq[job.id] = 0
        if self._metrics is not None:
            self._metrics.job_store_size.inc()
        self._launch(job)
        return job, True

    async def get(self, job_id: str) -> JobRecord | None:
        """The stored job, with the live progress of a running one."""
        job = await self.store.get(job_id)
        return self._with_progress(job) if job is not None else None

    async def list(self, *, kind: str | None = None, owner: str | None = None, limit: int = 20,
                   after: str | None = None, status: str | None = None, route: str | None = None) -> list[JobRecord]:
        jobs = await self.store.list(kind=kind, owner=owner, limit=limit, after=after, status=status, route=route)
        return [self._with_progress(job) for job in jobs]

    def _with_progress(self, job: JobRecord) -> JobRecord:
        live = self._live.get(job.id)
        if live is not None and not job.finished:
            job.progress_percent = live.progress_percent  # polls are not persisted; the running record has them
        return job

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job (and its vendor job, where the vendor allows it). Finished jobs are left as they are."""
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            job = await self.store.get(job_id)
            if job is not None and not job.finished:
                # Cancelled before its task ever ran (a coroutine cancelled before its first step runs none
                # of its code), or while queued: nothing upstream to cancel, but it must not run at restart.
                await self._finish_cancelled(job)
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> None:
        """Cancel the job, then forget it (record, events and any local media copy)."""
        await self.cancel(job_id)
        await self.store.delete(job_id)
        await self._remove_media([job_id])
        if self._metrics is not None:
            self._metrics.job_store_size.set(await self.store.count())

    async def events(self, job_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The job's events from the start (history replay), then live ones until its terminal event."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.setdefault(job_id, []).append(queue)
        try:
            last = 0
            for seq, event, data in await self.store.events(job_id):
                last = seq
                yield event, data
                if event in TERMINAL_EVENTS:
                    return
            job = await self.store.get(job_id)
            if job is None:
                return
            ended = job.finished and job_id not in self._tasks
            while not ended or not queue.empty():
                seq, event, data = await queue.get()
                if seq <= last:
                    continue  # already replayed from history
                yield event, data
                if event in TERMINAL_EVENTS:
                    return
            # It ended without a terminal event reaching us: a kill between saving the record and writing its
            # event. The record has the outcome.
            yield terminal_event(job)
        finally:
            self._subscribers[job_id].remove(queue)
            if not self._subscribers[job_id]:
                del self._subscribers[job_id]

    async def prune(self) -> int:
        """Delete jobs finished longer than the retention ago (and their media copies); how many."""
        removed = await self.store.prune(self.clock() - self.retention)
        if removed:
            await self._remove_media(removed)
            log.info("jobs_pruned", removed=len(removed))
        if self._metrics is not None:
            self._metrics.job_store_size.set(await self.store.count())
        return len(removed)

    async def _remove_media(self, job_ids: Sequence[str]) -> None:
        if self.media_dir is None:
            return
        paths = [self._media_path(job_id) for job_id in job_ids]
        await asyncio.to_thread(lambda: [path.unlink(missing_ok=True) for path in paths])

    def _media_path(self, job_id: str) -> Path:
        assert self.media_dir is not None
        return self.media_dir / f"{job_id}.mp4"

    async def _save(self, job: JobRecord) -> None:
        """Save ``job`` stamped with the clock's time (retention counts from the last save of a finished job)."""
        job.updated_at = self.clock()
        await self.store.save(job)

    # ---- running ------------------------------------------------------------------------------------------
    def _launch(self, job: JobRecord) -> None:
        task = asyncio.create_task(self._run(job), name=f"job {job.id}")
        self._tasks[job.id] = task
        self._live[job.id] = job
        self._queued.add(job.id)
        if self._metrics is not None:
            self._metrics.queue_depth.inc()
        # A callback, not a finally: it also runs for a task cancelled before its first step.
        task.add_done_callback(lambda _: self._forget(job.id))

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._live.pop(job_id, None)
        if self.push is not None:
            self.push.forget(job_id)
        self._dequeue(job_id)

    def _dequeue(self, job_id: str) -> None:
        if job_id in self._queued:
            self._queued.discard(job_id)
            if self._metrics is not None:
                self._metrics.queue_depth.dec()

    async def _publish(self, job: JobRecord, event: str, data: dict[str, Any], *, persist: bool = True) -> None:
        """Send an event to live subscribers; store it for late ones unless ``persist`` is False."""
        seq = self._seq[job.id] = self._seq.get(job.id, 0) + 1
        if persist:
            await self.store.append_event(job.id, seq, event, data)
        for queue in self._subscribers.get(job.id, ()):
            queue.put_nowait((seq, event, data))

    async def _run(self, job: JobRecord) -> None:
        try:
            async with self._slots:
                self._dequeue(job.id)
                await self._execute(job)
        except asyncio.CancelledError:
            if not self._stopping:
                await self._finish_cancelled(job)
        except Exception:  # noqa: BLE001 - a bug or a broken store must not leave the job "running" forever
            log.exception("job_crashed", job_id=job.id)
            job.status = "failed"
            job.error = {"message": "internal error while running the job; see the daemon log",
                         "type": "server_error", "code": "internal_error", "status": 500}
            with contextlib.suppress(Exception):  # the store may be what failed: the next start retries the job
                await self._finish(job)

    async def _execute(self, job: JobRecord) -> None:
        kind = job.kind
        request = REQUEST_TYPES[kind].model_validate(job.request)
        chain = tuple(CONFIG_TYPES[kind].model_validate(config) for config in job.chain)
        job.status = "running"
        await self._save(job)
        observer = _JobObserver(self, job)
        observers = [observer, *self._observers(job.route, kind)]
        if self.budgets is not None:
            observers.append(self.budgets.recorder(job.owner or "anonymous", job.route, job.id))
        try:
            response = await run_generation(Generation(
                kind, request, chain, generation_id=job.id, observers=observers,
                breakers=self._breakers, limits=self._limits(),
                # An accepted job is never dropped for capacity: it waits for a provider slot.
                wait_for_capacity=True, keep_vendor_job=lambda: self._stopping, resume=_resume_point(job),
                push_for=self.push.channels(job) if self.push is not None else None,
            ))
        except TarashError as exc:
            job.status = "failed"
            job.error = error_body(exc)
            job.execution_metadata = exc.execution_metadata.model_dump(mode="json") if exc.execution_metadata else None
            await self._finish(job)
            return
        job.status = "completed"
        job.progress_percent = 100
        job.result = response.model_dump(mode="json")
        job.execution_metadata = job.result.get("execution_metadata")
        await self._finish(job)  # first: a copy takes a while, and a kill during it must not lose the result
        video = job.result.get("video")
        if self.media_dir is not None and kind == "video" and isinstance(video, str) and media_form(video) == "url":
            copy = await self._copy_media(job.id, video)
            if copy is not None:
                job.result["provider_metadata"]["local_copy"] = str(copy)
                await self._save(job)

    async def _finish(self, job: JobRecord) -> None:
        """Store a finished job, then tell subscribers (``events()`` covers a kill between the two)."""
        await self._save(job)
        await self._publish(job, *terminal_event(job))
        if job.webhook_id is not None and self.outbound is not None:
            await self.outbound.release(job)  # a kill before this: OutboundWebhooks.start releases it

    async def _copy_media(self, job_id: str, url: str) -> Path | None:
        """Stream the vendor's video into DATA_DIR/media; a failure is logged, never fails the job."""
        assert self.media_dir is not None
        target = self._media_path(job_id)
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
            timeout = aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=60)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                response.raise_for_status()
                with target.open("wb") as out:
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        await asyncio.to_thread(out.write, chunk)
            return target
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("media_copy_failed", job_id=job_id, error=type(exc).__name__)
            return None

    async def _finish_cancelled(self, job: JobRecord) -> None:
        job.status = "cancelled"
        job.error = {"message": "the job was cancelled", "type": "generation_cancelled_error", "code": "cancelled"}
        await asyncio.shield(self._finish(job))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            await self.prune()


def terminal_event(job: JobRecord) -> tuple[str, dict[str, Any]]:
    """A finished job's last event: ``result`` with the response, or ``error`` with the error and attempts."""
    if job.status == "completed":
        return "result", job.result or {}
    return "error", (job.error or {}) | ({"execution_metadata": job.execution_metadata} if job.execution_metadata else {})


def _resume_point(job: JobRecord) -> ResumePoint | None:
    if not job.attempts and job.vendor_job is None:
        return None
    attempts = [AttemptMetadata.model_validate(a) for a in job.attempts]
    vendor = job.vendor_job
    return ResumePoint(
        next_attempt=vendor.attempt_number if vendor else len(attempts) + 1,
        attempts=attempts,
        job=ProviderJob(id=vendor.id, data=vendor.data) if vendor else None,
        started_at=datetime.fromisoformat(vendor.started_at) if vendor and vendor.started_at else None,
    )


#: A progress update is written to the job's history when its status or percentage changes, or this long
#: after the last one written; live subscribers get every update. (A 10,000-job run wrote 17 rows per job
#: before this; most were identical "still in progress" polls.)
UPDATE_PERSIST_INTERVAL = 30.0


class _JobObserver(ChainObserver):
    """Persists what a restart needs, the moment it happens."""

    def __init__(self, service: JobService, job: JobRecord) -> None:
        self.service = service
        self.job = job
        self._last_kept: tuple[str, int | None] | None = None
        self._last_kept_at = 0.0

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None:
        self.job.vendor_job = VendorJob(attempt.attempt_number, job.id, job.data, attempt.started_at.isoformat())
        await self.service._save(self.job)  # noqa: SLF001 - before the first poll: a kill -9 from here on loses nothing

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        if isinstance(error, GenerationCancelledError) and self.service._stopping:  # noqa: SLF001
            return  # detached for a restart, not finished
        if error is None:
            # The completed record is saved next, with the result. Until then the vendor job stays on record, so
            # a kill in between re-polls it (done: its result is fetched) instead of running the next attempt.
            return
        self.job.attempts.append(attempt.model_dump(mode="json"))
        self.job.vendor_job = None
        await self.service._save(self.job)  # noqa: SLF001

    async def update(self, update: AnyUpdate) -> None:
        if update.result is not None or update.error is not None:
            return  # the terminal event is published by the service with the stored result
        if update.progress_percent is not None:
            self.job.progress_percent = update.progress_percent
        now = asyncio.get_running_loop().time()
        key = (update.status, update.progress_percent)
        keep = key != self._last_kept or now - self._last_kept_at >= UPDATE_PERSIST_INTERVAL
        if keep:
            self._last_kept, self._last_kept_at = key, now
        await self.service._publish(self.job, "update", update.model_dump(mode="json"), persist=keep)  # noqa: SLF001

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        self.job.execution_metadata = metadata.model_dump(mode="json")
