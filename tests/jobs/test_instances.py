"""Two daemon processes (separate ports) on one PostgreSQL database, against the fal emulator that counts
submits: events and cancel from either instance, a kill -9 taken over without a second submit, idempotency
across instances."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from tests.emulators.fal import FalEmulator
from tests.postgres_server import PostgresServer
from tests.served import ServedDaemon

#: Short leases so a takeover is quick; renewals every third of it.
LEASE_SECONDS = 2.0


def routes(fal: FalEmulator, extra: str = "") -> str:
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "EMULATED_FAL_KEY"
poll_interval = 0.02
max_poll_attempts = 100000
timeout = 600
{extra}
[routes."image"]
kind = "image"
[[routes."image".attempts]]
provider = "mock"
model = "mock-image"

[routes."stepped"]
kind = "video"
[[routes."stepped".attempts]]
provider = "mock"
model = "mock-stepped"
max_poll_attempts = 1000
mock = {{ polling = {{ status_sequence = ["queued", "processing", "processing", "processing", "completed"], progress_percentages = [0, 25, 50, 75, 100], delay_between_updates = 0.3 }} }}
"""


class Instance(ServedDaemon):
    """One instance of a cluster on the PostgreSQL store ``store``, named ``name`` (its instance id)."""

    def __init__(self, name: str, tmp_path: Path, routes_path: Path, store: str, env: dict[str, str]) -> None:
        super().__init__(routes_path, tmp_path / name, {
            "TARASH_ROUTER_JOB_STORE": store, "TARASH_ROUTER_INSTANCE_ID": name,
            "TARASH_ROUTER_JOB_LEASE_SECONDS": str(LEASE_SECONDS), "EMULATED_FAL_KEY": "test-key", **env},
            name=name)


@asynccontextmanager
async def cluster(tmp_path: Path, pg_url: str, fal: FalEmulator, extra: str = "",
                  **env: str) -> AsyncIterator[tuple[aiohttp.ClientSession, Instance, Instance]]:
    routes_path = tmp_path / "routes.toml"
    routes_path.write_text(routes(fal, extra))
    a = Instance("a", tmp_path, routes_path, pg_url, env)
    b = Instance("b", tmp_path, routes_path, pg_url, env)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(a.ready(session), b.ready(session))
            yield session, a, b
    finally:
        for instance in (a, b):
            instance.kill()


async def call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kw) as response:
        return response.status, await response.json()


async def until_status(session: aiohttp.ClientSession, url: str, statuses: tuple[str, ...], timeout: float = 20,
                       **kw: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = await call(session, "GET", url, **kw)
        if job.get("status") in statuses:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never reached {statuses}: {job}")


async def sse(session: aiohttp.ClientSession, url: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
        assert response.status == 200
        name = None
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
    return events


async def test_a_job_on_one_instance_streams_its_events_from_the_other(tmp_path: Path, pg_url: str) -> None:
    async with FalEmulator(polls_to_complete=30) as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        status, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"})
        assert status == 202
        events = await sse(session, f"{b.url}/v1/jobs/{created['id']}/events")
        assert events[-1][0] == "result" and events[-1][1]["video"].startswith(fal.url)
        assert [name for name, _ in events[:-1]] and {name for name, _ in events[:-1]} == {"update"}
        _, seen_from_b = await call(session, "GET", f"{b.url}/v1/videos/{created['id']}")
        assert seen_from_b["status"] == "completed" and fal.calls["submit"] == 1
        # B asked for the job's events to be announced; a job nobody streams is announced to nobody.
        _, unwatched = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "owl"})
        await until_status(session, f"{a.url}/v1/jobs/{unwatched['id']}", ("completed",))
        with psycopg.connect(pg_url) as conn:
            watched = dict(conn.execute("SELECT id, watched_until IS NOT NULL FROM tarash_router_jobs").fetchall())
        assert watched == {created["id"]: True, unwatched["id"]: False}


async def test_progress_of_a_job_on_one_instance_moves_on_the_other(tmp_path: Path, pg_url: str) -> None:
    async with FalEmulator() as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        _, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "stepped", "prompt": "fox"})
        stream = asyncio.create_task(sse(session, f"{b.url}/v1/jobs/{created['id']}/events"))
        seen: list[tuple[str, int]] = []  # (status, progress) as GET on B (which does not run the job) says
        while not seen or seen[-1][0] not in ("completed", "failed"):
            _, job = await call(session, "GET", f"{b.url}/v1/jobs/{created['id']}")
            _, video = await call(session, "GET", f"{b.url}/v1/videos/{created['id']}")
            seen.append((job["status"], job["progress_percent"] or 0))
            if job["status"] == "running":
                assert video["progress"] >= seen[-1][1]  # read after: never behind
            await asyncio.sleep(0.02)
        running = [progress for status, progress in seen if status == "running"]
        assert {25, 50, 75} <= set(running) and running == sorted(running), seen
        assert seen[-1] == ("completed", 100)
        events = await stream
        progress = [data["progress_percent"] for name, data in events if name == "update"]
        assert {25, 50, 75} <= set(progress) and progress == sorted(progress), events


async def test_delete_on_the_other_instance_cancels_the_vendor_job(tmp_path: Path, pg_url: str) -> None:
    async with FalEmulator(polls_to_complete=100000) as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        _, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"})
        while fal.calls["status"] < 3:  # A polls the vendor job
            await asyncio.sleep(0.01)
        status, answer = await call(session, "DELETE", f"{b.url}/v1/jobs/{created['id']}")
        assert status == 200 and answer["status"] == "cancelled", answer
        assert fal.calls["cancel"] == 1 and all(job.cancelled for job in fal.jobs.values())
        _, on_a = await call(session, "GET", f"{a.url}/v1/jobs/{created['id']}")
        assert on_a["status"] == "cancelled" and fal.calls["submit"] == 1


async def test_kill_9_of_the_holder_mid_poll_is_taken_over_with_one_submit(tmp_path: Path, pg_url: str) -> None:
    async with FalEmulator(polls_to_complete=100000) as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        _, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"})
        while fal.calls["status"] < 3:
            await asyncio.sleep(0.01)
        a.kill()
        killed_at, polls_at_kill = time.monotonic(), fal.calls["status"]
        while fal.calls["status"] == polls_at_kill:  # nobody polls until B claims the lapsed lease
            await asyncio.sleep(0.01)
        assert time.monotonic() - killed_at <= LEASE_SECONDS + 5
        next(iter(fal.jobs.values())).polls_needed = 0  # the vendor finishes the job
        job = await until_status(session, f"{b.url}/v1/jobs/{created['id']}", ("completed", "failed"))
        assert job["status"] == "completed" and fal.calls["submit"] == 1 and fal.calls["cancel"] == 0
        assert job["execution_metadata"]["attempts"][0]["request_id"] == next(iter(fal.jobs))


async def test_racing_retries_on_two_instances_get_one_job(tmp_path: Path, pg_url: str) -> None:
    async with FalEmulator(polls_to_complete=3) as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        body, headers = {"model": "video", "prompt": "fox"}, {"Idempotency-Key": "order-42"}
        answers = await asyncio.gather(*(call(session, "POST", f"{url}/v1/jobs", json=body, headers=headers)
                                         for url in (a.url, b.url) * 4))
        assert {status for status, _ in answers} <= {200, 202} and len({job["id"] for _, job in answers}) == 1
        await until_status(session, f"{a.url}/v1/jobs/{answers[0][1]['id']}", ("completed",))
        assert fal.calls["submit"] == 1


async def test_postgresql_restarted_mid_run_loses_nothing_and_submits_nothing_twice(
        tmp_path: Path, pg_url: str, postgres_server: PostgresServer) -> None:
    async with FalEmulator(polls_to_complete=100000) as fal, cluster(tmp_path, pg_url, fal) as (session, a, b):
        accepted = [(await call(session, "POST", f"{url}/v1/jobs", json={"model": "video", "prompt": "fox"}))[1]["id"]
                    for url in (a.url, b.url, a.url, b.url)]
        while len(fal.jobs) < len(accepted) or fal.calls["status"] < 3 * len(accepted):
            await asyncio.sleep(0.01)  # every vendor job is recorded and polled
        postgres_server.stop("fast")
        try:
            for instance in (a, b):  # while it is down: no 202 that is not durable, and not ready
                status, answer = await call(session, "POST", f"{instance.url}/v1/jobs",
                                            json={"model": "video", "prompt": "refused"})
                assert status == 503 and answer["error"]["code"] == "job_store_unavailable", answer
                deadline = time.monotonic() + 10
                while (await call(session, "GET", instance.url + "/readyz"))[0] != 503:
                    assert time.monotonic() < deadline, "readyz stayed ready with the store down"
                    await asyncio.sleep(0.05)
            status, answer = await call(session, "POST", a.url + "/v1/images/generations",
                                        json={"model": "image", "prompt": "sync still works"})
            assert status == 200, answer
            for job in fal.jobs.values():
                job.polls_needed = 0  # the vendor finishes every job while the database is down
            polls = fal.calls["result"]
            while fal.calls["result"] < polls + len(accepted):  # the jobs keep polling and fetch their results
                await asyncio.sleep(0.01)
        finally:
            postgres_server.start()
        for job_id in accepted:
            job = await until_status(session, f"{b.url}/v1/jobs/{job_id}", ("completed", "failed"), timeout=60)
            assert job["status"] == "completed", job
        for instance in (a, b):  # ready again once the store answers (the next claim pass, within a second or so)
            deadline = time.monotonic() + 10
            while (await call(session, "GET", instance.url + "/readyz"))[0] != 200:
                assert time.monotonic() < deadline, f"{instance.name} stayed not ready with the store back"
                await asyncio.sleep(0.05)
        assert fal.calls["submit"] == len(accepted) and len(fal.jobs) == len(accepted)


async def test_max_concurrency_holds_across_both_instances(tmp_path: Path, pg_url: str) -> None:
    limit = '\n[providers.fal]\nmax_concurrency = 2\n'
    async with FalEmulator(polls_to_complete=15) as fal, cluster(tmp_path, pg_url, fal, limit) as (session, a, b):
        created = await asyncio.gather(*(call(session, "POST", f"{url}/v1/jobs", json={"model": "video", "prompt": "fox"})
                                         for url in (a.url, b.url) * 4))
        for _, job in created:
            done = await until_status(session, f"{b.url}/v1/jobs/{job['id']}", ("completed", "failed"), timeout=60)
            assert done["status"] == "completed", done
        assert fal.calls["submit"] == 8 and fal.peak_in_flight == 2  # the limit is the cluster's, not 2 per instance


async def test_a_circuit_opened_on_one_instance_is_skipped_on_the_other(tmp_path: Path, pg_url: str) -> None:
    fallback = '''
[[routes."video".attempts]]
provider = "mock"
model = "mock-video"
'''
    env = {"TARASH_ROUTER_CIRCUIT_THRESHOLD": "2", "TARASH_ROUTER_CIRCUIT_COOLDOWN_SECONDS": "600"}
    async with FalEmulator() as fal, cluster(tmp_path, pg_url, fal, fallback, **env) as (session, a, b):
        fal.inject("server_error", "submit", times=1000)  # fal fails on A until A's breaker opens
        for _ in range(20):
            _, answer = await call(session, "POST", a.url + "/v1/video/generations",
                                   json={"model": "video", "prompt": "fox"})
            if answer["execution_metadata"]["attempts"][0]["status"] == "skipped":
                break
        else:
            raise AssertionError("fal's circuit never opened on A")
        fal._faults.clear()  # noqa: SLF001 - fal is healthy again; only the circuit keeps B away
        deadline = time.monotonic() + 20  # generous: a loaded machine stalls both instances (seen failing at 5 s)
        while True:  # B hears of it within about a second
            _, routes_on_b = await call(session, "GET", b.url + "/v1/routes")
            if routes_on_b["routes"][0]["attempts"][0]["circuit"] == "open" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        submits = fal.calls["submit"]
        status, answer = await call(session, "POST", b.url + "/v1/video/generations",
                                    json={"model": "video", "prompt": "fox"})
        first = answer["execution_metadata"]["attempts"][0]
        assert status == 200 and first["status"] == "skipped" and "circuit open" in first["error_message"], first
        assert fal.calls["submit"] == submits  # B never called fal
