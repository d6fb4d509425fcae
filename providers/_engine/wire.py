"""A lean HTTP/1.1 client on asyncio for the provider engine's common vendor call.

Why it exists: aiohttp's client was the largest single block of the router's CPU per vendor call (about half of a
fal status poll's event-loop CPU, ~18 % of accepting a job) and keeps ~30 GC-tracked objects alive per call in
flight (request, response, URL, timers, parser, stream reader, multidicts, cookies, coroutines, futures); with
thousands of jobs polling, the cyclic GC's pauses come from walking them. Here a call is one ``asyncio.Protocol``
per pooled connection (no streams), one future per exchange, and one plain response.

What it does (``WirePool.request``): GET/POST/PUT/DELETE/PATCH (any method, in fact) with a bytes body or none, over
http or https (``ssl.create_default_context()``, as aiohttp's default, or a context the caller gives), with the
headers aiohttp would send for the same call: Host (with the port when not the scheme's default), User-Agent,
the caller's headers, ``Accept: */*``, Content-Length (``0`` for a bodyless POST/PUT/PATCH/DELETE, as aiohttp) and
the body's Content-Type (``application/octet-stream`` for a POST/PUT/PATCH without one, as aiohttp). ``target``
builds the request target exactly as yarl (aiohttp's URL class) would for the URL and query params: a fast path
for the plain URLs vendors use, yarl itself for anything else. Answers: framed by Content-Length,
``Transfer-Encoding: chunked`` (trailers read and dropped, as aiohttp) or the connection's close; no body for HEAD,
1xx (skipped), 204 and 304; headers as a ``CIMultiDictProxy`` in order with repeats.

Connections are kept alive per (scheme, host, port) and reused last-in first-out; one idle for ``keepalive`` seconds
(aiohttp's 15 s) is closed, as is one whose answer said ``Connection: close``, was HTTP/1.0, was framed by the
close, or left bytes after its end. As aiohttp 3.14 (``ClientSession._request``), an idempotent request (GET, HEAD,
OPTIONS, TRACE, PUT, DELETE) whose connection dies before the answer's head arrived is sent once more on a new
connection (the server closed a kept-alive connection just as we reused it); a POST or PATCH never is. Redirects
(when asked) follow aiohttp's rules: 301/302 turn a POST into a bodyless GET, 303 turns anything but HEAD into one,
307/308 keep method and body; at most ``MAX_REDIRECTS`` answers; Authorization, Cookie and Proxy-Authorization are
dropped when the origin changes; a Location that is not http(s) is an error.

Errors: ``WireConnectError`` when nothing was sent (refused, DNS failure, unreachable, TLS handshake or certificate
failure, the connect bound expired); ``WireError`` (``WireDisconnected``, ``WireProtocolError``,
``WireRedirectError``) or ``TimeoutError`` once the request may have gone out. Their messages carry no header or
body.

Timeouts: the connect phase (DNS, TCP, TLS) is bounded by ``connect_timeout`` and, when given, the call's own
``timeout``, whichever ends first, so a call that cannot connect always fails as ``WireConnectError``; the
exchange by ``timeout`` (one timer per call) or, when it is None, by the caller (the engine's shared tick, see
``router.deadlines``).

What it does not do (the engine sends those calls through aiohttp): multipart or streamed request bodies,
credentials in the URL, non-http schemes, proxies, HTTP/2, ``Expect: 100-continue``, protocol upgrades. It keeps no
cookie jar (vendor APIs authenticate by header; aiohttp's jar would echo a CDN's cookies back). Host names are
resolved as aiohttp resolves them: ``getaddrinfo`` in the loop's executor, one lookup at a time per name (concurrent
connects share it), kept ``DNS_TTL_SECONDS``, and connected with happy eyeballs (``aiohappyeyeballs``, aiohttp's
own). It asks for ``Accept-Encoding: identity`` instead of aiohttp's ``gzip, deflate``: vendor answers are small
JSON or already-compressed media, so compression would cost CPU on both ends for little; should a server compress
anyway, gzip and deflate are still decoded. A request body is written whole, without waiting for the transport to
drain (bodies are JSON of at most a few MB); an answer is read whole into memory, as the engine did with aiohttp's
``read()``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote_plus

import aiohappyeyeballs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

#: Seconds an idle kept-alive connection stays open (aiohttp's ``keepalive_timeout``).
KEEPALIVE_SECONDS = 15.0
#: Redirect answers after which a call fails (aiohttp's ``max_redirects``).
MAX_REDIRECTS = 10
#: Bytes an answer's head (status line and headers), a chunk-size line or the trailers may take.
MAX_HEAD_BYTES = 65536
#: How many request shapes (method, host, headers, content type) a pool keeps the header text of.
MAX_HEAD_SHAPES = 256
#: aiohttp's ``happy_eyeballs_delay``: a host with IPv6 and IPv4 addresses is tried on both, 0.25 s apart.
HAPPY_EYEBALLS_DELAY = 0.25
#: Seconds a host name's addresses are reused (aiohttp's ``ttl_dns_cache`` as the engine set it).
DNS_TTL_SECONDS = 300.0
#: RFC 9110's idempotent methods (aiohttp's ``IDEMPOTENT_METHODS``): safe to send again when the connection died
#: before any answer came.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Methods aiohttp sends without ``Content-Length: 0`` when they have no body (its ``GET_METHODS``).
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Methods aiohttp gives ``Content-Type: application/octet-stream`` when the caller set none (its ``POST_METHODS``).
_POST_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Headers aiohttp drops when a redirect leaves the origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: A URL yarl leaves as it is: lower-case host, port without leading zero, a path and a non-empty query of the
#: characters yarl does not quote there, no fragment or credentials (dot segments are checked apart).
_PLAIN_URL = re.compile(r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::([1-9][0-9]{0,4}))?"
                        r"(/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?(\?[A-Za-z0-9._~!$&'()*+,;=:@/?-]+)?")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")
#: Besides letters, digits and "_.-~": what yarl's query quoter leaves unquoted in a key or value (space becomes +).
_QUERY_SAFE = "!$'()*,/:?@"
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


_AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int] | tuple[str, int, int, int]]


class WireError(Exception):
    """The request may have reached the server, but no complete answer came back."""


class WireConnectError(WireError):
    """No connection: nothing was sent."""


class WireDisconnected(WireError):
    """The connection ended before the answer was complete."""

    def __init__(self, message: str, *, before_head: bool) -> None:
        super().__init__(message)
        #: No answer head had arrived: an idempotent request may be sent again.
        self.before_head = before_head


class WireProtocolError(WireError):
    """The answer was not well-formed HTTP/1.1."""


class WireRedirectError(WireError):
    """A redirect that cannot be followed: too many, or to a location that is not an http(s) URL."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us more, and one is made per call
class Target:
    """Where a request goes: the connection's (scheme, host, port), its Host header and its request target."""

    scheme: str
    host: str
    port: int
    authority: str
    path_qs: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@dataclass(slots=True)
class WireResponse:
    """A complete answer."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


def target(url: str, params: Mapping[str, object] | None = None) -> Target | None:
    """The request target of ``url`` with ``params`` added to its query, as aiohttp (yarl's ``URL(url)
    .extend_query(params)``) would send it; None for a URL this client does not take (not http(s), no host,
    credentials in it), which then goes through aiohttp. Values yarl refuses raise its own error."""
    match = _PLAIN_URL.fullmatch(url)
    if match is not None:
        scheme, host, port_text, path, query = match.groups()
        if query is None:
            query = _plain_query(params)
        elif params:
            query = None  # yarl merges the two
        port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
        if query is not None and port <= 65535 and not (path and _DOT_SEGMENT.search(path)):
            authority = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
            return Target(scheme, host, port, authority, (path or "/") + query)
    try:
        parsed = URL(url)
    except ValueError:
        return None
    return _target_of(parsed.extend_query(params) if params else parsed)


def _plain_query(params: Mapping[str, object] | None) -> str | None:
    """``?k=v&...`` as yarl quotes ASCII string keys and values ("" for none); None when yarl must do it."""
    if not params:
        return ""
    parts = []
    for key, value in params.items():
        if not (isinstance(value, str) and key.isascii() and value.isascii()):
            return None
        parts.append(f"{quote_plus(key, _QUERY_SAFE)}={quote_plus(value, _QUERY_SAFE)}")
    return "?" + "&".join(parts)


def _target_of(url: URL) -> Target | None:
    if url.scheme not in _DEFAULT_PORTS or not url.raw_host or url.raw_user or url.raw_password or url.port is None:
        return None
    return Target(url.scheme, url.raw_host, url.port, url.host_port_subcomponent or url.raw_host, url.raw_path_qs)


def _request_bytes(method: str, where: Target, fields: _HeadFields, body: bytes | None) -> bytes:
    """The request's head and body: its request line, then ``fields`` (``_head_fields``)."""
    if "\n" in where.path_qs or "\r" in where.path_qs:  # a target is parsed from a URL, so none has one: a guard
        raise ValueError("a request target contains a newline")
    before, after = fields
    length = "" if after is None else f"\r\nContent-Length: {len(body) if body else 0}{after}"
    data = f"{method} {where.path_qs} HTTP/1.1{before}{length}\r\n\r\n".encode()
    return data + body if body else data


#: A request's header lines as text, each with its CRLF first: all of them, or those before and after the
#: Content-Length line the request's own body length goes in (None: no such line).
_HeadFields = tuple[str, "str | None"]


def _head_fields(method: str, authority: str, headers: Mapping[str, str], user_agent: str | None, has_body: bool,
                 content_type: str | None) -> _HeadFields:
    """aiohttp's headers, in its order, unless the caller set them, as text. The same for every call with the same
    arguments (a pool keeps them: ``WirePool._fields``); only the body's length is the request's own."""
    fields: dict[str, tuple[str, str | None]] = {"host": ("Host", authority)}
    if user_agent:
        fields["user-agent"] = ("User-Agent", user_agent)
    for name, value in headers.items():
        fields[name.lower()] = (name, value)
    fields.setdefault("accept", ("Accept", "*/*"))
    fields.setdefault("accept-encoding", ("Accept-Encoding", "identity"))
    if has_body:
        fields.setdefault("content-length", ("Content-Length", None))  # None: the body's own length goes here
        if content_type:
            fields.setdefault("content-type", ("Content-Type", content_type))
    elif method not in _BODYLESS_METHODS:
        fields.setdefault("content-length", ("Content-Length", "0"))
    if method in _POST_METHODS:
        # aiohttp's default, body or not
        fields.setdefault("content-type", ("Content-Type", "application/octet-stream"))
    parts: list[list[str]] = [[]]
    for name, value in fields.values():
        if value is None:
            parts.append([])
        else:
            parts[-1].append(f"\r\n{name}: {value}")
    texts = ["".join(lines) for lines in parts]
    # One CR and one LF per line we joined: any other is inside a name or value (header injection). The values may
    # be secrets: the message names none.
    if any(text.count("\n") != len(lines) or text.count("\r") != len(lines) for text, lines in zip(texts, parts)):
        raise ValueError("a request header name or value contains a newline")
    return texts[0], texts[1] if len(texts) > 1 else None


# Parser states of an answer in flight.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE = range(7)


class _Connection(asyncio.Protocol):
    """One kept-alive connection and the parser of the answer it is waiting for."""

    def __init__(self, key: tuple[str, str, int], registry: set[_Connection]) -> None:
        self.key = key
        self.idle_since = 0.0
        #: The last answer allows the next request on this connection.
        self.reusable = False
        self._registry = registry  # the pool's open connections: this one is in it while its transport is
        self._transport: asyncio.Transport | None = None
        self._lost = False
        self._waiter: asyncio.Future[WireResponse] | None = None
        self._buffer = bytearray()
        self._reset(bodyless=False)

    def _reset(self, *, bodyless: bool) -> None:
        self._bodyless = bodyless
        self._state = _HEAD
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._keep_alive = False
        self._encoding = ""
        self._remaining = 0
        self._parts: list[bytes] = []

    @property
    def usable(self) -> bool:
        return not self._lost and self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, *, bodyless: bool) -> asyncio.Future[WireResponse]:
        """Write one request; the future gets its answer (``bodyless``: a HEAD, whose answer has no body)."""
        assert self._transport is not None
        self._reset(bodyless=bodyless)
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once: no TLS close_notify exchange, nothing buffered is flushed (the pool is shutting down)."""
        if self._transport is not None:
            self._transport.abort()

    # ---- asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport instance: uvloop's are classes of its own.
        self._transport = cast(asyncio.Transport, transport)
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for (or the caller gave up): the connection's state is unknown
            return
        if self._state in (_LENGTH, _UNTIL_CLOSE) and not self._buffer:
            data = self._take_body(data)  # the common case of a large body: no copy through the buffer
            if not data:
                return
        self._buffer += data
        try:
            self._parse()
        except WireProtocolError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._registry.discard(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == _UNTIL_CLOSE and exc is None:
            self._finish()
            return
        detail = f" ({type(exc).__name__}: {exc})" if exc else ""
        self._waiter = None
        waiter.set_exception(WireDisconnected(
            f"the connection closed before the answer was complete{detail}", before_head=self._state == _HEAD))

    # ---- the answer's parser ------------------------------------------------------------------------------
    def _fail(self, exc: WireError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _take_body(self, data: bytes) -> bytes:
        """Keep the body's part of ``data`` (Content-Length or until-close framing); the rest is returned."""
        if self._state == _UNTIL_CLOSE:
            self._parts.append(data)
            return b""
        taken = data[:self._remaining] if len(data) > self._remaining else data
        self._parts.append(taken)
        self._remaining -= len(taken)
        if self._remaining == 0:
            self._finish()
            return data[len(taken):]
        return b""

    def _parse(self) -> None:
        buffer = self._buffer
        while self._waiter is not None and buffer:
            state = self._state
            if state == _HEAD:
                if not self._read_head():
                    return
            elif state in (_LENGTH, _UNTIL_CLOSE, _CHUNK_DATA):
                if state == _CHUNK_DATA:
                    taken = bytes(buffer[:self._remaining])
                    self._parts.append(taken)
                    self._remaining -= len(taken)
                    if self._remaining == 0:
                        self._state = _CHUNK_END
                    del buffer[:len(taken)]
                else:
                    data = bytes(buffer)
                    buffer.clear()  # before the body may end: what is left after it then marks the connection
                    buffer += self._take_body(data)
            else:
                line = self._line()
                if line is None:
                    return
                self._chunk_line(state, line)
        if self._waiter is None and buffer:
            self.reusable = False  # bytes past the answer's end: this connection cannot be trusted again

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise WireProtocolError("a chunk-size or trailer line is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _chunk_line(self, state: int, line: bytes) -> None:
        if state == _CHUNK_SIZE_LINE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size):
                raise WireProtocolError("malformed chunk size")
            self._remaining = int(size, 16)
            self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        elif state == _CHUNK_END:
            if line:
                raise WireProtocolError("a chunk did not end where its size said")
            self._state = _CHUNK_SIZE_LINE
        elif not line:  # _TRAILERS: the empty line ends them (trailer fields are dropped, as aiohttp does)
            self._finish()

    def _read_head(self) -> bool:
        """Parse a complete answer head if the buffer holds one; decide how its body is framed."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise WireProtocolError("the answer's head is too long")
            return False
        status_line, *lines = self._buffer[:end].decode("utf-8", "surrogateescape").split("\r\n")
        del self._buffer[:end + 4]
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if (version not in ("HTTP/1.1", "HTTP/1.0") or not (code.isascii() and code.isdigit())
                or rest[3:4] not in ("", " ")):
            raise WireProtocolError("malformed status line")
        status = int(code)
        if status < 200:
            if status == 101:
                raise WireProtocolError("the server switched protocols unasked")
            return True  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        headers, framing = _fields(lines)
        self._status, self._headers, self._encoding = status, headers, framing.encoding
        self._keep_alive = version == "HTTP/1.1" and not framing.close
        if self._bodyless or status in (204, 304):
            self._finish()
        elif framing.chunked:
            self._state = _CHUNK_SIZE_LINE
            # Both framings: a smuggling sign (RFC 9112 6.3); chunked wins, the connection is not reused.
            self._keep_alive = self._keep_alive and framing.length is None
        elif framing.length is not None:
            self._state, self._remaining = _LENGTH, framing.length
            if framing.length == 0:
                self._finish()
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        return True

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = self._keep_alive and not self._buffer
        if waiter is None or waiter.done():
            return
        body = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        try:
            body = _decoded(body, self._encoding)
        except zlib.error as exc:
            waiter.set_exception(WireProtocolError(f"the answer's {self._encoding} body does not decode: {exc}"))
            self.reusable = False
            return
        waiter.set_result(WireResponse(self._status, CIMultiDictProxy(CIMultiDict(self._headers)), body))


@dataclass(slots=True)
class _Framing:
    """What an answer's header fields say about its body and its connection."""

    length: int | None = None
    chunked: bool = False
    close: bool = False
    encoding: str = ""


def _fields(lines: list[str]) -> tuple[list[tuple[str, str]], _Framing]:
    """An answer's header fields, in order with repeats, and its framing."""
    headers: list[tuple[str, str]] = []
    framing = _Framing()
    transfer: list[str] = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t" or name[-1] in " \t":
            raise WireProtocolError("malformed header line")  # also an obsolete folded line
        value = value.strip(" \t")
        headers.append((name, value))
        if name[0] not in "CcTt":
            continue  # none of the fields below: most lines stop here
        lower = name.lower()
        if lower == "content-length":
            if not (value.isascii() and value.isdigit()) or framing.length not in (None, int(value)):
                raise WireProtocolError("malformed Content-Length")
            framing.length = int(value)
        elif lower == "transfer-encoding":
            transfer += [token.strip().lower() for token in value.split(",")]
        elif lower == "connection":
            framing.close = framing.close or "close" in (token.strip().lower() for token in value.split(","))
        elif lower == "content-encoding":
            framing.encoding = value.lower()
    if transfer:
        if transfer[-1] != "chunked":  # RFC 9112 6.3: a coding not ending in chunked is framed by the close
            framing.length, framing.close = None, True
        else:
            framing.chunked = True
    return headers, framing


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body a server compressed although we asked for identity (aiohttp decodes gzip and deflate too)."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send it
    return body


class WirePool:
    """The kept-alive connections of one provider (per scheme, host and port) and the requests sent on them.

    Belongs to the event loop it is used on; ``close`` ends every connection, idle or busy.
    """

    def __init__(self, *, user_agent: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 keepalive: float = KEEPALIVE_SECONDS) -> None:
        self._user_agent = user_agent
        #: ``_head_fields`` per request shape: a vendor's calls share a few (its key, its content type).
        self._heads: dict[tuple[Any, ...], _HeadFields] = {}
        self._ssl_context = ssl_context
        self._keepalive = keepalive
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._addresses: dict[tuple[str, int], tuple[float, list[_AddressInfo]]] = {}  # (host, port) -> (until, infos)
        self._lookups: dict[tuple[str, int], asyncio.Future[list[_AddressInfo]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(self, method: str, where: Target, headers: Mapping[str, str], body: bytes | None = None, *,
                      content_type: str | None = None, connect_timeout: float, timeout: float | None = None,
                      follow_redirects: bool = True) -> WireResponse:
        """Send one request and read its whole answer (following redirects if asked).

        ``connect_timeout`` bounds each new connection; ``timeout`` the whole call, or None when the caller
        bounds it (then only the connect phase has a timer here)."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        redirects = 0
        while True:
            response = await self._send(method, where, headers, body, content_type, connect_timeout, deadline)
            if not follow_redirects or response.status not in _REDIRECT_STATUSES:
                return response
            redirects += 1
            if redirects >= MAX_REDIRECTS:
                raise WireRedirectError(f"{redirects} redirects")
            location = response.headers.get("Location") or response.headers.get("URI")
            if location is None:
                return response  # nowhere to go: the answer is the redirect itself (aiohttp does the same)
            if (response.status == 303 and method != "HEAD") or (response.status in (301, 302) and method == "POST"):
                method, body, content_type = "GET", None, None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            where, same_origin = _redirected(where, location)
            if not same_origin:
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}

    def _fields(self, method: str, authority: str, headers: Mapping[str, str], has_body: bool,
                content_type: str | None) -> _HeadFields:
        """``_head_fields`` for a request of this shape, worked out once per shape."""
        key = (method, authority, tuple(headers.items()), has_body, content_type)
        found = self._heads.get(key)
        if found is None:
            if len(self._heads) >= MAX_HEAD_SHAPES:
                self._heads.clear()  # shapes are per vendor config; many more means headers that vary per call
            found = self._heads[key] = _head_fields(method, authority, headers, self._user_agent, has_body,
                                                    content_type)
        return found

    def close(self) -> None:
        """Close every connection (their sockets once the loop runs its next callbacks); requests still waiting on
        one fail with ``WireDisconnected``."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self._open):
            connection.abort()  # not a TLS shutdown that could outlive the loop
        self._idle.clear()

    async def _send(self, method: str, where: Target, headers: Mapping[str, str], body: bytes | None,
                    content_type: str | None, connect_timeout: float, deadline: float | None) -> WireResponse:
        data = _request_bytes(method, where, self._fields(method, where.authority, headers, body is not None,
                                                          content_type), body)
        may_resend = method in IDEMPOTENT_METHODS
        while True:
            connection = await self._connection(where, connect_timeout, deadline)
            try:
                return await self._exchange(connection, data, method == "HEAD", deadline)
            except WireDisconnected as exc:
                if not (may_resend and exc.before_head):
                    raise
                may_resend = False  # once, as aiohttp: a server that keeps dropping it is down

    async def _exchange(self, connection: _Connection, data: bytes, bodyless: bool,
                        deadline: float | None) -> WireResponse:
        answer = connection.send(data, bodyless=bodyless)
        try:
            if deadline is None:
                response = await answer
            else:
                async with asyncio.timeout_at(deadline):
                    response = await answer
        except BaseException:
            connection.close()  # timed out, cancelled or broken mid-answer: its state is unknown
            raise
        self._release(connection)
        return response

    async def _connection(self, where: Target, connect_timeout: float, deadline: float | None) -> _Connection:
        """The most recently used idle connection to ``where``, or a new one."""
        idle = self._idle.get(where.key)
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        if self._closed:
            raise WireConnectError("the connection pool is closed")
        return await self._connect(where, connect_timeout, deadline)

    async def _connect(self, where: Target, connect_timeout: float, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = loop.time() + connect_timeout
        if deadline is not None:
            limit = min(limit, deadline)
        context = self._context() if where.scheme == "https" else None
        try:
            async with asyncio.timeout_at(limit):
                sock = await aiohappyeyeballs.start_connection(await self._resolve(where.host, where.port),
                                                               happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY)
                try:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(where.key, self._open), sock=sock, ssl=context,
                        server_hostname=where.host.rstrip(".") if context else None,
                    )
                except BaseException:
                    sock.close()  # a failed TLS handshake (or a cancel) leaves the connected socket to us
                    raise
        except OSError as exc:  # refused, DNS, unreachable, TLS (SSLError), and TimeoutError: the connect bound
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise WireConnectError(f"cannot connect to {where.authority}: {detail}") from exc
        if self._closed:
            connection.close()
            raise WireConnectError("the connection pool is closed")
        return connection

    async def _resolve(self, host: str, port: int) -> list[_AddressInfo]:
        """``host``'s addresses: an IP as it is, a name from the cache or from one ``getaddrinfo`` its concurrent
        connects share (shielded: one caller's timeout does not end the others' lookup)."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        loop = asyncio.get_running_loop()
        key = (host, port)
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            lookup.add_done_callback(lambda done: self._looked_up(key, done))
        return await asyncio.shield(lookup)

    def _looked_up(self, key: tuple[str, int], lookup: asyncio.Future[list[_AddressInfo]]) -> None:
        del self._lookups[key]
        if lookup.cancelled() or lookup.exception() is not None:
            return  # a failure is not cached (aiohttp's neither); retrieving it keeps asyncio from logging it
        self._addresses[key] = (asyncio.get_running_loop().time() + DNS_TTL_SECONDS, lookup.result())

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()  # made once per pool: loading the CAs takes ms
        return self._ssl_context

    def _release(self, connection: _Connection) -> None:
        """Back to the idle pool if its answer allows; the sweeper closes it after ``keepalive`` seconds unused."""
        if not connection.reusable or not connection.usable or self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.key, []).append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_at(connection.idle_since + self._keepalive, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for ``keepalive`` seconds; one timer per pool, due when the oldest idle one is."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._keepalive
        oldest: float | None = None
        for key, idle in list(self._idle.items()):
            # Each list is in the order connections went idle (reuse pops the newest): expired ones lead it.
            keep = 0
            while keep < len(idle) and (idle[keep].idle_since <= cutoff or not idle[keep].usable):
                idle[keep].close()
                keep += 1
            del idle[:keep]
            if idle:
                oldest = idle[0].idle_since if oldest is None else min(oldest, idle[0].idle_since)
            else:
                del self._idle[key]
        if oldest is not None:
            self._sweeper = loop.call_at(oldest + self._keepalive, self._sweep)


def _redirected(current: Target, location: str) -> tuple[Target, bool]:
    """Where a redirect's Location points, as aiohttp resolves it, and whether it keeps the origin."""
    here = URL(f"{current.scheme}://{current.authority}{current.path_qs}", encoded=True)
    try:
        there = URL(location)
    except ValueError:
        raise WireRedirectError("the redirect's Location is not a URL") from None
    if there.scheme not in ("", "http", "https"):
        raise WireRedirectError(f"a redirect to a {there.scheme} URL")
    if not there.scheme or (there.scheme == here.scheme and not there.raw_host):
        there = here.join(there)  # relative, or "http:/path", which browsers (and aiohttp) read as relative
    where = _target_of(there)
    if where is None:
        raise WireRedirectError("a redirect to a URL without a host or with credentials")
    return where, where.key == current.key
