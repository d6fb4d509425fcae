"""The fal, Replicate and Luma emulators send real, verifiable webhooks, with every fault mode."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from router.webhooks import signing
from router.webhooks.fal import FalKeys
from router.webhooks.signing import WebhookVerificationError
from tests.emulators._base import WebhookFault
from tests.emulators.fal import FalEmulator
from tests.emulators.luma import LumaEmulator
from tests.emulators.replicate import ReplicateEmulator
from tests.webhooks.conftest import Receiver

FAL_AUTH = {"Authorization": "Key test-key"}
BEARER = {"Authorization": "Bearer test-key"}


async def fetch_json(url: str, headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()  # type: ignore[no-any-return]


def fal_keys(fal: FalEmulator) -> FalKeys:
    return FalKeys(fal.jwks_url, fetch_json, time.monotonic)


async def test_fal_webhook_is_signed_with_the_served_jwks(receiver: Receiver) -> None:
    async with FalEmulator(polls_to_complete=50) as fal:
        submitted = await post(f"{fal.url}/fal-ai/veo3?fal_webhook={receiver.url}/hook", {"prompt": "fox"}, FAL_AUTH)
        await receiver.wait()
        delivery = receiver.received[0]
        assert delivery.path == "/hook"
        body = json.loads(delivery.body)
        assert body["request_id"] == submitted["request_id"] == submitted["gateway_request_id"]
        assert body["status"] == "OK" and body["payload"]["video"]["url"].startswith(fal.url)
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        assert await fal_keys(fal).verify(headers, delivery.body, now=time.time()) == submitted["request_id"]
        # The job finished by itself: its first poll says COMPLETED (no 50 polls needed).
        status = await fetch_json(submitted["status_url"], FAL_AUTH)
        assert status["status"] == "COMPLETED" and fal.calls["status"] == 1
        with pytest.raises(WebhookVerificationError):  # a changed body no longer verifies
            await fal_keys(fal).verify(headers, delivery.body + b" ", now=time.time())
        with pytest.raises(WebhookVerificationError, match="timestamp"):  # a capture replayed 10 minutes on
            await fal_keys(fal).verify(headers, delivery.body, now=time.time() + 600)


async def test_fal_failed_request_webhook_says_error(receiver: Receiver) -> None:
    async with FalEmulator() as fal:
        await post(f"{fal.url}/fal-ai/veo3?fal_webhook={receiver.url}", {"prompt": "[[fault:job_failed]]"}, FAL_AUTH)
        await receiver.wait()
        body = json.loads(receiver.received[0].body)
        assert body["status"] == "ERROR" and "500" in body["error"] and body["payload"]["detail"]


async def test_replicate_webhook_verifies_with_the_served_secret(receiver: Receiver) -> None:
    async with ReplicateEmulator(polls_to_complete=50) as replicate:
        secret = (await fetch_json(f"{replicate.url}/v1/webhooks/default/secret", BEARER))["key"]
        assert secret.startswith("whsec_")
        created = await post(f"{replicate.url}/v1/models/kwaivgi/kling-v2.1/predictions",
                             {"input": {"prompt": "fox"}, "webhook": f"{receiver.url}/r",
                              "webhook_events_filter": ["completed"]}, BEARER)
        await receiver.wait()
        delivery = receiver.received[0]
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        body = Webhook(secret).verify(delivery.body, headers)  # the reference library agrees
        assert body["id"] == created["id"] and body["status"] == "succeeded" and body["output"]
        assert signing.verify(signing.secret_bytes(secret), headers, delivery.body, now=time.time()) == headers["webhook-id"]
        with pytest.raises(WebhookVerificationError):
            signing.verify(signing.secret_bytes("whsec_" + "A" * 32), headers, delivery.body, now=time.time())


async def test_replicate_without_completed_in_the_filter_sends_no_completion(receiver: Receiver) -> None:
    async with ReplicateEmulator() as replicate:
        replicate.webhook_fault = WebhookFault.EARLY
        await post(f"{replicate.url}/v1/models/a/kling/predictions",
                   {"input": {"prompt": "fox"}, "webhook": receiver.url, "webhook_events_filter": ["start"]}, BEARER)
        await receiver.wait()
        await asyncio.sleep(0.1)
        assert [json.loads(r.body)["status"] for r in receiver.received] == ["starting"]


async def test_luma_callback_is_the_generation_object_unsigned(receiver: Receiver) -> None:
    async with LumaEmulator(polls_to_complete=50) as luma:
        created = await post(f"{luma.url}/dream-machine/v1/generations/video",
                             {"model": "ray-2", "prompt": "fox", "callback_url": f"{receiver.url}/l"}, BEARER)
        await receiver.wait()
        body = json.loads(receiver.received[0].body)
        assert body["id"] == created["id"] and body["state"] == "completed" and body["assets"]["video"]
        assert not any(k.lower().startswith("webhook-") for k in receiver.received[0].headers)


@pytest.mark.parametrize("fault, statuses", [
    (WebhookFault.NEVER, []),
    (WebhookFault.TWICE, ["OK", "OK"]),
    (WebhookFault.EARLY, ["IN_PROGRESS", "OK"]),
    (WebhookFault.LATE, ["OK"]),
    (WebhookFault.BAD_SIGNATURE, ["OK"]),
])
async def test_fal_webhook_fault_modes(receiver: Receiver, fault: WebhookFault, statuses: list[str]) -> None:
    async with FalEmulator(polls_to_complete=50) as fal:
        fal.webhook_late_delay = 0.2
        started = time.monotonic()
        await post(f"{fal.url}/fal-ai/veo3?fal_webhook={receiver.url}", {"prompt": f"fox [[webhook:{fault}]]"},
                   FAL_AUTH)
        if statuses:
            await receiver.wait(len(statuses))
        await asyncio.sleep(0.1)
        assert [json.loads(r.body)["status"] for r in receiver.received] == statuses
        assert all(job.finished for job in fal.jobs.values())  # the job ends whatever happens to its webhook
        keys = fal_keys(fal)
        for delivery in receiver.received:
            headers = {k.lower(): v for k, v in delivery.headers.items()}
            if fault is WebhookFault.BAD_SIGNATURE:
                with pytest.raises(WebhookVerificationError):
                    await keys.verify(headers, delivery.body, now=time.time())
            else:
                await keys.verify(headers, delivery.body, now=time.time())
        if fault is WebhookFault.TWICE:  # the very same delivery: a receiver sees a replay
            assert receiver.received[0].body == receiver.received[1].body
            assert receiver.received[0].headers["X-Fal-Webhook-Signature"] == \
                receiver.received[1].headers["X-Fal-Webhook-Signature"]
        if fault is WebhookFault.LATE:
            assert time.monotonic() - started >= 0.2


async def test_finish_after_ends_every_job_on_the_clock_with_or_without_a_webhook(receiver: Receiver) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.finish_after = 0.05
        plain = await post(f"{fal.url}/fal-ai/veo3", {"prompt": "a"}, FAL_AUTH)
        pushed = await post(f"{fal.url}/fal-ai/veo3?fal_webhook={receiver.url}", {"prompt": "b"}, FAL_AUTH)
        await receiver.wait()
        await asyncio.sleep(0.02)
        finished = await fetch_json(f"{fal.url}/_emulator/finished")
        assert set(finished) == {plain["request_id"], pushed["request_id"]} and fal.calls["status"] == 0
        assert len(receiver.received) == 1 and json.loads(receiver.received[0].body)["request_id"] == pushed["request_id"]
