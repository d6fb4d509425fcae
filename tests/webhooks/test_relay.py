"""Several instances on one PostgreSQL store: a vendor push that reaches an instance other than the job's lease
holder is kept in the store and announced; the holder checks the vendor job at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from router.jobs.postgres import PostgresJobStore
from router.models import AttemptMetadata, VideoGenerationConfig, utc_now
from router.webhooks.inbound import InboundWebhooks
from tests.emulators._base import WebhookFault
from tests.emulators.fal import FalEmulator
from tests.jobs.test_instances import call, cluster, until_status
from tests.jobs.test_postgres_store import job, writer_and_listener


async def test_the_store_keeps_a_push_until_the_holder_takes_it_and_announces_it(pg_url: str) -> None:
    async with writer_and_listener(pg_url) as (receiver, holder, heard):
        await receiver.insert(job("job_held", worker="a"), lease_seconds=30)
        await receiver.insert(job("job_other", worker="b"), lease_seconds=30)
        done = job("job_done", worker="a")
        await receiver.insert(done, lease_seconds=30)
        done.status = "completed"
        assert await receiver.save(done)
        for job_id in ("job_held", "job_held", "job_other", "job_done"):  # twice: kept once
            await receiver.note_push(job_id, 1)
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
        assert got == [("push", "job_held"), ("push", "job_held"), ("push", "job_other")]  # not the finished one
        assert await holder.take_pushes("a") == {"job_held"}  # only what "a" holds
        assert await holder.take_pushes("a") == set()  # taken once
        assert await holder.take_pushes("a", "job_other") == set() and await holder.take_pushes("b") == {"job_other"}
        await receiver.note_push("job_held", 2)
        await receiver.delete("job_held")  # a deleted job's kept pushes go with it
        assert await holder.take_pushes("a") == set()


async def test_a_push_reaching_the_other_instance_wakes_the_holder(tmp_path: Path, pg_url: str) -> None:
    provider_config = 'provider_config = { webhook_jwks_url = "%s" }'
    async with FalEmulator(polls_to_complete=100_000) as fal:
        fal.webhook_fault = WebhookFault.NEVER  # the test delivers it, to the instance that does not hold the job
        fal.webhook_delay = 3600.0  # and finishes the vendor job itself
        # PUBLIC_URL is where the vendor is told to push; a load balancer may send it to either instance.
        async with cluster(tmp_path, pg_url, fal, provider_config % fal.jwks_url,
                           TARASH_ROUTER_PUBLIC_URL="http://router.invalid") as (session, a, b):
            status, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"})
            assert status == 202  # a has room: the job is leased to a as it is written
            async with asyncio.timeout(20):
                while fal.calls["status"] < 1:  # a polled once and now waits the stretched 60 s
                    await asyncio.sleep(0.01)
            (vendor_job,) = fal.jobs.values()
            vendor_job.finished = True
            url = vendor_job.extra["webhook_url"].replace("http://router.invalid", b.url)
            delivery = await fal.deliver_webhook(vendor_job, url)
            assert delivery is not None and delivery.status == 200
            done = await until_status(session, f"{a.url}/v1/jobs/{created['id']}", ("completed", "failed"), timeout=20)
            assert done["status"] == "completed"  # long before the 60-s poll: a heard it through the store
            assert fal.calls["status"] == 2 and fal.calls["submit"] == 1
            _, metrics = await call_text(session, b.url + "/metrics")
            assert 'tarash_router_webhooks_received_total{provider="fal",result="relayed"} 1.0' in metrics


async def call_text(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_a_holder_whose_listen_connection_was_down_takes_the_kept_pushes_when_it_reconnects(
        pg_url: str) -> None:
    store = PostgresJobStore(pg_url)
    await store.open()
    inbound = InboundWebhooks("http://router.invalid", store, poll_interval=60.0, max_body_bytes=1024,
                              instance_id="a")
    try:
        held = job("job_held", worker="a")
        held.chain = [{"provider": "fal", "model": "fal-ai/veo3"}]
        await store.insert(held, lease_seconds=30)
        attempt = AttemptMetadata(provider="fal", model="fal-ai/veo3", attempt_number=1, started_at=utc_now(),
                                  status="success")
        config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3")
        channel = inbound.channels(held)(attempt, config)
        assert channel is not None
        await channel.open(config)  # the attempt's token, as before its submit
        waiting = asyncio.create_task(channel.wait(60.0))
        await store.note_push("job_held", 1)  # announced while "a" heard nothing
        await asyncio.sleep(0.05)
        assert not waiting.done()
        inbound.on_notice("job", "", None)  # the LISTEN connection is (back) up
        await asyncio.wait_for(waiting, 5)  # the kept push ended the 60-s wait
        assert await store.take_pushes("a") == set()  # taken
    finally:
        await inbound.close()
        await store.close()
