"""What a failed chain tells its client: each attempt's fate in the message (a chain that sent nothing says so)."""

from __future__ import annotations

import asyncio

import pytest

from tests.daemon.conftest import StartDaemon

UNKEYED = """
[routes."video-unkeyed"]
kind = "video"
[[routes."video-unkeyed".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
[[routes."video-unkeyed".attempts]]
provider = "openai"
model = "sora-2"

[routes."video-mixed"]
kind = "video"
[[routes."video-mixed".attempts]]
provider = "mock"
model = "mock-busy"
mock = { responses = [ { error = { type = "ProviderUnavailableError", message = "vendor 503" } } ] }
[[routes."video-mixed".attempts]]
provider = "openai"
model = "sora-2"
"""


@pytest.fixture(autouse=True)
def no_vendor_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def test_a_chain_where_every_attempt_was_skipped_says_nothing_was_sent(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(UNKEYED)
    status, body, _ = await daemon.request("POST", "/v1/video/generations",
                                           json={"model": "video-unkeyed", "prompt": "fox"})
    assert status == 502
    message = body["error"]["message"]
    assert message.startswith("no attempt was sent (all 2 skipped): 1 fal/fal-ai/veo3/fast skipped: ")
    assert "FAL_KEY" in message.split("; 2 ")[0]  # the first attempt's reason is named too
    assert "2 openai/sora-2 skipped: " in message and "OPENAI_API_KEY" in message.split("; 2 ")[1]
    assert "failed" not in message


async def test_a_mixed_chain_names_each_attempts_outcome(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(UNKEYED)
    _, body, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "video-mixed", "prompt": "fox"})
    message = body["error"]["message"]
    assert message.startswith("all 2 attempts failed: 1 mock/mock-busy failed: ProviderUnavailableError: vendor 503; "
                              "2 openai/sora-2 skipped: "), message


# ---- one error-code vocabulary ------------------------------------------------------------------------------
CODED = """
[routes."video-vendor-404"]
kind = "video"
[[routes."video-vendor-404".attempts]]
provider = "mock"
model = "mock-lost"
mock = { responses = [ { error = { type = "GenerationFailedError", message = "job vanished", code = "404" } } ] }

[routes."image-throttled"]
kind = "image"
[[routes."image-throttled".attempts]]
provider = "mock"
model = "mock-busy"
mock = { responses = [ { error = { type = "RateLimitError", message = "busy", code = "Too Many Requests!" } } ] }
"""
#: Every code the HTTP layer sets itself (the rest come from router.errors and router.http.errors tables).
HTTP_LAYER_CODES = {"invalid_json", "invalid_field", "missing_field", "invalid_value", "invalid_request",
                    "missing_api_key", "invalid_api_key", "admin_required", "job_not_found", "not_found",
                    "variant_unavailable", "video_not_ready", "content_not_ready", "idempotency_key_reused",
                    "client_rate_limited", "content_unavailable", "job_store_unavailable"}


def vocabulary() -> set[str]:
    from router.errors import PUBLIC_CODES, ROUTER_CODES
    from router.http.errors import HTTP_CODES

    return set(PUBLIC_CODES.values()) | ROUTER_CODES | set(HTTP_CODES.values()) | HTTP_LAYER_CODES


def test_the_vocabulary_is_documented_in_the_readme_and_the_http_reference() -> None:
    from pathlib import Path

    root = Path(__file__).parents[2]
    for doc in (root / "README.md", root / "docs" / "http-api.md"):
        text = doc.read_text()
        missing = sorted(code for code in vocabulary() if f"`{code}`" not in text)
        assert not missing, (doc.name, missing)


async def test_every_error_code_is_a_slug_from_the_vocabulary(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(UNKEYED + CODED, max_body_bytes=1024)
    seen: dict[str, str] = {}

    async def code_of(label: str, method: str, path: str, **kw: object) -> None:
        _, body, _ = await daemon.request(method, path, **kw)
        seen[label] = body["error"]["code"]

    await code_of("unknown path", "GET", "/v1/nope")
    await code_of("wrong method", "DELETE", "/v1/models")
    await code_of("too large", "POST", "/v1/video/generations", data=b"{" + b" " * 2048 + b"}")
    await code_of("bad json", "POST", "/v1/video/generations", data=b"{nope")
    await code_of("bad size", "POST", "/v1/videos", json={"model": "video-vendor-404", "prompt": "x", "size": "big"})
    await code_of("vendor said 404", "POST", "/v1/video/generations", json={"model": "video-vendor-404", "prompt": "x"})
    await code_of("vendor's own words", "POST", "/v1/image/generations", json={"model": "image-throttled", "prompt": "x"})
    await code_of("all skipped", "POST", "/v1/video/generations", json={"model": "video-unkeyed", "prompt": "x"})
    assert seen == {
        "unknown path": "endpoint_not_found", "wrong method": "method_not_allowed", "too large": "body_too_large",
        "bad json": "invalid_json", "bad size": "invalid_value", "vendor said 404": "generation_failed",
        "vendor's own words": "rate_limit_exceeded", "all skipped": "missing_credentials",
    }
    # A failed job says the same in both job views.
    _, job, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-vendor-404", "prompt": "x"})
    for _ in range(500):
        _, body, _ = await daemon.request("GET", f"/v1/jobs/{job['id']}")
        if body["status"] == "failed":
            break
        await asyncio.sleep(0.01)
    _, video, _ = await daemon.request("GET", f"/v1/videos/{job['id']}")
    assert body["error"]["code"] == video["error"]["code"] == "generation_failed"
    assert set(seen.values()) <= vocabulary()
