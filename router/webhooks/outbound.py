"""Client webhooks out of the router: when a job that named a ``webhook_url`` ends, POST
``{"type": "job.completed" | "job.failed" | "job.cancelled", "data": <the job object>}`` to it, signed the
Standard Webhooks way with ``WEBHOOK_SECRET``, or with the job's client's own secret when its ``[clients]`` table
in routes.toml names one (``webhook_secret_env``: an env var, read when a delivery is signed, so the secret is
never stored, logged or shown; a reload that changes the name applies to pending deliveries too).

Durable and at least once: the ``OutboxMessage`` is written when the job is created and released when it
ends, so a kill at any point loses nothing; each try is recorded before the next is scheduled; every try of
one message carries the same ``webhook-id`` (receivers de-duplicate on it). A 2xx is delivered. Timeouts,
connection errors, 5xx, 408 and 429 are retried with exponential backoff and full jitter (``Retry-After``
respected) until ``retry_for`` after the job ended; any other answer (a 4xx, or a redirect, which is never
followed) fails the delivery at once. URLs go through the SSRF guard at create time and at connect time.
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
import structlog

from router.jobs.store import JobRecord, JobStore, OutboxMessage
from router.models import utc_now
from router.netguard import BlockedURLError, check_url, connector_kwargs
from router.webhooks import signing

log = structlog.get_logger(logger_name="router.webhooks")

MAX_URL_LENGTH = 2048
#: Longest wait between two tries of one delivery.
MAX_BACKOFF_SECONDS = 3600.0
#: One try: connect and answer within these.
DELIVERY_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
#: Deliveries in flight at once.
CONCURRENCY = 16
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
                 client_secret_env: Callable[[str | None], str | None] = lambda owner: None) -> None:
        """``secret``: ``WEBHOOK_SECRET`` ("" for none); ``client_secret_env``: a job owner's own secret's env var
        name, or None when that client has none (then ``secret`` signs)."""
        self.store = store
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
        for message in await self.store.outbox("pending"):
            self._due[message.id] = (message.next_attempt_at or self._clock(), message.job_id)
        self._session = aiohttp.ClientSession(timeout=DELIVERY_TIMEOUT,
                                              connector=aiohttp.TCPConnector(**connector_kwargs(self.allow_private)))
        self._loop = asyncio.create_task(self._schedule(), name="client webhooks")
        self._wake.set()

    async def stop(self) -> None:
        """Stop delivering; tries in flight are abandoned (their message stays pending, retried at start)."""
        tasks = [*self._running, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None
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
        while True:
            now = self._clock()
            for message_id, (_, job_id) in [(m, due) for m, due in self._due.items() if due[0] <= now]:
                del self._due[message_id]
                task = asyncio.create_task(self._deliver(message_id, job_id))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            self._wake.clear()
            wait = min(((at - now).total_seconds() for at, _ in self._due.values()), default=None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0) if wait is not None else None):
                    await self._wake.wait()

    async def _deliver(self, message_id: str, job_id: str) -> None:
        async with self._slots:
            message = await self.store.outbox_for_job(job_id)
            if message is None or message.id != message_id or message.status != "pending":
                return  # delivered, given up or deleted meanwhile
            job = await self.store.get(job_id)
            if job is None:
                return
            try:
                key = self.key_for(job.owner)
            except WebhookSecretError as exc:  # retried: the operator may set it (a reload or a restart)
                await self._record(message, None, str(exc), None)
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
        await self.store.put_outbox(message)
        if result == "retry":
            self._due[message.id] = (due, message.job_id)
            self._wake.set()
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(result).inc()
        log.info("client_webhook", job_id=message.job_id, webhook_id=message.id, attempt=message.attempts,
                 http_status=status, error=error, result=result)
