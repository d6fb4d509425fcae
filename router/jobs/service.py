"""``JobService``: accepts jobs durably, runs them through the orchestrator with bounded concurrency,
persists every vendor job id the moment it exists, and resumes unfinished jobs after a restart.

Resume rule: an attempt whose vendor job id was persisted is resumed by polling that job (no second submit,
no second bill); an attempt without one starts where the chain was.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from router.errors import GenerationCancelledError, TarashError
from router.handler import ProviderJob
from router.health import CircuitBreakers
from router.jobs.store import JobRecord, JobStore, VendorJob
from router.limits import ProviderLimits
from router.models import AnyConfig, AnyUpdate, AttemptMetadata, ExecutionMetadata, utc_now
from router.orchestrator import ChainObserver, ResumePoint, run_chain
from router.routes import CONFIG_TYPES, REQUEST_TYPES, Route

log = structlog.get_logger(logger_name="router.jobs")

ObserversFor = Callable[[str, str], Sequence[ChainObserver]]
PRUNE_EVERY_SECONDS = 3600.0
Event = tuple[int, str, dict[str, Any]]


class JobService:
    def __init__(
        self,
        store: JobStore,
        *,
        max_running: int = 64,
        retention_days: float = 7.0,
        observers: ObserversFor = lambda route, kind: (),
        breakers: CircuitBreakers | None = None,
        metrics: Any = None,
        limits: Callable[[], ProviderLimits | None] = lambda: None,
        media_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.retention = timedelta(days=retention_days)
        self._slots = asyncio.Semaphore(max_running)
        self._observers = observers
        self._breakers = breakers
        self._metrics = metrics
        self._limits = limits
        #: When set, finished videos given as vendor URLs are copied here (vendor URLs expire).
        self.media_dir = media_dir
        self._tasks: dict[str, asyncio.Task[None]] = {}
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
        self, route: Route, request: Any, *, owner: str | None = None, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Persist a job and start it; returns ``(job, created)``. A known idempotency key returns the
        existing job with ``created=False``. The job is durable before this returns."""
        if idempotency_key:
            existing = await self.store.find_idempotent(owner, idempotency_key)
            if existing is not None:
                return existing, False
        job = JobRecord(
            id=f"job_{uuid.uuid4().hex}",
            kind=route.kind,
            route=route.name,
            request=request.model_dump(mode="json"),
            # Never a key: api_key is excluded from every config dump.
            chain=[config.model_dump(mode="json", exclude={"fallback_configs"}) for config in route.chain],
            owner=owner,
            idempotency_key=idempotency_key,
        )
        await self.store.insert(job)
        self._seq[job.id] = 0
        self._launch(job)
        return job, True

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    async def list(self, *, kind: str | None = None, owner: str | None = None, limit: int = 20,
                   after: str | None = None) -> list[JobRecord]:
        return await self.store.list(kind=kind, owner=owner, limit=limit, after=after)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job (and its vendor job, where the vendor allows it). Finished jobs are left as they are."""
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> None:
        await self.cancel(job_id)
        await self.store.delete(job_id)

    async def events(self, job_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The job's events from the start (history replay), then live ones until its terminal event."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.setdefault(job_id, []).append(queue)
        try:
            last = 0
            for seq, event, data in await self.store.events(job_id):
                last = seq
                yield event, data
                if event in ("result", "error"):
                    return
            job = await self.store.get(job_id)
            if job is None or (job.finished and job_id not in self._tasks):
                return
            while True:
                seq, event, data = await queue.get()
                if seq <= last:
                    continue  # already replayed from history
                yield event, data
                if event in ("result", "error"):
                    return
        finally:
            self._subscribers[job_id].remove(queue)
            if not self._subscribers[job_id]:
                del self._subscribers[job_id]

    async def prune(self) -> int:
        removed = await self.store.prune(utc_now() - self.retention)
        if removed:
            log.info("jobs_pruned", removed=removed)
        if self._metrics is not None:
            self._metrics.job_store_size.set(await self.store.count())
        return removed

    # ---- running ------------------------------------------------------------------------------------------
    def _launch(self, job: JobRecord) -> None:
        self._tasks[job.id] = asyncio.create_task(self._run(job), name=f"job {job.id}")
        if self._metrics is not None:
            self._metrics.queue_depth.inc()

    async def _publish(self, job: JobRecord, event: str, data: dict[str, Any], *, persist: bool = True) -> None:
        """Send an event to live subscribers; store it for late ones unless ``persist`` is False."""
        seq = self._seq[job.id] = self._seq.get(job.id, 0) + 1
        if persist:
            await self.store.append_event(job.id, seq, event, data)
        for queue in self._subscribers.get(job.id, ()):
            queue.put_nowait((seq, event, data))

    async def _run(self, job: JobRecord) -> None:
        queued = True
        try:
            async with self._slots:
                queued = False
                if self._metrics is not None:
                    self._metrics.queue_depth.dec()
                await self._execute(job)
        except asyncio.CancelledError:
            if queued and self._metrics is not None:
                self._metrics.queue_depth.dec()
            if not self._stopping:
                await self._finish_cancelled(job)
        finally:
            self._tasks.pop(job.id, None)

    async def _execute(self, job: JobRecord) -> None:
        kind = job.kind
        request = REQUEST_TYPES[kind].model_validate(job.request)
        chain = [CONFIG_TYPES[kind].model_validate(config) for config in job.chain]
        job.status = "running"
        await self.store.save(job)
        observer = _JobObserver(self, job)
        try:
            response = await run_chain(
                kind, chain[0], request, observers=[observer, *self._observers(job.route, kind)],
                request_id=job.id, resume=_resume_point(job), chain=chain, breakers=self._breakers,
                keep_vendor_job=lambda: self._stopping,
                # An accepted job is never dropped for capacity: it waits for a provider slot.
                limits=self._limits(), wait_for_capacity=True,
            )
        except TarashError as exc:
            job.status = "failed"
            job.error = error_body(exc)
            job.execution_metadata = exc.execution_metadata.model_dump(mode="json") if exc.execution_metadata else None
            await self.store.save(job)
            await self._publish(job, "error", job.error | {"execution_metadata": job.execution_metadata})
            return
        job.status = "completed"
        job.progress_percent = 100
        job.result = response.model_dump(mode="json")
        job.execution_metadata = job.result.get("execution_metadata")
        if self.media_dir is not None and kind == "video" and isinstance(job.result.get("video"), str):
            copy = await self._copy_media(job.id, job.result["video"])
            if copy is not None:
                job.result["provider_metadata"]["local_copy"] = str(copy)
        await self.store.save(job)
        await self._publish(job, "result", job.result)

    async def _copy_media(self, job_id: str, url: str) -> Path | None:
        """Stream the vendor's video into DATA_DIR/media; a failure is logged, never fails the job."""
        assert self.media_dir is not None
        target = self.media_dir / f"{job_id}.mp4"
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
        await asyncio.shield(self.store.save(job))
        await asyncio.shield(self._publish(job, "error", job.error))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            await self.prune()


def error_body(error: TarashError) -> dict[str, Any]:
    from router.http.errors import status_of  # the status a client of this job would have seen

    return {"message": error.message, "type": error.type_name, "code": error.code, "status": status_of(error)}


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
        await self.service.store.save(self.job)  # before the first poll: a kill -9 from here on loses nothing

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        if isinstance(error, GenerationCancelledError) and self.service._stopping:  # noqa: SLF001
            return  # detached for a restart, not finished
        self.job.attempts.append(attempt.model_dump(mode="json"))
        self.job.vendor_job = None
        await self.service.store.save(self.job)

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
