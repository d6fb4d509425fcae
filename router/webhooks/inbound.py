"""Vendor webhooks into the router: ``POST /v1/webhooks/{provider}/{token}``.

Each attempt whose vendor can push (``ProviderHandler.webhook_scheme``) gets its own URL when
``PUBLIC_URL`` is set and the attempt does not say ``webhooks = false``. The token in it is
``<job id>.<attempt number>.<secret>``; only the secret's SHA-256 is stored, on the job record, so any
instance sharing the job store can check it and a restart loses nothing.

A verified delivery ends the attempt's wait between polls at once. Where the vendor signs the whole outcome
(fal, Replicate) its payload goes with it, and the attempt ends from it as a poll and a result fetch would have
ended it (``ProviderHandler.pushed``), with no call to the vendor; anything else (Luma and Gemini deliveries,
which nothing verifies, a non-terminal event, a fal result too large to push) is a hint, and the poll it
triggers decides. While a push is expected the attempt polls only every ``webhook_poll_interval`` seconds, the
safety net for a push that never comes. A duplicate, a late or an out-of-order delivery causes at most one extra
status poll. With several instances on one PostgreSQL store, a delivery about a job another instance holds is
verified here, kept in the store and announced (``JobStore`` notice ``"push"``); the holder wakes the attempt
at the notice, or, if its LISTEN connection was down then, when it reconnects (the kept push is taken then). A
relayed push is a hint (the store keeps that it came, not its payload): the holder polls. Refused (and counted,
and logged without the token): an unknown token (404), a body over the limit (413), a signature or timestamp
that does not verify (401), a replay of a delivery already accepted (409), a delivery about another vendor job
(400).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from router.errors import Secret, TarashError
from router.handler import WEBHOOK_URL_KEY, ProviderHandler, is_stepped
from router.jobs.store import JobRecord, JobStore, JobStoreUnavailableError, Notice, shared_store
from router.log_setup import get_logger
from router.models import AnyConfig, AttemptMetadata
from router.registry import get_handler, known_providers, resolve_api_key
from router.routes import CONFIG_TYPES
from router.steps import PushChannel
from router.tasks import cancel_and_wait
from router.webhooks import fal, signing
from router.webhooks.paths import PATH_PREFIX
from router.webhooks.signing import TOLERANCE_SECONDS, WebhookVerificationError

log = get_logger("router.webhooks")

#: Env var holding Replicate's webhook secret; without it the secret is fetched once per base URL.
REPLICATE_SECRET_ENV = "REPLICATE_WEBHOOK_SECRET"
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
#: The field of a delivery naming the vendor's job, per scheme (None: the payload is not relied on at all).
_VENDOR_ID: dict[str, str | None] = {"fal": "request_id", "replicate": "id", "luma": "id", "google": None}
#: Schemes whose signature covers the whole body: their payload may end the attempt (the others only wake it).
_SIGNED = frozenset({"fal", "replicate"})


@dataclass
class _Running:
    """A job running here whose attempts may get pushes: its live record (a delivery is checked without a store
    read), the configs its attempts run with (nor a validation of the chain entry), the event a verified
    delivery sets, and the last signed delivery's ``(attempt number, payload)`` for that attempt to take."""

    record: JobRecord
    configs: dict[int, AnyConfig] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pushed: tuple[int, Any] | None = None


class WebhookRejected(Exception):
    """A delivery the router refuses: HTTP ``status`` and a short ``code`` (also the metric's result)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse_token(token: str) -> tuple[str, str, str] | None:
    job_id, _, rest = token.partition(".")
    attempt, _, secret = rest.partition(".")
    return (job_id, attempt, secret) if job_id and attempt.isdigit() and secret else None


class InboundWebhooks:
    """Issues per-attempt webhook URLs, verifies deliveries, and wakes the attempts they are about."""

    def __init__(self, public_url: str, store: JobStore, *, poll_interval: float, max_body_bytes: int,
                 metrics: Any = None, clock: Callable[[], float] = time.time,
                 replicate_secret: str | None = None, instance_id: str = "") -> None:
        self.public_url = public_url.rstrip("/")
        self.store = store
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self._metrics = metrics
        self._clock = clock
        self._replicate_env_secret = signing.secret_bytes(replicate_secret) if replicate_secret else None
        self._replicate_secrets: dict[str, bytes] = {}  # per base URL, fetched once
        self._fal_keys: dict[str, fal.FalKeys] = {}  # per JWKS URL
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()  # accepted ids -> when
        self._running: dict[str, _Running] = {}  # job id -> its state while it runs here
        self._session: aiohttp.ClientSession | None = None
        #: This instance's name on its job leases: the pushes other instances relay here are taken under it.
        self.instance_id = instance_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._fal_ok = fal.available()
        #: Metric labels: a provider name from the path counts under its name only if it is a real provider.
        self._labels = frozenset(known_providers())  # once: listing entry points is slow
        if not self._fal_ok:
            log.warning("fal_webhooks_unavailable", reason="cryptography is not installed (the [webhooks] extra); "
                        "fal jobs are polled")

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- attempts -----------------------------------------------------------------------------------------
    def channels(self, job: JobRecord) -> Callable[[AttemptMetadata, AnyConfig], PushChannel | None]:
        """For ``run_chain(push_for=)``: each attempt of ``job`` whose vendor can push gets a channel."""

        def channel(attempt: AttemptMetadata, config: AnyConfig) -> PushChannel | None:
            if config.provider_config.get("webhooks") is False:
                return None
            handler = get_handler(config.provider)
            scheme = getattr(handler, "webhook_scheme", None) if handler is not None else None
            if scheme is None or not is_stepped(handler) or (scheme == "fal" and not self._fal_ok):
                return None
            supported = getattr(handler, "webhook_supported", None)  # duck-typed handlers may lack it
            if supported is not None and not supported(job.kind, config):
                return None
            running = self._running.setdefault(job.id, _Running(job))
            running.record = job
            running.configs[attempt.attempt_number] = config
            return _Channel(self, job, attempt.attempt_number)

        return channel

    def forget(self, job_id: str) -> None:
        """The job stopped running here: nothing left to wake."""
        self._running.pop(job_id, None)

    def running(self, job_id: str) -> _Running | None:
        """``job_id``'s push state while it runs here (its ``wake`` is set by a verified delivery)."""
        return self._running.get(job_id)

    # ---- deliveries ---------------------------------------------------------------------------------------
    async def receive(self, provider: str, token: str, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery and wake its attempt; ``"accepted"`` or ``"ignored"`` (the job already ended).
        Raises ``WebhookRejected``; every outcome is counted and logged (never with the token)."""
        job_id = None
        try:
            job_id, result = await self._receive(provider, token, headers, body)
        except WebhookRejected as exc:
            self._count(provider, exc.code)
            log.warning("webhook_rejected", provider=provider, job_id=job_id or _job_hint(token), result=exc.code,
                        reason=exc.message)
            raise
        self._count(provider, result)
        log.info("webhook_received", provider=provider, job_id=job_id, result=result)
        return result

    async def _receive(self, provider: str, token: str, headers: Mapping[str, str],
                       body: bytes) -> tuple[str, str]:
        if len(body) > self.max_body_bytes:
            raise WebhookRejected(413, "too_large", f"webhook body over {self.max_body_bytes} bytes")
        parsed = _parse_token(token)
        running = self._running.get(parsed[0]) if parsed else None
        try:
            job = running.record if running else await self.store.get(parsed[0]) if parsed else None
        except JobStoreUnavailableError:
            raise WebhookRejected(503, "store_unavailable", "the job store cannot be read now; the vendor retries") \
                from None
        stored = job.webhook_tokens.get(parsed[1]) if job and parsed else None
        if job is None or parsed is None or stored is None or not hmac.compare_digest(stored, digest(parsed[2])):
            raise WebhookRejected(404, "unknown_token", "no such webhook")
        number = int(parsed[1])
        if not 1 <= number <= len(job.chain) or job.chain[number - 1].get("provider") != provider:
            raise WebhookRejected(404, "unknown_token", "no such webhook")
        config = running.configs.get(number) if running else None
        if config is None:  # not running here: from the stored chain
            config = CONFIG_TYPES[job.kind].model_validate(job.chain[number - 1])
        handler = get_handler(provider)
        scheme = getattr(handler, "webhook_scheme", None)
        delivery_id = await self._verify(scheme, handler, config, headers, body)
        if delivery_id is not None and delivery_id in self._seen:
            raise WebhookRejected(409, "replayed", "this delivery was already accepted")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            raise WebhookRejected(400, "bad_request", "webhook body is not JSON") from None
        field = _VENDOR_ID.get(scheme or "", "id")
        vendor_id = payload.get(field) if field is not None and isinstance(payload, dict) else None
        vendor = job.vendor_job
        if field is not None and vendor is not None and vendor.attempt_number == number and vendor_id != vendor.id:
            raise WebhookRejected(400, "wrong_job", "the delivery is about another vendor job")
        if delivery_id is not None:
            self._remember(delivery_id)
        if job.finished:
            return job.id, "ignored"
        if (running := self._running.get(job.id)) is not None:
            if scheme in _SIGNED:
                running.pushed = (number, payload)  # verified: the attempt may end from it
            running.wake.set()
        elif self.store.shared:  # another instance holds it (or will claim it): tell it through the store
            try:
                await shared_store(self.store).note_push(job.id, number)
            except JobStoreUnavailableError:
                raise WebhookRejected(503, "store_unavailable", "the job store cannot keep the delivery now; "
                                      "the vendor retries") from None
            return job.id, "relayed"
        return job.id, "accepted"

    # ---- several instances --------------------------------------------------------------------------------
    def on_notice(self, notice: Notice, subject: str, sent_at: float | None) -> None:
        """A ``JobService`` notice listener: wake a job running here that another instance received a push
        for, and take the kept pushes once the store's LISTEN connection is (re)established (``"job"`` without a
        time), since announcements made while it was down were missed."""
        if notice == "push" and (running := self._running.get(subject)) is not None:
            running.wake.set()  # first: the status check should not wait for the store
            self._spawn(self._take(subject))
        elif notice == "job" and sent_at is None:
            self._spawn(self._take(None))

    async def _take(self, job_id: str | None) -> None:
        try:
            taken = await shared_store(self.store).take_pushes(self.instance_id, job_id)
        except JobStoreUnavailableError:
            return  # kept in the store: the next reconnect takes them, the stretched poll bounds the wait
        for taken_id in taken:
            if (running := self._running.get(taken_id)) is not None:
                running.wake.set()

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, scheme: str | None, handler: Any, config: AnyConfig, headers: Mapping[str, str],
                      body: bytes) -> str | None:
        """The delivery's unique id once its signature verifies (None: the vendor signs nothing)."""
        now = self._clock()
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            if scheme == "fal":
                if not self._fal_ok:
                    raise WebhookRejected(503, "verification_unavailable", "fal verification needs cryptography")
                url = str(config.provider_config.get("webhook_jwks_url") or fal.DEFAULT_JWKS_URL)
                keys = self._fal_keys.setdefault(url, fal.FalKeys(url, self._fetch_json, time.monotonic))
                await keys.verify(lower, body, now=now)
                return "fal:" + lower["x-fal-webhook-signature"]
            if scheme == "replicate":
                key = await self._replicate_secret(handler, config)
                return "replicate:" + signing.verify(key, lower, body, now=now)
        except WebhookVerificationError as exc:
            raise WebhookRejected(401, "bad_signature", str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            # Our side could not fetch the keys: the vendor should retry later.
            raise WebhookRejected(503, "verification_unavailable",
                                  f"cannot fetch the {scheme} verification keys: {type(exc).__name__}") from None
        # luma: unsigned, the token is all there is. google: the Gemini API signs a per-request webhook with an
        # RS256 JWT whose claims (issuer, audience, what binds it to this job) Google does not document; checking
        # the signature alone would prove only that Google signed something. The unguessable per-attempt token in
        # the URL authenticates the route, and the delivery only triggers a status poll (itself authenticated by
        # our key at Google), so a forged one costs one poll and cannot finish or fail a job.
        return None

    async def _replicate_secret(self, handler: ProviderHandler, config: AnyConfig) -> bytes:
        if self._replicate_env_secret is not None:
            return self._replicate_env_secret
        base = config.base_url or ""  # one account per base URL (the vendor's own when unset)
        if base not in self._replicate_secrets:
            fetch = getattr(handler, "webhook_secret", None)  # a duck-typed handler may lack the hook
            try:
                if fetch is None:
                    raise NotImplementedError(f"{config.provider} has no webhook_secret()")
                secret = await fetch(resolve_api_key(handler, config))
            except (TarashError, NotImplementedError) as exc:
                raise aiohttp.ClientError(type(exc).__name__) from None
            self._replicate_secrets[base] = signing.secret_bytes(secret)
        return self._replicate_secrets[base]

    async def _fetch_json(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=FETCH_TIMEOUT)
        async with self._session.get(url, allow_redirects=False) as response:
            response.raise_for_status()
            return await response.json(content_type=None)  # type: ignore[no-any-return]

    def _remember(self, delivery_id: str) -> None:
        now = self._clock()
        self._seen[delivery_id] = now
        # Anything older than the timestamp tolerance would be refused as stale anyway.
        while self._seen and next(iter(self._seen.values())) < now - 2 * TOLERANCE_SECONDS:
            self._seen.popitem(last=False)

    def _count(self, provider: str, result: str) -> None:
        if self._metrics is not None:
            known = provider if provider in self._labels else "other"  # bounded labels
            self._metrics.webhooks_received.labels(known, result).inc()


def _job_hint(token: str) -> str | None:
    parsed = _parse_token(token)
    return parsed[0][:40] if parsed else None


class _Channel:
    """One attempt's vendor webhook (``router.steps.PushChannel``)."""

    def __init__(self, inbound: InboundWebhooks, job: JobRecord, attempt_number: int) -> None:
        self.inbound = inbound
        self.job = job
        self.number = attempt_number
        self.key = str(attempt_number)
        self.token = secrets.token_urlsafe(32)
        #: What to redact: the token; for an attempt that had a URL before (resumed after a restart, or tried
        #: again) every token after its prefix, as the earlier one is known only by its hash.
        self.secret: Secret = self.token if self.key not in job.webhook_tokens else re.compile(
            f"(?<={re.escape(f'{job.id}.{self.key}.')})[A-Za-z0-9_-]+")

    async def open(self, config: AnyConfig) -> AnyConfig:
        # No save of its own: a delivery can beat the submit's answer, but not the submit. Here the live record
        # checks it; for a restart or another instance, the submit's record (``JobService._submitting``, awaited
        # before the submit goes out) stores the hash with the job.
        self.job.webhook_tokens[self.key] = digest(self.token)
        url = f"{self.inbound.public_url}{PATH_PREFIX}{config.provider}/{self.job.id}.{self.key}.{self.token}"
        return config.model_copy(update={"provider_config": {**config.provider_config, WEBHOOK_URL_KEY: url}})

    async def wait(self, seconds: float) -> None:
        running = self.inbound.running(self.job.id)
        if running is None or self.key not in self.job.webhook_tokens:
            await asyncio.sleep(seconds)  # this attempt asked for no push (or was submitted before)
            return
        try:
            async with asyncio.timeout(max(seconds, self.inbound.poll_interval)):
                await running.wake.wait()
        except TimeoutError:
            pass
        running.wake.clear()

    def take(self) -> Any:
        running = self.inbound.running(self.job.id)
        if running is None or running.pushed is None or running.pushed[0] != self.number:
            return None  # nothing signed came for this attempt (a delivery for an earlier one is stale)
        payload, running.pushed = running.pushed[1], None
        return payload
