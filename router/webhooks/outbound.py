"""Client webhooks out of the router: when a job that named a ``webhook_url`` ends, POST
``{"type": "job.completed" | "job.failed" | "job.cancelled", "data": <the job object>}`` to it, signed the
Standard Webhooks way with ``WEBHOOK_SECRET``, or with the job's client's own secret when its ``[clients]`` table
in routes.toml names one (``webhook_secret_env``: an env var, read when a delivery is signed, so the secret is
never stored, logged or shown; a reload that changes the name applies to pending deliveries too).

Durable and at least once: the ``OutboxMessage`` is written when the job is created and released when it
ends, so a kill at any point loses nothing; each try is recorded before the next is scheduled; every try of
one message carries the same ``webhook-id`` (receivers de-duplicate on it). With a shared (PostgreSQL) store,
each try is claimed by one instance first (``claim_outbox``: ``FOR UPDATE SKIP LOCKED``, a lease of
``claim_seconds``), so several instances never make the same try twice; every instance sweeps for due,
unclaimed deliveries each ``SWEEP_SECONDS``, which is how the claim of an instance that died comes back.

A 2xx is delivered. Timeouts, connection errors, 5xx, 408 and 429 are retried with exponential backoff and full
jitter (``Retry-After`` respected) until ``retry_for`` after the job ended; any other answer (a 4xx, or a
redirect, which is never followed) fails the delivery at once. URLs go through the SSRF guard at create time and at connect time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from router.jobs.store import JobRecord, JobStore, OutboxMessage, shared_store
from router.log_setup import get_logger
from router.models import utc_now
from router.netguard import BlockedURLError, check_url, connector_kwargs
from router.tasks import cancel_and_wait
from router.webhooks import signing

log = get_logger("router.webhooks")

MAX_URL_LENGTH = 2048
#: Longest wait between two tries of one delivery.
MAX_BACKOFF_SECONDS = 3600.0
#: One try: connect and answer within these.
DELIVERY_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
#: Deliveries in flight at once.
CONCURRENCY = 16
#: With a shared store, look this often for pending deliveries nobody has claimed (another instance's that
#: died, or left them at a clean stop): a claim whose holder stops renewing comes back when it lapses.
SWEEP_SECONDS = 1.0
RETRYABLE_STATUSES = frozenset({408, 429})


class WebhookURLError(ValueError):
    """A ``webhook_url`` the router will not call (the message says why)."""


class WebhookSecretError(ValueError):
    """No usable secret signs a client's webhooks (the message names the setting, never a value)."""


#: Without a client secret or WEBHOOK_SECRET, the router has nothing to sign with.
NO_SECRET = "webhook_url needs the router to sign its webhooks: set TARASH_ROUTER_WEBHOOK_SECRET"


def check_webhook_url(url: Any, *, allow_private: bool) -> str:
    """``url`` if it is an http(s) URL the router may POST to; ``WebhookURLError`` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookURLError("webhook_url must be an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookURLError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    try:
        check_url(url, allow_private=allow_private)
    except BlockedURLError as exc:
        raise WebhookURLError(f"webhook_url: {exc}") from None
    host = (url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]).lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise WebhookURLError("webhook_url: refusing a loopback host")
    return url


def event_type(job: JobRecord) -> str:
    return f"job.{job.status}"


class OutboundWebhooks:
    """Delivers the outbox: one scheduler task, tries in parallel up to ``CONCURRENCY``."""

    def __init__(self, store: JobStore, secret: str, *, view: Callable[[JobRecord], dict[str, Any]],
                 retry_for: timedelta, base_delay: float, allow_private: bool, metrics: Any = None,
                 clock: Callable[[], datetime] = utc_now,
                 client_secret_env: Callable[[str | None], str | None] = lambda owner: None,
                 instance_id: str = "", claim_seconds: float = 30.0) -> None:
        """``secret``: ``WEBHOOK_SECRET`` ("" for none); ``client_secret_env``: a job owner's own secret's env var
        name, or None when that client has none (then ``secret`` signs). With a shared store (several instances),
        every try is claimed first by ``instance_id`` for ``claim_seconds`` (the job lease), so exactly one
        instance makes it; a try is bounded to half the claim, so the claim outlives it."""
        self.store = store
        self.instance_id = instance_id
        self.claim_seconds = claim_seconds
        try:
            self._key = signing.secret_bytes(secret) if secret else None
        except ValueError:
            raise ValueError("TARASH_ROUTER_WEBHOOK_SECRET must be whsec_ followed by base64") from None
        self._client_secret_env = client_secret_env
        self._view = view
        self.retry_for = retry_for
        self.base_delay = base_delay
        self.allow_private = allow_private
        self._metrics = metrics
        self._clock = clock
        self._due: dict[str, tuple[datetime, str]] = {}  # message id -> (when its next try is due, its job)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._claims_failing = False

    def key_for(self, owner: str | None) -> bytes:
        """The key that signs the webhooks of ``owner``'s jobs; ``WebhookSecretError`` when there is none."""
        env = self._client_secret_env(owner)
        if env is None:
            if self._key is None:
                raise WebhookSecretError(NO_SECRET)
            return self._key
        try:
            return signing.secret_bytes(os.environ.get(env, ""))
        except ValueError:
            raise WebhookSecretError(f"the webhook secret of client {owner!r} (env {env}) is unset or not whsec_ "
                                     "followed by base64") from None

    def new_message(self, job_id: str, url: str) -> OutboxMessage:
        return OutboxMessage(id=f"msg_{job_id.removeprefix('job_')}", job_id=job_id, url=url, created_at=self._clock())

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Reschedule what a previous process left: pending deliveries, and webhooks of jobs that ended
        between their final save and the release of their webhook."""
        for message in await self.store.outbox("waiting"):
            job = await self.store.get(message.job_id)
            if job is not None and job.finished:
                await self.release(job)
        if not self.store.shared:  # shared: the sweep claims whatever is due, this instance's or not
            for message in await self.store.outbox("pending"):
                self._due[message.id] = (message.next_attempt_at or self._clock(), message.job_id)
        timeout = DELIVERY_TIMEOUT
        if self.store.shared and timeout.total is not None and timeout.total > self.claim_seconds / 2:
            timeout = aiohttp.ClientTimeout(total=self.claim_seconds / 2, sock_connect=timeout.sock_connect)
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              connector=aiohttp.TCPConnector(**connector_kwargs(self.allow_private)))
        self._loop = asyncio.create_task(self._schedule(), name="client webhooks")
        self._wake.set()

    async def stop(self) -> None:
        """Stop delivering; tries in flight are abandoned (their message stays pending, retried at start)."""
        await cancel_and_wait([*self._running, *([self._loop] if self._loop else [])])
        self._loop = None
        if self.store.shared:  # another instance may make the abandoned tries at once
            with contextlib.suppress(Exception):  # the store may be down: the claims then lapse by themselves
                await shared_store(self.store).release_outbox(self.instance_id)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the job side -------------------------------------------------------------------------------------
    async def release(self, job: JobRecord) -> None:
        """``job`` ended: its webhook is due now."""
        message = await self.store.outbox_for_job(job.id)
        if message is None or message.status != "waiting":
            return
        now = self._clock()
        message.status, message.finished_at, message.next_attempt_at = "pending", now, now
        await self.store.put_outbox(message)
        self._due[message.id] = (now, job.id)
        self._wake.set()

    # ---- delivering ---------------------------------------------------------------------------------------
    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        sweep_at = loop.time()
        while True:
            now = self._clock()
            self._wake.clear()
            due = [(m, job_id) for m, (at, job_id) in self._due.items() if at <= now]
            if not self.store.shared:
                for message_id, job_id in due:
                    del self._due[message_id]
                    self._spawn(self._deliver(message_id, job_id))
            elif len(self._running) < CONCURRENCY and (due or loop.time() >= sweep_at):
                sweep = loop.time() >= sweep_at
                sweep_at = loop.time() + SWEEP_SECONDS if sweep else sweep_at
                await self._claim_and_deliver(now, None if sweep else [m for m, _ in due])
            wait = min(((at - now).total_seconds() for at, _ in self._due.values()), default=None)
            if self.store.shared:
                # Every slot busy: a finished try wakes the loop; else the next due try or the sweep.
                wait = None if len(self._running) >= CONCURRENCY else \
                    min(wait if wait is not None else SWEEP_SECONDS, max(sweep_at - loop.time(), 0.0))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0) if wait is not None else None):
                    await self._wake.wait()

    async def _claim_and_deliver(self, now: datetime, ids: list[str] | None) -> None:
        """Claim due pending deliveries (``ids`` only, else any: the sweep) up to the free slots, and make them.
        A message another instance claimed is its to make; one not claimed now stays pending for the sweep."""
        free = CONCURRENCY - len(self._running)
        try:
            claimed = await shared_store(self.store).claim_outbox(
                self.instance_id, now, free, self.claim_seconds, ids)
        except Exception as exc:  # noqa: BLE001 - the store is down: the next sweep tries again
            if not self._claims_failing:  # once per outage
                log.warning("client_webhook_claim_failed", error=type(exc).__name__)
            self._claims_failing = True
            return
        self._claims_failing = False
        for message_id in ids or ():
            self._due.pop(message_id, None)
        for message in claimed:
            self._due.pop(message.id, None)
            self._spawn(self._deliver_claimed(message))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._finished_try)

    def _finished_try(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self.store.shared:
            self._wake.set()  # a slot is free to claim into

    async def _deliver(self, message_id: str, job_id: str) -> None:
        async with self._slots:
            message = await self.store.outbox_for_job(job_id)
            if message is None or message.id != message_id or message.status != "pending":
                return  # delivered, given up or deleted meanwhile
            await self._try(message)

    async def _deliver_claimed(self, message: OutboxMessage) -> None:
        async with self._slots:
            await self._try(message)

    async def _try(self, message: OutboxMessage) -> None:
        """One try of a pending message: sign the job's current view, POST it, record what happened."""
        job = await self.store.get(message.job_id)
        if job is None:
            return
        try:
            key = self.key_for(job.owner)
        except WebhookSecretError as exc:  # retried: the operator may set it (a reload or a restart)
            log.warning("client_webhook_secret_missing", job_id=job.id, reason=str(exc))  # the setting's name
            await self._record(message, None, "no usable webhook secret for this job's client yet (the "
                               "daemon log names the setting); retried", None)
            return
        body = json.dumps({"type": event_type(job), "data": self._view(job)}, default=str).encode()
        status, error, retry_after = await self._post(message, body, key)
        await self._record(message, status, error, retry_after)

    async def _post(self, message: OutboxMessage, body: bytes,
                    key: bytes) -> tuple[int | None, str | None, float | None]:
        """One try: (HTTP status or None, error or None, Retry-After seconds)."""
        headers = {"Content-Type": "application/json", "User-Agent": "tarash-router-webhooks",
                   **signing.headers_for(key, message.id, int(time.time()), body)}
        assert self._session is not None
        try:
            check_webhook_url(message.url, allow_private=self.allow_private)  # the guard may have changed
            async with self._session.post(message.url, data=body, headers=headers, allow_redirects=False) as answer:
                await answer.read()
                retry_after = answer.headers.get("Retry-After", "")
                return answer.status, None, float(retry_after) if retry_after.isdigit() else None
        except WebhookURLError as exc:
            return None, str(exc), None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__, None

    async def _record(self, message: OutboxMessage, status: int | None, error: str | None,
                      retry_after: float | None) -> None:
        now = self._clock()
        message.attempts += 1
        message.last_status, message.last_error = status, error
        if status is not None and 200 <= status < 300:
            message.status, message.delivered_at, message.last_error = "delivered", now, None
            result = "delivered"
        elif (status is not None and status < 500 and status not in RETRYABLE_STATUSES) or \
                (error is not None and error.startswith("webhook_url")):
            message.status, result = "failed", "refused"
            message.last_error = error or f"HTTP {status}: not retried"
        else:
            delay = random.uniform(0, min(self.base_delay * 2 ** (message.attempts - 1), MAX_BACKOFF_SECONDS))
            delay = max(delay, retry_after or 0.0, self.base_delay / 2)
            due = now + timedelta(seconds=delay)
            if due > (message.finished_at or message.created_at) + self.retry_for:
                message.status, result = "failed", "expired"
            else:
                message.next_attempt_at, result = due, "retry"
        if not self.store.shared:
            await self.store.put_outbox(message)
        elif not await shared_store(self.store).record_outbox_try(message, self.instance_id):
            # This try outlived its claim and another instance claimed the message since: its record stands.
            log.warning("client_webhook_claim_lost", job_id=message.job_id, webhook_id=message.id,
                        attempt=message.attempts, result=result)
            return
        if result == "retry":
            self._due[message.id] = (due, message.job_id)
            self._wake.set()
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(result).inc()
        log.info("client_webhook", job_id=message.job_id, webhook_id=message.id, attempt=message.attempts,
                 http_status=status, error=error, result=result)
