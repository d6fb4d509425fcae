"""The lean HTTP/1.1 client (``providers._engine.wire``) against real loopback servers: aiohttp web servers for
well-formed answers, raw asyncio servers for the faults and framings aiohttp would not produce; and, through
``HttpProvider.send``, how its failures map to the engine's errors. What aiohttp would send is checked against
aiohttp itself on the same server."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import random
import socket
import ssl
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

import router
from providers._engine.http import HttpRequest
from providers._engine.sessions import USER_AGENT, close_sessions, pool_for
from providers._engine.wire import (
    MAX_REDIRECTS,
    Target,
    WireConnectError,
    WireDisconnected,
    WirePool,
    WireProtocolError,
    WireRedirectError,
    WireResponse,
    _request_bytes,
    target,
)
from providers.fal import FalProvider
from router.deadlines import EXACT_BELOW, CallDeadlines
from router.models import VideoGenerationConfig
from tests.providers.vendors import CANARY
from tests.waiting import until

WAIT = 5.0  # bound on waiting for an event that happens at once; never reached when the code is right


# ---- servers ------------------------------------------------------------------------------------------------
@dataclass
class Seen:
    """One request a raw server read: the connection it came on, its head and body."""

    connection: int
    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()


@dataclass
class RawServer:
    url: str
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    closes: int = 0  # connections the client closed
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[RawServer, int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(server: RawServer, number: int, reader: asyncio.StreamReader) -> Seen | None:
    """The next request on a connection (None at its end), recorded in ``server.seen``."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            client_closed(server)
        return None
    except ConnectionError:
        return None
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    seen = Seen(number, head, await reader.readexactly(length))
    server.seen.append(seen)
    return seen


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[RawServer]:
    """A loopback TCP server running ``handle`` per connection, then closing it."""
    server = RawServer("")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            await handle(server, server.connections, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()


def client_closed(server: RawServer) -> None:
    server.closes += 1
    server.closed_by_client.set()


async def until_the_client_closes(server: RawServer, reader: asyncio.StreamReader) -> None:
    if await reader.read() == b"":
        client_closed(server)


def answer(body: bytes = b'{"ok": true}', *extra: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra, "", ""]
    return "\r\n".join(lines).encode() + body


async def keep_answering(server: RawServer, number: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
    while await read_request(server, number, reader) is not None:
        writer.write(answer())


@asynccontextmanager
async def web_server(app: web.Application, ssl_context: ssl.SSLContext | None = None,
                     host: str = "127.0.0.1") -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    try:
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def pool() -> AsyncIterator[WirePool]:
    wire = WirePool(user_agent=USER_AGENT)
    yield wire
    wire.close()


async def get(wire: WirePool, url: str, method: str = "GET", body: bytes | None = None, **kw: Any) -> WireResponse:
    where = target(url, kw.pop("params", None))
    assert where is not None
    return await wire.request(method, where, kw.pop("headers", {}), body, connect_timeout=WAIT,
                              timeout=kw.pop("timeout", WAIT), **kw)


# ---- what goes out ------------------------------------------------------------------------------------------
SENT = [
    ("POST", "/fal-ai/flux/dev", None, {"Authorization": f"Key {CANARY}"}, {"prompt": "a fox", "n": [1, 2.5, None]}),
    ("GET", "/requests/abc/status", {"logs": "1"}, {"Authorization": "Bearer x"}, None),
    ("DELETE", "/v1/tasks/abc", None, {"X-Runway-Version": "2024-11-06"}, None),
    ("POST", "/cancel", None, {"Accept": "application/json"}, None),
    ("PUT", "/x", {"api-version": "2024-02-01"}, {"user-agent": "theirs", "Content-Type": "text/json"}, ["é", 1]),
    ("PATCH", "/x", None, {}, {}),
]


@pytest.mark.parametrize("method,path,params,headers,body", SENT)
async def test_the_request_is_what_aiohttp_sends_but_for_accept_encoding(
        pool: WirePool, method: str, path: str, params: dict[str, str] | None, headers: dict[str, str],
        body: Any) -> None:
    async with raw_server(keep_answering) as server:
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
            async with session.request(method, server.url + path, params=params, headers=headers, json=body) as r:
                await r.read()
        encoded = None if body is None else json.dumps(body).encode()
        await get(pool, server.url + path, method, encoded, params=params, headers=headers,
                  content_type="application/json" if encoded is not None else None)
    theirs, ours = server.seen
    assert ours.body == theirs.body
    their_lines, our_lines = theirs.head.split(b"\r\n"), ours.head.split(b"\r\n")
    assert [line for line in our_lines if not line.startswith(b"Accept-Encoding")] == \
        [line for line in their_lines if not line.startswith(b"Accept-Encoding")]
    assert b"Accept-Encoding: identity" in our_lines  # we never have to decompress (see the module docstring)


def test_a_pools_kept_header_text_is_per_request_shape_and_each_body_has_its_own_length() -> None:
    wire = WirePool(user_agent=USER_AGENT)
    where = target("http://127.0.0.1:1/x")
    assert where is not None
    heads = [_request_bytes("POST", where, wire._fields("POST", where.authority, {"Authorization": key}, True,
                                                          "application/json"), body).split(b"\r\n\r\n")[0]
             for key, body in (("Bearer a", b"{}"), ("Bearer b", b"{}"), ("Bearer a", b'{"n": 10}'))]
    assert [b"Authorization: Bearer a" in head for head in heads] == [True, False, True]
    assert [head.count(b"Content-Length: ") for head in heads] == [1, 1, 1]
    assert b"Content-Length: 2\r" in heads[0] and b"Content-Length: 9\r" in heads[2]
    assert len(wire._heads) == 2


def test_a_newline_in_a_header_value_is_refused_without_naming_it() -> None:
    wire = WirePool()
    where = target("http://127.0.0.1:1/x")
    assert where is not None
    with pytest.raises(ValueError) as info:
        asyncio.run(wire.request("GET", where, {"Authorization": f"Bearer {CANARY}\r\nX: y"}, connect_timeout=1))
    assert CANARY not in str(info.value)


QUERY_VALUES = ["1", "", "2024-02-01", "a b", "a+b", "a&b=c;d", "x/y?z:@", "100%", "~!$'()*,", "é", "日本",
                "http://127.0.0.1:8080/v1/webhooks/fal?token=abc&x=1", "\t\n", "#frag", "[]{}|\\^`\"<>"]
URLS = ["https://queue.fal.run/fal-ai/veo3/requests/0a1b/status", "http://127.0.0.1:8080/v1/x", "https://h.com:443/a",
        "http://h.com:80/", "http://h.com", "HTTPS://Queue.FAL.run/x", "http://h.com/a/./b/../c", "http://h.com/a b/é",
        "http://h.com/a%2fb%41", "http://h.com/x?a=1", "http://h.com/x?logs=1", "http://h.com/x?", "http://h.com?a=b?c",
        "http://h.com/x?a=%41&b=c d&&e=/:@!$'()*+,;", "http://h.com/x?a=é", "http://h.com/x#f", "http://[::1]:8080/x", "http://h.com.:81/x",
        "http://h.com/models/veo-3.0:predictLongRunning", "http://h.com//a//b", "http://h.com/a;b=c/d,e",
        "http://xn--bcher-kva.example/x", "http://bücher.example/x", "http://h.com:65535/x"]


def test_targets_and_query_encoding_are_yarls_for_what_our_providers_send_and_many_more() -> None:
    rng = random.Random(18)
    alphabet = string.printable + "éü日€\u00a0"
    params_cases: list[dict[str, Any] | None] = [None, {}, {"logs": "1"}, {"api-version": "2024-02-01"},
                                                  {"logs": "1", "fal_webhook": QUERY_VALUES[11]}, {"n": 3}]
    params_cases += [{k: v} for k in ("k", "a b", "é") for v in QUERY_VALUES]
    params_cases += [{"".join(rng.choices(alphabet, k=rng.randint(0, 6))): "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
                      for _ in range(rng.randint(1, 3))} for _ in range(3000)]
    for url in URLS:
        for params in params_cases if url == URLS[0] else params_cases[:60]:
            theirs = URL(url).extend_query(params) if params else URL(url)
            assert target(url, params) == Target(theirs.scheme, theirs.raw_host or "", theirs.port or 0,
                                                 theirs.host_port_subcomponent or "", theirs.raw_path_qs), (url, params)


def test_urls_the_client_does_not_take_go_elsewhere() -> None:
    for url in ("ftp://h.com/x", "http://user:pw@h.com/x", "http:///x", "/relative", "http://h.com:99999/x"):
        assert target(url) is None, url


# ---- connections --------------------------------------------------------------------------------------------
async def test_a_kept_alive_connection_is_reused_and_the_last_released_goes_first(pool: WirePool) -> None:
    release = {"a": asyncio.Event(), "b": asyncio.Event()}
    ports: list[tuple[str, int]] = []
    both_in = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        ports.append((name, request.transport.get_extra_info("peername")[1]))  # type: ignore[union-attr]
        if name in release:
            both_in.set() if len(ports) == 2 else None
            await release[name].wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{name}", handler)
    async with web_server(app) as url:
        first, second = asyncio.create_task(get(pool, url + "/a")), asyncio.create_task(get(pool, url + "/b"))
        await asyncio.wait_for(both_in.wait(), WAIT)
        release["a"].set()
        await first
        release["b"].set()
        await second
        for _ in range(3):
            await get(pool, url + "/c")
    by_name = dict(ports[:2])
    assert len(set(by_name.values())) == 2  # two at once: two connections
    assert [port for _, port in ports[2:]] == [by_name["b"]] * 3  # then the one released last, again and again


async def test_an_idle_connection_is_closed_after_the_keepalive() -> None:
    wire = WirePool(keepalive=0.05)
    async with raw_server(keep_answering) as server:
        await get(wire, server.url + "/x")
        async with asyncio.timeout(WAIT):
            await server.closed_by_client.wait()
        await get(wire, server.url + "/x")
    assert server.connections == 2
    wire.close()


async def close_the_second_request(server: RawServer, number: int, reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
    """Answers a connection's first request and drops the connection on its second, unanswered: a server closing
    an idle kept-alive connection just as the client reuses it."""
    if await read_request(server, number, reader) is not None:
        writer.write(answer())
        await read_request(server, number, reader)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_request_on_a_connection_the_server_dropped_is_sent_once_more(
        pool: WirePool, method: str) -> None:
    async with raw_server(close_the_second_request) as server:
        await get(pool, server.url + "/x", method)
        response = await get(pool, server.url + "/y", method)
    assert response.status == 200
    assert [(s.connection, s.request_line.split()[1]) for s in server.seen] == [(1, "/x"), (1, "/y"), (2, "/y")]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_post_on_a_connection_the_server_dropped_is_never_sent_again(pool: WirePool, method: str) -> None:
    async with raw_server(close_the_second_request) as server:
        await get(pool, server.url + "/x", method, b"{}")
        with pytest.raises(WireDisconnected):
            await get(pool, server.url + "/y", method, b"{}")
    assert [s.request_line for s in server.seen].count(f"{method} /y HTTP/1.1") == 1


async def test_an_idempotent_request_is_sent_at_most_twice(pool: WirePool) -> None:
    async def drop(server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)

    async with raw_server(drop) as server:
        with pytest.raises(WireDisconnected):
            await get(pool, server.url + "/x")
    assert len(server.seen) == 2


@pytest.mark.parametrize("framing", ["Connection: close", "HTTP/1.0"])
async def test_an_answer_that_ends_the_connection_is_not_reused(pool: WirePool, framing: str) -> None:
    async def once(server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        head = answer() if framing == "HTTP/1.0" else answer(b'{"ok": true}', framing)
        writer.write(head.replace(b"HTTP/1.1", b"HTTP/1.0") if framing == "HTTP/1.0" else head)
        await until_the_client_closes(server, reader)

    async with raw_server(once) as server:
        assert (await get(pool, server.url + "/a")).body == b'{"ok": true}'
        async with asyncio.timeout(WAIT):
            await server.closed_by_client.wait()  # we closed it
        await get(pool, server.url + "/b")
    assert [s.connection for s in server.seen] == [1, 2]


async def test_close_ends_idle_and_busy_connections() -> None:
    wire = WirePool()
    busy_in = asyncio.Event()

    async def all_but_busy(server: RawServer, number: int, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        while (seen := await read_request(server, number, reader)) is not None:
            if "/busy" in seen.request_line:
                busy_in.set()  # and never answered
            else:
                writer.write(answer())

    async with raw_server(all_but_busy) as server:
        await get(wire, server.url + "/idle")
        busy = asyncio.create_task(get(wire, server.url + "/busy", "POST", b"{}"))  # takes the idle connection
        await asyncio.wait_for(busy_in.wait(), WAIT)
        await get(wire, server.url + "/idle")  # on a second one, which goes idle
        wire.close()
        with pytest.raises(WireDisconnected):
            await busy
        await until(lambda: server.closes == 2)
        with pytest.raises(WireConnectError):
            await get(wire, server.url + "/after")
    assert server.connections == 2


# ---- answers ------------------------------------------------------------------------------------------------
async def test_a_chunked_answer_is_read_whole(pool: WirePool) -> None:
    async def chunks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"a": ', b'"' + b"x" * 70000 + b'"', b"}"):
            await response.write(part)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", chunks)
    async with web_server(app) as url:
        for _ in range(2):  # and the connection is reused after it
            response = await get(pool, url + "/")
            assert json.loads(response.body) == {"a": "x" * 70000}
            assert response.headers["Transfer-Encoding"] == "chunked"


async def test_chunk_extensions_and_trailers_are_read_past(pool: WirePool) -> None:
    async def trailers(server: RawServer, number: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        while await read_request(server, number, reader) is not None:
            for piece in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;name=va", b"lue\r\nab", b"cd\r\n",
                          b"3\r\nefg\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.001)

    async with raw_server(trailers) as server:
        assert (await get(pool, server.url + "/")).body == b"abcdefg"
        assert (await get(pool, server.url + "/")).body == b"abcdefg"
    assert server.connections == 1


async def test_an_answer_framed_by_the_close_is_read_to_the_end(pool: WirePool) -> None:
    async def until_close(server: RawServer, number: int, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":")
        await writer.drain()
        writer.write(b" 1}")
        writer.write_eof()

    async with raw_server(until_close) as server:
        assert (await get(pool, server.url + "/")).body == b'{"a": 1}'
        await get(pool, server.url + "/")
    assert server.connections == 2


async def test_a_body_cut_by_a_reset_fails_and_is_not_sent_again(pool: WirePool) -> None:
    async def reset(server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        writer.transport.abort()  # RST

    async with raw_server(reset) as server:
        with pytest.raises(WireDisconnected) as info:
            await get(pool, server.url + "/")
    assert not info.value.before_head and len(server.seen) == 1


async def test_no_body_for_head_204_and_304_and_interim_answers_are_skipped(pool: WirePool) -> None:
    async def bodiless(server: RawServer, number: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        while (seen := await read_request(server, number, reader)) is not None:
            path = seen.request_line.split()[1]
            if path == "/head":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            elif path == "/interim":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer())
            else:
                writer.write(f"HTTP/1.1 {path[1:]} X\r\n\r\n".encode())

    async with raw_server(bodiless) as server:
        assert (await get(pool, server.url + "/head", "HEAD")).body == b""
        assert (await get(pool, server.url + "/204")).status == 204
        assert (await get(pool, server.url + "/304")).status == 304
        interim = await get(pool, server.url + "/interim")
        assert interim.status == 200 and interim.body == b'{"ok": true}' and "Link" not in interim.headers
    assert server.connections == 1


async def test_header_repeats_are_kept_in_order(pool: WirePool) -> None:
    async def repeats(server: RawServer, number: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(answer(b"{}", "Set-Cookie: a=1", "x-request-id: r1", "Set-Cookie: b=2", "X-Empty:",
                            "Warning:  spaced \t"))

    async with raw_server(repeats) as server:
        headers = (await get(pool, server.url + "/")).headers
    assert headers.getall("set-cookie") == ["a=1", "b=2"] and headers["X-Request-Id"] == "r1"
    assert headers["x-empty"] == "" and headers["warning"] == "spaced"
    assert list(headers.items()) == [("Content-Length", "2"), ("Set-Cookie", "a=1"), ("x-request-id", "r1"),
                                     ("Set-Cookie", "b=2"), ("X-Empty", ""), ("Warning", "spaced")]


async def test_a_large_body_goes_out_and_comes_back_whole(pool: WirePool) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=(await request.read())[::-1])

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/", echo)
    payload = random.Random(1).randbytes(5 * 2**20)
    async with web_server(app) as url:
        assert (await get(pool, url + "/", "POST", payload)).body == payload[::-1]


async def test_a_compressed_answer_is_decoded_although_we_asked_for_none(pool: WirePool) -> None:
    async def gzipped(server: RawServer, number: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(answer(gzip.compress(b'{"a": 1}'), "Content-Encoding: gzip"))

    async with raw_server(gzipped) as server:
        assert (await get(pool, server.url + "/")).body == b'{"a": 1}'


@pytest.mark.parametrize("garbage", [b"HTTP/2 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
async def test_a_malformed_answer_is_a_protocol_error(pool: WirePool, garbage: bytes) -> None:
    async def bad(server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(garbage)

    async with raw_server(bad) as server:
        with pytest.raises(WireProtocolError):
            await get(pool, server.url + "/")


async def test_a_slow_answer_times_out_and_a_refused_connect_is_a_connect_error(pool: WirePool) -> None:
    async def silent(server: RawServer, number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # half a head, then nothing
        await reader.read()

    async with raw_server(silent) as server:
        with pytest.raises(TimeoutError):
            await get(pool, server.url + "/", timeout=0.05)
    with pytest.raises(WireConnectError) as info:
        await get(pool, server.url + "/")  # the server is gone: refused
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


@pytest.fixture
def unreachable() -> Iterator[str]:
    """A URL whose connects never complete: a listener whose accept queue is full, so the kernel drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    for sock in (*fillers, listener):
        sock.close()


@pytest.mark.parametrize("connect_timeout,timeout", [(0.05, 5.0), (5.0, 0.05), (0.05, None)])
async def test_a_connect_that_never_completes_is_a_connect_error_whichever_bound_ends_it(
        pool: WirePool, unreachable: str, connect_timeout: float, timeout: float | None) -> None:
    where = target(unreachable + "/x")
    assert where is not None
    with pytest.raises(WireConnectError) as info:
        await pool.request("POST", where, {}, b"{}", connect_timeout=connect_timeout, timeout=timeout)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_a_host_name_is_looked_up_once_and_kept(pool: WirePool) -> None:
    async def close_each(server: RawServer, number: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(answer(b"{}", "Connection: close"))

    async with raw_server(close_each) as server:
        port = int(server.url.rsplit(":", 1)[1])
        url = f"http://localhost:{port}/x"  # /etc/hosts: no network
        await get(pool, url)
        until, addresses = pool._addresses[("localhost", port)]  # noqa: SLF001
        await get(pool, url)  # a new connection (the first was closed), on the kept addresses
        assert pool._addresses[("localhost", port)] == (until, addresses) and not pool._lookups  # noqa: SLF001
    assert server.connections == 2 and any(info[4][0] == "127.0.0.1" for info in addresses)


# ---- TLS ----------------------------------------------------------------------------------------------------
def _certificates(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed CA and a localhost certificate it signed: (the server's context, a client's trusting it)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tarash test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    return server, client


async def test_https_against_a_self_signed_ca(tmp_path: Path) -> None:
    server_context, client_context = _certificates(tmp_path)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"secure": request.secure})

    app = web.Application()
    app.router.add_get("/", hello)
    trusting, default = WirePool(ssl_context=client_context), WirePool()
    async with web_server(app, server_context, host="localhost") as url:
        assert json.loads((await get(trusting, url + "/")).body) == {"secure": True}
        assert json.loads((await get(trusting, url.replace("localhost", "127.0.0.1") + "/")).body) == {"secure": True}
        with pytest.raises(WireConnectError) as info:
            await get(default, url + "/")  # the system's CAs do not know ours: the handshake fails, nothing is sent
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    trusting.close()
    default.close()


# ---- redirects ----------------------------------------------------------------------------------------------
async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "body": (await request.read()).decode(),
                              "authorization": request.headers.get("Authorization"),
                              "key": request.headers.get("X-Api-Key"), "query": request.query_string,
                              "type": request.headers.get("Content-Type")})


def _redirecting(status: int, location: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": location})
    return redirect


REDIRECTS = [(status, method) for status in (301, 302, 303, 307, 308) for method in ("GET", "POST", "PUT", "HEAD")]


@pytest.mark.parametrize("status,method", REDIRECTS)
async def test_redirects_are_followed_as_aiohttp_follows_them(pool: WirePool, status: int, method: str) -> None:
    other = web.Application()
    other.router.add_route("*", "/echo", _echo)
    async with web_server(other) as elsewhere:
        app = web.Application()
        app.router.add_route("*", "/same", _redirecting(status, "echo?q=a b"))
        app.router.add_route("*", "/away", _redirecting(status, f"{elsewhere}/echo"))
        app.router.add_route("*", "/echo", _echo)
        async with web_server(app) as url:
            for path in ("/same", "/away"):
                headers = {"Authorization": f"Bearer {CANARY}", "X-Api-Key": "k"}
                document = {"a": 1} if method != "HEAD" else None
                async with aiohttp.ClientSession() as session:
                    async with session.request(method, url + path, headers=headers, json=document,
                                               params={"p": "1"}) as r:
                        theirs = (r.status, await r.read())
                body = None if document is None else json.dumps(document).encode()
                ours = await get(pool, url + path, method, body, headers=headers, params={"p": "1"},
                                 content_type="application/json" if body else None)
                assert (ours.status, ours.body) == theirs, (path, ours.body, theirs)


async def test_a_redirect_is_returned_when_not_followed_and_loops_end(pool: WirePool) -> None:
    app = web.Application()
    app.router.add_get("/loop", _redirecting(302, "/loop"))
    app.router.add_get("/ftp", _redirecting(302, "ftp://h.com/x"))
    async with web_server(app) as url:
        response = await get(pool, url + "/loop", follow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/loop"
        with pytest.raises(WireRedirectError):
            await get(pool, url + "/loop")
        with pytest.raises(WireRedirectError):
            await get(pool, url + "/ftp")
    assert MAX_REDIRECTS == 10


# ---- through the engine -------------------------------------------------------------------------------------
@pytest.fixture
async def fal() -> AsyncIterator[FalProvider]:
    yield FalProvider()
    await close_sessions()


def fal_config(url: str, request_timeout: float = 0.2) -> VideoGenerationConfig:
    return VideoGenerationConfig(provider="fal", model="fal-ai/veo3", base_url=url, api_key=CANARY,
                                 provider_config={"request_timeout": request_timeout})


def _hang_after_head_line(server: RawServer, number: int, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> Awaitable[None]:
    async def hang() -> None:
        await read_request(server, number, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        await reader.read()
    return hang()


@pytest.mark.parametrize("step,error_type", [("submit", "AmbiguousSubmitError"), ("status", "ProviderTimeoutError")])
@pytest.mark.parametrize("exact_below", [EXACT_BELOW, 0.01])  # its own timer; the shared tick
async def test_a_slow_answer_is_ambiguous_on_submit_and_a_timeout_otherwise(
        fal: FalProvider, step: str, error_type: str, exact_below: float) -> None:
    pool_for("fal", deadlines=CallDeadlines(tick=0.01, exact_below=exact_below))
    async with raw_server(_hang_after_head_line) as server:
        call = HttpRequest("POST", "fal-ai/veo3", json={"prompt": "x"}) if step == "submit" else \
            HttpRequest("GET", "fal-ai/veo3/requests/r1/status")
        with pytest.raises(router.TarashError) as info:
            await fal.send(fal_config(server.url, 0.05), call, step, job_id=None if step == "submit" else "r1")
    assert type(info.value).__name__ == error_type and "TimeoutError" in info.value.message
    assert len(server.seen) == 1 and CANARY not in info.value.message


@pytest.mark.parametrize("exact_below", [EXACT_BELOW, 0.01])
async def test_a_submit_that_cannot_connect_within_its_timeout_is_unavailable_never_ambiguous(
        fal: FalProvider, unreachable: str, exact_below: float) -> None:
    pool_for("fal", deadlines=CallDeadlines(tick=0.01, exact_below=exact_below))
    with pytest.raises(router.ProviderUnavailableError) as info:
        await fal.send(fal_config(unreachable, 0.05), HttpRequest("POST", "fal-ai/veo3", json={}), "submit")
    assert info.value.message == "cannot connect to fal: TimeoutError"


@pytest.mark.parametrize("step", ["submit", "status"])
async def test_a_refused_connect_is_unavailable_never_ambiguous(fal: FalProvider, step: str) -> None:
    async with raw_server(keep_answering) as server:
        url = server.url
    call = HttpRequest("POST", "fal-ai/veo3", json={}) if step == "submit" else HttpRequest("GET", "x/status")
    with pytest.raises(router.ProviderUnavailableError) as info:
        await fal.send(fal_config(url), call, step)
    assert info.value.message == "cannot connect to fal: ConnectionRefusedError"


async def test_a_submit_on_a_connection_the_vendor_dropped_is_ambiguous_and_sent_once(fal: FalProvider) -> None:
    async with raw_server(close_the_second_request) as server:
        await fal.send(fal_config(server.url), HttpRequest("GET", "x/status"), "status", job_id="r1")
        with pytest.raises(router.AmbiguousSubmitError) as info:
            await fal.send(fal_config(server.url), HttpRequest("POST", "fal-ai/veo3", json={"prompt": "x"}), "submit")
        status = await fal.send(fal_config(server.url), HttpRequest("GET", "x/status"), "status", job_id="r1")
    assert "WireDisconnected" in info.value.message and status.status == 200
    assert [s.request_line for s in server.seen].count("POST /fal-ai/veo3 HTTP/1.1") == 1


async def test_a_cut_status_answer_is_unavailable(fal: FalProvider) -> None:
    async def cut(server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(server, number, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        writer.transport.abort()

    async with raw_server(cut) as server:
        with pytest.raises(router.ProviderUnavailableError) as info:
            await fal.send(fal_config(server.url), HttpRequest("GET", "x/status"), "status", job_id="r1")
    assert "WireDisconnected" in info.value.message and len(server.seen) == 1
