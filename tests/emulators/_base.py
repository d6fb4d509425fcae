"""Shared machinery of the vendor emulators: lifecycle, auth, request recording, fault injection, job
progression per poll (never per wall-clock second) and real media.

Steps: every request an emulator answers is named by one of ``STEPS``: ``submit`` (create a job, or a synchronous
generation), ``status`` (poll or list), ``result`` (fetch a finished job's output, e.g. fal's response URL or
OpenAI's authenticated ``/content``), ``cancel`` (cancel or delete), ``content`` (download from ``/_media``, the
emulator's stand-in for the vendor's public CDN). A request that matches no route is recorded as ``unmatched``.

Faults are injected two ways:

* from a test: ``emu.inject(Fault.RATE_LIMIT, step="status", times=2)``; step ``"*"`` matches any step. A job
  outcome (``CONTENT_POLICY``, ``JOB_FAILED``, ``EMPTY_RESULT``) injected at ``submit`` attaches to the next job
  created (or, on a synchronous endpoint, to the next answer).
* in-band, from the prompt, so a test driving the daemon over HTTP can trigger them: ``[[fault:content_policy]]``,
  ``[[fault:rate_limit@status]]`` (``@*`` for every step; the default step is ``submit``, which for a job outcome
  means the job created by that submit) and ``[[polls:N]]`` (the job needs N status polls). An in-band HTTP fault
  answers every matching request of that prompt's jobs, not just the first: the prompt does not change between
  retries. Unknown fault names are not markers (ignored).

Submits are counted per request body too (``submits_by_body``, ``repeated_submits()``, and in
``/_emulator/stats``): a client that sends a unique body per job (a benchmark's numbered prompts) learns exactly
which of its jobs were submitted more than once.

Job progress advances one step per status poll: a job of N polls answers "queued" for its first quarter (at least
one poll once N > 2), "running" until the N-th poll, then "done" (the vendor's success or failure, per outcome).

Webhooks: a submit that names a webhook URL (each vendor's own field) makes the job finish on its own,
``webhook_delay`` seconds later, whatever the polls; the emulator then POSTs the vendor's webhook to that URL,
signed as the vendor signs it. ``WebhookFault`` modes, set on ``emu.webhook_fault`` or in-band with
``[[webhook:twice]]``: ``never`` (the job finishes, nothing is sent), ``twice`` (the same delivery again),
``late`` (sent ``webhook_late_delay`` seconds after the job finished), ``bad_signature`` (a signature that does
not verify), ``early`` (one delivery before the job is done, then the real one) and ``before_answer`` (a fast
vendor: the job finishes and its webhook is delivered, and answered, before the submit itself is answered, so it
reaches the receiver before it knows the vendor's job id), and ``no_payload`` (fal only: the push says the
request is done but holds no result, as fal sends a result it could not push). Every delivery and the receiver's answer is in
``emu.webhook_deliveries``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

import aiohttp
from aiohttp import web

from providers._mock_media import image_size_for, png_bytes, video_asset

STEPS = ("submit", "status", "result", "cancel", "content")


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 + Retry-After + the vendor's 429 body
    SERVER_ERROR = "server_error"  # 500 with the vendor's body
    UNAVAILABLE = "unavailable"  # 503 with the vendor's body
    HANG = "hang"  # never answers (until the emulator closes)
    MALFORMED_JSON = "malformed_json"  # 200, application/json, a truncated body
    DROP = "drop"  # headers and part of a body, then the connection is cut
    AUTH = "auth"  # the vendor's 401
    BAD_REQUEST = "bad_request"  # the vendor's validation error (400 or 422)
    CONTENT_POLICY = "content_policy"  # job outcome: moderation (sync endpoints: the vendor's moderation error)
    JOB_FAILED = "job_failed"  # job outcome: accepted, then failed
    EMPTY_RESULT = "empty_result"  # job outcome: success without media


HTTP_FAULTS = frozenset({Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.HANG, Fault.MALFORMED_JSON,
                         Fault.DROP, Fault.AUTH, Fault.BAD_REQUEST})
OUTCOME_FAULTS = frozenset({Fault.CONTENT_POLICY, Fault.JOB_FAILED, Fault.EMPTY_RESULT})
_MARKER = re.compile(rf"\[\[fault:({'|'.join(Fault)})(?:@([a-z]+|\*))?\]\]")
_POLLS = re.compile(r"\[\[polls:(\d+)\]\]")


class WebhookFault(StrEnum):
    NEVER = "never"  # the job finishes; no webhook is sent
    TWICE = "twice"  # the same delivery is sent twice
    LATE = "late"  # sent webhook_late_delay seconds after the job finished
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify
    EARLY = "early"  # one delivery while the job still runs, then the real one
    BEFORE_ANSWER = "before_answer"  # the job finishes and its webhook is answered before the submit is
    NO_PAYLOAD = "no_payload"  # fal: the result is not in the push (payload null, payload_error); others ignore it


_WEBHOOK_MARKER = re.compile(rf"\[\[webhook:({'|'.join(WebhookFault)})\]\]")


@dataclass
class WebhookDelivery:
    """One webhook the emulator sent: what, where, and what the receiver answered (None: no answer)."""

    url: str
    job_id: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    #: Epoch seconds it was sent, and answered (None: no answer, a timeout or a connection error).
    sent_at: float = 0.0
    answered_at: float | None = None

#: Long side of a served image. Real sizes would be faithful but slow: a 1024 px PNG takes ~50 ms to make, and
#: benchmarks fetch thousands. Served images keep the requested shape; vendors report the served size.
IMAGE_LONG_SIDE = 64
#: Words in a model id that mean a video model (fal and Replicate ids name the family; image ids use none).
VIDEO_WORDS = ("veo", "kling", "wan", "minimax", "hailuo", "seedance", "video", "sora", "ltx", "luma", "pixverse",
               "hunyuan", "mochi")
#: Aspect ratios of the committed sample videos (providers/_media/manifest.json).
_VIDEO_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "21:9": 21 / 9}


def is_video_model(model: str) -> bool:
    return any(word in model.lower() for word in VIDEO_WORDS)


def aspect_of(width: int, height: int) -> str:
    """The sample videos' aspect ratio nearest to ``width``:``height``."""
    return min(_VIDEO_RATIOS, key=lambda ratio: abs(_VIDEO_RATIOS[ratio] - width / height))


def image_dims(width: int, height: int) -> tuple[int, int]:
    """Size of the image served for a ``width`` x ``height`` request: same shape, long side ``IMAGE_LONG_SIDE``."""
    scale = IMAGE_LONG_SIDE / max(width, height, 1)
    return max(8, round(width * scale)), max(8, round(height * scale))


@functools.lru_cache(maxsize=256)
def png(width: int, height: int, seed: int = 0) -> bytes:
    """A real PNG (cached: emulators serve the same few sizes over and over)."""
    return png_bytes(width, height, seed=seed)


def body_key(body: Any) -> str:
    """A request body as canonical JSON: equal bodies, equal keys (a multipart file by its bytes' digest)."""
    def encode(value: Any) -> str:
        return hashlib.sha256(value).hexdigest() if isinstance(value, (bytes, bytearray)) else repr(value)

    return json.dumps(body, sort_keys=True, default=encode)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    step: str
    body: Any = None  # parsed JSON, or form fields (files as {"filename", "bytes", "content_type"})


#: The ``Job`` fields its status follows from.
_STATE_FIELDS = frozenset({"polls", "polls_needed", "cancelled", "finished"})


@dataclass
class Job:
    """One vendor job. ``polls`` counts status polls; ``status`` follows from it (see the module docstring)."""

    id: str
    model: str
    payload: dict[str, Any]
    polls_needed: int
    outcome: Fault | None = None
    prompt: str = ""
    polls: int = 0
    cancelled: bool = False
    #: Set when the job finished on its own (a webhook job), whatever the polls.
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # per-vendor bookkeeping
    #: Called once when the job stops being in flight (done or cancelled, however its fields got there): the
    #: emulator's in-flight count, kept without looking at every job on every submit.
    on_settled: Callable[[Job], None] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _STATE_FIELDS and (settled := self.__dict__.get("on_settled")) is not None and not self.in_flight:
            self.on_settled = None
            settled(self)

    @property
    def in_flight(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def queued_polls(self) -> int:
        return max(1, self.polls_needed // 4) if self.polls_needed > 2 else 0

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``done`` (success or failure: see ``failed``) or ``cancelled``."""
        if self.cancelled:
            return "cancelled"
        if self.finished or self.polls >= self.polls_needed:
            return "done"
        return "queued" if self.polls == 0 or self.polls <= self.queued_polls else "running"

    @property
    def failed(self) -> bool:
        return self.status == "done" and self.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED)

    @property
    def progress(self) -> float:
        return 1.0 if self.finished else min(1.0, self.polls / max(self.polls_needed, 1))

    def advance(self) -> str:
        """Count one status poll (none once cancelled); the status after it."""
        if not self.cancelled:
            self.polls += 1
        return self.status


class Emulator:
    """Base of one vendor's emulator. Subclasses add routes and the vendor's bodies (``error``, ``unauthorized``)."""

    name: ClassVar[str] = "vendor"
    #: HTTP status of the vendor's validation errors (``Fault.BAD_REQUEST``).
    validation_status: ClassVar[int] = 400

    def __init__(self, *, api_key: str = "test-key", polls_to_complete: int = 2) -> None:
        self.api_key = api_key
        self.polls_to_complete = polls_to_complete
        #: Retry-After sent with injected 429s (seconds; tests that let clients retry set it low).
        self.retry_after = "1"
        self.calls: collections.Counter[str] = collections.Counter()
        #: Submits per request body (canonical JSON): one client job sends the same body each time it submits,
        #: so a count above 1 is that job submitted again (clients that need this send a unique body per job).
        self.submits_by_body: collections.Counter[str] = collections.Counter()
        self.requests: list[RecordedRequest] = []
        #: When set, every submit is held (recorded, unanswered) until this event is set: a vendor slow to answer.
        self.submit_gate: asyncio.Event | None = None
        #: The same for status polls: a poll in flight while something else happens (a webhook arrives).
        self.status_gate: asyncio.Event | None = None
        self.jobs: dict[str, Job] = {}
        #: The most vendor jobs ever queued or running at once (sampled at each submit): what a client's
        #: concurrency limit lets through.
        self.peak_in_flight = 0
        self._in_flight: dict[int, Job] = {}  # jobs queued or running, by identity (some vendors re-id a new job)
        self.url = ""
        self._faults: list[tuple[Fault, str, int]] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        #: Seconds after its submit a webhook job finishes; seconds a LATE webhook waits after that.
        self.webhook_delay = 0.02
        self.webhook_late_delay = 0.3
        #: A delivery without an answer or with a 5xx is sent again, this many times, this many seconds apart.
        self.webhook_retries = 3
        self.webhook_retry_delay = 1.0
        self.webhook_fault: WebhookFault | None = None
        #: Benchmarks: every job finishes this many seconds after its submit, on the wall clock (polls or not),
        #: and its webhook, if it asked for one, goes out then. None: jobs advance per poll (tests).
        self.finish_after: float | None = None
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_session: aiohttp.ClientSession | None = None
        self.app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._unmatched])
        self.app.on_response_prepare.append(self._stamp)
        self.app.router.add_get("/_media/{name}", self._media)
        self.app.router.add_get("/_emulator/stats", self._stats)
        self.app.router.add_get("/_emulator/finished", self._finished)
        self.app.router.add_get("/_emulator/webhooks", self._deliveries)
        self.add_routes(self.app.router)

    # ---- to override ---------------------------------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        """The vendor's error answer for ``status``."""
        return web.json_response({"detail": message}, status=status)

    def unauthorized(self, request: web.Request) -> web.Response:
        """The vendor's answer to a missing or wrong key (may depend on what the request sent)."""
        return self.error(401, "invalid credentials", "unauthorized")

    def denial(self, request: web.Request) -> web.Response | None:
        """The answer refusing the request's credentials (or its version header), or None to go on."""
        return None if self.authorized(request) else self.unauthorized(request)

    def no_route(self, request: web.Request, status: int) -> web.Response:
        """The vendor's answer to a path (404) or method (405) it does not serve."""
        return self.error(status, f"No route for {request.method} {request.path}", "not_found")

    def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the vendor's per-response headers (request ids) to every answer."""

    def webhook_message(self, job: Job) -> tuple[bytes, dict[str, str]]:
        """The vendor's webhook for ``job`` as it is now: body and (signed) headers."""
        raise NotImplementedError

    def forge(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with a signature that does not verify (vendors that sign override this)."""
        return headers

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        self._closing.set()  # first: hung handlers return, so cleanup does not wait for them
        for task in self._webhook_tasks:
            task.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._webhook_session is not None:
            await self._webhook_session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- recording and faults -----------------------------------------------------------------------------
    def inject(self, fault: Fault | str, step: str = "submit", times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests of ``step`` (``"*"``: any step)."""
        self._faults.append((Fault(fault), step, times))

    def record(self, request: web.Request, step: str, body: Any = None) -> None:
        self.calls[step] += 1
        if step == "submit":
            self.submits_by_body[body_key(body)] += 1
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query),
                                             dict(request.headers), step, body))

    def _take(self, step: str, prompt: str | None, kinds: frozenset[Fault]) -> Fault | None:
        """The fault of ``kinds`` that applies to this ``step``: a queued one (consumed) first, then the prompt's."""
        for i, (fault, at, times) in enumerate(self._faults):
            if fault in kinds and at in (step, "*"):
                if times <= 1:
                    del self._faults[i]
                else:
                    self._faults[i] = (fault, at, times - 1)
                return fault
        for name, at in _MARKER.findall(prompt or ""):
            if Fault(name) in kinds and (at or "submit") in (step, "*"):
                return Fault(name)
        return None

    async def enter(self, request: web.Request, step: str, body: Any = None, prompt: str | None = None,
                    job: Job | None = None, check_auth: bool = True) -> web.StreamResponse | None:
        """Record the call, check auth, apply an HTTP fault: a response to send instead, or None to go on.

        ``prompt`` (or ``job``'s prompt) is searched for in-band markers. A refused key consumes no fault.
        """
        self.record(request, step, body)
        if (gate := self.submit_gate if step == "submit" else self.status_gate if step == "status" else None):
            await gate.wait()
        if check_auth and (denied := self.denial(request)) is not None:
            return denied
        fault = self._take(step, prompt if prompt is not None else job.prompt if job else None, HTTP_FAULTS)
        return None if fault is None else await self._answer_fault(request, fault)

    async def _answer_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault is Fault.AUTH:
            return self.unauthorized(request)
        if fault is Fault.RATE_LIMIT:
            response = self.error(429, "Rate limit exceeded, slow down.", "rate_limited")
            response.headers["Retry-After"] = self.retry_after
            return response
        if fault is Fault.SERVER_ERROR:
            return self.error(500, "Internal server error.", "internal")
        if fault is Fault.UNAVAILABLE:
            return self.error(503, "Service temporarily unavailable.", "unavailable")
        if fault is Fault.BAD_REQUEST:
            return self.error(self.validation_status, "invalid value for field 'prompt'", "invalid")
        if fault is Fault.MALFORMED_JSON:
            return web.Response(body=b'{"id": "trunc', content_type="application/json")
        if fault is Fault.HANG:
            await self._closing.wait()
            return web.Response(status=503)
        # DROP: promise a body, send part of it, cut the connection.
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "4096"})
        await response.prepare(request)
        await response.write(b'{"status": "IN_PROGRESS", "id": "')
        assert request.transport is not None
        request.transport.abort()
        return response

    @web.middleware
    async def _unmatched(self, request: web.Request, handler: Any) -> web.StreamResponse:
        routing_error = request.match_info.http_exception
        if routing_error is None:
            return await handler(request)  # type: ignore[no-any-return]
        self.record(request, "unmatched")
        return self.no_route(request, routing_error.status)

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        self.stamp(request, response)

    # ---- jobs and media -----------------------------------------------------------------------------------
    def new_job(self, model: str, payload: dict[str, Any], prompt: str | None, *, id_prefix: str = "") -> Job:
        """A job for ``payload``; polls from ``[[polls:N]]`` or ``polls_to_complete``; outcome from faults.
        ``id_prefix`` follows the vendor's id style (OpenAI's ``video_...``)."""
        polls = _POLLS.search(prompt or "")
        job = Job(id=id_prefix + uuid.uuid4().hex, model=model, payload=payload, prompt=prompt or "",
                  polls_needed=int(polls[1]) if polls else self.polls_to_complete,
                  outcome=self._take("submit", prompt, OUTCOME_FAULTS))
        self.jobs[job.id] = job
        if self.finish_after is not None:
            self._spawn(self._run_webhook(job))
        if job.in_flight:
            self._in_flight[id(job)] = job
            job.on_settled = lambda settled: self._in_flight.pop(id(settled), None)
        self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
        return job

    def media_url(self, kind: str, job: Job | None = None, aspect_ratio: str | None = None, *,
                  size: tuple[int, int] | None = None, index: int = 0) -> str:
        """Absolute URL of real media on this emulator: the sample video for ``aspect_ratio``, or a PNG of
        ``image_dims(*size)`` (else of ``aspect_ratio``'s shape). The name carries the job id, so in-band
        ``@content`` faults find the job's prompt."""
        tag = job.id if job else "sample"
        if kind == "video":
            return f"{self.url}/_media/{tag}_{video_asset(aspect_ratio).path.name}"
        width, height = image_dims(*(size or image_size_for(aspect_ratio or "1:1", None)))
        return f"{self.url}/_media/{tag}_{index}-{width}x{height}.png"

    async def _media(self, request: web.Request) -> web.StreamResponse:
        # Media URLs are public (signed CDN URLs at the real vendors): no auth.
        name = request.match_info["name"]
        tag, _, rest = name.rpartition("_")
        if early := await self.enter(request, "content", job=self.jobs.get(tag), check_auth=False):
            return early
        if name.endswith(".mp4"):
            assets = (video_asset(ratio) for ratio in _VIDEO_RATIOS)
            asset = next((asset for asset in assets if asset.path.name in (rest, name)), None)
            if asset is None:
                return web.Response(status=404)
            return web.Response(body=asset.data(), content_type="video/mp4")
        if name.endswith(".png"):
            sized = re.fullmatch(r"(\d+)-(\d+)x(\d+)\.png", rest)
            index, width, height = (int(v) for v in sized.groups()) if sized else (0, IMAGE_LONG_SIDE, IMAGE_LONG_SIDE)
            return web.Response(body=png(min(width, 1024), min(height, 1024), index), content_type="image/png")
        return web.Response(status=404)

    # ---- webhooks -----------------------------------------------------------------------------------------
    async def start_webhook(self, job: Job, url: str) -> None:
        """Finish ``job`` on its own soon and POST its webhook to ``url`` (see the module docstring); called by
        the submit before it answers."""
        job.extra["webhook_url"] = url
        if self._webhook_fault(job) is WebhookFault.BEFORE_ANSWER:
            self._finish(job)
            await self.deliver_webhook(job, url)  # the submit's answer waits for this one
        elif self.finish_after is None:  # else new_job's timer finishes it and sends the webhook
            self._spawn(self._run_webhook(job))

    def _webhook_fault(self, job: Job) -> WebhookFault | None:
        marker = _WEBHOOK_MARKER.search(job.prompt)
        return self.webhook_fault or (WebhookFault(marker[1]) if marker else None)

    @staticmethod
    def _finish(job: Job) -> None:
        job.finished = True
        job.extra["finished_at"] = time.time()

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _run_webhook(self, job: Job) -> None:
        fault = self._webhook_fault(job)
        if fault is WebhookFault.EARLY and "webhook_url" in job.extra:
            await self.deliver_webhook(job, job.extra["webhook_url"])
        await asyncio.sleep(self.finish_after if self.finish_after is not None else self.webhook_delay)
        if job.cancelled or job.finished:  # finished: BEFORE_ANSWER did it all already
            return
        self._finish(job)
        url = job.extra.get("webhook_url")
        if url is None or fault is WebhookFault.NEVER:
            return
        if fault is WebhookFault.LATE:
            await asyncio.sleep(self.webhook_late_delay)
        delivery = await self.deliver_webhook(job, url, forged=fault is WebhookFault.BAD_SIGNATURE)
        for _ in range(self.webhook_retries):  # vendors retry a delivery nobody answered (fal: 10 times in 2 h)
            if delivery is None or (delivery.status is not None and delivery.status < 500):
                break
            await asyncio.sleep(self.webhook_retry_delay)
            delivery = await self.deliver_webhook(job, url, again=True)
        if fault is WebhookFault.TWICE:
            await self.deliver_webhook(job, url, again=True)

    async def deliver_webhook(self, job: Job, url: str, *, forged: bool = False,
                              again: bool = False) -> WebhookDelivery | None:
        """POST ``job``'s webhook to ``url`` now (``again``: the previous delivery's exact bytes and headers)."""
        previous = next((d for d in reversed(self.webhook_deliveries) if d.job_id == job.id), None)
        if again and previous is not None:
            body, headers = previous.body, dict(previous.headers)
        else:
            body, headers = self.webhook_message(job)
            if forged:
                headers = self.forge(headers)
        delivery = WebhookDelivery(url, job.id, body, headers, sent_at=time.time())
        self.webhook_deliveries.append(delivery)
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=15), connector=aiohttp.TCPConnector(limit=500))
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._webhook_session.post(url, data=body, allow_redirects=False,
                                                  headers={"Content-Type": "application/json", **headers}) as answer:
                delivery.status, delivery.answered_at = answer.status, time.time()
        return delivery

    async def _finished(self, request: web.Request) -> web.Response:
        """When each job that finished on the wall clock finished (epoch seconds), for benchmarks."""
        return web.json_response({job.id: job.extra["finished_at"] for job in self.jobs.values()
                                  if "finished_at" in job.extra})

    async def _deliveries(self, request: web.Request) -> web.Response:
        """Every webhook sent, for benchmarks: job, when sent and answered (epoch seconds), the answer's status."""
        return web.json_response([{"job_id": d.job_id, "sent_at": d.sent_at, "answered_at": d.answered_at,
                                   "status": d.status} for d in self.webhook_deliveries])

    def submits_of(self, body: Any) -> int:
        """How many submits carried ``body`` (the parsed JSON a client sent)."""
        return self.submits_by_body[body_key(body)]

    def repeated_submits(self) -> dict[str, int]:
        """Each request body submitted more than once (canonical JSON) -> its submits."""
        return {key: count for key, count in self.submits_by_body.items() if count > 1}

    async def _stats(self, request: web.Request) -> web.Response:
        """Counters for out-of-process users (benchmarks): calls per step, jobs created, and every request body
        submitted more than once with its count (``repeated_submits``: a client's job submitted twice)."""
        return web.json_response({"calls": dict(self.calls), "jobs": len(self.jobs),
                                  "repeated_submits": self.repeated_submits()})
