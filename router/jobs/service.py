"""``JobService``: accepts jobs durably, runs them through the orchestrator with bounded concurrency,
persists every vendor job id the moment it exists, and resumes unfinished jobs after a restart.

Resume rule: an attempt whose vendor job id was persisted is resumed by polling that job (no second submit,
no second bill); an attempt without one starts where the chain was.

Several instances may share a store: each runs only the jobs it holds a lease on (see ``router.jobs.store``),
claims more as it has room, renews its leases every third of their length, and stops a job locally (without
cancelling the vendor job) the moment a fenced save says another instance holds it now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from router.breakers import CircuitBreakers
from router.deadlines import CallDeadlines
from router.errors import GenerationCancelledError, TarashError, error_body
from router.fetch import RESULT_VIDEO, FetchError, iter_limited, open_url
from router.handler import is_stepped
from router.ids import SecretIds
from router.jobs.pacer import PollPacer
from router.jobs.store import (Clock, JobRecord, JobStore, JobStoreUnavailableError, Notice, StoredCopy, VendorJob,
                               shared_store)
from router.limits import ProviderLimits
from router.log_setup import get_logger
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
from router.registry import get_handler
from router.routes import Route
from router.steps import cancel_vendor_job
from router.tasks import cancel_and_wait

if TYPE_CHECKING:  # router.budgets and router.webhooks import the store protocol from this package
    from router.budgets import Budgets
    from router.webhooks.inbound import InboundWebhooks
    from router.webhooks.outbound import OutboundWebhooks

log = get_logger("router.jobs")

ObserversFor = Callable[[str, str], Sequence[ChainObserver]]
#: The validated request and the route a job was created from in this process.
Created = tuple[AnyRequest, Route]
PRUNE_EVERY_SECONDS = 3600.0
Event = tuple[int, str, dict[str, Any]]
TERMINAL_EVENTS = ("result", "error")
#: Without a notification, look for claimable jobs (a lapsed lease nobody announces) this often.
CLAIM_POLL_SECONDS = 1.0
#: How long a create waits for a claim in flight before it leaves its job queued for the next claim.
CLAIM_WAIT_SECONDS = 1.0
#: An event stream of a job running elsewhere re-reads the store this often if no notification came.
REMOTE_POLL_SECONDS = 1.0
#: It also asks (a shared store) for the job's events to be announced this long, again at half of it: a store
#: shared by several instances announces only the events someone elsewhere watches.
WATCH_SECONDS = 30.0
#: A write that must happen (a vendor job id, a job's outcome) is retried while the store is unreachable, the
#: wait doubling from the first to the last.
WRITE_RETRY_SECONDS = (0.05, 5.0)
#: A graceful stop waits this long for submits already going out to be answered and their vendor job ids
#: recorded (the ids are what a restart resumes; a submit cut off unanswered would end ambiguous instead).
#: One vendor call usually answers in well under a second; the stop goes on without the late ones.
SUBMIT_GRACE_SECONDS = 10.0
#: DELETE of a job another instance runs waits this long for that instance to confirm the cancel.
REMOTE_CANCEL_WAIT_SECONDS = 10.0
CANCELLED_ERROR = {"message": "the job was cancelled", "type": "generation_cancelled_error", "code": "cancelled"}


def default_instance_id() -> str:
    """host-pid-random: unique per process, readable in logs and in the job store's ``worker`` column."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaseLostError(Exception):
    """A fenced save found the job held by another instance: this one stops running it."""


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
        push: InboundWebhooks | None = None,
        budgets: Budgets | None = None,
        outbound: OutboundWebhooks | None = None,
        instance_id: str | None = None,
        lease_seconds: float = 30.0,
        vendor_job_grace: float = 10.0,
        submit_grace: float = SUBMIT_GRACE_SECONDS,
        deadlines: CallDeadlines | None = None,
    ) -> None:
        self.store = store
        #: Records each job's spend for its owner's budget when the job ends.
        self.budgets = budgets
        #: Job timestamps and retention read this clock (tests pass a fake one to age jobs).
        self.clock = clock
        #: Set when vendors may push completions (PUBLIC_URL set).
        self.push = push
        #: Set when client webhooks are on (WEBHOOK_SECRET set).
        self.outbound = outbound
        self.retention = timedelta(days=retention_days)
        self.max_running = max_running
        #: This instance's name on the leases it holds.
        self.instance_id = instance_id or default_instance_id()
        self.lease_seconds = lease_seconds
        self._observers = observers
        self._breakers = breakers
        self._metrics = metrics
        self._limits = limits
        #: The attempts' long timeouts on one tick (``router.deadlines``): a running job holds no timer of its own.
        self._deadlines = deadlines or CallDeadlines()
        #: When set, finished videos given as vendor URLs are copied here (vendor URLs expire).
        self.media_dir = media_dir
        self._ids = SecretIds()  # job ids: unguessable
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the jobs this instance holds and runs
        #: Slots promised to creates whose insert is in flight, and set while no claim is: a claim may take every
        #: free slot, so a create decides where its job runs only once the claim's jobs are launched. Without
        #: both, a create and a claim can count the same free slot and run more than ``max_running`` at once.
        self._promised = 0
        self._claims_settled = asyncio.Event()
        self._claims_settled.set()
        #: The records running jobs mutate as they go: progress lives here, not in a store write per poll.
        self._live: dict[str, JobRecord] = {}
        #: On a store no other process writes (``shared`` False): each job running here as its last committed write
        #: left it, so ``get`` answers without queueing behind the store's threads (bench.scale, 10,000 jobs). The
        #: copy is taken as the write is issued and kept once the write is committed: never a state the store lacks.
        self._committed: dict[str, StoredCopy] | None = None if store.shared else {}
        self._leased_at: dict[str, float] = {}  # loop time each lease was taken (renewals judge only older ones)
        self._detached: set[str] = set()  # stopped here because another instance holds them now
        self._subscribers: dict[str, list[_Subscriber]] = {}
        self._seq: dict[str, int] = {}
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._cancelling: set[str] = set()  # jobs a cancel asked elsewhere is being carried out for
        self._wake = asyncio.Event()  # a job may be claimable
        #: The last claim was bounded by room (or none ran for lack of it): a claimable job may be waiting, so a
        #: slot freed wakes the claim loop. Otherwise a job ending frees a slot nothing waits for (10,000 running
        #: jobs ending made 400 claims a second, each a scan of every unfinished row), and whatever becomes
        #: claimable later wakes it itself: a new queued job, a store notification, a lapsed lease (the poll).
        self._room_wanted = True
        #: Also told of every store notification (router/cluster.py: slots given back, circuits).
        self.notice_listeners: list[Callable[[Notice, str, float | None], None]] = []
        self._started = False
        self._outage = False  # the store failed and has not answered since
        #: How long a new vendor job id may wait for the store before its vendor job is cancelled (see provider_job).
        self.vendor_job_grace = vendor_job_grace
        self._unsaved_vendor_job: set[str] = set()  # jobs stopped because their vendor job id could not be saved
        #: How long ``stop`` lets submits going out finish (``SUBMIT_GRACE_SECONDS``).
        self.submit_grace = submit_grace
        self._sending: set[str] = set()  # jobs whose submit is going out, its answer not recorded yet
        self._answered = asyncio.Event()  # one of them was answered (or ended)
        self._pacer = PollPacer()  # the waits between polls of every running job: one timer, bounded bursts
        if metrics is not None:
            metrics.job_store_available.set(1)

    @property
    def ready(self) -> bool:
        """Started, and the store answering (``/readyz``)."""
        return self._started and not self._outage

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, prune old jobs, and start claiming: unfinished jobs nobody holds are resumed."""
        await self.store.open()
        self._stopping = False
        # Leases under this id are from this instance's previous run (a stable INSTANCE_ID): free them now
        # instead of waiting for them to lapse.
        await self.store.release(self.instance_id)
        await self.prune()
        self._wake.set()
        self._loops = [asyncio.create_task(loop()) for loop in (self._prune_forever, self._claim_forever,
                                                                  self._renew_forever, self._watch)]
        self._started = True

    async def stop(self) -> None:
        """Detach from running jobs without cancelling their vendor jobs, and release their leases: another
        instance (or this one's next start) resumes them. Submits already going out get ``submit_grace`` seconds
        to be answered and recorded first (no new one starts), so a rolling restart leaves no job ambiguous."""
        self._started = False
        self._stopping = True
        await self._let_submits_finish()
        await cancel_and_wait([*self._tasks.values(), *self._loops, *self._side_tasks])
        if self.budgets is not None:  # spend recorded by now (detached jobs' too) reaches the store before it closes
            try:
                await self.budgets.writer.flush()
            except Exception as exc:  # noqa: BLE001 - the store is down: say what is lost, stop anyway
                log.error("spend_lost_at_shutdown", error=str(exc))
        with contextlib.suppress(Exception):  # the store may be down: the leases then lapse by themselves
            await self.store.release(self.instance_id)
        await self.store.close()

    async def _let_submits_finish(self) -> None:
        if not self._sending:
            return
        log.info("waiting_for_submits", jobs=len(self._sending), grace_seconds=self.submit_grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.submit_grace
        while self._sending and (left := deadline - loop.time()) > 0:
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._answered.wait()
        if self._sending:
            log.warning("submits_unanswered_at_shutdown", jobs=len(self._sending), grace_seconds=self.submit_grace)

    def _sent(self, job_id: str) -> None:
        """``job_id``'s submit was answered (its vendor job id recorded) or its attempt ended."""
        if job_id in self._sending:
            self._sending.discard(job_id)
            self._answered.set()

    # ---- API ----------------------------------------------------------------------------------------------
    def new_id(self) -> str:
        """A fresh job id (128 random bits)."""
        return f"job_{self._ids.next()}"

    async def create(
        self, route: Route, request: AnyRequest, *, owner: str | None = None, idempotency_key: str | None = None,
        request_fingerprint: str | None = None, webhook_url: str | None = None, job_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Persist a job and start it; returns ``(job, created)``. The job is durable before this returns.

        A known ``idempotency_key`` (per owner) returns the existing job with ``created=False``, also when two
        retries race; a different request under the same key raises ``IdempotencyKeyReusedError``.
        ``request_fingerprint`` identifies what the client sent (default: the route and the request).
        ``webhook_url`` (checked by the caller; needs ``outbound``) gets the job's outcome POSTed to it.
        ``job_id`` (from ``new_id``): the id to give a new job, known before it is created (the key of its budget
        reservation, which its spend recorder ends)."""
        if idempotency_key and request_fingerprint is None:
            request_fingerprint = fingerprint(route.name, request.model_dump(mode="json"))
        job = JobRecord(
            id=job_id or self.new_id(),
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
        # With room here the job is leased to this instance as it is written (no claim round trip); else it
        # waits in the store for whichever instance has room first.
        if not self._claims_settled.is_set():
            with contextlib.suppress(TimeoutError):  # a slow store: queue the job rather than keep the client
                async with asyncio.timeout(CLAIM_WAIT_SECONDS):
                    await self._claims_settled.wait()
        run_here = self._claims_settled.is_set() and self._free_slots() > 0
        job.worker = self.instance_id if run_here else None
        self._promised += run_here
        committed = self._copy_to_keep(job) if run_here else None
        try:
            inserted = await self.store.insert(job, lease_seconds=self.lease_seconds,
                                               body=None if committed is None else committed.body)
        except JobStoreUnavailableError as exc:
            self._store_error("insert", exc)
            raise  # nothing was stored: the client is told 503, never a 202 that is not durable
        finally:
            self._promised -= run_here  # launched below with no await in between, or not at all
        self._store_answered()
        if not inserted:
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
        if run_here:
            self._launch(job, committed, (request, route))
        else:
            self._wake.set()
        return job, True

    async def get(self, job_id: str) -> JobRecord | None:
        """The stored job, with the live progress of a running one."""
        committed = self._committed.get(job_id) if self._committed is not None else None
        job = committed.record() if committed is not None else await self.store.get(job_id)
        return self._with_progress(job) if job is not None else None

    async def list(self, *, kind: str | None = None, owner: str | None = None, limit: int = 20,
                   after: str | None = None, status: str | None = None, route: str | None = None) -> list[JobRecord]:
        """A page of jobs for a list view: brief records (their ``request`` holds only ``LIST_REQUEST_FIELDS``)."""
        jobs = await self.store.list(kind=kind, owner=owner, limit=limit, after=after, status=status, route=route,
                                     brief=True)
        return [self._with_progress(job) for job in jobs]

    def _with_progress(self, job: JobRecord) -> JobRecord:
        live = self._live.get(job.id)
        if live is not None and not job.finished:
            job.progress_percent = live.progress_percent  # polls are not persisted; the running record has them
        return job

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job (and its vendor job, where the vendor allows it). Finished jobs are left as they are.

        A job another instance holds is marked; the holder hears it and cancels. The answer waits (boundedly) for
        that, so ``cancelled`` is said only once it is true."""
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            job = await self.store.get(job_id)
            if job is not None and not job.finished and job.worker == self.instance_id:
                # Cancelled before its task ever ran (a coroutine cancelled before its first step runs none
                # of its code): nothing upstream to cancel, but it must not run again.
                await self._finish_cancelled(job)
            return await self.store.get(job_id)
        job = await self.store.request_cancel(job_id)
        if job is None or job.finished:
            return job
        if job.worker is None:
            # Nobody holds it (queued): cancelled right here, fenced so a claim in between wins (and, having
            # read the request, cancels it itself).
            job.status = "cancelled"
            job.error = dict(CANCELLED_ERROR)
            job.updated_at = self.clock()
            if await self.store.save(job):
                await self._publish(job, *terminal_event(job))
                return job
        return await self._wait_finished(job_id, REMOTE_CANCEL_WAIT_SECONDS)

    async def _wait_finished(self, job_id: str, timeout: float) -> JobRecord | None:
        """The job once finished, or as it is after ``timeout``."""
        subscriber = self._subscribe(job_id)
        watched_at = -math.inf
        try:
            async with asyncio.timeout(timeout):
                while True:
                    watched_at = await self._watch_elsewhere(job_id, watched_at)
                    if (job := await self.store.get(job_id)) is None or job.finished:
                        break
                    await subscriber.wait(REMOTE_POLL_SECONDS)
        except TimeoutError:
            pass
        finally:
            self._unsubscribe(job_id, subscriber)
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> None:
        """Cancel the job, then forget it (record, events and any local media copy)."""
        await self.cancel(job_id)
        await self.store.delete(job_id)
        await self._remove_media([job_id])
        if self._metrics is not None:
            self._metrics.job_store_size.set(await self.store.count())

    async def events(self, job_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The job's events from the start (history replay), then live ones until its terminal event, wherever
        the job runs: this instance's own events come straight from its task (every update); another
        instance's from the store, read when a notification says there are new ones."""
        subscriber = self._subscribe(job_id)  # before reading history: nothing falls in between
        watched_at = -math.inf
        try:
            watched_at = await self._watch_elsewhere(job_id, watched_at)
            last = 0
            for seq, event, data in await self.store.events(job_id):
                last = seq
                yield event, data
                if event in TERMINAL_EVENTS:
                    return
            while True:
                watched_at = await self._watch_elsewhere(job_id, watched_at)
                fresh = subscriber.take()
                if job_id not in self._tasks:
                    fresh += await self.store.events(job_id, after=last)
                progressed = False
                for seq, event, data in sorted(fresh, key=lambda item: item[0]):
                    if seq <= last:
                        continue  # already seen
                    last, progressed = seq, True
                    yield event, data
                    if event in TERMINAL_EVENTS:
                        return
                if not progressed and job_id not in self._tasks:
                    job = await self.store.get(job_id)
                    if job is None:
                        return
                    if job.finished:
                        # Ended without a terminal event reaching us: a kill between saving the record and
                        # writing its event. The record has the outcome.
                        yield terminal_event(job)
                        return
                await subscriber.wait(REMOTE_POLL_SECONDS)
        finally:
            self._unsubscribe(job_id, subscriber)

    async def _watch_elsewhere(self, job_id: str, watched_at: float) -> float:
        """While ``job_id`` runs elsewhere, keep its events announced (a shared store announces only watched
        jobs' events), asking again at half of ``WATCH_SECONDS`` after ``watched_at``; when it last asked (loop
        time). A job running here needs none: its events reach its subscribers straight from its task."""
        now = asyncio.get_running_loop().time()
        if not self.store.shared or job_id in self._tasks or now - watched_at < WATCH_SECONDS / 2:
            return watched_at
        try:
            await shared_store(self.store).watch_events(job_id, WATCH_SECONDS)
        except JobStoreUnavailableError:
            return watched_at  # unannounced, a stream still reads the store every second; asked again then
        return now

    def _subscribe(self, job_id: str) -> _Subscriber:
        subscriber = _Subscriber()
        self._subscribers.setdefault(job_id, []).append(subscriber)
        return subscriber

    def _unsubscribe(self, job_id: str, subscriber: _Subscriber) -> None:
        self._subscribers[job_id].remove(subscriber)
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

    async def _save(self, job: JobRecord, *, give_up_after: float | None = None) -> None:
        """Save ``job`` stamped with the clock's time (retention counts from the last save of a finished job),
        fenced by its lease. If another instance holds the job now, stop it here without touching the vendor
        job (the new holder resumes it) and raise ``LeaseLostError``."""
        job.updated_at = self.clock()
        delay = WRITE_RETRY_SECONDS[0]
        deadline = None if give_up_after is None else asyncio.get_running_loop().time() + give_up_after
        while True:
            # What is written is what is kept: the job as it is now, encoded once for both (each retry again).
            committed = self._copy_to_keep(job) if job.id in self._live else None
            try:
                saved = await self.store.save(job, body=None if committed is None else committed.body)
                break
            except JobStoreUnavailableError as exc:  # keep the job (its vendor job polls on) until the store is back
                self._store_error("save", exc)
                if deadline is not None and asyncio.get_running_loop().time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_SECONDS[1])
        self._store_answered()
        if saved:
            if committed is not None and self._committed is not None and job.id in self._live:
                self._committed[job.id] = committed
            return
        self._detach(job.id, "a save found the job held by another instance")
        raise LeaseLostError(job.id)

    # ---- running ------------------------------------------------------------------------------------------
    def _launch(self, job: JobRecord, committed: StoredCopy | None, created: Created | None = None) -> None:
        """Run ``job``; ``committed``: its ``_copy_to_keep`` as the store holds it (claimed, or just inserted);
        ``created``: the request and route a job inserted by this process was made from (see ``_execute``)."""
        task = asyncio.create_task(self._run(job, created), name=f"job {job.id}")
        self._tasks[job.id] = task
        self._live[job.id] = job
        if self._committed is not None and committed is not None:
            self._committed[job.id] = committed
        self._leased_at[job.id] = asyncio.get_running_loop().time()
        # A callback, not a finally: it also runs for a task cancelled before its first step.
        task.add_done_callback(lambda _: self._forget(job.id))

    def _forget(self, job_id: str) -> None:
        self._sent(job_id)
        self._tasks.pop(job_id, None)
        self._live.pop(job_id, None)
        self._forget_committed(job_id)
        if self.push is not None:
            self.push.forget(job_id)
        self._leased_at.pop(job_id, None)
        self._detached.discard(job_id)
        self._poke(job_id)  # a stream reading this job locally switches to the store
        if self._room_wanted:
            self._wake.set()  # a slot is free, and a job may be waiting for one

    def _copy_to_keep(self, job: JobRecord) -> StoredCopy | None:
        """The copy of ``job`` that ``get`` answers once the write of it now going out is committed (None: none kept)."""
        return StoredCopy.of(job) if self._committed is not None else None

    def _forget_committed(self, job_id: str) -> None:
        """``get`` reads ``job_id`` from the store again."""
        if self._committed is not None:
            self._committed.pop(job_id, None)

    def _poke(self, job_id: str) -> None:
        for subscriber in self._subscribers.get(job_id, ()):
            subscriber.poke()

    async def _publish(self, job: JobRecord, event: str, data: dict[str, Any] | Callable[[], dict[str, Any]], *,
                       persist: bool = True) -> None:
        """Send an event to live subscribers; store it for late ones (and other instances) unless ``persist``
        is False. ``data`` may be a function making it: an update nobody stores or watches is never built."""
        seq = self._seq[job.id] = self._seq.get(job.id, 0) + 1
        # While the store is down an update is not worth a connection timeout: polling goes on without it.
        store = persist and not (self._outage and event not in TERMINAL_EVENTS)
        if callable(data):
            if not store and job.id not in self._subscribers:
                return  # most polls of 10,000 running jobs: unchanged, and nobody streaming them
            data = data()
        if store:
            try:
                await self.store.append_event(job.id, seq, event, data)
            except JobStoreUnavailableError as exc:
                # Live subscribers still get it; late ones get the job's record (a terminal event is rebuilt
                # from it, see events()).
                self._store_error("append_event", exc)
        for subscriber in self._subscribers.get(job.id, ()):
            subscriber.put((seq, event, data))

    def _detach(self, job_id: str, why: str) -> None:
        if job_id in self._detached or job_id not in self._tasks:
            return
        self._detached.add(job_id)
        self._forget_committed(job_id)  # another instance may hold and change it now
        log.warning("job_lease_lost", job_id=job_id, reason=why)
        # Observers swallow errors, so a save failing inside one cannot stop the chain: cancelling can.
        self._tasks[job_id].cancel()

    async def _run(self, job: JobRecord, created: Created | None) -> None:
        try:
            if job.cancel_requested:
                await self._cancel_claimed(job)
            else:
                await self._execute(job, created)
        except (asyncio.CancelledError, LeaseLostError):
            if job.id in self._unsaved_vendor_job:
                await asyncio.shield(self._finish_unsaved_vendor_job(job))
            elif not self._stopping and job.id not in self._detached:
                await self._finish_cancelled(job)
        except Exception:  # noqa: BLE001 - a bug or a broken store must not leave the job "running" forever
            log.exception("job_crashed", job_id=job.id)
            job.status = "failed"
            job.error = {"message": "internal error while running the job; see the daemon log",
                         "type": "server_error", "code": "internal_error", "status": 500}
            with contextlib.suppress(Exception):  # the store may be what failed: the next start retries the job
                await self._finish(job)

    async def _cancel_claimed(self, job: JobRecord) -> None:
        """A claimed job someone asked to cancel while nobody ran it: cancel its vendor job (if one was
        submitted), then record it cancelled. Nothing else is sent to the vendor."""
        if job.vendor_job is not None:
            kind = job.kind
            config = CONFIG_TYPES[kind].model_validate(job.chain[job.vendor_job.attempt_number - 1])
            await cancel_vendor_job(get_handler(config.provider), kind, config,
                                    ProviderJob(id=job.vendor_job.id, data=job.vendor_job.data))
        await self._finish_cancelled(job)

    async def _execute(self, job: JobRecord, created: Created | None) -> None:
        kind = job.kind
        if created is not None:
            # Created here: run from the validated request and route configs its JSON was just dumped from
            # (validating that JSON again gives equal objects, tests/test_jobs_created.py; ~40 µs a job).
            request, route = created
            chain, policies = route.chain, route.policies
        else:  # claimed or resumed: what the store holds
            request = REQUEST_TYPES[kind].model_validate(job.request)
            chain, policies = tuple(CONFIG_TYPES[kind].model_validate(config) for config in job.chain), ()
        # Stored with the run's first write, not one of its own: for a vendor job that is the record of its
        # submit (so a job still waiting for a provider slot or a connection shows "queued"), for a simple
        # handler its attempt's start (``_JobObserver.attempt_started``). One commit fewer per job.
        observer = _JobObserver(self, job, stored_running=job.status != "queued")
        job.status = "running"
        observers = [observer, *self._observers(job.route, kind)]
        if self.budgets is not None:
            observers.append(self.budgets.recorder(job.owner or "anonymous", job.route, job.id))
        try:
            response = await run_generation(Generation(
                kind, request, chain, generation_id=job.id, observers=observers, policies=policies,
                breakers=self._breakers, limits=self._limits(),
                # An accepted job is never dropped for capacity: it waits for a provider slot.
                wait_for_capacity=True, keep_vendor_job=observer.keeps_vendor_job,
                resume=_resume_point(job), push_for=self.push.channels(job) if self.push is not None else None,
                before_submit=observer.submitting, pause=self._pacer.sleep, deadlines=self._deadlines,
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

    async def _submitting(self, job: JobRecord, observer: _JobObserver, attempt: AttemptMetadata) -> None:
        """Record that ``attempt``'s submit goes out now (for an HTTP provider: once it holds a connection slot,
        so a crash while it still waited sent nothing and is no reason to give up). A crash before its answer is
        recorded then ends that attempt ambiguous after the restart instead of submitting it again. The submit
        waits for this write (an unreachable store holds it, bounded by the attempt's timeout: nothing is sent
        unrecorded). The first one of a run also stores the job as running. Once a stop began, no submit starts
        (the job waits here for the stop to detach it)."""
        if self._stopping:
            await asyncio.get_running_loop().create_future()  # never set: the stop cancels this task
        job.submitting = attempt.attempt_number
        self._sending.add(job.id)
        await observer._save_running()  # noqa: SLF001

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
            async with open_url(url, RESULT_VIDEO) as response:
                with target.open("wb") as out:
                    async for chunk in iter_limited(response, RESULT_VIDEO):
                        await asyncio.to_thread(out.write, chunk)
            return target
        except (FetchError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("media_copy_failed", job_id=job_id, error=type(exc).__name__, reason=str(exc)[:200])
            target.unlink(missing_ok=True)  # never serve half a copy
            return None

    def _stop_unsaved(self, job: JobRecord) -> None:
        """The vendor job id of ``job`` could not be saved in time: stop the job here (cancelling the task
        cancels the vendor job) rather than let it run unrecorded, which a restart would submit again."""
        self._unsaved_vendor_job.add(job.id)
        if (task := self._tasks.get(job.id)) is not None:
            task.cancel()

    async def _finish_unsaved_vendor_job(self, job: JobRecord) -> None:
        """Record the job failed (waiting for the store as long as it takes); it is never submitted again."""
        self._unsaved_vendor_job.discard(job.id)
        job.status = "failed"
        job.vendor_job = None
        job.error = {"message": "the job store could not save the vendor's job id, so the vendor job was cancelled "
                     "and the job stopped; it is not submitted again (no second bill). Create a new job.",
                     "type": "server_error", "code": "job_store_unavailable", "status": 503}
        with contextlib.suppress(LeaseLostError):
            await self._finish(job)

    async def _finish_cancelled(self, job: JobRecord) -> None:
        job.status = "cancelled"
        job.error = dict(CANCELLED_ERROR)
        with contextlib.suppress(LeaseLostError):  # someone else holds it now: theirs to finish
            await asyncio.shield(self._finish(job))

    # ---- background loops ---------------------------------------------------------------------------------
    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            with contextlib.suppress(Exception):  # logged by the store-error handling; next hour retries
                await self.prune()

    async def _claim_forever(self) -> None:
        """Claim runnable jobs up to the free slots: at once when told (a new job, a freed slot, a notification),
        else every ``CLAIM_POLL_SECONDS`` (a lease that lapsed is announced by nobody)."""
        loop = asyncio.get_running_loop()
        counted_at = -math.inf
        while True:
            self._wake.clear()
            free = self._free_slots()
            if free > 0 and not self._stopping:
                self._claims_settled.clear()
                try:
                    await self._claim(free)
                finally:
                    self._claims_settled.set()
            else:
                self._room_wanted = True
            # The queue-depth gauge is counted once a second at most: every job that ends wakes this loop, and a
            # count scans the unfinished jobs, so 10,000 jobs ending together made it 10,000 scans of 10,000 rows.
            if self._metrics is not None and loop.time() - counted_at >= CLAIM_POLL_SECONDS:
                counted_at = loop.time()
                with contextlib.suppress(Exception):  # a gauge is not worth an error of its own
                    self._metrics.queue_depth.set(await self.store.waiting())
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that meets a wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_POLL_SECONDS):
                    await self._wake.wait()

    async def _claim(self, free: int) -> None:
        try:
            claimed = await self.store.claim(self.instance_id, free, self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - the store is down: keep trying
            self._store_error("claim", exc)
            self._room_wanted = True
            return
        self._store_answered()
        self._room_wanted = len(claimed) >= free
        if claimed:
            await self._adopt(claimed)

    @property
    def running(self) -> int:
        """How many jobs this instance is running now."""
        return len(self._tasks)

    def _free_slots(self) -> int:
        return self.max_running - self.running - self._promised

    async def _adopt(self, claimed: list[JobRecord]) -> None:
        last_seqs = await self.store.last_seqs([job.id for job in claimed])
        if self._metrics is not None:
            self._metrics.claim_batch_size.observe(len(claimed))
        for job in claimed:
            if job.id in self._tasks:
                # Its lease lapsed while it ran on here (the store was unreachable past the lease, so no renewal
                # reached it): the claim leased it back to this instance, and its task goes on. A second task
                # would run the same vendor job twice.
                self._leased_at[job.id] = asyncio.get_running_loop().time()
                continue
            self._seq[job.id] = last_seqs.get(job.id, 0)
            if job.status != "queued" and self._metrics is not None:
                self._metrics.lease_takeovers.inc()  # started before, by another instance or an earlier run
            log.info("job_resumed" if job.status != "queued" else "job_claimed", job_id=job.id, status=job.status,
                     vendor_job=job.vendor_job.id if job.vendor_job else None, cancel=job.cancel_requested or None)
            self._launch(job, self._copy_to_keep(job))

    async def _renew_forever(self) -> None:
        """Renew this instance's leases every third of their length; a job whose lease is gone stops here."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            asked_at = loop.time()
            try:
                held = await self.store.renew(self.instance_id, self.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - store down: saves will tell if the leases lapsed
                self._store_error("renew", exc)
                continue
            for job_id, leased_at in list(self._leased_at.items()):
                # A job finished here holds no lease (nobody resumes a finished job), yet its task may still be
                # storing its terminal event or releasing its webhook: it is not cut off.
                if job_id not in held and leased_at < asked_at and not self._live[job_id].finished:
                    self._detach(job_id, "its lease was not renewed (taken over or finished)")
            for job_id, cancel_requested in held.items():
                # A cancel asked on another instance whose notice never came (the LISTEN connection was down, or
                # a transaction pooler lost it): acted on here within a third of a lease.
                if cancel_requested:
                    self._cancel_requested_elsewhere(job_id)

    def _store_error(self, operation: str, exc: Exception) -> None:
        """A failed store operation: counted each time, logged once per outage (not once per write)."""
        if self._metrics is not None:
            self._metrics.store_errors.labels(operation).inc()
        if not self._outage:
            log.error("job_store_unavailable", operation=operation, error=str(exc) or type(exc).__name__)
            if self._metrics is not None:
                self._metrics.job_store_available.set(0)
        self._outage = True

    def _store_answered(self) -> None:
        if self._outage:
            log.info("job_store_recovered")
            if self._metrics is not None:
                self._metrics.job_store_available.set(1)
        self._outage = False

    async def _watch(self) -> None:
        await self.store.watch(self._on_notice)

    def _cancel_requested_elsewhere(self, job_id: str) -> None:
        """Another instance asked to cancel ``job_id``: cancel it here if it runs here and is not cancelling yet."""
        task = self._tasks.get(job_id)
        if task is None or task.done() or task.cancelling() or job_id in self._cancelling:
            return
        self._cancelling.add(job_id)  # until its task is cancelling: a renewal meanwhile starts no second cancel
        cancelling = asyncio.create_task(self.cancel(job_id))
        self._side_tasks.add(cancelling)

        def done(finished: asyncio.Task[Any]) -> None:
            self._side_tasks.discard(finished)
            self._cancelling.discard(job_id)

        cancelling.add_done_callback(done)

    def _on_notice(self, notice: Notice, subject: str, sent_at: float | None) -> None:
        if sent_at is not None and self._metrics is not None:
            self._metrics.notify_lag.observe(max(0.0, time.time() - sent_at))
        if notice == "job":
            self._wake.set()
        elif notice == "event":
            self._poke(subject)
        elif notice == "cancel":
            self._cancel_requested_elsewhere(subject)
        for listener in self.notice_listeners:
            listener(notice, subject, sent_at)


class _Subscriber:
    """One event stream's inbox: events this instance publishes, and pokes (another instance wrote some)."""

    def __init__(self) -> None:
        self._items: list[Event] = []
        self._changed = asyncio.Event()

    def put(self, item: Event) -> None:
        self._items.append(item)
        self._changed.set()

    def poke(self) -> None:
        self._changed.set()

    def take(self) -> list[Event]:
        items, self._items = self._items, []
        return items

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        self._changed.clear()


def terminal_event(job: JobRecord) -> tuple[str, dict[str, Any]]:
    """A finished job's last event: ``result`` with the response, or ``error`` with the error and attempts."""
    if job.status == "completed":
        return "result", job.result or {}
    return "error", (job.error or {}) | ({"execution_metadata": job.execution_metadata} if job.execution_metadata else {})


def _resume_point(job: JobRecord) -> ResumePoint | None:
    if not job.attempts and job.vendor_job is None and job.submitting is None:
        return None
    attempts = [AttemptMetadata.model_validate(a) for a in job.attempts]
    vendor = job.vendor_job
    unanswered = vendor is None and job.submitting is not None
    return ResumePoint(
        next_attempt=vendor.attempt_number if vendor else (job.submitting or len(attempts) + 1),
        submit_unanswered=unanswered,
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

    __slots__ = ("service", "job", "_stored_running", "_last_kept", "_last_kept_at")

    def __init__(self, service: JobService, job: JobRecord, *, stored_running: bool) -> None:
        self.service = service
        self.job = job
        #: The store holds the job as running (a resumed job, or once a write of this run went out).
        self._stored_running = stored_running
        self._last_kept: tuple[str, int | None] | None = None
        self._last_kept_at = 0.0

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None:
        if self._stored_running:
            return
        with contextlib.suppress(TarashError):  # an unknown provider fails its attempt on its own
            if is_stepped(get_handler(config.provider)):
                return  # its submit's record stores "running" (``JobService._submitting``)
        await self._save_running()

    async def submitting(self, attempt: AttemptMetadata) -> None:
        """The generation's ``before_submit`` (``JobService._submitting``)."""
        await self.service._submitting(self.job, self, attempt)  # noqa: SLF001

    def keeps_vendor_job(self) -> bool:
        """The generation's ``keep_vendor_job``: a stop, or another instance holding the job now, detaches it."""
        return self.service._stopping or self.job.id in self.service._detached  # noqa: SLF001

    async def _save_running(self) -> None:
        self._stored_running = True
        await self.service._save(self.job)  # noqa: SLF001

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None:
        self.job.vendor_job = VendorJob(attempt.attempt_number, job.id, job.data, attempt.started_at.isoformat())
        self.job.submitting = None  # answered: the vendor job id is what a restart resumes
        try:  # before the first poll: a kill -9 from here on loses nothing
            await self.service._save(self.job, give_up_after=self.service.vendor_job_grace)  # noqa: SLF001
        except JobStoreUnavailableError:
            # Unrecorded, this vendor job would be submitted again by a restart: cancel it and stop the job.
            # (Observers' errors are swallowed; a cancel is not.)
            self.service._stop_unsaved(self.job)  # noqa: SLF001
        finally:
            self.service._sent(self.job.id)  # noqa: SLF001

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        if isinstance(error, GenerationCancelledError) and self.service._stopping:  # noqa: SLF001
            return  # detached for a restart, not finished
        if error is None:
            # The completed record is saved next, with the result. Until then the vendor job stays on record, so
            # a kill in between re-polls it (done: its result is fetched) instead of running the next attempt.
            return
        self.job.attempts.append(attempt.model_dump(mode="json"))
        self.job.vendor_job = None
        self.job.submitting = None
        try:
            await self.service._save(self.job)  # noqa: SLF001
        finally:
            self.service._sent(self.job.id)  # noqa: SLF001

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
        await self.service._publish(self.job, "update", functools.partial(update.model_dump, mode="json"),  # noqa: SLF001
                                    persist=keep)

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        self.job.execution_metadata = metadata.model_dump(mode="json")
