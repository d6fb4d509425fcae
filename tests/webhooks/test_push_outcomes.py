"""A verified push whose signed payload is the whole outcome (fal, Replicate) ends the job from that payload: no
status call after it, no result fetch, and the same result, cost and error as the poll path gives. A fal push
without its result is completed by a fetch; a forged or replayed one changes nothing; Luma's stays a hint.

Each test lets the vendor job finish only when the test says so (``webhook_delay`` an hour away), waits for the
attempt's first status poll, then delivers the vendor's own webhook: the emulator's call counters before and
after the delivery show what the push cost."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.emulators._base import Emulator, WebhookFault
from tests.emulators.fal import FalEmulator
from tests.emulators.luma import LumaEmulator
from tests.emulators.replicate import ReplicateEmulator
from tests.webhooks.conftest import Router, StartRouter
from tests.webhooks.test_inbound import fal_routes, keys, luma_routes, replicate_routes  # noqa: F401 - keys: the autouse fixture


def routes_for(emulator: Emulator, extra: str = "") -> str:
    if isinstance(emulator, FalEmulator):
        return fal_routes(emulator, extra)
    assert isinstance(emulator, ReplicateEmulator)
    return replicate_routes(emulator, extra)


def webhook_url(emulator: Emulator) -> str:
    submit = next(r for r in emulator.requests if r.step == "submit")
    return str(submit.query["fal_webhook"] if isinstance(emulator, FalEmulator) else
               submit.body.get("webhook") or submit.body["callback_url"])


async def pushed_job(router: Router, emulator: Emulator, body: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    """Create a job, let its first status poll see it running, finish the vendor job and deliver its webhook;
    the finished job and the vendor calls about it made from the delivery on, per step."""
    emulator.webhook_delay = 3600  # the vendor job ends when the test says
    job_id = await router.create(body)
    async with asyncio.timeout(5):
        while emulator.calls["status"] < 1:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)  # the poll's answer is in: the attempt waits for the push (60 s)
    (vendor_job,) = emulator.jobs.values()
    vendor_job.finished = True
    seen = len(emulator.requests)
    delivery = await emulator.deliver_webhook(vendor_job, webhook_url(emulator))
    assert delivery is not None and delivery.status == 200
    job = await router.finished(job_id)
    # Calls about the job: Replicate's secret, fetched once to verify the first delivery, is not one.
    return job, Counter(r.step for r in emulator.requests[seen:] if not r.path.endswith("/webhooks/default/secret"))


async def polled_job(router: Router, body: dict[str, Any]) -> dict[str, Any]:
    """The same request on a route with ``webhooks = false``: the poll path's outcome."""
    return await router.finished(await router.create(body))


def outcome(job: dict[str, Any]) -> dict[str, Any]:
    """What a job's result and cost are, less what differs between any two vendor jobs (ids, media URLs, the
    vendor's timing metrics, fal's billing header: ``provider_metadata``)."""
    result = dict(job.get("result") or {})
    for key in ("request_id", "video", "provider_metadata", "execution_metadata", "raw_response"):
        result.pop(key, None)
    attempt = job["execution_metadata"]["attempts"][-1]
    return {"status": job["status"], "result": result, "error": job.get("error"),
            "cost": {k: attempt[k] for k in ("status", "error_type", "estimated_cost_usd", "cost_usd")},
            "total_cost_usd": job["execution_metadata"]["total_cost_usd"]}


BODY = {"model": "video", "prompt": "a fox", "duration_seconds": 8}


@pytest.mark.parametrize("emulator_type", [FalEmulator, ReplicateEmulator])
async def test_a_signed_push_finishes_the_job_with_no_vendor_call(
        start_router: StartRouter, emulator_type: type[FalEmulator] | type[ReplicateEmulator]) -> None:
    async with emulator_type(polls_to_complete=10_000) as pushing, emulator_type(polls_to_complete=2) as polling:
        job, calls = await pushed_job(await start_router(routes_for(pushing)), pushing, BODY)
        assert job["status"] == "completed" and job["result"]["video"].startswith(pushing.url)
        assert calls["status"] == 0 and calls["result"] == 0 and sum(calls.values()) == 0
        assert pushing.calls["submit"] == 1
        polled = await polled_job(await start_router(routes_for(polling, "webhooks = false")), BODY)
        assert polling.calls["status"] >= 2 and outcome(job) == outcome(polled)
        assert outcome(job)["cost"]["cost_usd"] is not None  # priced: the same figure both ways
        pushed_raw, polled_raw = job["result"]["raw_response"], polled["result"]["raw_response"]
        if emulator_type is FalEmulator:  # the result body itself, from the push rather than the result GET
            assert pushed_raw["video"].keys() == polled_raw["video"].keys()
            assert job["result"]["provider_metadata"]["billable_units"] is None  # a push has no billing header
            assert polled["result"]["provider_metadata"]["billable_units"] == 8
        else:  # the prediction object, from the push rather than a status GET
            assert pushed_raw["status"] == polled_raw["status"] == "succeeded"


async def test_a_push_during_the_completing_poll_spares_the_result_fetch(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_delay = 3600
        router = await start_router(fal_routes(fal), webhook_poll_interval=0.05)
        job_id = await router.create(BODY)
        async with asyncio.timeout(5):
            while fal.calls["status"] < 1:
                await asyncio.sleep(0.01)
        fal.status_gate = asyncio.Event()  # the safety-net poll goes out and waits for its answer
        async with asyncio.timeout(5):
            while fal.calls["status"] < 2:
                await asyncio.sleep(0.01)
        (vendor_job,) = fal.jobs.values()
        vendor_job.finished = True  # the vendor finishes as that poll is in flight, and pushes
        delivery = await fal.deliver_webhook(vendor_job, webhook_url(fal))
        assert delivery is not None and delivery.status == 200
        fal.status_gate.set()  # the poll answers COMPLETED: the push already holds the result
        job = await router.finished(job_id)
        assert job["status"] == "completed" and job["result"]["video"].startswith(fal.url)
        assert fal.calls["status"] == 2 and fal.calls["result"] == 0


async def test_a_fal_push_without_its_result_is_completed_by_a_fetch(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:
        fal.webhook_fault = WebhookFault.NO_PAYLOAD  # payload null, payload_error set: too large to push
        job, calls = await pushed_job(await start_router(fal_routes(fal)), fal, BODY)
        assert job["status"] == "completed" and job["result"]["video"].startswith(fal.url)
        assert calls["status"] == 1 and calls["result"] == 1  # a hint: the poll path, right away
        assert job["result"]["provider_metadata"]["billable_units"] == 8  # the fetched result's header


@pytest.mark.parametrize(("emulator_type", "fault"), [(FalEmulator, "job_failed"), (FalEmulator, "content_policy"),
                                                      (ReplicateEmulator, "job_failed"),
                                                      (ReplicateEmulator, "content_policy")])
async def test_a_failed_job_push_fails_it_as_the_poll_path_does(
        start_router: StartRouter, emulator_type: type[FalEmulator] | type[ReplicateEmulator], fault: str) -> None:
    body = {**BODY, "prompt": f"a fox [[fault:{fault}]]"}
    async with emulator_type(polls_to_complete=10_000) as pushing, emulator_type(polls_to_complete=2) as polling:
        job, calls = await pushed_job(await start_router(routes_for(pushing)), pushing, body)
        assert job["status"] == "failed" and sum(calls.values()) == 0
        polled = await polled_job(await start_router(routes_for(polling, "webhooks = false")), body)
        assert polled["status"] == "failed" and outcome(job) == outcome(polled)
        assert outcome(job)["cost"]["error_type"] == ("ContentPolicyError" if fault == "content_policy"
                                                      else "GenerationFailedError")


async def test_a_forged_or_replayed_replicate_push_changes_nothing(
        start_router: StartRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ReplicateEmulator(polls_to_complete=10_000) as replicate:
        monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", replicate.webhook_secret)  # no secret fetch among the calls
        replicate.webhook_delay = 3600
        router = await start_router(replicate_routes(replicate))
        job_id = await router.create(BODY)
        async with asyncio.timeout(5):
            while replicate.calls["status"] < 1:
                await asyncio.sleep(0.01)
        (vendor_job,) = replicate.jobs.values()
        vendor_job.finished = True  # a "succeeded" prediction, with its output: what a forger would claim
        url = webhook_url(replicate)
        forged = await replicate.deliver_webhook(vendor_job, url, forged=True)
        assert forged is not None and forged.status == 401
        await asyncio.sleep(0.1)
        _, job = await router.call("GET", f"/v1/jobs/{job_id}")
        assert job["status"] == "running" and replicate.calls["status"] == 1  # nothing finished, nothing woke
        real = await replicate.deliver_webhook(vendor_job, url)
        assert real is not None and real.status == 200
        replayed = await replicate.deliver_webhook(vendor_job, url, again=True)
        assert replayed is not None and replayed.status == 409
        job = await router.finished(job_id)
        assert job["status"] == "completed" and replicate.calls["status"] == 1


async def test_a_luma_push_is_still_a_hint_that_triggers_a_status_check(start_router: StartRouter) -> None:
    async with LumaEmulator(polls_to_complete=10_000) as luma:
        job, calls = await pushed_job(await start_router(luma_routes(luma)), luma, BODY)
        assert job["status"] == "completed" and calls["status"] == 1  # unsigned: the status check decides
