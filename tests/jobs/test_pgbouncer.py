"""The PostgreSQL store behind Debian's PgBouncer in transaction pooling mode (``tests/pgbouncer_server.py``).

The contract suite runs through it too (``tests/jobs/stores.py``: the ``pgbouncer`` store). What is only here:
notifications. A transaction pooler gives LISTEN no session of its own, so they are lost through it; the store
says so (``job_store_notices_lost``) and ``listen_url`` (``JOB_STORE_LISTEN``) sends the LISTEN connection past it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from router.jobs.postgres import PostgresJobStore, redact
from tests.emulators.fal import FalEmulator
from tests.jobs.test_instances import call, cluster
from tests.jobs.test_postgres_store import assert_refused, job, serve, writer_and_listener
from tests.pgbouncer_server import PgBouncer
from tests.postgres_server import PASSWORD, PostgresServer


def direct(pooled_url: str, server: PostgresServer) -> str:
    """The URL of the same database on the server itself, not through the pooler."""
    return server.url(pooled_url.rsplit("/", 1)[1])


def notices_lost(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "job_store_notices_lost"]


async def test_with_listen_url_on_the_server_notifications_pass_a_transaction_pooler(
        pgbouncer_url: str, postgres_server: PostgresServer) -> None:
    with capture_logs() as logs:
        async with writer_and_listener(pgbouncer_url, listen_url=direct(pgbouncer_url, postgres_server),
                                       probe_seconds=0.05) as (writer, listener, heard):
            await writer.insert(job("job_free"))
            await writer.watch_events("job_free", 30)  # someone on another instance streams it
            await writer.append_event("job_free", 1, "update", {})
            await writer.request_cancel("job_free")
            got = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
            assert got == [("job", ""), ("event", "job_free"), ("cancel", "job_free")]
            await asyncio.sleep(0.1)  # past the probe's deadline: it was heard, so nothing is said
    assert notices_lost(logs) == []
    assert PASSWORD not in repr(listener) and "listen_url=" in repr(listener)


async def test_notices_lost_through_a_transaction_pooler_are_said_once_with_the_setting_to_set(
        pgbouncer_url: str) -> None:
    with capture_logs() as logs:
        async with writer_and_listener(pgbouncer_url, probe_seconds=0.05) as (writer, _, heard):
            await writer.insert(job("job_free"))
            await writer.request_cancel("job_free")
            for _ in range(500):
                if notices_lost(logs):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # and only once for this connection
    [lost] = notices_lost(logs)
    assert "TARASH_ROUTER_JOB_STORE_LISTEN" in lost["error"] and "transaction-mode pooler" in lost["error"]
    assert PASSWORD not in str(logs)
    assert heard.empty()  # the cancel was lost: what the line warns of


async def test_a_direct_store_hears_its_probe_and_says_nothing(pg_url: str) -> None:
    with capture_logs() as logs:
        async with writer_and_listener(pg_url, probe_seconds=0.05):
            await asyncio.sleep(0.1)
    assert notices_lost(logs) == []


async def test_two_instances_behind_a_transaction_pooler_cancel_each_others_jobs(
        tmp_path: Path, pgbouncer_url: str, postgres_server: PostgresServer) -> None:
    async with FalEmulator(polls_to_complete=100000) as fal, cluster(
            tmp_path, pgbouncer_url, fal, TARASH_ROUTER_JOB_STORE_LISTEN=direct(pgbouncer_url, postgres_server),
    ) as (session, a, b):
        _, created = await call(session, "POST", a.url + "/v1/jobs", json={"model": "video", "prompt": "fox"})
        while fal.calls["status"] < 3:  # A polls the vendor job
            await asyncio.sleep(0.01)
        status, answer = await call(session, "DELETE", f"{b.url}/v1/jobs/{created['id']}")  # A hears it
        assert status == 200 and answer["status"] == "cancelled", answer
        assert fal.calls["cancel"] == 1 and fal.calls["submit"] == 1
    for instance in (a, b):
        log = instance.log_path.read_text()
        assert PASSWORD not in log
        [listening] = [json.loads(line) for line in log.splitlines() if '"event": "listening"' in line]
        assert listening["job_store"] == (f"{redact(pgbouncer_url)} "
                                          f"(LISTEN {redact(direct(pgbouncer_url, postgres_server))})")


def test_a_listen_url_that_cannot_connect_is_refused_at_start_naming_its_setting(
        tmp_path: Path, pgbouncer: PgBouncer, postgres_server: PostgresServer) -> None:
    wrong = postgres_server.url(password="wrong-" + PASSWORD[::-1])
    result = serve(tmp_path, pgbouncer.url("postgres"), TARASH_ROUTER_JOB_STORE_LISTEN=wrong)
    assert_refused(result, tmp_path, "TARASH_ROUTER_JOB_STORE_LISTEN=", "cannot connect",
                   "password authentication failed")
    assert PASSWORD[::-1] not in result.stderr


def test_a_listen_url_without_a_postgresql_job_store_is_refused_at_start(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    result = serve(tmp_path, "", TARASH_ROUTER_JOB_STORE_LISTEN=postgres_server.url())
    assert_refused(result, tmp_path, "TARASH_ROUTER_JOB_STORE_LISTEN is set", "not a PostgreSQL URL")
    assert "TARASH_ROUTER_JOB_STORE_LISTEN" in result.stderr and PASSWORD not in result.stderr


def test_repr_hides_both_passwords() -> None:
    store = PostgresJobStore("postgresql://app:s3cr3t@pool/jobs", listen_url="postgresql://app:l1sten@db/jobs")
    assert "s3cr3t" not in repr(store) and "l1sten" not in repr(store)
    assert "***" in repr(store)
