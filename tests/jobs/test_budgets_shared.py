"""Client budgets across instances on one PostgreSQL job store: what a generation still running has reserved is a
row every instance counts, checked and taken in one transaction per client, ended with the write of its spend.
Two daemons (instances ``a`` and ``b``) on one database, as two machines would be."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from tests.daemon.conftest import Daemon, StartDaemon
from tests.emulators.fal import FalEmulator
from tests.jobs.test_instances import call, cluster, until_status

KEYS = "alice=tok-alice"
ALICE = {"Authorization": "Bearer tok-alice"}


def routes(polls: int) -> str:
    sequence = ", ".join(['"processing"'] * polls + ['"completed"'])
    return f"""
[clients."alice"]
daily_budget_usd = 1.0

[routes."video-60c"]
kind = "video"
[[routes."video-60c".attempts]]
provider = "mock"
model = "mock-video"
price = {{ per_video = 0.6 }}
max_poll_attempts = 100000
mock = {{ polling = {{ status_sequence = [{sequence}], delay_between_updates = 0.01 }} }}

[routes."video-30c"]
kind = "video"
[[routes."video-30c".attempts]]
provider = "mock"
model = "mock-video"
price = {{ per_video = 0.3 }}
mock = {{ polling = {{ status_sequence = ["completed"], delay_between_updates = 0 }} }}
"""


async def instances(start_daemon: StartDaemon, pg_url: str, polls: int) -> tuple[Daemon, Daemon]:
    return (await start_daemon(routes(polls), api_keys=KEYS, job_store=pg_url, instance_id="a"),
            await start_daemon(routes(polls), api_keys=KEYS, job_store=pg_url, instance_id="b"))


async def until_finished(daemon: Daemon, job_id: str) -> dict[str, Any]:
    for _ in range(2000):
        _, job, _ = await daemon.request("GET", f"/v1/jobs/{job_id}", headers=ALICE)
        if job["status"] in ("completed", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never finished")


def reservations(pg_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT key, client, usd, holder FROM tarash_router_reservations ORDER BY key").fetchall()


async def test_a_job_running_on_one_instance_holds_the_budget_on_the_other(
        start_daemon: StartDaemon, pg_url: str) -> None:
    a, b = await instances(start_daemon, pg_url, polls=200)
    status, job, _ = await a.request("POST", "/v1/jobs", json={"model": "video-60c", "prompt": "fox"}, headers=ALICE)
    assert status == 202
    assert reservations(pg_url) == [(job["id"], "alice", 0.6, "a")]
    # On b, alice's $0.60 running on a counts: $0.40 left, so another $0.60 is refused, synchronous or a job.
    for path in ("/v1/jobs", "/v1/video/generations"):
        status, body, _ = await b.request("POST", path, json={"model": "video-60c", "prompt": "owl"}, headers=ALICE)
        assert status == 402 and body["error"]["code"] == "budget_exceeded", body
        assert "$0.4000 left of its daily budget of $1" in body["error"]["message"]
    _, usage, _ = await b.request("GET", "/v1/usage", headers=ALICE)  # what an admission on b sees
    assert (usage["today"]["spent_usd"], usage["today"]["reserved_usd"], usage["today"]["remaining_usd"]) == \
        (0.0, 0.6, 0.4)
    status, _, _ = await b.request("POST", "/v1/video/generations", json={"model": "video-30c", "prompt": "owl"},
                                   headers=ALICE)
    assert status == 200  # $0.30 fits
    assert (await until_finished(a, job["id"]))["status"] == "completed"
    for _ in range(500):  # the job's spend is written with its reservation's end, within the batch delay
        if not reservations(pg_url):
            break
        await asyncio.sleep(0.01)
    assert reservations(pg_url) == []
    _, usage, _ = await b.request("GET", "/v1/usage", headers=ALICE)
    assert usage["today"]["spent_usd"] == 0.9 and usage["today"]["remaining_usd"] == 0.1
    assert usage["today"]["reserved_usd"] == 0.0
    status, _, _ = await b.request("POST", "/v1/video/generations", json={"model": "video-30c", "prompt": "cat"},
                                   headers=ALICE)
    assert status == 402  # $0.10 left


async def test_racing_admissions_on_two_instances_never_cross_the_budget(
        start_daemon: StartDaemon, pg_url: str) -> None:
    a, b = await instances(start_daemon, pg_url, polls=200)
    answers = await asyncio.gather(*(
        daemon.request("POST", "/v1/jobs", json={"model": "video-60c", "prompt": f"fox {i}"}, headers=ALICE)
        for i in range(4) for daemon in (a, b)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [202] + [402] * 7  # one $0.60 fits in $1, whichever instance got there first
    assert [row[2] for row in reservations(pg_url)] == [0.6]


async def test_a_job_that_was_not_created_gives_its_reservation_back(start_daemon: StartDaemon, pg_url: str) -> None:
    a, _ = await instances(start_daemon, pg_url, polls=0)
    body = {"model": "video-30c", "prompt": "fox"}
    headers = {**ALICE, "Idempotency-Key": "k1"}
    status, first, _ = await a.request("POST", "/v1/jobs", json=body, headers=headers)
    assert status == 202
    await until_finished(a, first["id"])
    # The same key with another body: refused after its admission; nothing of it may stay reserved.
    status, _, _ = await a.request("POST", "/v1/jobs", json={**body, "prompt": "owl"}, headers=headers)
    assert status == 422
    for _ in range(500):
        if not reservations(pg_url):
            break
        await asyncio.sleep(0.01)
    assert reservations(pg_url) == []


async def test_a_reservation_whose_holder_stopped_renewing_lapses(pg_url: str) -> None:
    """An instance that dies keeps nobody's budget: its rows count only while its lease runs (renewed with its
    job leases); and a spend written with its reservation's release moves the amount, never counts it twice."""
    from router.jobs.postgres import PostgresJobStore
    from router.jobs.store import SpendEntry

    store = PostgresJobStore(pg_url)
    await store.open()
    try:
        day = ("2026-12-02", "2026-12-02", 1.0)
        assert await store.reserve_spend("alice", "job_a", 0.6, "a", 0.2, [day]) is None
        refused = await store.reserve_spend("alice", "job_b", 0.6, "b", 30, [day])
        assert refused is not None and refused[0] == 0 and abs(refused[1] - 0.4) < 1e-9
        await store.renew("a", 0.2)  # a renews: still held
        assert await store.reserve_spend("alice", "job_b", 0.6, "b", 30, [day]) is not None
        await asyncio.sleep(0.3)  # a stopped renewing: its lease ran out
        assert await store.reserve_spend("alice", "job_b", 0.6, "b", 30, [day]) is None
        await store.add_spend([SpendEntry("alice", "2026-12-02", "r", "mock", "m", 0.6, 1)], released=["job_b"])
        assert reservations(pg_url) == [("job_a", "alice", 0.6, "a")]  # lapsed, not yet cleared: counts nothing
        assert await store.reserve_spend("alice", "job_c", 0.5, "b", 30, [day]) is not None  # 0.4 left after 0.6
        assert await store.reserve_spend("alice", "job_c", 0.4, "b", 30, [day]) is None
    finally:
        await store.close()


async def test_a_job_taken_over_after_kill_9_ends_its_reservation_where_it_ends(tmp_path: Path, pg_url: str) -> None:
    """A admits the job (its reservation is A's row), dies mid-poll; B takes the job over and finishes it: B writes
    the job's spend and deletes A's row with it, once; the budget is neither held forever nor counted twice."""
    budget = 'price = { per_video = 0.6 }\n[clients."alice"]\ndaily_budget_usd = 1.0\n'
    async with FalEmulator(polls_to_complete=100000) as fal, cluster(
            tmp_path, pg_url, fal, budget, TARASH_ROUTER_API_KEYS=KEYS) as (session, a, b):
        _, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"},
                                headers=ALICE)
        assert reservations(pg_url) == [(created["id"], "alice", 0.6, "a")]
        while fal.calls["status"] < 3:
            await asyncio.sleep(0.01)
        a.kill()
        polls_at_kill = fal.calls["status"]
        while fal.calls["status"] == polls_at_kill:  # B claims the lapsed job lease
            await asyncio.sleep(0.01)
        next(iter(fal.jobs.values())).polls_needed = 0  # the vendor finishes the job
        job = await until_status(session, f"{b.url}/v1/jobs/{created['id']}", ("completed", "failed"), headers=ALICE)
        assert job["status"] == "completed"
        for _ in range(500):
            if not reservations(pg_url):
                break
            await asyncio.sleep(0.01)
        assert reservations(pg_url) == []
        _, usage = await call(session, "GET", b.url + "/v1/usage", headers=ALICE)
        # Once: what the vendor billed (fal reports its billable units: 2 here, $1.20), as one generation.
        assert usage["today"]["spent_usd"] == job["execution_metadata"]["total_cost_usd"] == 1.2
        assert [row["generations_month"] for row in usage["by_route"]] == [1]
