"""Shared machinery of the vendor emulators: lifecycle, auth, request recording, fault injection, job
progression per poll (never per wall-clock second) and real media.

Faults are injected two ways: ``emu.inject(Fault.RATE_LIMIT, step="submit")`` from a test, or in-band from
the prompt (``[[fault:rate_limit@status]]``, ``[[polls:5]]``) so a test driving the daemon over HTTP can
trigger them too. Steps are named ``submit``, ``status``, ``result``, ``cancel``, ``content``.
"""

from __future__ import annotations

import asyncio
import collections
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

from providers._mock_media import png_bytes, video_asset


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 + Retry-After
    SERVER_ERROR = "server_error"  # 500
    UNAVAILABLE = "unavailable"  # 503
    HANG = "hang"  # never answers (until the emulator closes)
    MALFORMED_JSON = "malformed_json"  # 200 with a truncated JSON body
    DROP = "drop"  # headers and half a body, then the connection is cut
    AUTH = "auth"  # the vendor's 401
    BAD_REQUEST = "bad_request"  # the vendor's validation error
    CONTENT_POLICY = "content_policy"  # job outcome: moderation (sync APIs: the vendor's moderation error)
    JOB_FAILED = "job_failed"  # job outcome: accepted, then failed
    EMPTY_RESULT = "empty_result"  # job outcome: success without media


HTTP_FAULTS = frozenset({Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.HANG, Fault.MALFORMED_JSON,
                         Fault.DROP, Fault.AUTH, Fault.BAD_REQUEST})
OUTCOME_FAULTS = frozenset({Fault.CONTENT_POLICY, Fault.JOB_FAILED, Fault.EMPTY_RESULT})
_MARKER = re.compile(r"\[\[fault:([a-z_]+)(?:@([a-z]+))?\]\]")
_POLLS = re.compile(r"\[\[polls:(\d+)\]\]")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    step: str
    body: Any = None


@dataclass
class Job:
    id: str
    model: str
    payload: dict[str, Any]
    polls_needed: int
    outcome: Fault | None = None
    polls: int = 0
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def advance(self) -> str:
        """One status poll: ``queued`` -> ``running`` -> ``done`` (or ``cancelled``)."""
        if self.cancelled:
            return "cancelled"
        self.polls += 1
        if self.polls >= self.polls_needed:
            return "done"
        return "queued" if self.polls == 1 and self.polls_needed > 2 else "running"

    @property
    def progress(self) -> float:
        return min(1.0, self.polls / max(self.polls_needed, 1))


class Emulator:
    """Base of one vendor's emulator. Subclasses add routes and vendor-shaped bodies."""

    name = "vendor"

    def __init__(self, *, api_key: str = "test-key", polls_to_complete: int = 2) -> None:
        self.api_key = api_key
        self.polls_to_complete = polls_to_complete
        #: Retry-After sent with injected 429s (seconds; tests that retry set it low).
        self.retry_after = "1"
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self._faults: list[tuple[Fault, str, int]] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_get("/_media/{name}", self._media)
        self.app.router.add_get("/_emulator/stats", self._stats)
        self.add_routes(self.app.router)

    # ---- to override ---------------------------------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        """The vendor's error body for ``status``."""
        return web.json_response({"detail": message}, status=status)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- faults -------------------------------------------------------------------------------------------
    def inject(self, fault: Fault | str, step: str = "submit", times: int = 1) -> None:
        self._faults.append((Fault(fault), step, times))

    def _take(self, step: str, prompt: str | None, kinds: frozenset[Fault]) -> Fault | None:
        for i, (fault, at, times) in enumerate(self._faults):
            if fault in kinds and at in (step, "*"):
                self._faults[i] = (fault, at, times - 1)
                if times <= 1:
                    del self._faults[i]
                return fault
        for name, at in _MARKER.findall(prompt or ""):
            fault = Fault(name)
            if fault in kinds and (at or ("submit" if fault in HTTP_FAULTS else "")) in (step, ""):
                return fault
        return None

    async def enter(self, request: web.Request, step: str, body: Any = None, prompt: str | None = None,
                    job: Job | None = None, check_auth: bool = True) -> web.StreamResponse | None:
        """Record the call, check auth, apply an HTTP fault. Returns a response to send instead, or None."""
        self.calls[step] += 1
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query),
                                             dict(request.headers), step, body))
        if prompt is None and job is not None:
            prompt = str(job.payload.get("prompt") or job.extra.get("prompt") or "")
        fault = self._take(step, prompt, HTTP_FAULTS)
        if (check_auth and not self.authorized(request)) or fault is Fault.AUTH:
            return self.error(401, "invalid credentials", "unauthorized")
        if fault is None:
            return None
        if fault is Fault.RATE_LIMIT:
            response = self.error(429, "rate limit exceeded, slow down", "rate_limited")
            response.headers["Retry-After"] = self.retry_after
            return response
        if fault is Fault.SERVER_ERROR:
            return self.error(500, "internal server error", "internal")
        if fault is Fault.UNAVAILABLE:
            return self.error(503, "service temporarily unavailable", "unavailable")
        if fault is Fault.BAD_REQUEST:
            return self.error(400 if self.name != "fal" else 422, "invalid value for field 'prompt'", "invalid")
        if fault is Fault.MALFORMED_JSON:
            return web.Response(body=b'{"id": "trunc', content_type="application/json")
        if fault is Fault.HANG:
            await self._closing.wait()
            return web.Response(status=503)
        # DROP: promise a body, send half of it, cut the connection.
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "4096"})
        await response.prepare(request)
        await response.write(b'{"status": "IN_PROGRESS", "id": "')
        assert request.transport is not None
        request.transport.abort()
        return response

    # ---- jobs and media -----------------------------------------------------------------------------------
    def new_job(self, model: str, payload: dict[str, Any], prompt: str | None) -> Job:
        markers = _POLLS.search(prompt or "")
        job = Job(
            id=uuid.uuid4().hex,
            model=model,
            payload=payload,
            polls_needed=int(markers[1]) if markers else self.polls_to_complete,
            outcome=self._take("submit", prompt, OUTCOME_FAULTS),
            extra={"prompt": prompt},
        )
        self.jobs[job.id] = job
        return job

    def media_url(self, kind: str, job: Job | None = None, aspect_ratio: str | None = None) -> str:
        if kind == "video":
            return f"{self.url}/_media/{video_asset(aspect_ratio).path.name}"
        return f"{self.url}/_media/image-{job.id if job else 'x'}.png"

    async def _stats(self, request: web.Request) -> web.Response:
        """Counters for out-of-process users (benchmarks): calls per step and jobs created."""
        return web.json_response({"calls": dict(self.calls), "jobs": len(self.jobs)})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        # Media URLs are public (signed CDN URLs at the real vendors): no auth.
        if early := await self.enter(request, "content", check_auth=False):
            return early
        name = request.match_info["name"]
        if name.endswith(".mp4"):
            asset = next((a for a in (video_asset(r) for r in ("16:9", "9:16", "1:1", "4:3", "21:9"))
                          if a.path.name == name), None)
            if asset is None:
                return web.Response(status=404)
            return web.Response(body=asset.data(), content_type="video/mp4")
        return web.Response(body=png_bytes(64, 64, seed=len(name)), content_type="image/png")
