"""Every endpoint and error status of the running daemon, over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from router.registry import get_handler
from tests.daemon.conftest import Daemon, StartDaemon


async def test_ops_endpoints(daemon: Daemon) -> None:
    assert (await daemon.request("GET", "/healthz"))[:2] == (200, {"status": "ok"})
    status, body, _ = await daemon.request("GET", "/readyz")
    assert status == 200 and body["status"] == "ready"
    status, body, _ = await daemon.request("GET", "/v1/routes")
    assert status == 200 and body["last_reload_error"] is None and len(body["config_hash"]) == 16
    names = {r["name"]: r for r in body["routes"]}
    assert names["video-down"]["attempts"][1]["model"] == "mock-down-2"
    assert "api_key" not in json.dumps(body)


async def test_native_video_waits_and_returns_the_spec_model(daemon: Daemon) -> None:
    status, body, headers = await daemon.request(
        "POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "a fox"},
        headers={"X-Request-ID": "my-req-1"})
    assert status == 200 and headers["X-Request-ID"] == "my-req-1"
    assert body["status"] == "completed" and body["is_mock"] and body["aspect_ratio"] == "9:16"  # route default
    assert base64.b64decode(body["video"]["content"])[4:8] == b"ftyp"
    metadata = body["execution_metadata"]
    assert metadata["successful_attempt"] == 1 and metadata["attempts"][0]["provider"] == "mock"


async def test_client_fields_override_defaults(daemon: Daemon) -> None:
    _, body, _ = await daemon.request("POST", "/v1/video/generations",
                                      json={"model": "video-fast", "prompt": "x", "aspect_ratio": "1:1"})
    assert body["aspect_ratio"] == "1:1"


async def test_native_image(daemon: Daemon) -> None:
    status, body, _ = await daemon.request("POST", "/v1/image/generations",
                                           json={"model": "image-fast", "prompt": "x", "n": 2})
    assert status == 200 and len(body["images"]) == 2 and body["raw_response"]["width"] == 16


@pytest.mark.parametrize(
    "payload,status,code,param",
    [
        (b"{not json", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (json.dumps({"prompt": "x"}).encode(), 400, "missing_field", "model"),
        (json.dumps({"model": "nope", "prompt": "x"}).encode(), 404, "model_not_found", None),
        (json.dumps({"model": "image-fast", "prompt": "x"}).encode(), 422, "wrong_kind", None),
        (json.dumps({"model": "video-fast", "prompt": "x", "resolution": "9k"}).encode(), 400, "invalid_field", "resolution"),
        (json.dumps({"model": "video-fast"}).encode(), 400, "invalid_field", "prompt"),
    ],
)
async def test_bad_input_gets_a_precise_error(daemon: Daemon, payload: bytes, status: int, code: str, param: str | None) -> None:
    got, body, _ = await daemon.request("POST", "/v1/video/generations", data=payload,
                                        headers={"Content-Type": "application/json"})
    assert got == status and body["error"]["code"] == code and body["error"]["param"] == param
    assert body["error"]["message"] and body["error"]["type"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
async def test_a_json_body_is_read_in_any_encoding_json_allows(daemon: Daemon, encoding: str) -> None:
    """RFC 8259 text in UTF-8, -16 or -32, as ``json.loads`` of the bytes reads it (UTF-8 is told at a glance)."""
    payload = json.dumps({"model": "image-fast", "prompt": "ünïcode"}).encode(encoding)
    status, body, _ = await daemon.request("POST", "/v1/image/generations", data=payload,
                                           headers={"Content-Type": "application/json"})
    assert status == 200 and body["images"], body


async def test_kind_mismatch_names_the_route_kind(daemon: Daemon) -> None:
    _, body, _ = await daemon.request("POST", "/v1/image/generations", json={"model": "video-fast", "prompt": "x"})
    assert "serves video generation" in body["error"]["message"]


async def test_aiohttp_errors_use_the_error_shape(daemon: Daemon) -> None:
    status, body, _ = await daemon.request("GET", "/v1/nothing-here")
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, body, headers = await daemon.request("DELETE", "/healthz")
    assert status == 405 and "not allowed" in body["error"]["message"] and "GET" in headers["Allow"]


async def test_body_too_large(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(max_body_bytes=1024)
    status, body, _ = await daemon.request("POST", "/v1/video/generations",
                                           json={"model": "video-fast", "prompt": "x" * 5000})
    assert status == 413 and "too large" in body["error"]["message"]


async def test_all_attempts_failed_carries_execution_metadata(daemon: Daemon) -> None:
    status, body, headers = await daemon.request("POST", "/v1/video/generations",
                                                 json={"model": "video-down", "prompt": "x"})
    # The last error was a rate limit: its status and Retry-After win.
    assert status == 429 and headers["Retry-After"] == "7"
    assert body["error"]["type"] == "all_attempts_failed_error"
    attempts = body["execution_metadata"]["attempts"]
    assert [(a["model"], a["error_type"]) for a in attempts] == [
        ("mock-down-1", "ProviderUnavailableError"), ("mock-down-2", "RateLimitError")]
    assert all(a["elapsed_seconds"] is not None for a in attempts)


async def test_sse_streams_updates_then_result(daemon: Daemon) -> None:
    async with daemon.session.post(daemon.url + "/v1/video/generations", json={"model": "video-fast", "prompt": "x"},
                                   headers={"Accept": "text/event-stream"}) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()
    events = [(block.split("\n")[0][7:], json.loads(block.split("\n")[1][6:]))
              for block in text.strip().split("\n\n")]
    assert [name for name, _ in events] == ["update", "update", "result"]
    assert [data["progress_percent"] for _, data in events[:2]] == [0, 50]
    assert events[-1][1]["execution_metadata"]["successful_attempt"] == 1


async def test_sse_error_event(daemon: Daemon) -> None:
    async with daemon.session.post(daemon.url + "/v1/video/generations", json={"model": "video-down", "prompt": "x"},
                                   headers={"Accept": "text/event-stream"}) as response:
        text = await response.text()
    assert "event: update" in text  # the fallback event
    name, data = text.strip().split("\n\n")[-1].split("\n")
    assert name == "event: error" and json.loads(data[6:])["status"] == 429


async def test_sse_client_disconnect_cancels_the_generation(daemon: Daemon) -> None:
    mock = get_handler("mock")
    before = len(mock.cancelled)
    response = await daemon.session.post(daemon.url + "/v1/video/generations",
                                         json={"model": "video-slow", "prompt": "x"},
                                         headers={"Accept": "text/event-stream"})
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"event: update")
    response.close()  # the client goes away mid-generation
    for _ in range(200):
        if len(mock.cancelled) > before:
            break
        await asyncio.sleep(0.01)
    assert len(mock.cancelled) == before + 1


async def test_waiting_client_disconnect_cancels_the_generation(daemon: Daemon) -> None:
    mock = get_handler("mock")
    before = len(mock.cancelled)
    waiting = asyncio.create_task(daemon.request("POST", "/v1/video/generations",
                                                 json={"model": "video-slow", "prompt": "x"}))
    in_flight = daemon.state.metrics.jobs_in_flight.labels("video")
    for _ in range(200):
        if in_flight._value.get() > 0:
            break
        await asyncio.sleep(0.01)
    waiting.cancel()  # the client gives up: its connection closes
    for _ in range(200):
        if len(mock.cancelled) > before and in_flight._value.get() == 0:
            break
        await asyncio.sleep(0.01)
    assert len(mock.cancelled) == before + 1 and in_flight._value.get() == 0  # the vendor job too


async def test_openai_sdk_models_and_images(daemon: Daemon) -> None:
    client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    models = await client.models.list()
    assert {m.id for m in models.data} == {"video-fast", "video-slow", "video-down", "image-fast"}
    assert (await client.models.retrieve("video-fast")).owned_by == "tarash-router"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-route")
    as_url = await client.images.generate(model="image-fast", prompt="a fox", n=2)
    assert len(as_url.data) == 2 and as_url.data[0].url.startswith("data:image/png;base64,")
    as_b64 = await client.images.generate(model="image-fast", prompt="a fox", response_format="b64_json", size="1024x1024")
    assert base64.b64decode(as_b64.data[0].b64_json)[:4] == b"\x89PNG"
    with pytest.raises(openai.NotFoundError) as info:
        await client.images.generate(model="missing", prompt="x")
    assert "unknown model" in info.value.message
    await client.close()


async def test_client_auth_and_scopes(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(api_keys="user-token-123,admin-token-456:admin")
    assert (await daemon.request("GET", "/healthz"))[0] == 200  # probes stay public
    status, body, headers = await daemon.request("GET", "/v1/models")
    assert status == 401 and body["error"]["code"] == "missing_api_key" and "Bearer" in headers["WWW-Authenticate"]
    status, body, _ = await daemon.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    user = {"Authorization": "Bearer user-token-123"}
    assert (await daemon.request("GET", "/v1/models", headers=user))[0] == 200
    status, body, _ = await daemon.request("GET", "/v1/routes", headers=user)
    assert status == 403 and body["error"]["code"] == "admin_required"
    assert (await daemon.request("GET", "/v1/routes", headers={"Authorization": "Bearer admin-token-456"}))[0] == 200


async def test_metrics_endpoint_bounded_labels(daemon: Daemon) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    await daemon.request("POST", "/v1/video/generations", json={"model": "video-down", "prompt": "x"})
    await daemon.request("POST", "/v1/video/generations", json={"model": "evil\"} 1\nfake_metric{", "prompt": "x"})
    status, text, headers = await daemon.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("tarash_router_requests_total", (("kind", "video"), ("outcome", "failed"), ("route", "video-down")))] == 1
    assert samples[("tarash_router_requests_total", (("kind", "video"), ("outcome", "rejected"), ("route", "unknown")))] == 1
    assert samples[("tarash_router_fallbacks_total", (("from_provider", "mock"), ("route", "video-down"), ("to_provider", "mock")))] == 1
    assert "evil" not in text and "fake_metric" not in text
    http_paths = {dict(k[1]).get("path") for k in samples if k[0] == "tarash_router_http_requests_total"}
    assert http_paths <= {"/v1/video/generations", "/metrics"}


UPSTREAM = """
[routes."all-down"]
kind = "video"
[[routes."all-down".attempts]]
provider = "mock"
model = "mock-down"
mock = { responses = [ { error = { type = "ProviderUnavailableError", message = "vendor 503" } } ] }

[routes."all-slow"]
kind = "video"
[[routes."all-slow".attempts]]
provider = "mock"
model = "mock-slow"
timeout = 0.05
mock = { polling = { status_sequence = ["queued", "completed"], delay_between_updates = 3600 } }

[routes."policy"]
kind = "image"
[[routes."policy".attempts]]
provider = "mock"
model = "mock-strict"
mock = { responses = [ { error = { type = "ContentPolicyError", message = "flagged" } } ] }

[routes."down-then-unsupported"]
kind = "video"
[[routes."down-then-unsupported".attempts]]
provider = "mock"
model = "mock-down"
mock = { responses = [ { error = { type = "RateLimitError", message = "busy", retry_after = 7 } } ] }
[[routes."down-then-unsupported".attempts]]
provider = "mock"
model = "mock-cannot"
mock = { responses = [ { error = { type = "UnsupportedCapabilityError", message = "no first_frame" } } ] }

[routes."unsupported"]
kind = "video"
[[routes."unsupported".attempts]]
provider = "mock"
model = "mock-cannot"
mock = { responses = [ { error = { type = "UnsupportedCapabilityError", message = "no first_frame" } } ] }
"""


@pytest.mark.parametrize("route,status,type_,last_error", [
    ("all-down", 502, "all_attempts_failed_error", "ProviderUnavailableError"),
    ("all-slow", 504, "all_attempts_failed_error", "ProviderTimeoutError"),
    ("policy", 422, "content_policy_error", "ContentPolicyError"),  # not retryable: the chain stops on it
])
async def test_upstream_failures_map_to_the_last_errors_status(
    start_daemon: StartDaemon, route: str, status: int, type_: str, last_error: str,
) -> None:
    daemon = await start_daemon(UPSTREAM)
    kind = "image" if route == "policy" else "video"
    got, body, _ = await daemon.request("POST", f"/v1/{kind}/generations", json={"model": route, "prompt": "x"})
    assert got == status and body["error"]["type"] == type_
    assert body["execution_metadata"]["attempts"][-1]["error_type"] == last_error


def _documented_error_rows() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()
    return [line for line in text.splitlines() if re.match(r"\| \d{3} \|", line)]


@pytest.mark.parametrize("route", ["all-down", "all-slow", "policy", "down-then-unsupported", "unsupported"])
async def test_a_failed_generation_is_answered_as_docs_http_api_lists_it(start_daemon: StartDaemon, route: str) -> None:
    daemon = await start_daemon(UPSTREAM)
    kind = "image" if route == "policy" else "video"
    status, body, _ = await daemon.request("POST", f"/v1/{kind}/generations", json={"model": route, "prompt": "x"})
    type_, code = body["error"]["type"], body["error"]["code"]
    assert [row for row in _documented_error_rows()
            if row.startswith(f"| {status} |") and f"`{type_}`" in row and f"`{code}`" in row], (status, type_, code)


@pytest.mark.parametrize("route,status,code,retry_after", [
    # An attempt that could take the request was sent and throttled: not "no provider can take it" (422).
    ("down-then-unsupported", 429, "rate_limit_exceeded", "7"),
    ("unsupported", 422, "unsupported_capability", None),  # no attempt could: 422
])
async def test_a_chain_is_answered_by_its_last_sent_attempt_not_a_later_skip(
    start_daemon: StartDaemon, route: str, status: int, code: str, retry_after: str | None,
) -> None:
    daemon = await start_daemon(UPSTREAM)
    got, body, headers = await daemon.request("POST", "/v1/video/generations", json={"model": route, "prompt": "x"})
    assert (got, body["error"]["code"], headers.get("Retry-After")) == (status, code, retry_after)
    assert body["execution_metadata"]["attempts"][-1]["status"] == "skipped"


async def test_openai_images_from_a_url_vendor(start_daemon: StartDaemon, fal_emulator: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A vendor answering image URLs: passed through for ``url``, fetched and encoded for ``b64_json``."""
    monkeypatch.setenv("DAEMON_TEST_FAL_KEY", fal_emulator.api_key)
    daemon = await start_daemon(f"""
[routes."flux"]
kind = "image"
[[routes."flux".attempts]]
provider = "fal"
model = "fal-ai/flux/dev"
base_url = "{fal_emulator.url}"
api_key_env = "DAEMON_TEST_FAL_KEY"
poll_interval = 0.01
""")
    client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    as_url = await client.images.generate(model="flux", prompt="a fox", size="1024x1024")
    assert as_url.data[0].url.startswith(fal_emulator.url)
    as_b64 = await client.images.generate(model="flux", prompt="a fox", response_format="b64_json")
    assert base64.b64decode(as_b64.data[0].b64_json)[:4] == b"\x89PNG"
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.generate(model="flux", prompt="a fox", response_format="jpeg")  # type: ignore[arg-type]
    assert info.value.body["param"] == "response_format"  # type: ignore[index]
    await client.close()
