"""Vendor webhooks into the daemon: a push ends the wait (<= 2 status polls), a dropped push is caught by the
stretched poll, forged/replayed/unknown deliveries change nothing, state survives a restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.emulators._base import Emulator, Fault, WebhookFault
from tests.emulators.fal import FalEmulator
from tests.emulators.google import GoogleEmulator
from tests.emulators.luma import LumaEmulator
from tests.emulators.replicate import ReplicateEmulator
from tests.webhooks.conftest import StartRouter, stop


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMULATED_FAL_KEY", "EMULATED_REPLICATE_KEY", "EMULATED_LUMA_KEY", "EMULATED_GOOGLE_KEY"):
        monkeypatch.setenv(name, "test-key")
    monkeypatch.delenv("REPLICATE_WEBHOOK_SECRET", raising=False)


def fal_routes(fal: FalEmulator, extra: str = "") -> str:
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "EMULATED_FAL_KEY"
poll_interval = 0.01
max_poll_attempts = 100000
timeout = 30
provider_config = {{ webhook_jwks_url = "{fal.jwks_url}" }}
{extra}
"""


def replicate_routes(replicate: ReplicateEmulator, extra: str = "") -> str:
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "replicate"
model = "kwaivgi/kling-v2.1"
base_url = "{replicate.url}/v1"
api_key_env = "EMULATED_REPLICATE_KEY"
poll_interval = 0.01
max_poll_attempts = 100000
price = {{ per_video = 0.28 }}
{extra}
"""


async def finish_and_push(vendor: Emulator, polls: int = 1) -> None:
    """Once the router polled ``polls`` times (the first poll saw the job running), end the vendor job and POST
    its webhook, which the router answers 200. On the emulator's own timer (20 ms after the submit) a loaded
    machine's first poll can find the job done already, and the push then changes nothing (``ignored``)."""
    async with asyncio.timeout(5):
        while vendor.calls["status"] < polls:
            await asyncio.sleep(0.01)
    (vendor_job,) = vendor.jobs.values()
    vendor_job.finished = True
    delivery = await vendor.deliver_webhook(vendor_job, vendor_job.extra["webhook_url"])
    assert delivery is not None and delivery.status == 200


def luma_routes(luma: LumaEmulator) -> str:
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "luma"
model = "ray-2"
base_url = "{luma.url}/dream-machine/v1"
api_key_env = "EMULATED_LUMA_KEY"
poll_interval = 0.01
max_poll_attempts = 100000
"""


async def test_fal_job_completes_on_its_webhook_with_at_most_two_polls(
        start_router: StartRouter, capsys: pytest.CaptureFixture[str]) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_delay = 3600  # finish_and_push ends it
        router = await start_router(fal_routes(fal))  # webhook_poll_interval: the default 60 s
        started = time.monotonic()
        job_id = await router.create({"model": "video", "prompt": "a fox"})
        await finish_and_push(fal)
        job = await router.finished(job_id)
        assert job["status"] == "completed" and job["result"]["video"].startswith(fal.url)
        assert fal.calls["status"] <= 2 and fal.calls["submit"] == 1
        assert time.monotonic() - started < 5  # the push ended the 60 s wait
        submit = next(r for r in fal.requests if r.step == "submit")
        assert submit.query["fal_webhook"].startswith(f"{router.url}/v1/webhooks/fal/{job['id']}.1.")
        assert [d.status for d in fal.webhook_deliveries] == [200]
        assert await router.metric("tarash_router_webhooks_received_total", provider="fal", result="accepted") == 1
        stored = await router.daemon.jobs.store.get(job["id"])
        secret = submit.query["fal_webhook"].rsplit(".", 1)[1]
        assert secret not in repr(stored) and set(stored.webhook_tokens) == {"1"}  # only its hash is kept
        logged = capsys.readouterr()
        assert "/v1/webhooks/fal/<token>" in logged.out + logged.err and secret not in logged.out + logged.err


async def test_a_dropped_webhook_is_caught_by_the_stretched_poll(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_fault = WebhookFault.NEVER
        router = await start_router(fal_routes(fal), webhook_poll_interval=0.2)
        started = time.monotonic()
        job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
        assert job["status"] == "completed" and fal.webhook_deliveries == []
        assert time.monotonic() - started >= 0.2  # the attempt's 10 ms poll_interval was stretched
        assert fal.calls["status"] == 2  # the first poll, then the safety-net poll that found it done


@pytest.mark.parametrize("fault", [WebhookFault.TWICE, WebhookFault.EARLY, WebhookFault.LATE])
async def test_duplicate_early_and_late_webhooks_are_harmless(start_router: StartRouter, fault: WebhookFault) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_fault = fault
        fal.webhook_late_delay = 0.05
        router = await start_router(fal_routes(fal), webhook_poll_interval=0.5)
        job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
        assert job["status"] == "completed" and fal.calls["submit"] == 1 and fal.calls["status"] <= 3
        await asyncio.sleep(0.1)
        statuses = [d.status for d in fal.webhook_deliveries]
        if fault is WebhookFault.TWICE:
            assert statuses[0] == 200 and statuses[1] in (200, 409)  # 409: the replay of an accepted delivery
        else:
            assert all(s == 200 for s in statuses)


async def test_a_webhook_before_the_submit_answer_is_remembered_until_the_vendor_id_is_known(
        start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        # A fast vendor: the push arrives while the router still waits for the submit's answer (no vendor job id
        # yet), and it is the only one. A status poll would fail (a 500) and the next one is 60 s away, so only
        # the remembered push can end the job: from its signed payload, before any status poll.
        fal.webhook_fault = WebhookFault.BEFORE_ANSWER
        fal.inject(Fault.SERVER_ERROR, step="status")
        router = await start_router(fal_routes(fal))  # webhook_poll_interval: the default 60 s
        job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
        assert job["status"] == "completed" and fal.calls["submit"] == 1
        assert [d.status for d in fal.webhook_deliveries] == [200] and fal.calls["status"] == 0
        assert await router.metric("tarash_router_webhooks_received_total", provider="fal", result="accepted") == 1


async def test_forged_replayed_and_unknown_webhooks_change_nothing(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        # The vendor job finishes, and its forged webhook goes out, only after the first poll saw it running
        # (on its own timer the emulator would finish it 20 ms after the submit: before that poll, under load).
        fal.webhook_delay = 3600
        router = await start_router(fal_routes(fal))
        job_id = await router.create({"model": "video", "prompt": "a fox"})
        async with asyncio.timeout(5):
            while fal.calls["status"] < 1:
                await asyncio.sleep(0.01)
        url = next(r for r in fal.requests if r.step == "submit").query["fal_webhook"]
        path = url[len(router.url):]
        vendor_job = fal.jobs[next(iter(fal.jobs))]
        vendor_job.finished = True
        forged = await fal.deliver_webhook(vendor_job, url, forged=True)  # what WebhookFault.BAD_SIGNATURE sends
        assert forged is not None and forged.status == 401
        await asyncio.sleep(0.1)
        _, job = await router.call("GET", f"/v1/jobs/{job_id}")
        assert job["status"] == "running" and fal.calls["status"] == 1  # the forgery woke nothing
        body, headers = fal.webhook_message(vendor_job)

        async def post(to: str, data: bytes, with_headers: dict[str, str]) -> tuple[int, Any]:
            return await router.call("POST", to, data=data, headers=with_headers)

        assert (await post(path.rsplit(".", 1)[0] + ".wrong-secret", body, headers))[0] == 404
        assert (await post(path.replace("/fal/", "/replicate/"), body, headers))[0] == 404
        assert (await post("/v1/webhooks/fal/job_nope.1.x", body, headers))[0] == 404
        stale = {**headers, "X-Fal-Webhook-Timestamp": str(int(time.time()) - 600)}
        status, answer = await post(path, body, stale)
        assert status == 401 and answer["error"]["code"] == "bad_signature"
        for malformed in ("²", "9" * 5000):  # str.isdigit() takes both, int() neither: was a 503, "retry later"
            status, answer = await post(path, body, {**headers, "X-Fal-Webhook-Timestamp": malformed})
            assert status == 401 and answer["error"]["code"] == "bad_signature", answer
        assert (await post(path, b"x" * (4 * 1024 * 1024 + 1), headers))[0] == 413
        assert fal.calls["status"] == 1
        # The real one is accepted once; the same bytes again are a replay.
        assert (await post(path, body, headers))[0] == 200
        status, answer = await post(path, body, headers)
        assert status == 409 and answer["error"]["code"] == "replayed"
        job = await router.finished(job_id)
        assert job["status"] == "completed"
        for provider, result, count in (("fal", "bad_signature", 4), ("fal", "unknown_token", 2),
                                        ("replicate", "unknown_token", 1), ("fal", "too_large", 1),
                                        ("fal", "replayed", 1)):
            assert await router.metric("tarash_router_webhooks_received_total", provider=provider,
                                       result=result) == count


async def test_webhooks_false_and_no_public_url_keep_plain_polling(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=3) as fal:
        router = await start_router(fal_routes(fal, "webhooks = false"))
        assert (await router.finished(await router.create({"model": "video", "prompt": "a"})))["status"] == "completed"
        plain = await start_router(fal_routes(fal), public_url=None)
        assert (await plain.finished(await plain.create({"model": "video", "prompt": "b"})))["status"] == "completed"
        assert all("fal_webhook" not in r.query for r in fal.requests if r.step == "submit")
        assert fal.webhook_deliveries == [] and fal.calls["status"] == 6
        assert (await plain.call("POST", "/v1/webhooks/fal/x.1.y", data=b"{}"))[0] == 404


@pytest.mark.parametrize("from_env", [False, True])
async def test_replicate_push_with_its_secret_fetched_or_from_the_env(
        start_router: StartRouter, from_env: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ReplicateEmulator(polls_to_complete=10_000) as replicate:
        if from_env:
            monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", replicate.webhook_secret)
        router = await start_router(replicate_routes(replicate))
        job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
        assert job["status"] == "completed" and replicate.calls["status"] <= 2 + (0 if from_env else 1)
        create = next(r for r in replicate.requests if r.step == "submit")
        assert create.body["webhook_events_filter"] == ["completed"]
        secret_fetches = [r for r in replicate.requests if r.path.endswith("/webhooks/default/secret")]
        assert len(secret_fetches) == (0 if from_env else 1)
        assert [d.status for d in replicate.webhook_deliveries] == [200]


async def test_luma_callback_is_a_hint_that_ends_the_wait(start_router: StartRouter) -> None:
    async with LumaEmulator(polls_to_complete=10_000) as luma:
        router = await start_router(luma_routes(luma))
        job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
        assert job["status"] == "completed" and luma.calls["status"] <= 2
        assert next(r for r in luma.requests if r.step == "submit").body["callback_url"].startswith(router.url)
        assert [d.status for d in luma.webhook_deliveries] == [200]


async def test_a_vendor_echoing_its_callback_url_never_gets_the_token_out(start_router: StartRouter,
                                                                         tmp_path: Path) -> None:
    # Luma echoes the create body, callback_url included, in every Generation object it answers and pushes.
    async with LumaEmulator(polls_to_complete=10_000) as luma:
        router = await start_router(luma_routes(luma))
        job_id = await router.create({"model": "video", "prompt": "a fox"})
        job = await router.finished(job_id)
        _, events = await router.call("GET", f"/v1/jobs/{job_id}/events")
        _, listed = await router.call("GET", "/v1/jobs")
    assert job["status"] == "completed"
    secret = next(r for r in luma.requests if r.step == "submit").body["callback_url"].rsplit(".", 1)[1]
    assert job["result"]["raw_response"]["request"]["callback_url"].endswith("[REDACTED]")
    for text in (json.dumps(job), events, json.dumps(listed)):
        assert secret not in text
    assert secret.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "data").glob("jobs.sqlite3*"))


async def test_a_resumed_attempt_keeps_its_echoed_token_out_too(start_router: StartRouter, tmp_path: Path) -> None:
    # After a restart only the token's hash is known; Luma still echoes the URL in every status answer.
    async with LumaEmulator(polls_to_complete=10_000) as luma:
        first = await start_router(luma_routes(luma))
        port = first.server.port
        job_id = await first.create({"model": "video", "prompt": "a fox"})
        async with asyncio.timeout(5):
            while luma.calls["status"] < 1:
                await asyncio.sleep(0.01)
        await stop(first)
        second = await start_router(luma_routes(luma), port=port)
        await finish_and_push(luma, polls=luma.calls["status"] + 1)
        job = await second.finished(job_id)
        _, events = await second.call("GET", f"/v1/jobs/{job_id}/events")
    assert job["status"] == "completed" and luma.calls["submit"] == 1
    secret = next(r for r in luma.requests if r.step == "submit").body["callback_url"].rsplit(".", 1)[1]
    assert job["result"]["raw_response"]["request"]["callback_url"].endswith("[REDACTED]")
    for text in (json.dumps(job), events):
        assert secret not in text
    assert secret.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "data").glob("jobs.sqlite3*"))


def google_routes(google: GoogleEmulator, provider_config: str = "", path: str = "/v1beta") -> str:
    return f"""
[routes."veo"]
kind = "video"
[[routes."veo".attempts]]
provider = "google"
model = "veo-3.1-generate-preview"
base_url = "{google.url}{path}"
api_key_env = "EMULATED_GOOGLE_KEY"
poll_interval = 0.01
max_poll_attempts = 100000
timeout = 30
{provider_config}
"""


async def test_gemini_veo_asks_for_a_per_request_webhook_and_takes_it_as_a_hint(start_router: StartRouter) -> None:
    async with GoogleEmulator(polls_to_complete=10_000) as google:
        google.webhook_delay = 3600  # finish_and_push ends it
        router = await start_router(google_routes(google))  # webhook_poll_interval: the default 60 s
        job_id = await router.create({"model": "veo", "prompt": "a fox"})
        await finish_and_push(google)
        job = await router.finished(job_id)
        assert job["status"] == "completed" and google.calls["submit"] == 1 and google.calls["status"] <= 2
        submit = next(r for r in google.requests if r.step == "submit")
        (uri,) = submit.body["webhookConfig"]["uris"]
        assert uri.startswith(f"{router.url}/v1/webhooks/google/{job['id']}.1.")
        assert [d.status for d in google.webhook_deliveries] == [200]
        assert json.loads(google.webhook_deliveries[0].body)["type"] == "video.generated"
        assert await router.metric("tarash_router_webhooks_received_total", provider="google", result="accepted") == 1


async def test_a_gemini_hint_with_any_body_only_triggers_a_poll(start_router: StartRouter) -> None:
    async with GoogleEmulator(polls_to_complete=10_000) as google:
        google.webhook_delay = 3600  # the test sends the hints
        router = await start_router(google_routes(google))
        job_id = await router.create({"model": "veo", "prompt": "a fox"})
        async with asyncio.timeout(5):
            while google.calls["status"] < 1:
                await asyncio.sleep(0.01)
        url = next(r for r in google.requests if r.step == "submit").body["webhookConfig"]["uris"][0]
        # Unsigned, claiming success: the token lets it in, the poll it triggers says the job still runs.
        forged = {"type": "video.generated", "data": {"video_uri": "https://evil.example"}}
        status, _ = await router.call("POST", url[len(router.url):], json=forged)
        assert status == 200
        async with asyncio.timeout(5):
            while google.calls["status"] < 2:
                await asyncio.sleep(0.01)
        _, job = await router.call("GET", f"/v1/jobs/{job_id}")
        assert job["status"] == "running"  # a hint finishes nothing
        assert (await router.call("POST", url[len(router.url):].rsplit(".", 1)[0] + ".guess", json={}))[0] == 404
        # Nesting deeper than json's stack was a RecursionError: a 500 to whoever holds the URL.
        status, answer = await router.call("POST", url[len(router.url):], data=b"[" * 100_000)
        assert status == 400 and answer["error"]["code"] == "bad_request", answer
        (vendor_job,) = google.jobs.values()
        vendor_job.finished = True
        delivery = await google.deliver_webhook(vendor_job, url)
        assert delivery is not None and delivery.status == 200
        job = await router.finished(job_id)
        assert job["status"] == "completed" and google.calls["status"] == 3


async def test_vertex_veo_keeps_polling(start_router: StartRouter) -> None:
    async with GoogleEmulator(polls_to_complete=2) as google:
        vertex = f'provider_config = {{ gcp_project = "p", metadata_host = "{google.url}" }}'
        router = await start_router(google_routes(google, vertex, path=""), webhook_poll_interval=3600)
        job = await router.finished(await router.create({"model": "veo", "prompt": "a fox"}))
        assert job["status"] == "completed"  # polled every 10 ms: the 3600-s push interval never applied
        assert "webhookConfig" not in next(r for r in google.requests if r.step == "submit").body
        assert google.webhook_deliveries == []


async def test_a_webhook_after_a_restart_wakes_the_resumed_job(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_delay = 3600  # the vendor takes its time
        first = await start_router(fal_routes(fal))
        port = first.server.port
        job_id = await first.create({"model": "video", "prompt": "a fox"})
        async with asyncio.timeout(5):
            while fal.calls["status"] < 1:
                await asyncio.sleep(0.01)
        await stop(first)
        second = await start_router(fal_routes(fal), port=port)
        await finish_and_push(fal, polls=2)  # resumed: polled once at start, then the 60 s wait
        job = await second.finished(job_id)  # from the push's payload: no third status call, no result fetch
        assert job["status"] == "completed" and fal.calls["submit"] == 1 and fal.calls["status"] == 2
        assert fal.calls["result"] == 0
