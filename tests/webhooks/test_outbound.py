"""Client webhooks: signed job outcomes that verify with the standardwebhooks library, durable retries with a
stable webhook-id, refusals at create time, and delivery after kill -9."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.daemon.conftest import MOCK_ROUTES
from tests.served import ServedDaemon
from tests.webhooks.conftest import Receiver, StartRouter

SECRET = "whsec_" + base64.b64encode(b"tarash-router test secret 32 by").decode()
ON = {"webhook_secret": SECRET, "allow_private_webhook_urls": True, "webhook_retry_base_seconds": 0.01,
      "public_url": None}


def verify(received: Any) -> dict[str, Any]:
    return Webhook(SECRET).verify(received.body, {k.lower(): v for k, v in received.headers.items()})  # type: ignore[no-any-return]


async def test_a_finished_job_is_posted_signed_and_verifies(start_router: StartRouter, receiver: Receiver) -> None:
    router = await start_router(MOCK_ROUTES, **ON)
    job_id = await router.create({"model": "video-fast", "prompt": "a fox", "webhook_url": f"{receiver.url}/cb?k=1"})
    await receiver.wait()
    event = verify(receiver.received[0])
    assert receiver.received[0].path == "/cb" and event["type"] == "job.completed"
    job = await router.webhook_ended(job_id)
    assert event["data"] == {k: v for k, v in job.items() if k != "webhook"}
    assert job["webhook"] == {"id": receiver.received[0].headers["webhook-id"], "status": "delivered",
                              "attempts": 1, "last_status": 200, "last_error": None, "next_attempt_at": None,
                              "delivered_at": job["webhook"]["delivered_at"]}
    assert "cb?k=1" not in json.dumps(job)  # the URL (it may carry the receiver's secret) is not shown
    assert await router.metric("tarash_router_webhook_deliveries_total", result="delivered") == 1


async def test_failed_and_cancelled_jobs_and_the_openai_door(start_router: StartRouter, receiver: Receiver) -> None:
    router = await start_router(MOCK_ROUTES, **ON)
    failed = await router.create({"model": "video-down", "prompt": "x", "webhook_url": receiver.url})
    slow = await router.create({"model": "video-slow", "prompt": "x", "webhook_url": receiver.url})
    video = await router.create({"model": "video-fast", "prompt": "x", "seconds": "4", "webhook_url": receiver.url},
                                path="/v1/videos")
    await router.finished(failed)
    await router.call("DELETE", f"/v1/jobs/{slow}")
    await receiver.wait(3)
    events = {verify(r)["data"]["id"]: verify(r)["type"] for r in receiver.received}
    assert events == {failed: "job.failed", slow: "job.cancelled", video: "job.completed"}


async def test_a_receiver_failing_three_times_gets_exactly_one_accepted_delivery(
        start_router: StartRouter, receiver: Receiver) -> None:
    receiver.script = [500, 503, 429]
    router = await start_router(MOCK_ROUTES, **ON)
    job_id = await router.create({"model": "video-fast", "prompt": "a fox", "webhook_url": receiver.url})
    await receiver.wait(4)
    await asyncio.sleep(0.1)  # nothing more comes
    assert [r.status for r in receiver.received] == [500, 503, 429, 200] and len(receiver.accepted) == 1
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one message, retried
    assert all(verify(r)["data"]["id"] == job_id for r in receiver.received)
    job = await router.webhook_ended(job_id)
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["attempts"] == 4
    assert await router.metric("tarash_router_webhook_deliveries_total", result="retry") == 3


@pytest.mark.parametrize("answer", [400, 410, 302])
async def test_a_refusal_or_a_redirect_is_not_retried(start_router: StartRouter, receiver: Receiver, answer: int) -> None:
    receiver.script = [answer]
    router = await start_router(MOCK_ROUTES, **ON)
    job_id = await router.create({"model": "video-fast", "prompt": "a fox", "webhook_url": receiver.url})
    await receiver.wait()
    job = await router.webhook_ended(job_id)
    await asyncio.sleep(0.1)  # nothing more comes
    assert len(receiver.received) == 1 and job["webhook"]["status"] == "failed"
    assert job["webhook"]["last_status"] == answer


async def test_retries_stop_after_the_retry_window(start_router: StartRouter, receiver: Receiver) -> None:
    receiver.script = [500] * 1000
    router = await start_router(MOCK_ROUTES, **(ON | {"webhook_retry_hours": 0.3 / 3600}))
    job_id = await router.create({"model": "video-fast", "prompt": "a fox", "webhook_url": receiver.url})
    async with asyncio.timeout(5):
        while True:
            _, job = await router.call("GET", f"/v1/jobs/{job_id}")
            if job.get("webhook", {}).get("status") == "failed":
                break
            await asyncio.sleep(0.02)
    assert 2 <= job["webhook"]["attempts"] == len(receiver.received) and job["webhook"]["last_status"] == 500
    assert await router.metric("tarash_router_webhook_deliveries_total", result="expired") == 1


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/hook", "http(s)"),
    ("http://127.0.0.1:9/hook", "non-public"),
    ("http://169.254.169.254/latest", "non-public"),
    ("http://localhost:9/hook", "loopback"),
    (42, "http(s)"),
    ("https://example.com/" + "x" * 3000, "longer"),
])
async def test_bad_webhook_urls_are_refused_at_create_time(start_router: StartRouter, url: Any, words: str) -> None:
    router = await start_router(MOCK_ROUTES, **(ON | {"allow_private_webhook_urls": False}))
    for path in ("/v1/jobs", "/v1/videos"):
        status, answer = await router.call("POST", path, json={"model": "video-fast", "prompt": "x", "webhook_url": url})
        assert status == 400 and answer["error"]["param"] == "webhook_url" and words in answer["error"]["message"]
    _, jobs = await router.call("GET", "/v1/jobs")
    assert jobs["data"] == []  # nothing was created


async def test_without_a_secret_webhook_url_is_a_clear_400(start_router: StartRouter) -> None:
    router = await start_router(MOCK_ROUTES, public_url=None)
    status, answer = await router.call("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x",
                                                                 "webhook_url": "https://example.com/hook"})
    assert status == 400 and answer["error"]["code"] == "webhooks_not_configured"
    assert answer["error"]["param"] == "webhook_url" and "TARASH_ROUTER_WEBHOOK_SECRET" in answer["error"]["message"]


async def test_kill_9_with_an_undelivered_webhook_then_restart_delivers_it(tmp_path: Path, receiver: Receiver) -> None:
    receiver.script = [503] * 100_000  # down until we say so
    routes = tmp_path / "routes.toml"
    routes.write_text(MOCK_ROUTES)
    env = {"TARASH_ROUTER_WEBHOOK_SECRET": SECRET, "TARASH_ROUTER_ALLOW_PRIVATE_WEBHOOK_URLS": "true",
           "TARASH_ROUTER_WEBHOOK_RETRY_BASE_SECONDS": "0.02"}
    daemon = ServedDaemon(routes, tmp_path / "data", env)
    base = daemon.url
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await daemon.ready(session)
            async with session.post(base + "/v1/jobs", json={"model": "video-fast", "prompt": "fox",
                                                              "webhook_url": receiver.url}) as response:
                job_id = (await response.json())["id"]
            await receiver.wait(2)  # the job ended, its webhook was tried and is being retried
            daemon.kill()
            tried = len(receiver.received)
            receiver.script = []  # the receiver is back
            daemon = ServedDaemon(routes, tmp_path / "data", env, port=daemon.port)
            await daemon.ready(session)
            await receiver.wait(tried + 1)
            async with asyncio.timeout(5):  # the daemon records the 200 just after the receiver answered it
                while True:
                    async with session.get(f"{base}/v1/jobs/{job_id}") as response:
                        job = await response.json()
                    if job["webhook"]["status"] != "pending":
                        break
                    await asyncio.sleep(0.01)
    finally:
        daemon.kill()
    assert len(receiver.accepted) == 1 and verify(receiver.accepted[0])["data"]["id"] == job_id
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    # A try in flight at the kill reached the receiver but was never recorded: at least once, same webhook-id.
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["attempts"] <= len(receiver.received)


ALICE_SECRET = "whsec_" + base64.b64encode(b"alice's own webhook secret, 32 b").decode()
CLIENTS = """
[clients."alice"]
webhook_secret_env = "ALICE_WEBHOOK_SECRET"
[clients."carol"]
webhook_secret_env = "CAROL_WEBHOOK_SECRET"
"""


async def test_a_client_with_its_own_secret_gets_webhooks_signed_with_it(
        start_router: StartRouter, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ALICE_WEBHOOK_SECRET", ALICE_SECRET)
    monkeypatch.delenv("CAROL_WEBHOOK_SECRET", raising=False)  # carol's operator forgot hers
    router = await start_router(MOCK_ROUTES + CLIENTS, **ON, api_keys="alice=tok-alice,bob=tok-bob,carol=tok-carol")

    def as_(token: str) -> dict[str, dict[str, str]]:
        return {"headers": {"Authorization": f"Bearer {token}"}}

    ids = {}
    for client in ("alice", "bob"):
        status, job = await router.call("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x",
                                                                  "webhook_url": f"{receiver.url}/{client}"},
                                        **as_(f"tok-{client}"))
        assert status == 202
        ids[client] = job["id"]
    await receiver.wait(2)
    by_path = {r.path: r for r in receiver.received}
    alice, bob = by_path["/alice"], by_path["/bob"]
    headers = {k.lower(): v for k, v in alice.headers.items()}
    assert Webhook(ALICE_SECRET).verify(alice.body, headers)["data"]["id"] == ids["alice"]  # her own secret
    with pytest.raises(Exception):
        Webhook(SECRET).verify(alice.body, headers)  # not the router's
    assert verify(bob)["data"]["id"] == ids["bob"]  # a client without one: WEBHOOK_SECRET
    # No secret for carol: refused at create, saying so without naming or showing anything secret.
    status, answer = await router.call("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x",
                                                                 "webhook_url": receiver.url}, **as_("tok-carol"))
    assert status == 400 and answer["error"]["code"] == "webhooks_not_configured"
    assert "CAROL" not in answer["error"]["message"]
    # The secret is nowhere: not in answers, the job store, reprs or logs.
    _, shown = await router.call("GET", f"/v1/jobs/{ids['alice']}", **as_("tok-alice"))
    store = router.daemon.jobs.store
    kept = [repr(await store.get(ids["alice"])), repr(await store.outbox_for_job(ids["alice"])),
            repr(router.daemon.outbound), repr(router.daemon.routes.current.clients)]
    logged = capsys.readouterr()
    raw = ALICE_SECRET.removeprefix("whsec_")
    files = [path.read_bytes().decode("latin-1") for path in router.daemon.settings.data_dir.glob("jobs.sqlite3*")]
    assert files  # the database and its write-ahead log
    for text in (json.dumps(shown), *kept, logged.out + logged.err, *files):
        assert raw not in text
    assert "CAROL_WEBHOOK_SECRET" in logged.out + logged.err  # the operator is told which setting is missing


async def test_a_client_secret_missing_when_the_job_ends_is_retried_until_it_is_set(
        start_router: StartRouter, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ALICE_WEBHOOK_SECRET", ALICE_SECRET)
    router = await start_router(MOCK_ROUTES + CLIENTS, **ON, api_keys="alice=tok-alice")
    auth = {"headers": {"Authorization": "Bearer tok-alice"}}
    status, job = await router.call("POST", "/v1/jobs", json={"model": "video-slow", "prompt": "x",
                                                              "webhook_url": receiver.url}, **auth)
    assert status == 202
    monkeypatch.delenv("ALICE_WEBHOOK_SECRET")  # gone before the job ends (an operator's mistake)
    await router.call("DELETE", f"/v1/jobs/{job['id']}", **auth)
    async with asyncio.timeout(5):
        while True:
            _, shown = await router.call("GET", f"/v1/jobs/{job['id']}", **auth)
            if shown["webhook"]["attempts"] >= 1:
                break
            await asyncio.sleep(0.01)
    assert shown["webhook"]["status"] == "pending" and "webhook secret" in shown["webhook"]["last_error"]
    assert receiver.received == []  # never signed with the router's secret instead
    logged = capsys.readouterr()
    assert "ALICE_WEBHOOK_SECRET" in logged.out + logged.err  # the operator is told which setting is missing
    monkeypatch.setenv("ALICE_WEBHOOK_SECRET", ALICE_SECRET)
    await receiver.wait()
    headers = {k.lower(): v for k, v in receiver.received[0].headers.items()}
    assert Webhook(ALICE_SECRET).verify(receiver.received[0].body, headers)["type"] == "job.cancelled"
