"""The synchronous generation endpoints served without aiohttp's per-request machinery (#18).

aiohttp's request and response objects, its middleware chain and its writer cost a request about a sixth of the
router's instructions (a prototype, ``bench/results/lean-server-prototype.txt``). A connection therefore starts
here: a request that is plainly well formed, to ``POST /v1/images/generations``, ``/v1/image/generations`` or
``/v1/video/generations``, is served by the same functions the aiohttp handlers call (``image_answer``,
``generation_answer``), with the same request id, admission, error shape, access line and HTTP metrics. Anything
else (another endpoint, a query, ``Expect``, chunked or compressed bodies, ``Connection: close``, HTTP/1.0,
non-ASCII or repeated headers, a body over the limit, a refused token or rate, an SSE ``Accept``) hands the
connection, with every byte read so far, to aiohttp's guarded handler (``router.http.slow_clients``) for good: what
it answers is what it always answered. The connection guards hold here too: a head within ``header_timeout``, a
body within ``body_timeout`` of its head, an idle keep-alive connection closed after ``KEEPALIVE_SECONDS``, the
connection cap, a generation cancelled when its client goes away, and the runner's graceful shutdown. The
deadlines are looked at once a second for all fast connections (``DEADLINE_TICK_SECONDS``), so a 408 or an idle
close may come up to a second late. ``FAST_PATH=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from router.http.bodies import parse_json
from router.http.errors import answer_for
from router.http.keys import DAEMON
from router.http.middleware import MAX_IDEMPOTENCY_KEY_CHARS, AuthCheck, log_access, new_request_id, rate_key_of
from router.http.native import generation_answer
from router.http.openai_compat import image_answer
from router.http.slow_clients import KEEPALIVE_SECONDS, BodyTimeoutError, ConnectionLimits, raw_error
from router.ids import Ids
from router.json_text import dumps
from router.settings import Settings

#: What a request's answer is, from the app, its JSON body and its client.
Answer = Callable[[web.Application, dict[str, Any], str], Awaitable[dict[str, Any]]]
ENDPOINTS: dict[str, Answer] = {
    "/v1/images/generations": image_answer,
    "/v1/image/generations": lambda app, body, client: generation_answer(app, "image", body, client),
    "/v1/video/generations": lambda app, body, client: generation_answer(app, "video", body, client),
}
#: aiohttp's limits on a request line and a header line; longer heads go to it (it answers 400 or 431).
MAX_LINE = 8190
MAX_HEADERS = 100
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: How much of the next requests a connection reads while one is being served.
PIPELINED_BYTES = 64 * 1024
#: Deadlines (head, body, idle keep-alive) are checked this often, for every fast connection by one timer: a timer per
#: connection re-armed three times a request cost more than the request's admission.
DEADLINE_TICK_SECONDS = 1.0
#: Headers whose presence means aiohttp must read the request (framing, interim answers, streams, decoding).
_HANDED_OFF_BY = frozenset({"transfer-encoding", "expect", "upgrade", "content-encoding"})
_SERVER = SERVER_SOFTWARE.encode()


class FastPath:
    """What every fast connection of one app shares: the app, its limits, the auth check and the request ids."""

    def __init__(self, app: web.Application, settings: Settings, auth: AuthCheck) -> None:
        self.app = app
        self.limits = ConnectionLimits.of(settings)
        self.max_body_bytes = settings.max_body_bytes
        self.auth = auth
        self.ids = Ids()
        #: How often the open connections' deadlines are looked at: a 408 or an idle close comes at most this late.
        self.tick = min(DEADLINE_TICK_SECONDS, self.limits.header_timeout / 2, self.limits.body_timeout / 2)
        self._open: dict[FastConnection, None] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._date_second = -1
        self._date = b""

    def connection(self, server: Any) -> FastConnection:
        """The protocol for a new connection of ``server`` (the guarded aiohttp server it hands off to)."""
        return FastConnection(self, server)

    def watch(self, connection: FastConnection) -> None:
        """Look at ``connection``'s deadline every tick until ``forget``."""
        self._open[connection] = None
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.tick, self._sweep)

    def forget(self, connection: FastConnection) -> None:
        self._open.pop(connection, None)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self._open if c.deadline <= now]:
            connection.expired()
        self._sweeper = loop.call_later(self.tick, self._sweep) if self._open else None

    def date(self) -> bytes:
        """The ``Date`` header's value, worked out once a second (as aiohttp does)."""
        second = int(time.time())
        if second != self._date_second:
            self._date_second, self._date = second, formatdate(second, usegmt=True).encode()
        return self._date


class _Head:
    __slots__ = ("path", "headers", "length")

    def __init__(self, path: str, headers: dict[str, str], length: int) -> None:
        self.path, self.headers, self.length = path, headers, length


def parse_head(head: bytes, max_body_bytes: int) -> _Head | None:
    """The request head ``head`` (up to its blank line), if the fast path may serve it; None hands it off."""
    if not head.isascii():
        return None
    lines = head.decode("ascii").split("\r\n")
    parts = lines[0].split(" ")
    if (len(parts) != 3 or parts[0] != "POST" or parts[2] != "HTTP/1.1" or parts[1] not in ENDPOINTS
            or len(lines) > MAX_HEADERS + 1):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = name.lower()
        value = value.strip(" \t")
        if (not colon or len(line) > MAX_LINE or not _TOKEN.fullmatch(name) or key in headers
                or not value.replace("\t", " ").isprintable()):
            return None
        headers[key] = value
    length = headers.get("content-length", "")
    if (not length.isdigit() or len(length) > 15 or not 0 < int(length) <= max_body_bytes
            or not _HANDED_OFF_BY.isdisjoint(headers) or headers.get("connection", "keep-alive").lower() != "keep-alive"
            or len(headers.get("idempotency-key", "")) > MAX_IDEMPOTENCY_KEY_CHARS
            or "text/event-stream" in headers.get("accept", "")):
        return None
    return _Head(parts[1], headers, int(length))


class FastConnection(asyncio.Protocol):
    """One client connection: its requests served here until one needs aiohttp, then aiohttp's from there on.

    To aiohttp's ``Server`` it is one of its connections (counted against the cap, closed and drained by the
    runner's shutdown), hence the ``RequestHandler`` names it calls: ``close``, ``shutdown``, ``_task_handler``."""

    def __init__(self, fast: FastPath, server: Any) -> None:
        self._fast = fast
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._head_end = 0
        self._task: asyncio.Task[None] | None = None
        self._task_handler = None  # aiohttp's Server: no handler task to wait for when the connection is lost
        #: When the current wait (a head, a body, an idle keep-alive) runs out, and what happens then.
        self.deadline = float("inf")
        self._when_due: Callable[[], None] = self._close_transport
        self._idle = False  # answered, no byte of the next request yet
        self._closing = False

    # ---- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport, but quacks
        self._server.connection_made(self, transport)
        self._fast.watch(self)
        if len(self._server.connections) > self._fast.limits.max_connections:
            self._hand_off()  # the guarded handler answers 503 and closes, as for any connection past the cap
            return
        self._arm(self._fast.limits.header_timeout, self._head_expired)

    def data_received(self, data: bytes) -> None:
        if self._idle:  # a keep-alive connection's next head: the same deadline, from its first byte
            self._idle = False
            self._arm(self._fast.limits.header_timeout, self._head_expired)
        self._buffer += data
        if self._task is None:
            self._next()
        elif len(self._buffer) > PIPELINED_BYTES:
            # Pipelined while a request is served: stop reading until it is answered, so no client can make this
            # connection hold more than one body (up to MAX_BODY_BYTES) and a little of the next.
            self._transport.pause_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fast.forget(self)
        self._transport = None
        self._server.connection_lost(self, exc)
        if self._task is not None:
            self._task.cancel()  # the client went away: its generation (and vendor job) is cancelled

    # ---- aiohttp's Server ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop after the request in progress (now when idle): the runner is shutting down."""
        self._closing = True
        if self._task is None:
            self._close_transport()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        """Let the request in progress finish within ``timeout``, then cancel it; close the connection."""
        self._closing = True
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._close_transport()

    # ---- requests ------------------------------------------------------------------------------------------
    def _next(self) -> None:
        """Serve the next request in the buffer when it is all there; hand off what is not ours."""
        if self._closing or self._transport is None:
            return
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE * 2:
                    self._hand_off()
                return
            head = parse_head(bytes(self._buffer[:end]), self._fast.max_body_bytes)
            if head is None:
                self._hand_off()
                return
            self._head, self._head_end = head, end + 4
            self._arm(self._fast.limits.body_timeout, self._body_expired)
        head = self._head
        if len(self._buffer) < self._head_end + head.length:
            return
        identity = self._fast.auth.client_of(head.headers.get("authorization", ""))
        if identity is None or self._rate_refused(identity[0]):
            self._hand_off()  # aiohttp's admission answers the 401 or 429, as it always did
            return
        body = bytes(self._buffer[self._head_end:self._head_end + head.length])
        del self._buffer[:self._head_end + head.length]
        self._head = None
        self._disarm()
        self._task = asyncio.get_running_loop().create_task(self._serve(head, body, identity[0]))

    def _rate_refused(self, client: str) -> bool:
        limiter = self._fast.app[DAEMON].client_limiter
        if limiter is None:
            return False
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return limiter.check(rate_key_of(client, peer[0] if peer else None)) > 0

    async def _serve(self, head: _Head, body: bytes, client: str) -> None:
        fast = self._fast
        request_id = new_request_id(fast.ids, head.headers.get("x-request-id", ""))
        started = time.perf_counter()
        status = 500
        try:
            try:
                answer = await ENDPOINTS[head.path](fast.app, parse_json(body), client)
            except Exception as exc:  # noqa: BLE001 - the error shape, as the error middleware answers
                status = self._write_error(exc, head.path, request_id)
            else:
                status = 200
                self._write(200, dumps(answer).encode(), b"", request_id, close=False)
        except asyncio.CancelledError:
            status = 499  # the client went away (or shutdown's grace ran out), as the access middleware logs it
            raise
        finally:
            self._answered(head.path, status, started)
            self._task = None
            self._done()

    def _write_error(self, exc: Exception, path: str, request_id: str) -> int:
        """Write the error middleware's answer to ``exc``; its status. (An exception of no known kind is logged with
        its traceback: pass it from its ``except`` block.)"""
        response = answer_for(exc, "POST", path, self._fast.max_body_bytes)
        extra = b"".join(f"{name}: {value}\r\n".encode() for name, value in response.headers.items()
                         if name != "Content-Type")
        self._write(response.status, response.body, extra, request_id, close=response.keep_alive is False)
        return response.status

    def _answered(self, path: str, status: int, started: float) -> None:
        """What the access middleware records of an answered request: the HTTP counter and the access line."""
        self._fast.app[DAEMON].metrics.http_answered("POST", path, status)
        log_access("POST", path, status, started)

    def _write(self, status: int, payload: bytes, extra: bytes, request_id: str, close: bool) -> None:
        if self._transport is None:
            return
        phrase = "OK" if status == 200 else HTTPStatus(status).phrase
        self._transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n%sX-Request-ID: %s\r\n"
            b"Content-Length: %d\r\nDate: %s\r\nServer: %s\r\n%s\r\n"
            % (status, phrase.encode(), extra, request_id.encode(), len(payload), self._fast.date(),
               _SERVER, b"Connection: close\r\n" if close else b"") + payload)
        if close:
            self._closing = True

    def _done(self) -> None:
        """After an answer: close if asked to, else wait for the next request (idle, then its head's deadline)."""
        if self._closing:
            self._close_transport()
            return
        if self._transport is None:
            return
        if not self._transport.is_reading():
            self._transport.resume_reading()
        if self._buffer:  # pipelined: the next request was read while this one was served
            self._arm(self._fast.limits.header_timeout, self._head_expired)
            self._next()
        else:
            self._idle = True
            self._arm(KEEPALIVE_SECONDS, self._close_transport)

    # ---- hand-off and deadlines -------------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """aiohttp's guarded handler takes the connection and what was read of it; nothing was answered yet."""
        transport, data = self._transport, bytes(self._buffer)
        self._fast.forget(self)
        self._server.connection_lost(self, None)
        self._transport, self._buffer = None, bytearray()
        if transport is None or transport.is_closing():
            return
        handler = self._server.guarded_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):
            transport.resume_reading()
        if data:
            handler.data_received(data)

    def _head_expired(self) -> None:
        if self._transport is not None and self._task is None:
            self._transport.write(raw_error(408, f"request head not received within "
                                                 f"{self._fast.limits.header_timeout:g} s", "header_timeout"))
            self._close_transport()

    def _body_expired(self) -> None:
        """The head came, the body did not: the 408 aiohttp's path answers (the handler's read fails), logged."""
        head = self._head
        if self._transport is None or head is None:
            return
        request_id = new_request_id(self._fast.ids, head.headers.get("x-request-id", ""))
        started = time.perf_counter()
        timeout = BodyTimeoutError(f"request body not received within {self._fast.limits.body_timeout:g} s")
        status = self._write_error(timeout, head.path, request_id)  # 408, Connection: close
        self._answered(head.path, status, started)
        self._close_transport()

    def expired(self) -> None:
        """``FastPath``'s sweep: this connection's deadline has passed."""
        self.deadline = float("inf")
        self._when_due()

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self.deadline = asyncio.get_running_loop().time() + seconds
        self._when_due = then

    def _disarm(self) -> None:
        self.deadline = float("inf")

    def _close_transport(self) -> None:
        self._disarm()
        if self._transport is not None:
            self._transport.close()

