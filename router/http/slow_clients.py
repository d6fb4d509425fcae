"""Connection guards aiohttp lacks: deadlines against slow clients, a connection cap, JSON protocol errors.

- Every request head (the first on a connection, and each later one on a keep-alive connection from its first
  byte) must be complete within ``header_timeout``, else the connection gets a 408 and is closed.
- A request body must arrive within ``body_timeout`` of its head: the handler reading it gets ``BodyTimeoutError``
  (a 408 in the error shape) and the connection is closed.
- Past ``max_connections`` open connections, a new one is answered 503 and closed at once, so a flood of idle
  sockets cannot exhaust file descriptors (and the probes keep answering once the flood's deadlines run out).
- aiohttp's own 4xx for unparseable requests use the documented error shape and are logged as client errors.
- A connection can be parked (not read) and unparked: how ``router.http.create_gate`` bounds creates in progress.

aiohttp offers no hook for these, so the runner swaps in a server class whose protocol factory builds
``_GuardedHandler``; the rest of aiohttp's behaviour is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from router.http.answers import json_response
from router.http.create_gate import HELD_BY
from router.log_setup import get_logger
from router.settings import Settings

log = get_logger("router.http")

#: An idle keep-alive connection is closed after this long (nginx's default; aiohttp's runners keep one for an hour).
#: Set on a request refused before its ``100 Continue`` (``admission_middleware``): the client never sent its body,
#: so the connection is closed once the answer is out, instead of aiohttp lingering 10 s for a body to discard.
BODY_NEVER_SENT = web.RequestKey("body_never_sent", bool)
KEEPALIVE_SECONDS = 75.0
#: How often a repeated connection-level problem (refusals past the cap, accept failures) is logged.
LOG_EVERY_SECONDS = 10.0


class BodyTimeoutError(TimeoutError):
    """The request body did not arrive within the body deadline (answered 408)."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1000

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        """The limits the settings ask for (``HEADER_TIMEOUT_SECONDS``, ``BODY_TIMEOUT_SECONDS``, ``MAX_CONNECTIONS``)."""
        return cls(settings.header_timeout_seconds, settings.body_timeout_seconds, settings.max_connections)


class LogThrottle:
    """Logs the first occurrence of a repeated event, then at most one line per ``every`` seconds with the count
    of those left out, so a flood (accept failures, refused connections) cannot flood the log too."""

    def __init__(self, every: float = LOG_EVERY_SECONDS, clock: Callable[[], float] | None = None) -> None:
        self.every = every
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, event: str, **fields: Any) -> None:
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        if now < self._next.get(event, float("-inf")):
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._next[event] = now + self.every
        log.warning(event, suppressed=self._suppressed.pop(event, 0), **fields)


def raw_error(status: int, message: str, code: str) -> bytes:
    """A complete ``Connection: close`` response in the error shape, for moments without a request object."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error" if status < 500 else
                                 "server_error", "code": code, "param": None}}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


#: Where aiohttp's parser errors start quoting the raw request ("Invalid header value char:\n\n  b'Authorization:
#: Bearer <token>\x01'", "Got more than 8190 bytes when reading: b'..."): a client token, or a vendor webhook URL's
#: secret in a request line. Neither the answer nor the log repeats anything from there on.
_QUOTED_INPUT = re.compile(r":?\s*\n|: (?:bytearray\()?b['\"]")


def _error_response(status: int, message: str, code: str) -> web.Response:
    """A client error in the error shape (``router.http.errors`` imports this module, so it cannot be used)."""
    return json_response({"error": {"message": message, "type": "invalid_request_error", "code": code,
                                    "param": None}}, status=status)


class _GuardedHandler(RequestHandler):
    def __init__(self, *args: Any, limits: ConnectionLimits, throttle: LogThrottle, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._throttle = throttle
        self._awaiting_head = True  # no request head in progress or complete since the last response
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the request whose body is arriving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._manager is not None and len(self._manager.connections) > self._limits.max_connections:
            self._throttle("connection_refused", reason="max_connections reached",
                           max_connections=self._limits.max_connections)
            self._close_with(raw_error(503, "too many open connections; retry shortly", "too_many_connections"))
            return
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_expired)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count > heads:  # a request head is complete
            self._cancel_head_timer()
            self._awaiting_head = False
            payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof():
                self._body = payload
                self._cancel_body_timer()
                self._body_timer = self._loop.call_later(self._limits.body_timeout, self._body_expired)
        elif data and self._awaiting_head and self._body is None and self._head_timer is None:
            # The first byte of a keep-alive connection's next request: its head gets the same deadline.
            self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_expired)
        if self._body is not None and self._body.is_eof():
            self._cancel_body_timer()
            self._body = None

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
                              ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # Raised before the app's middlewares run, so not in the error shape yet: aiohttp's check of an
            # ``Expect`` header other than 100-continue (417) is the one.
            resp = _error_response(resp.status, resp.text or resp.reason, "invalid_request")
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._awaiting_head = True
            if request.get(BODY_NEVER_SENT) and not self._force_close:
                self.force_close()  # the answer is written: the transport sends it, then closes
            elif request.content.exception() is not None and not self._force_close:
                # A body that failed (undecodable, too slow): aiohttp would drain the rest, which raises the same
                # error again and logs it as an unhandled exception. The answer said Connection: close; close now.
                self.force_close()
            gate = request.get(HELD_BY)
            if gate is not None:
                gate.after_response(self)

    def park(self) -> None:
        """Stop reading: the client's next request waits in the socket buffer (``CreateGate``)."""
        self._set_reading(False)

    def unpark(self) -> bool:
        if self.transport is None:
            return False
        if not self._reading_paused and not getattr(self, "_buffer_paused", False):  # aiohttp's own holds
            self._set_reading(True)
        return True

    def _set_reading(self, on: bool) -> None:
        if self.transport is not None:
            with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):  # closing, or no flow control
                if on:
                    self.transport.resume_reading()
                else:
                    self.transport.pause_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        reason = str(getattr(exc, "message", None) or message or HTTPStatus(status).phrase)
        reason = _QUOTED_INPUT.split(reason, maxsplit=1)[0][:200]
        log.info("bad_http_request", status=status, reason=reason, remote=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        response = _error_response(status, f"malformed HTTP request: {reason}", "bad_http_request")
        response.force_close()
        return response

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._awaiting_head and self._body is None and self.transport is not None:
            self._close_with(raw_error(408, f"request head not received within {self._limits.header_timeout:g} s",
                                       "header_timeout"))

    def _body_expired(self) -> None:
        self._body_timer = None
        if self._body is not None and not self._body.is_eof():
            # The handler reading it (or aiohttp draining it) gets this error; the connection then closes.
            self._body.set_exception(BodyTimeoutError(
                f"request body not received within {self._limits.body_timeout:g} s"))
            self._body = None
            self.close()

    def _close_with(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)
        self.force_close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None


#: What takes a new connection before aiohttp does (``router.http.fast_path.FastPath``): its ``connection(server)``
#: makes the protocol, which calls ``server.guarded_handler()`` when it hands the connection to aiohttp.
CONNECTION_FRONT = web.AppKey("connection_front", object)


class _GuardedServer(Server):
    limits: ConnectionLimits
    throttle: LogThrottle
    front: Any

    def __call__(self) -> Any:
        return self.guarded_handler() if self.front is None else self.front.connection(self)

    def guarded_handler(self) -> _GuardedHandler:
        return _GuardedHandler(self, loop=self._loop, limits=self.limits, throttle=self.throttle, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections get the guards above."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_SECONDS)
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer
        server.limits = self._limits  # type: ignore[attr-defined]
        server.throttle = LogThrottle()  # type: ignore[attr-defined]
        server.front = self.app.get(CONNECTION_FRONT)  # type: ignore[attr-defined]
        return server


def accept_error_handler(throttle: LogThrottle) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that logs a failing ``accept()`` (out of file descriptors) through
    ``throttle`` (asyncio logs it once per queued connection, thousands of times a second) and leaves every
    other error to the default handler."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            throttle("accept_failed", error=str(context.get("exception", "")))
            return
        loop.default_exception_handler(context)

    return handle
