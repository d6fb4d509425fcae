"""The fast path (router/http/fast_path.py): plain synchronous generation requests served without aiohttp's request
objects answer exactly what aiohttp's path answers, keep-alive and pipelining work, anything else is handed to
aiohttp on the same connection, and the slow-client deadlines still hold."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import structlog.testing

from router.http.fast_path import parse_head
from tests.daemon.conftest import Daemon, StartDaemon

GENERATIONS = ("/v1/images/generations", "/v1/image/generations", "/v1/video/generations")
BODIES: list[Any] = [
    {"model": "image-fast", "prompt": "a fox"},
    {"model": "image-fast", "prompt": "a fox", "n": 2, "response_format": "b64_json"},
    {"model": "video-fast", "prompt": "a fox"},
    {"model": "video-down", "prompt": "a fox"},
    {"model": "nope", "prompt": "x"},
    {"prompt": "no model"},
    {"model": "image-fast", "prompt": "x", "n": "many"},
    {"model": "image-fast", "prompt": "x", "response_format": "gif"},
    {"model": "image-fast", "prompt": "x", "max_cost_usd": -1},
    [1, 2],
    "not an object",
]


def _request(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _answers(daemon: Daemon, raw: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``raw`` on one connection and read ``count`` answers (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.server.port)
    try:
        writer.write(raw)
        answers: list[tuple[int, dict[str, str], bytes]] = []
        while len(answers) < count:
            status_line = await asyncio.wait_for(reader.readline(), 10)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            status = int(status_line.split()[1])
            if status < 200:  # 100 Continue: the answer follows
                continue
            body = await reader.readexactly(int(headers["content-length"]))
            answers.append((status, headers, body))
        return answers
    finally:
        writer.close()


def _comparable(status: int, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
    text = re.sub(rb'"(created|request_id|provider_request_id|started_at|ended_at|elapsed_seconds'
                  rb'|total_elapsed_seconds|id)": [^,}]+', rb'"\1": "_"', body)
    text = re.sub(rb'"latency_ms": [^,}]+', b'"latency_ms": "_"', text)
    return status, sorted(set(headers) - {"date"}), headers.get("content-type"), json.loads(text)


@pytest.mark.parametrize("path", GENERATIONS)
async def test_each_answer_is_the_one_aiohttps_path_gives(start_daemon: StartDaemon, path: str) -> None:
    fast = await start_daemon()
    plain = await start_daemon(fast_path=False)
    for body in BODIES:
        raw = _request(path, json.dumps(body).encode())
        [got] = await _answers(fast, raw)
        [want] = await _answers(plain, raw)
        assert _comparable(*got) == _comparable(*want), body
    # Not JSON at all, and JSON nested past the limit: the same 400s.
    for raw_body in (b"{", b"[" * 40 + b"]" * 40, b'{"model": "image-fast", "prompt": "\\u0000"}'):
        [got] = await _answers(fast, _request(path, raw_body))
        [want] = await _answers(plain, _request(path, raw_body))
        assert _comparable(*got) == _comparable(*want), raw_body


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(daemon: Daemon) -> None:
    first = _request("/v1/images/generations", b'{"model": "image-fast", "prompt": "one"}', "X-Request-ID: one\r\n")
    second = _request("/v1/images/generations", b'{"model": "nope", "prompt": "two"}', "X-Request-ID: two\r\n")
    answers = await _answers(daemon, first + second + first, count=3)  # one write: pipelined
    assert [(status, headers["x-request-id"]) for status, headers, _ in answers] == [
        (200, "one"), (404, "two"), (200, "one")]


async def test_what_the_fast_path_does_not_serve_is_handed_to_aiohttp_on_the_same_connection(daemon: Daemon) -> None:
    body = b'{"model": "image-fast", "prompt": "x"}'
    chunked = (b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = await _answers(daemon, _request("/v1/images/generations", body) + health + chunked
                             + _request("/v1/images/generations", body), count=4)
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    [(status, _, _)] = await _answers(daemon, _request("/v1/images/generations", body, "Expect: 100-continue\r\n"))
    assert status == 200  # after aiohttp's interim 100 Continue


async def test_a_refused_token_is_refused_as_before(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(api_keys="sekret-token-1:alice")
    body = b'{"model": "image-fast", "prompt": "x"}'
    [(status, headers, answer)] = await _answers(daemon, _request("/v1/images/generations", body))
    assert status == 401 and json.loads(answer)["error"]["code"] == "missing_api_key"
    [(status, _, answer)] = await _answers(
        daemon, _request("/v1/images/generations", body, "Authorization: Bearer wrong-token-9\r\n"))
    assert status == 401 and json.loads(answer)["error"]["code"] == "invalid_api_key"
    [(status, _, _)] = await _answers(
        daemon, _request("/v1/images/generations", body, "Authorization: Bearer sekret-token-1\r\n"))
    assert status == 200


async def test_the_access_line_and_the_request_counter_are_the_same(daemon: Daemon) -> None:
    with structlog.testing.capture_logs() as logs:
        await _answers(daemon, _request("/v1/images/generations", b'{"model": "image-fast", "prompt": "x"}',
                                        "X-Request-ID: mine\r\n"))
    counted = daemon.state.metrics.http_requests.labels("POST", "/v1/images/generations", "200")._value.get()
    assert counted == 1
    lines = [line for line in logs if line["event"] == "http_request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/v1/images/generations", 200)]


async def test_a_slow_head_and_a_slow_body_get_408(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(header_timeout_seconds=0.05, body_timeout_seconds=0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.server.port)
    writer.write(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.server.port)
    writer.write(_request("/v1/images/generations", b'{"model": "image-fast", "prompt": "x"}')[:-5])  # body cut
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer and b"Connection: close" in answer
    writer.close()


def test_only_plain_heads_are_served_here() -> None:
    plain = b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 10"
    assert parse_head(plain, 100) is not None
    for head in (
        plain.replace(b"POST", b"GET"), plain.replace(b"HTTP/1.1", b"HTTP/1.0"),
        plain.replace(b"generations", b"generations?x=1"), plain.replace(b"/v1/images", b"/v1/jobs"),
        plain + b"\r\nExpect: 100-continue", plain + b"\r\nTransfer-Encoding: chunked",
        plain + b"\r\nContent-Encoding: gzip", plain + b"\r\nConnection: close", plain + b"\r\nContent-Length: 10",
        plain + b"\r\nAccept: text/event-stream", plain + b"\r\nX-Name: caf\xc3\xa9", plain + b"\r\nBad Name: x",
        plain + b"\r\nX: a\x01b", plain + b"\r\nIdempotency-Key: " + b"k" * 256, plain.replace(b"10", b"0"),
        plain.replace(b"10", b"1000"), plain.replace(b"10", b"-1"),
    ):
        assert parse_head(head, 100) is None, head


async def test_a_client_pipelining_while_it_is_served_is_not_read_past_a_little(daemon: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.server.port)
    writer.write(_request("/v1/video/generations", b'{"model": "video-slow", "prompt": "x"}'))  # never finishes
    for _ in range(200):
        connections = daemon.server.runner.server.connections  # type: ignore[union-attr]
        if connections and connections[0]._task is not None:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    big = b'{"model": "video-slow", "prompt": "' + b"x" * 4_000_000 + b'"}'
    writer.write(_request("/v1/video/generations", big))
    await asyncio.sleep(0.2)
    assert len(connections[0]._buffer) < 1_000_000  # type: ignore[attr-defined]  # paused: the rest waits unread
    # A paused connection does not see its client leave: end the generation here, not at the server's shutdown.
    connections[0]._task.cancel()  # type: ignore[attr-defined]
    writer.close()
