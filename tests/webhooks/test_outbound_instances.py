"""Client webhooks with two daemons on one PostgreSQL store: each try of a pending delivery is claimed by
exactly one instance (so a receiver gets one accepted delivery per job, however many instances run), and the
claim of an instance killed mid-try comes back when it lapses, with the same webhook-id."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from tests.daemon.conftest import MOCK_ROUTES
from tests.jobs.test_instances import LEASE_SECONDS, Instance, call
from tests.net import serving

SECRET = "whsec_" + base64.b64encode(b"tarash-router test secret 32 by").decode()
ENV = {"TARASH_ROUTER_WEBHOOK_SECRET": SECRET, "TARASH_ROUTER_ALLOW_PRIVATE_WEBHOOK_URLS": "true",
       "TARASH_ROUTER_WEBHOOK_RETRY_BASE_SECONDS": "0.05"}


@dataclass
class Counting:
    """A receiver counting tries per webhook-id: 503 while ``failing``; ``on_first`` runs at the first try."""

    url: str = ""
    tries: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    failing: bool = False
    on_first: list[object] = field(default_factory=list)


@pytest.fixture
async def counting() -> AsyncIterator[Counting]:
    state = Counting()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        webhook_id = request.headers["webhook-id"]
        first = not state.tries
        state.tries[webhook_id] += 1
        if first and state.on_first:
            state.on_first.pop()()  # type: ignore[operator]
            await asyncio.sleep(30)  # the sender is gone: this try never gets an answer
        if state.failing:
            return web.Response(status=503)
        state.accepted[webhook_id] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serving(app, shutdown_timeout=0.1, handler_cancellation=True) as base:
        state.url = f"{base}/hook"
        yield state


async def until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def undelivered(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return int(conn.execute("SELECT count(*) FROM tarash_router_outbox WHERE status <> 'delivered'").fetchone()[0])


async def test_each_pending_delivery_is_made_by_one_instance(tmp_path: Path, pg_url: str, counting: Counting) -> None:
    routes_path = tmp_path / "routes.toml"
    routes_path.write_text(MOCK_ROUTES)
    counting.failing = True  # every try is retried until the receiver is back
    instances = [Instance(name, tmp_path, routes_path, pg_url, ENV) for name in ("a", "b")]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(*(instance.ready(session) for instance in instances))
            jobs = []
            for i in range(8):
                status, job = await call(session, "POST", instances[i % 2].url + "/v1/jobs",
                                         json={"model": "video-fast", "prompt": "fox", "webhook_url": counting.url})
                assert status == 202, job
                jobs.append(job["id"])
            await until(lambda: len(counting.tries) == len(jobs) and min(counting.tries.values()) >= 2)
            # An instance goes and a new one comes while every delivery is pending: the newcomer finds them all,
            # and so does the instance that has been retrying them.
            instances[1].kill()
            instances.append(Instance("c", tmp_path, routes_path, pg_url, ENV))
            await instances[2].ready(session)
            counting.failing = False
            await until(lambda: len(counting.accepted) == len(jobs) and undelivered(pg_url) == 0)
            await asyncio.sleep(0.3)  # a duplicate try would be on its way by now
            assert set(counting.accepted.values()) == {1}, counting.accepted
            for job_id in jobs:
                _, job = await call(session, "GET", f"{instances[0].url}/v1/jobs/{job_id}")
                assert job["webhook"]["status"] == "delivered" and job["webhook"]["id"] in counting.accepted
    finally:
        for instance in instances:
            instance.kill()


async def test_the_claim_of_an_instance_killed_mid_try_comes_back(tmp_path: Path, pg_url: str,
                                                                  counting: Counting) -> None:
    routes_path = tmp_path / "routes.toml"
    routes_path.write_text(MOCK_ROUTES)
    a = Instance("a", tmp_path, routes_path, pg_url, ENV)
    b = Instance("b", tmp_path, routes_path, pg_url, ENV)
    killed: list[float] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await a.ready(session)
            counting.on_first.append(lambda: (os.kill(a.process.pid, signal.SIGKILL), killed.append(time.monotonic())))
            _, job = await call(session, "POST", a.url + "/v1/jobs",
                                json={"model": "video-fast", "prompt": "fox", "webhook_url": counting.url})
            await until(lambda: killed)  # A claimed the delivery and died in the middle of its try
            await b.ready(session)
            await until(lambda: counting.accepted)
            assert time.monotonic() - killed[0] <= LEASE_SECONDS + 5
            [(webhook_id, tries)] = counting.tries.items()  # one message: every try carries its id
            assert tries == 2 and counting.accepted == {webhook_id: 1}
            _, seen = await call(session, "GET", f"{b.url}/v1/jobs/{job['id']}")
            assert seen["webhook"]["id"] == webhook_id and seen["webhook"]["status"] == "delivered"
    finally:
        a.kill()
        b.kill()
