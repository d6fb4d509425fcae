"""Issue 12's attacks on the running daemon: client mistakes, hostile input and slow clients get a clear answer in
the error shape (never a 500, a traceback, an open circuit or a connection held forever)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.log_setup import configure
from tests.daemon.conftest import Daemon, StartDaemon
from tests.emulators._base import png
from tests.net import free_port
from tests.waiting import until

SCRIPT = Path(sys.executable).parent / "tarash-router"


def openai_image_route(url: str) -> str:
    return f"""
[routes."gpt-image"]
kind = "image"
[[routes."gpt-image".attempts]]
provider = "openai"
model = "gpt-image-1"
base_url = "{url}/v1"
api_key_env = "HARDENING_OPENAI_KEY"
"""


async def raw_exchange(daemon: Daemon, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and read one whole response (head and ``Content-Length`` body)."""
    reader, writer = await asyncio.open_connection(daemon.server.host, daemon.server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), wait)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


def json_body(answer: bytes) -> dict[str, Any]:
    return json.loads(answer.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


# ---- 1. client mistakes never reach a vendor, never open its circuit ----------------------------------------
@pytest.mark.parametrize("bad", ["file:///etc/passwd", "neither a URL nor base64 !!", "aGVsbG8gd29ybGQ=",
                                 "gopher://example.com/x", "data:image/png;base64,@@@"])
async def test_invalid_media_is_a_400_before_any_vendor_work(start_daemon: StartDaemon, openai_emulator: Any,
                                                            monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("HARDENING_OPENAI_KEY", openai_emulator.api_key)
    daemon = await start_daemon(openai_image_route(openai_emulator.url), circuit_threshold=2)
    for _ in range(4):  # twice the breaker's threshold
        status, body, _ = await daemon.request("POST", "/v1/images/generations", json={
            "model": "gpt-image", "prompt": "x", "image_list": [{"image": bad, "type": "reference"}]})
        assert status == 400, body
        assert body["error"]["param"] == "image_list.0.image" and "execution_metadata" not in body
    assert openai_emulator.requests == []  # no vendor work at all
    good = base64.b64encode(png(8, 8)).decode()
    status, body, _ = await daemon.request("POST", "/v1/images/generations", json={
        "model": "gpt-image", "prompt": "x", "image_list": [{"image": good, "type": "reference"}]})
    assert status == 200, body  # the circuit stayed closed


async def test_media_must_be_the_right_kind(daemon: Daemon) -> None:
    mp4 = base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + bytes(16)).decode()
    status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
        "model": "video-fast", "prompt": "x", "image_list": [{"image": mp4, "type": "first_frame"}]})
    assert status == 400 and "expected an image" in body["error"]["message"]
    status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
        "model": "video-fast", "prompt": "x", "video": "HTTPS://cdn.example.com/in.mp4"})
    assert status == 200, body  # schemes are case-insensitive


# ---- 5. bounded counts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "field", "value"), [
    ("/v1/image/generations", "n", 10**9),
    ("/v1/images/generations", "n", 11),
    ("/v1/video/generations", "number_of_videos", 10**9),
    ("/v1/video/generations", "duration_seconds", 10**30),
    ("/v1/video/generations", "seed", 10**40),
])
async def test_counts_are_capped_at_the_edge(daemon: Daemon, path: str, field: str, value: int) -> None:
    model = "image-fast" if "image" in path else "video-fast"
    status, body, _ = await daemon.request("POST", path, json={"model": model, "prompt": "x", field: value})
    assert status == 400 and body["error"]["param"] == field and body["error"]["code"] == "out_of_range"


async def test_prompt_length_limit(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(max_prompt_chars=100)
    status, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x" * 101})
    assert status == 400 and body["error"]["param"] == "prompt" and body["error"]["code"] == "too_long"
    assert (await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x" * 100}))[0] == 202


async def test_a_max_cost_usd_past_a_floats_range_is_a_400(daemon: Daemon) -> None:
    for path in ("/v1/video/generations", "/v1/jobs"):
        raw = '{"model": "video-fast", "prompt": "x", "max_cost_usd": ' + "9" * 400 + "}"  # float() overflows
        status, body, _ = await daemon.request("POST", path, data=raw, headers={"Content-Type": "application/json"})
        assert status == 400 and body["error"]["param"] == "max_cost_usd", body
        assert len(body["error"]["message"]) < 200  # the number is not echoed whole


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("path", "field"), [("/v1/videos", "seconds"), ("/v1/jobs", "max_cost_usd"),
                                             ("/v1/video/generations", "duration_seconds")])
async def test_non_finite_numbers_are_not_json(daemon: Daemon, path: str, field: str, number: str) -> None:
    """Python's json reads these as inf/nan (NaN and Infinity are not JSON at all); ``seconds`` was a 500."""
    raw = f'{{"model": "video-fast", "prompt": "x", "{field}": {number}}}'
    status, body, _ = await daemon.request("POST", path, data=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid_json", body
    status, body, _ = await daemon.request("POST", "/v1/jobs", data='{"model": "video-fast", "prompt": "x", '
                                           f'"extra_params": {{"cfg": [{number}]}}}}')
    assert status == 400 and body["error"]["code"] == "invalid_json", body  # never stored, never sent to a vendor


@pytest.mark.parametrize("seconds", [5.5, True, "\uff15", "5_0", "-4", "", [8]])
async def test_seconds_must_be_whole_seconds(daemon: Daemon, seconds: Any) -> None:
    """int() read 5.5 as 5, true as 1 and a full-width digit as 5: a clip of another length than asked."""
    status, body, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x",
                                                                       "seconds": seconds})
    assert status == 400 and body["error"]["param"] == "seconds", body
    for good in ("8", 8):
        status, body, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x",
                                                                           "seconds": good})
        assert status == 200 and body["seconds"] == "8", body


@pytest.mark.parametrize(("path", "param"), [("/v1/jobs?limit=", "limit"), ("/v1/videos?limit=", "limit"),
                                             ("/v1/jobs/{image}/content?index=", "index")])
async def test_query_numbers_are_ascii_digits(daemon: Daemon, path: str, param: str) -> None:
    image = (await daemon.request("POST", "/v1/jobs", json={"model": "image-fast", "prompt": "x"}))[1]["id"]

    async def completed() -> bool:
        return bool((await daemon.request("GET", f"/v1/jobs/{image}"))[1]["status"] == "completed")

    await until(completed)  # index is read once the image is there (a queued job's content is a 409 first)
    for bad in ("%EF%BC%95", "5_0", "-1", "1e3", "abc", "%205"):  # '５' and ' 5' percent-encoded
        status, body, _ = await daemon.request("GET", path.format(image=image) + bad)
        assert status == 400 and body["error"]["param"] == param, (bad, body)


async def test_an_image_job_is_no_video_to_delete(daemon: Daemon) -> None:
    image = (await daemon.request("POST", "/v1/jobs", json={"model": "image-fast", "prompt": "x"}))[1]["id"]
    status, body, _ = await daemon.request("DELETE", f"/v1/videos/{image}")  # GET /v1/videos/{id} said 404 too
    assert status == 404 and body["error"]["code"] == "job_not_found", body
    assert (await daemon.request("GET", f"/v1/jobs/{image}"))[0] == 200  # still there


# ---- 9. 413 from Content-Length, before the body -----------------------------------------------------------
async def test_oversized_body_is_refused_from_its_content_length(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(max_body_bytes=1000)
    # The head announces 100 MB and no byte of the body follows: the answer cannot wait for it.
    answer = await raw_exchange(daemon, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                        b"Content-Length: 100000000\r\n\r\n", wait=2)
    assert answer.startswith(b"HTTP/1.1 413 ") and json_body(answer)["error"]["code"] == "body_too_large"


async def test_oversized_multipart_is_refused_while_reading(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(max_body_bytes=1000)
    body = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nvideo-fast\r\n'
            b'--b\r\nContent-Disposition: form-data; name="input_reference"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png(8, 8) + bytes(5000) + b"\r\n--b--\r\n")

    async def chunked() -> Any:  # no Content-Length: the limit must hold while the parts are read
        for i in range(0, len(body), 512):
            yield body[i:i + 512]

    status, answer, _ = await daemon.request("POST", "/v1/videos", data=chunked(),
                                             headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 413 and answer["error"]["code"] == "body_too_large"


# ---- 10. malformed input: 400 in the error shape, logged as a client error -----------------------------------
async def test_malformed_input_is_a_400_not_a_500(start_daemon: StartDaemon, capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    configure("info", "json")
    daemon = await start_daemon(api_keys="tok-aaaaaaaaaaaa")
    auth = {"Authorization": "Bearer tok-aaaaaaaaaaaa"}
    cases: list[tuple[int, bytes]] = []
    for header in (b"Authorization: Bearer tok-\xff\xfe", b"Authorization: Bearer tok-aaaaaaaaaaaa\r\n"
                                                          b"Idempotency-Key: k\xc3\x28"):
        cases.append((400, await raw_exchange(daemon, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + header +
                                              b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")))
    # aiohttp's own parser errors come in the same shape.
    cases.append((400, await raw_exchange(daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")))
    for status, answer in cases:
        assert answer.split(b" ")[1] == str(status).encode(), answer[:200]
        assert set(json_body(answer)["error"]) == {"message", "type", "code", "param"}

    huge_int = '{"model": "video-fast", "prompt": "x", "seed": ' + "9" * 5000 + "}"
    assert (await daemon.request("POST", "/v1/jobs", data=huge_int, headers=auth))[0] == 400
    status, body, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x",
                                                                       "size": "1280x0"}, headers=auth)
    assert status == 400 and body["error"]["param"] == "size"
    assert (await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x",
                                                             "size": "9" * 400 + "x1"}, headers=auth))[0] == 400
    multipart_cases = [
        ("multipart/form-data", b"--x\r\n\r\nno boundary was declared\r\n--x--\r\n"),
        ("multipart/form-data; boundary=zzz", b"complete garbage, no delimiter anywhere"),
        ("multipart/form-data; boundary=outer",
         b'--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\nContent-Disposition: form-data; name="m"'
         b'\r\n\r\n--inner\r\nContent-Disposition: form-data; name="model"\r\n\r\nvideo-fast\r\n--inner--\r\n'
         b"--outer--\r\n"),
        ("multipart/form-data; boundary=b",
         b'--b\r\nContent-Disposition: form-data; name="prompt"\r\nContent-Type: text/plain; charset=nope\r\n\r\n'
         b"x\r\n--b--\r\n"),
    ]
    for content_type, data in multipart_cases:
        status, body, _ = await daemon.request("POST", "/v1/videos", data=data,
                                               headers={**auth, "Content-Type": content_type})
        assert status == 400, (content_type, body)
        assert body["error"]["type"] == "invalid_request_error"
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert logged and not [e for e in logged if e["level"] in ("error", "critical") or "exception" in e]


async def test_text_with_nul_or_a_lone_surrogate_is_a_400(start_daemon: StartDaemon, pg_url: str) -> None:
    """PostgreSQL's text and jsonb refuse both: with that job store these were 500s (nothing was stored)."""
    daemon = await start_daemon(job_store=pg_url)
    json_cases = [(b'"prompt": "a\\u0000b"', "prompt"), (b'"prompt": "\\ud800 alone"', "prompt"),
                  (b'"prompt": "raw \xed\xa0\x80 bytes"', "prompt"),
                  (b'"extra_params": {"k\\u0000": 1}', "extra_params"),
                  (b'"extra_params": {"k": ["ok", "\\udfff"]}', "extra_params.k.1")]
    for path in ("/v1/jobs", "/v1/videos", "/v1/video/generations"):
        for field, param in json_cases:
            status, body, _ = await daemon.request("POST", path, data=b'{"model": "video-fast", ' + field + b"}")
            assert status == 400 and body["error"]["param"] == param, (path, field, body)
    multipart = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nvideo-fast\r\n'
                 b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na\x00b\r\n--b--\r\n')
    status, body, _ = await daemon.request("POST", "/v1/videos", data=multipart,
                                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 400 and body["error"]["param"] == "prompt", body
    emoji = b'{"model": "video-fast", "prompt": "\\ud83e\\udd8a \xf0\x9f\xa6\x8a \\u00e9"}'  # a pair is fine
    assert (await daemon.request("POST", "/v1/jobs", data=emoji))[0] == 202


async def test_a_url_with_nul_is_a_400(start_daemon: StartDaemon, pg_url: str) -> None:
    """A %00 in an id or a filter reached the PostgreSQL job store's lookups, which refuse NUL: a 500."""
    daemon = await start_daemon(job_store=pg_url)
    for method, path in [("GET", "/v1/jobs/job_%00"), ("GET", "/v1/jobs/job_%00/events"), ("DELETE", "/v1/jobs/a%00"),
                         ("GET", "/v1/videos/a%00b/content"), ("GET", "/v1/jobs?after=%00"),
                         ("GET", "/v1/jobs?model=video-fast%00"), ("GET", "/v1/videos?after=job_%00"),
                         ("GET", "/v1/usage?client=%00"), ("GET", "/v1/jobs?lim%00it=1")]:
        status, body, _ = await daemon.request(method, path)
        assert status == 400 and body["error"]["code"] == "invalid_request", (method, path, body)
    assert (await daemon.request("GET", "/v1/jobs?after=%2500"))[0] == 200  # an escaped "%00" is only text


async def test_a_malformed_request_is_not_quoted_back(start_daemon: StartDaemon, capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """aiohttp's parser errors quote the offending line: a client token, a vendor webhook URL's secret."""
    configure("info", "json")
    daemon = await start_daemon(api_keys="tok-aaaaaaaaaaaa")
    secrets = ("tok-aaaaaaaaaaaa", "tok-typo-bbbbbbbb", "hook-secret-cccccccc")
    for data in (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-aaaaaaaaaaaa\x01\r\n\r\n",
                 b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer tok-typo-bbbbbbbb\r\n\r\n",
                 b"FOO /v1/webhooks/fal/hook-secret-cccccccc HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-typo-bbbbbbbb" + b" " * 9000
                 + b"\r\n\r\n"):  # past the 8190-byte line limit
        answer = await raw_exchange(daemon, data)
        assert answer.startswith(b"HTTP/1.0 400 ") and json_body(answer)["error"]["code"] == "bad_http_request"
        assert not [secret for secret in secrets if secret.encode() in answer], answer
    logged = capsys.readouterr().err
    assert "bad_http_request" in logged and not [secret for secret in secrets if secret in logged]


async def test_an_unknown_expectation_is_a_417_in_the_error_shape(daemon: Daemon) -> None:
    """aiohttp checks ``Expect`` before the app's middlewares run: its 417 was plain text."""
    for path in ("/v1/jobs", "/nope"):
        answer = await raw_exchange(daemon, f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
                                            "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode())
        assert answer.startswith(b"HTTP/1.1 417 "), answer[:200]
        assert json_body(answer)["error"] == {"message": "Unknown Expect: 200-ok", "type": "invalid_request_error",
                                              "code": "invalid_request", "param": None}


async def test_100_continue_waits_for_the_token_and_the_size_check(start_daemon: StartDaemon) -> None:
    """A client that asks before sending its body (curl does past 1 MB) is refused at once, its body never sent:
    aiohttp answered 100 Continue before the app's middlewares ran, so it uploaded up to 32 MB for a 401."""
    daemon = await start_daemon(api_keys="tok-aaaaaaaaaaaa", max_body_bytes=1_000_000)
    body = json.dumps({"model": "image-fast", "prompt": "x"}).encode()

    async def ask(headers: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(daemon.server.host, daemon.server.port)
        writer.write(f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Expect: 100-continue\r\n{headers}\r\n".encode())  # the head alone
        return reader, writer

    for headers, status, code in [(f"Content-Length: {len(body)}\r\n", 401, "missing_api_key"),
                                  (f"Authorization: Bearer nope\r\nContent-Length: {len(body)}\r\n", 401,
                                   "invalid_api_key"),
                                  ("Authorization: Bearer tok-aaaaaaaaaaaa\r\nContent-Length: 2000000\r\n", 413,
                                   "body_too_large")]:
        reader, writer = await ask(headers)
        answer = await asyncio.wait_for(read_response(reader), 5)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]  # no 100 Continue before it
        assert json_body(answer)["error"]["code"] == code and b"Connection: close" in answer
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once: no body is waited for
        writer.close()

    reader, writer = await ask(f"Authorization: Bearer tok-aaaaaaaaaaaa\r\nContent-Length: {len(body)}\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    final = await asyncio.wait_for(read_response(reader), 5)
    assert final.startswith(b"HTTP/1.1 202 "), final[:300]
    writer.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize(("path", "content_type"), [("/v1/jobs", "application/json"),
                                                    ("/v1/videos", "multipart/form-data; boundary=b"),
                                                    ("/v1/webhooks/fal/tok", "application/json")])
async def test_a_body_that_cannot_be_decompressed_is_a_400(start_daemon: StartDaemon,
                                                           capsys: pytest.CaptureFixture[str], encoding: str,
                                                           path: str, content_type: str) -> None:
    configure("info", "json")
    daemon = await start_daemon(public_url="https://router.example")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Encoding: {encoding}\r\n"
    answer = await raw_exchange(daemon, head.encode() + b"Content-Length: 9\r\n\r\nnot gzip!")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer, answer[:300]
    error = json_body(answer)["error"]
    assert error["code"] == "invalid_request" and f"content-encoding: {encoding}" in error["message"], error
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert not [e for e in logged if e["level"] in ("error", "critical") or "exception" in e]  # no traceback
    assert (await daemon.request("GET", "/healthz"))[0] == 200


# ---- 12. empty tokens, per-address buckets, IPv6 forms of private addresses ---------------------------------
def test_an_empty_api_key_token_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text('[routes."a"]\nkind = "image"\n[[routes."a".attempts]]\nprovider = "mock"\n'
                                          'model = "m"\n')
    env = {**os.environ, "TARASH_ROUTER_API_KEYS": "tok-secret-1234,:admin"}
    done = subprocess.run([str(SCRIPT), "serve", "--port", "0"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "TARASH_ROUTER_API_KEYS" in done.stderr and "empty token" in done.stderr
    assert "tok-secret-1234" not in done.stderr and "Traceback" not in done.stderr


async def test_without_tokens_each_remote_address_has_its_own_bucket(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(client_requests_per_minute=2)
    body = {"model": "image-fast", "prompt": "x"}
    statuses = [(await daemon.request("POST", "/v1/image/generations", json=body))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))  # another client on the loopback network
    async with aiohttp.ClientSession(connector=other) as session:
        async with session.post(daemon.url + "/v1/image/generations", json=body) as response:
            assert response.status == 200


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[::127.0.0.1]", "[2002:7f00:1::1]", "[::ffff:0:7f00:1]",
                                  "[64:ff9b::a9fe:a9fe]"])
async def test_ipv6_forms_of_private_addresses_are_refused(start_daemon: StartDaemon, openai_emulator: Any,
                                                           monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("HARDENING_OPENAI_KEY", openai_emulator.api_key)
    monkeypatch.delenv("TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS", raising=False)
    daemon = await start_daemon(openai_image_route(openai_emulator.url))
    status, body, _ = await daemon.request("POST", "/v1/images/generations", json={
        "model": "gpt-image", "prompt": "x", "image_list": [{"image": f"http://{host}:9/a.png", "type": "reference"}]})
    assert status == 400 and "non-public address" in body["error"]["message"], body


# ---- 2. slow clients: every head and every body has a deadline; connections are capped ------------------------
async def test_a_keep_alive_connections_later_head_has_the_deadline(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(header_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection(daemon.server.host, daemon.server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 5)).startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the second head never ends
        answer = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the daemon hung up
        assert answer.startswith(b"HTTP/1.1 408 ") and json_body(answer)["error"]["code"] == "header_timeout"
    finally:
        writer.close()


async def test_a_dribbled_body_gets_408(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(body_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection(daemon.server.host, daemon.server.port)
    try:
        writer.write(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ") and json_body(answer)["error"]["code"] == "body_timeout"
    finally:
        writer.close()


async def test_connections_past_the_cap_get_503(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(max_connections=3)
    held = [await asyncio.open_connection(daemon.server.host, daemon.server.port) for _ in range(3)]
    try:
        for _ in range(100):  # until the daemon has accepted all three
            if len(daemon.server.runner.server.connections) == 3:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        answer = await raw_exchange(daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and json_body(answer)["error"]["code"] == "too_many_connections"
    finally:
        for _, writer in held:
            writer.close()
    for _ in range(200):  # freed connections make room again
        status = (await raw_exchange(daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        if status.startswith(b"HTTP/1.1 200 "):
            break
        await asyncio.sleep(0.01)
    assert status.startswith(b"HTTP/1.1 200 ")


async def test_out_of_file_descriptors_the_daemon_recovers_and_logs_sparingly(tmp_path: Path) -> None:
    """A real daemon process with 64 file descriptors and 150 slow clients: accepting fails while they hold
    every descriptor; the header deadline frees them, the probe answers again, and the accept failure is
    logged a few times, not once per queued connection."""
    (tmp_path / "routes.toml").write_text('[routes."a"]\nkind = "image"\n[[routes."a".attempts]]\n'
                                          'provider = "mock"\nmodel = "m"\n')
    port = free_port()
    env = {**os.environ, "TARASH_ROUTER_HEADER_TIMEOUT_SECONDS": "0.3", "TARASH_ROUTER_LOG_FORMAT": "json",
           "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data")}
    env.pop("NOTIFY_SOCKET", None)

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.Popen([str(SCRIPT), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=few_fds)
    url = f"http://127.0.0.1:{port}/healthz"
    writers = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            assert await _until_healthy(session, url)
            for _ in range(150):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\n")  # a head that never ends
                writers.append(writer)
            assert await _until_healthy(session, url)
    finally:
        for writer in writers:
            writer.close()
        proc.terminate()
        proc.wait(10)
    lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines() if line.startswith("{")]  # type: ignore[union-attr]
    failed = [line for line in lines if line["event"] == "accept_failed" or "accept" in str(line.get("event"))]
    assert 1 <= len(failed) <= 3, failed[:5]


async def _until_healthy(session: aiohttp.ClientSession, url: str) -> bool:
    for _ in range(500):
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.02)
    return False


# ---- 12. a damaged job store: one row is skipped and named; a damaged file or read-only DATA_DIR is one line --
async def test_a_corrupt_row_is_skipped_and_named(start_daemon: StartDaemon, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    configure("info", "json")
    first = await start_daemon()
    ids = []
    for prompt in ("one", "two", "three"):
        ids.append((await first.request("POST", "/v1/jobs", json={"model": "video-slow", "prompt": prompt}))[1]["id"])
    await first.server.close()  # the jobs stay unfinished, to be resumed
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:  # a damaged row, as a bad disk or tool leaves it
        db.execute("UPDATE jobs SET body = '{\"id\": \"trunc' WHERE id = ?", (ids[1],))
    second = await start_daemon()  # starts: the damaged unfinished row does not stop the resume of the others
    status, listed, _ = await second.request("GET", "/v1/jobs")
    assert status == 200 and [job["id"] for job in listed["data"]] == [ids[2], ids[0]]
    assert (await second.request("GET", f"/v1/jobs/{ids[1]}"))[0] == 404
    assert (await second.request("GET", "/readyz"))[0] == 200
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    unreadable = [e for e in logged if e["event"] == "job_store_row_unreadable"]
    assert [e["job_id"] for e in unreadable] == [ids[1]]  # named once, however often it is read


def test_a_damaged_store_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text('[routes."a"]\nkind = "image"\n[[routes."a".attempts]]\n'
                                          'provider = "mock"\nmodel = "m"\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jobs.sqlite3").write_bytes(b"this is not a database, it was overwritten" * 100)
    done = _serve_once(tmp_path, tmp_path / "data")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert str(tmp_path / "data" / "jobs.sqlite3") in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only filesystem needs root (CI runs as root)")
def test_a_read_only_data_dir_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "routes.toml").write_text('[routes."a"]\nkind = "image"\n[[routes."a".attempts]]\n'
                                          'provider = "mock"\nmodel = "m"\n')
    data = tmp_path / "ro"
    data.mkdir()
    # Root ignores file modes, so a read-only filesystem it is: what a full or remounted disk looks like.
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(data)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        done = _serve_once(tmp_path, data)
    finally:
        subprocess.run(["umount", str(data)], check=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert str(data) in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _serve_once(cwd: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(data_dir), "TARASH_ROUTER_LOG_FORMAT": "json"}
    return subprocess.run([str(SCRIPT), "serve", "--port", "0"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30)
