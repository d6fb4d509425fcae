"""Load shedding and limits (429 + Retry-After, no accepted job lost), JSON sanity, and a canary key that never
shows up in responses, metrics or logs across a run with failures."""

from __future__ import annotations

import asyncio
import json
import pytest

import router
from providers.mock import MockProvider
from router.limits import ClientRateLimiter, ProviderLimit, ProviderLimits, TokenBucket
from tests.daemon.conftest import StartDaemon
from tests.emulators.fal import FalEmulator

SLOW = """
[routes."slow"]
kind = "video"
max_concurrency = 2
[[routes."slow".attempts]]
provider = "mock"
model = "mock-slow"
mock = { polling = { status_sequence = ["queued", "processing", "completed"], delay_between_updates = 0.05 } }
"""


async def test_route_concurrency_sheds_with_429(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(SLOW)
    results = await asyncio.gather(*[
        daemon.request("POST", "/v1/video/generations", json={"model": "slow", "prompt": str(i)}) for i in range(6)])
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1 and set(statuses) <= {200, 429}
    shed = next(r for r in results if r[0] == 429)
    assert shed[2]["Retry-After"] == "1" and shed[1]["error"]["code"] == "route_busy"


async def test_jobs_wait_for_provider_capacity_and_none_is_lost(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(SLOW.replace("max_concurrency = 2\n", "") + '\n[providers."mock"]\nmax_concurrency = 1\n')
    created = await asyncio.gather(*[
        daemon.request("POST", "/v1/jobs", json={"model": "slow", "prompt": str(i)}) for i in range(5)])
    assert [status for status, _, _ in created] == [202] * 5
    for _ in range(400):
        jobs = [(await daemon.request("GET", f"/v1/jobs/{body['id']}"))[1] for _, body, _ in created]
        if all(job["status"] == "completed" for job in jobs):
            break
        await asyncio.sleep(0.02)
    assert [job["status"] for job in jobs] == ["completed"] * 5


async def test_busy_provider_is_skipped_for_another(start_daemon: StartDaemon) -> None:
    router.register_provider("mock-spare", MockProvider())
    try:
        routes = SLOW.replace("max_concurrency = 2\n", "") + """
[[routes."slow".attempts]]
provider = "mock-spare"
model = "mock-video"

[providers."mock"]
max_concurrency = 1
"""
        daemon = await start_daemon(routes)
        first, second = await asyncio.gather(*[
            daemon.request("POST", "/v1/video/generations", json={"model": "slow", "prompt": str(i)}) for i in range(2)])
        assert first[0] == second[0] == 200
        winners = sorted(r[1]["execution_metadata"]["attempts"][-1]["provider"] for r in (first, second))
        assert winners == ["mock", "mock-spare"]
        skipped = next(r[1] for r in (first, second) if len(r[1]["execution_metadata"]["attempts"]) == 2)
        assert skipped["execution_metadata"]["attempts"][0]["error_type"] == "ProviderBusyError"
    finally:
        router.unregister_provider("mock-spare")


async def test_client_rate_limit(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(client_requests_per_minute=3, api_keys="tok-aaaaaaaa,tok-bbbbbbbb")
    a = {"Authorization": "Bearer tok-aaaaaaaa"}
    statuses = [(await daemon.request("POST", "/v1/image/generations", json={"model": "image-fast", "prompt": "x"},
                                      headers=a))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    b = {"Authorization": "Bearer tok-bbbbbbbb"}
    assert (await daemon.request("POST", "/v1/image/generations", json={"model": "image-fast", "prompt": "x"},
                                 headers=b))[0] == 200  # buckets are per client
    assert (await daemon.request("GET", "/v1/models", headers=a))[0] == 200  # reads are not limited


async def test_deeply_nested_json_is_refused(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    deep = "[" * 50 + "]" * 50
    status, body, _ = await daemon.request("POST", "/v1/video/generations",
                                           data=f'{{"model": "video-fast", "prompt": "x", "extra": {deep}}}')
    assert status == 400 and "deeper" in body["error"]["message"]
    very_deep = "[" * 100_000 + "]" * 100_000
    assert (await daemon.request("POST", "/v1/video/generations", data=very_deep))[0] == 400


def test_token_bucket_on_a_fake_clock() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one a second, bursts of 60
    assert all(bucket.take() == 0.0 for _ in range(60))
    assert bucket.take() == pytest.approx(1.0)
    now[0] += 0.5
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0
    limiter = ClientRateLimiter(1, clock=lambda: now[0])
    assert limiter.check("a") == 0.0 and limiter.check("a") == pytest.approx(60.0) and limiter.check("b") == 0.0


async def test_provider_limits_skip_or_wait() -> None:
    limits = ProviderLimits({"x": ProviderLimit(max_concurrency=1)})
    async with limits.slot("x", wait=False):
        with pytest.raises(router.TarashError, match="max_concurrency"):
            async with limits.slot("x", wait=False):
                pass
        waiter = asyncio.create_task(_enter(limits))
        await asyncio.sleep(0.01)
        assert not waiter.done()
    await asyncio.wait_for(waiter, 1)


async def _enter(limits: ProviderLimits) -> None:
    async with limits.slot("x", wait=True):
        pass


CANARY = "sk-canary-daemon-7f3a9c2e51d84b06"


async def test_canary_key_never_leaks(start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from router.log_setup import configure

    monkeypatch.setenv("CANARY_FAL_KEY", CANARY)
    configure("debug", "json")
    async with FalEmulator(api_key=CANARY) as fal:
        routes = f"""
[routes."leaky"]
kind = "video"
[[routes."leaky".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "CANARY_FAL_KEY"
poll_interval = 0.01
[[routes."leaky".attempts]]
provider = "fal"
model = "fal-ai/kling-video"
base_url = "{fal.url}"
api_key_env = "WRONG_KEY_ENV"
"""
        monkeypatch.setenv("WRONG_KEY_ENV", "sk-wrong-key-1234567890")
        daemon = await start_daemon(routes)
        texts: list[str] = []
        for fault in ("rate_limit", "auth", "content_policy", "malformed_json", "server_error"):
            fal.inject(fault)
            fal.inject("auth")  # the second attempt's key is wrong anyway
            texts.append(json.dumps((await daemon.request("POST", "/v1/video/generations",
                                                          json={"model": "leaky", "prompt": "x"}))[1]))
        _, job, _ = await daemon.request("POST", "/v1/jobs", json={"model": "leaky", "prompt": "x [[fault:job_failed]]"})
        for _ in range(200):
            _, state, _ = await daemon.request("GET", f"/v1/jobs/{job['id']}")
            if state["status"] in ("failed", "completed"):
                break
            await asyncio.sleep(0.01)
        texts.append(json.dumps(state))
        texts.append((await daemon.request("GET", "/metrics"))[1])
        texts.append(json.dumps((await daemon.request("GET", "/v1/routes"))[1]))
        sent = [r.headers.get("Authorization", "") for r in fal.requests]
    assert any(CANARY in header for header in sent)  # the key did reach the vendor...
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    for text in texts:  # ...and nowhere else
        assert CANARY not in text
        assert "sk-wrong-key-1234567890" not in text


async def test_resized_slots_keep_the_held_ones() -> None:
    limit = ProviderLimit(max_concurrency=1)
    limits = ProviderLimits({"x": limit})
    async with limits.slot("x", wait=False):
        limit.update(1, None)  # a reload that changed something else
        with pytest.raises(router.TarashError, match="max_concurrency"):
            async with limits.slot("x", wait=False):
                pass
        limit.update(2, None)  # raised: one more may start now, not two
        async with limits.slot("x", wait=False):
            assert limit.in_use == 2
            with pytest.raises(router.TarashError):
                async with limits.slot("x", wait=False):
                    pass
            limit.update(1, None)  # lowered below what is held: both keep running, nobody new starts
            waiter = asyncio.create_task(_enter(limits))
            await asyncio.sleep(0.01)
            assert not waiter.done() and limit.waiting == 1
        await asyncio.sleep(0.01)
        assert not waiter.done()  # one still held: at the new limit of 1
    await asyncio.wait_for(waiter, 1)
    assert limit.in_use == 0


async def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    limits = ProviderLimits({"x": ProviderLimit(max_concurrency=1)})
    async with limits.slot("x", wait=True):
        first = asyncio.create_task(_enter(limits))
        second = asyncio.create_task(_enter(limits))
        await asyncio.sleep(0.01)
    first.cancel()  # the slot was just handed to it: cancelled before it ran, it must pass the slot on
    await asyncio.wait_for(second, 1)
    assert limits.limits["x"].in_use == 0


async def test_a_reload_does_not_open_a_second_set_of_slots(start_daemon: StartDaemon) -> None:
    routes = SLOW.replace("max_concurrency = 2\n", "") + '\n[providers."mock"]\nmax_concurrency = 1\n'
    daemon = await start_daemon(routes.replace("0.05", "0.3"))
    first = asyncio.create_task(daemon.request("POST", "/v1/video/generations", json={"model": "slow", "prompt": "a"}))
    for _ in range(200):
        status, body, _ = await daemon.request("GET", "/v1/status")
        if any(p.get("in_use") for p in body.get("providers", [])):
            break
        await asyncio.sleep(0.01)
    daemon.routes_path.write_text(routes.replace("0.05", "0.3") + "\n# an edit elsewhere in the file\n")
    assert daemon.state.routes.reload()  # a new config hash
    status, body, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "slow", "prompt": "b"})
    assert status == 429 and body["error"]["code"] in {"provider_busy", "all_attempts_failed", "route_busy"}
    assert (await first)[0] == 200
