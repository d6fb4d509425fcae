"""The ``JobStore`` contract: every store in ``tests/jobs/stores.py`` passes each test here.

What the job runner relies on: records round-trip whole, request and chain are written once, the idempotency
key is claimed atomically, lists page newest first, ``unfinished`` is what a restart resumes, events keep their
order, retention deletes only finished jobs, and the metrics' counters move. Durable stores also keep all of it
across a close and a reopen. Leases: claims never hand a job out twice, saves are fenced by the lease, a lapsed
lease is taken over, cancel requests reach whoever holds (or next claims) the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from router.jobs import JobRecord, JobStore, OutboxMessage, VendorJob
from router.jobs.store import SpendEntry, encoded_body, shared_store
from router.models import utc_now
from tests.jobs.stores import STORES, StoreKind

T0 = utc_now().replace(microsecond=0)


@pytest.fixture(params=sorted(STORES))
def kind(request: pytest.FixtureRequest) -> StoreKind:
    return STORES[request.param]


@pytest.fixture
async def store(kind: StoreKind, request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    opened = kind.make(kind.storage_for(request))
    await opened.open()
    yield opened
    await opened.close()


def job(job_id: str, *, at: int = 0, **fields: Any) -> JobRecord:
    """A job created ``at`` seconds after T0 (its updated_at too unless given)."""
    created = T0 + timedelta(seconds=at)
    defaults: dict[str, Any] = {"kind": "video", "route": "r", "request": {"prompt": job_id},
                                "chain": [{"provider": "mock", "model": "m"}], "created_at": created,
                                "updated_at": created}
    return JobRecord(id=job_id, **(defaults | fields))


async def test_a_job_round_trips_whole(store: JobStore) -> None:
    full = job("job_full", status="running", progress_percent=40, owner="client-a", idempotency_key="k",
               fingerprint="f" * 64, result={"video": "https://cdn.example/v.mp4", "provider_metadata": {}},
               error={"message": "m", "type": "t", "code": None, "status": 502},
               attempts=[{"provider": "fal", "attempt_number": 1, "status": "failed"}],
               vendor_job=VendorJob(2, "vendor-7", {"status_url": "https://q/7"}, T0.isoformat()),
               execution_metadata={"total_attempts": 2})
    assert await store.insert(full)
    assert await store.get("job_full") == full
    assert await store.get("job_missing") is None


async def test_a_vendors_nul_or_lone_surrogate_never_fails_a_write(store: JobStore) -> None:
    """A vendor may answer text with NUL or a lone surrogate (the API refuses both in requests). PostgreSQL's jsonb
    cannot hold either: it keeps U+FFFD in their place; the job is kept, never a save failing on every retry."""
    vendor = {"revised_prompt": "a\x00b", "provider_metadata": {"k\x00": "\ud800", "ok": "x\U0001F600y \\u0000"}}
    assert await store.insert(job("job_nul", result=vendor, error={"message": "bad\udc00", "status": 502}))
    assert await store.save(job("job_nul", status="completed", result=vendor, attempts=[{"error": "\x00"}]))
    await store.append_event("job_nul", 1, "update", {"message": "x\x00y"})
    got = await store.get("job_nul")
    assert got is not None and got.status == "completed"
    kept = got.result["revised_prompt"], got.attempts[0]["error"], (await store.events("job_nul"))[0][2]["message"]
    assert kept in (("a\x00b", "\x00", "x\x00y"), ("a\ufffdb", "\ufffd", "x\ufffdy"))
    metadata = got.result["provider_metadata"]
    assert metadata["ok"] == "x\U0001F600y \\u0000"  # a surrogate pair and an escaped backslash are left alone
    assert metadata in ({"k\x00": "\ud800", "ok": metadata["ok"]}, {"k\ufffd": "\ufffd", "ok": metadata["ok"]})


async def test_save_writes_the_mutable_fields_never_request_or_chain(store: JobStore) -> None:
    await store.insert(job("job_1"))
    later = T0 + timedelta(minutes=5)
    saved = replace(job("job_1"), status="completed", progress_percent=100, updated_at=later,
                    result={"video": "v"}, request={"prompt": "changed"}, chain=[])
    await store.save(saved)
    stored = await store.get("job_1")
    assert stored is not None and (stored.status, stored.progress_percent, stored.result) == ("completed", 100, {"video": "v"})
    assert stored.updated_at == later and stored.created_at == T0
    assert stored.request == {"prompt": "job_1"} and stored.chain == [{"provider": "mock", "model": "m"}]


async def test_a_body_encoded_by_the_caller_is_the_one_written(store: JobStore) -> None:
    # The job service hands over the body it encoded for its committed copy, so a save encodes it once.
    first = job("job_given", status="running", worker="A", vendor_job=VendorJob(1, "v-1", {"u": "x"}, T0.isoformat()))
    assert await store.insert(first, lease_seconds=30, body=encoded_body(first))
    assert await store.get("job_given") == first
    later = replace(first, status="completed", progress_percent=100, result={"video": "v"},
                    updated_at=T0 + timedelta(minutes=1))
    assert await store.save(later, body=encoded_body(later))
    assert await store.get("job_given") == later


async def test_the_store_holds_copies_not_the_callers_objects(store: JobStore) -> None:
    record = job("job_1")
    await store.insert(record)
    record.status = "failed"  # not saved
    record.request["prompt"] = "mutated"
    stored = await store.get("job_1")
    assert stored is not None and stored.status == "queued" and stored.request == {"prompt": "job_1"}


async def test_an_idempotency_key_is_claimed_once_per_owner_even_under_a_race(store: JobStore) -> None:
    racing = [job(f"job_{i}", owner="alice", idempotency_key="k1") for i in range(5)]
    inserted = await asyncio.gather(*(store.insert(record) for record in racing))
    assert sum(inserted) == 1
    winner = racing[inserted.index(True)]
    assert (await store.find_idempotent("alice", "k1")) == winner
    assert await store.insert(job("job_bob", owner="bob", idempotency_key="k1"))  # another owner: another job
    assert await store.insert(job("job_anon", idempotency_key="k2"))
    assert not await store.insert(job("job_anon_again", owner="", idempotency_key="k2"))  # None and "" are one owner
    assert (await store.find_idempotent(None, "k2")).id == "job_anon"  # type: ignore[union-attr]
    assert await store.find_idempotent("alice", "other") is None
    assert await store.count() == 3
    assert not await store.insert(job("job_bob"))  # an id is taken once too


async def test_lists_page_newest_first_filtered_by_kind_and_owner(store: JobStore) -> None:
    for i in range(5):
        await store.insert(job(f"job_{i}", at=i, owner="alice" if i % 2 == 0 else "bob",
                               kind="video" if i < 4 else "image"))
    await store.insert(job("job_5", at=3, owner="bob"))  # same created_at as job_3: the id breaks the tie

    async def ids(**query: Any) -> list[str]:
        params: dict[str, Any] = {"kind": None, "owner": None, "limit": 10, "after": None} | query
        return [record.id for record in await store.list(**params)]

    assert await ids() == ["job_4", "job_5", "job_3", "job_2", "job_1", "job_0"]
    assert await ids(limit=2) == ["job_4", "job_5"]
    assert await ids(after="job_5", limit=2) == ["job_3", "job_2"]
    assert await ids(kind="image") == ["job_4"]
    assert await ids(kind="video", owner="bob") == ["job_5", "job_3", "job_1"]
    assert await ids(owner="alice", after="job_4") == ["job_2", "job_0"]
    assert await ids(after="job_unknown") == []
    await store.save(replace(job("job_2", at=2, owner="alice"), status="completed"))
    await store.insert(job("job_6", at=6, route="other"))
    assert await ids(status="completed") == ["job_2"] and await ids(route="other") == ["job_6"]
    assert await ids(status="queued", owner="alice") == ["job_4", "job_0"]


async def test_unfinished_is_what_a_restart_resumes_oldest_first(store: JobStore) -> None:
    statuses = ["completed", "running", "failed", "queued", "cancelled"]
    for i, status in enumerate(statuses):
        await store.insert(job(f"job_{i}", at=10 - i, status=status))
    assert [record.id for record in await store.unfinished()] == ["job_3", "job_1"]


async def test_events_keep_their_order_and_last_seqs_has_every_job(store: JobStore) -> None:
    await store.insert(job("job_a"))
    await store.insert(job("job_b"))
    await store.append_event("job_a", 2, "update", {"progress_percent": 50})
    await store.append_event("job_a", 1, "update", {"status": "queued"})
    await store.append_event("job_a", 3, "result", {"video": "v", "at": T0})  # a datetime: kept as a string
    await store.append_event("job_b", 1, "error", {"message": "m"})
    assert await store.events("job_a") == [(1, "update", {"status": "queued"}), (2, "update", {"progress_percent": 50}),
                                           (3, "result", {"video": "v", "at": str(T0)})]
    assert await store.events("job_none") == []
    assert await store.last_seqs() == {"job_a": 3, "job_b": 1}


async def test_delete_forgets_the_job_and_its_events(store: JobStore) -> None:
    await store.insert(job("job_a", idempotency_key="k"))
    await store.append_event("job_a", 1, "update", {})
    await store.delete("job_a")
    await store.delete("job_a")  # twice: no error
    assert await store.get("job_a") is None and await store.events("job_a") == [] and await store.count() == 0
    assert await store.last_seqs() == {}
    assert await store.insert(job("job_b", idempotency_key="k"))  # the key is free again


async def test_prune_deletes_only_jobs_finished_before_the_cutoff(store: JobStore) -> None:
    cutoff = T0 + timedelta(days=1)
    await store.insert(job("job_old_done", status="completed"))
    await store.insert(job("job_old_failed", status="failed"))
    await store.insert(job("job_old_running", status="running"))  # unfinished: never pruned
    await store.insert(job("job_recent", status="cancelled", updated_at=cutoff + timedelta(seconds=1)))
    await store.append_event("job_old_done", 1, "result", {})
    removed = await store.prune(cutoff)
    assert sorted(removed) == ["job_old_done", "job_old_failed"]
    assert await store.events("job_old_done") == []
    assert sorted(r.id for r in await store.list(kind=None, owner=None, limit=10, after=None)) == [
        "job_old_running", "job_recent"]
    assert await store.prune(cutoff) == []


async def test_count_and_rows_written_move_with_writes(store: JobStore) -> None:
    before = store.rows_written
    await store.insert(job("job_a"))
    after_insert = store.rows_written
    await store.save(replace(job("job_a"), status="running"))
    await store.append_event("job_a", 1, "update", {})
    assert before < after_insert < store.rows_written and await store.count() == 1


async def test_a_job_without_timestamps_is_refused(store: JobStore) -> None:
    with pytest.raises(ValueError, match="created_at"):
        await store.insert(JobRecord(id="job_x", kind="video", route="r", request={}, chain=[]))
    assert await store.count() == 0


async def test_a_durable_store_keeps_everything_across_a_reopen(kind: StoreKind, request: pytest.FixtureRequest) -> None:
    if not kind.durable:
        pytest.skip("this store keeps nothing past its process")
    storage = kind.storage_for(request)
    first = kind.make(storage)
    await first.open()
    record = job("job_a", status="running", vendor_job=VendorJob(1, "vendor-1"), owner="o", idempotency_key="k")
    await first.insert(record)
    await first.append_event("job_a", 1, "update", {"status": "processing"})
    webhook = OutboxMessage("msg_a", "job_a", "https://hooks.example/a", created_at=T0, status="pending",
                            attempts=1, next_attempt_at=T0, last_error="timeout")
    await first.put_outbox(webhook)
    await first.close()
    second = kind.make(storage)
    await second.open()
    try:
        assert await second.get("job_a") == record
        assert [r.id for r in await second.unfinished()] == ["job_a"]
        assert await second.events("job_a") == [(1, "update", {"status": "processing"})]
        assert await second.last_seqs() == {"job_a": 1}
        assert not await second.insert(job("job_b", owner="o", idempotency_key="k"))
        assert await second.outbox("pending") == [webhook]
    finally:
        await second.close()


async def test_spend_adds_up_per_client_day_route_provider_and_model(store: JobStore) -> None:
    await store.add_spend([SpendEntry("alice", "2026-12-01", "r", "fal", "m", 0.4, 1),
                           SpendEntry("alice", "2026-12-01", "r", "openai", "s", 0.0, 0)])
    await store.add_spend([SpendEntry("alice", "2026-12-01", "r", "fal", "m", 0.25, 1),
                           SpendEntry("alice", "2026-12-02", "r", "fal", "m", 1.0, 1),
                           SpendEntry("bob", "2026-12-01", "r", "fal", "m", 2.0, 1)])
    await store.add_spend([])
    day = await store.spend("alice", "2026-12-01", "2026-12-01")
    assert sorted((e.provider, round(e.usd, 6), e.generations) for e in day) == [("fal", 0.65, 2), ("openai", 0.0, 0)]
    assert sum(e.usd for e in await store.spend("alice", "2026-12-01", "2026-12-31")) == pytest.approx(1.65)
    assert {e.client for e in await store.spend(None, "2026-12-01", "2026-12-01")} == {"alice", "bob"}
    assert await store.spend("carol", "2026-01-01", "2026-12-31") == []


async def test_a_durable_store_keeps_spend_across_a_reopen(kind: StoreKind, request: pytest.FixtureRequest) -> None:
    if not kind.durable:
        pytest.skip("this store keeps nothing past its process")
    storage = kind.storage_for(request)
    first = kind.make(storage)
    await first.open()
    await first.add_spend([SpendEntry("alice", "2026-12-01", "r", "fal", "m", 0.4, 1)])
    await first.close()
    second = kind.make(storage)
    await second.open()
    try:
        assert await second.spend("alice", "2026-12-01", "2026-12-01") == [
            SpendEntry("alice", "2026-12-01", "r", "fal", "m", 0.4, 1)]
    finally:
        await second.close()


async def test_the_outbox_keeps_each_state_of_a_client_webhook_and_goes_with_its_job(store: JobStore) -> None:
    await store.insert(job("j1"))
    await store.insert(job("j2", at=1))
    first = OutboxMessage("msg_j1", "j1", "https://hooks.example/a", created_at=T0)
    await store.put_outbox(first)
    await store.put_outbox(OutboxMessage("msg_j2", "j2", "https://hooks.example/b",
                                         created_at=T0 + timedelta(seconds=1)))
    assert [m.id for m in await store.outbox("waiting")] == ["msg_j1", "msg_j2"]
    first.status, first.attempts, first.next_attempt_at, first.last_status = "pending", 2, T0, 503
    await store.put_outbox(first)
    first.attempts = 99  # the store holds a copy
    assert await store.outbox_for_job("j1") == replace(first, attempts=2)
    assert [m.id for m in await store.outbox("pending")] == ["msg_j1"]
    assert [m.id for m in await store.outbox("waiting")] == ["msg_j2"] and await store.outbox("delivered") == []
    await store.delete("j1")
    assert await store.outbox_for_job("j1") is None and await store.outbox("pending") == []
    await store.save(replace(job("j2", at=1), status="completed"))
    await store.prune(T0 + timedelta(days=1))
    assert await store.outbox_for_job("j2") is None


# ---- leases -----------------------------------------------------------------------------------------------
LEASE = 30.0


async def test_saves_are_fenced_by_the_lease(store: JobStore) -> None:
    mine = job("job_1", worker="A")
    assert await store.insert(mine, lease_seconds=LEASE)
    assert (await store.get("job_1")).worker == "A"  # type: ignore[union-attr]
    assert await store.save(replace(mine, status="running", progress_percent=10))
    assert not await store.save(replace(mine, worker="B", progress_percent=99))  # B does not hold it
    assert not await store.save(replace(mine, worker=None, progress_percent=99))
    assert (await store.get("job_1")).progress_percent == 10  # type: ignore[union-attr]
    assert await store.claim("B", 10, LEASE) == []  # A's lease is live
    assert not await store.save(job("job_gone"))  # no such job: nothing written


async def test_a_job_nobody_holds_is_saved_by_nobody(store: JobStore) -> None:
    await store.insert(job("job_1", worker="A"))  # no lease_seconds: held by nobody
    assert (await store.get("job_1")).worker is None  # type: ignore[union-attr]
    assert await store.save(job("job_1", status="cancelled"))
    assert not await store.save(job("job_1", worker="A"))


async def test_claims_take_the_oldest_runnable_jobs_and_never_one_twice(store: JobStore) -> None:
    for i in range(6):
        await store.insert(job(f"job_{i}", at=i))
    await store.insert(job("job_done", at=-1, status="completed"))
    first = await store.claim("A", 2, LEASE)
    assert [j.id for j in first] == ["job_0", "job_1"] and {j.worker for j in first} == {"A"}
    assert await store.waiting() == 4
    racing = await asyncio.gather(store.claim("B", 3, LEASE), store.claim("C", 3, LEASE))
    ids = [j.id for claimed in racing for j in claimed]
    assert sorted(ids) == [f"job_{i}" for i in range(2, 6)]  # each once
    assert await store.claim("D", 10, LEASE) == [] and await store.waiting() == 0
    assert (await store.get("job_0")).worker == "A"  # type: ignore[union-attr]


async def test_a_lapsed_lease_is_taken_over_and_fences_out_the_old_holder(store: JobStore) -> None:
    held = job("job_1", worker="A", status="running", vendor_job=VendorJob(1, "vendor-9"))
    await store.insert(held, lease_seconds=0.2)
    assert await store.claim("B", 10, LEASE) == []
    await asyncio.sleep(0.3)
    assert await store.waiting() == 1  # a lapsed lease: claimable again
    taken = await store.claim("B", 10, LEASE)
    assert [(j.id, j.worker, j.vendor_job) for j in taken] == [("job_1", "B", held.vendor_job)]
    assert not await store.save(replace(held, progress_percent=50))  # A learns it at its next write
    assert await store.renew("A", LEASE) == {} and await store.renew("B", LEASE) == {"job_1": False}


async def test_renewal_keeps_a_lease_and_release_frees_it_at_once(store: JobStore) -> None:
    await store.insert(job("job_1", worker="A"), lease_seconds=0.3)
    await asyncio.sleep(0.15)
    assert await store.renew("A", LEASE) == {"job_1": False}
    await asyncio.sleep(0.25)
    assert await store.claim("B", 10, LEASE) == []  # renewed past the first lease
    await store.release("A")
    assert [j.id for j in await store.claim("B", 10, LEASE)] == ["job_1"]
    assert await store.save(job("job_1", worker="B", status="completed"))
    assert await store.renew("B", LEASE) == {}  # a finished job holds no lease
    await store.release("B")
    assert (await store.get("job_1")).worker == "B"  # type: ignore[union-attr]  # who finished it stays on record


async def test_cancel_requests_mark_unfinished_jobs_and_reach_the_next_claimer(store: JobStore) -> None:
    await store.insert(job("job_held", worker="A"), lease_seconds=LEASE)
    marked = await store.request_cancel("job_held")
    assert marked is not None and marked.cancel_requested and marked.worker == "A"
    assert await store.renew("A", LEASE) == {"job_held": True}  # the holder learns it at its renewal too
    assert await store.save(job("job_held", worker="A", progress_percent=5))
    assert (await store.get("job_held")).cancel_requested  # type: ignore[union-attr]  # a save keeps the request
    await store.insert(job("job_done", status="completed"))
    assert not (await store.request_cancel("job_done")).cancel_requested  # type: ignore[union-attr]
    assert await store.request_cancel("job_missing") is None
    await store.insert(job("job_free", at=1))
    await store.request_cancel("job_free")
    assert [(j.id, j.cancel_requested) for j in await store.claim("B", 10, LEASE)] == [("job_free", True)]


async def test_events_read_after_a_number_and_a_number_is_kept_once(store: JobStore) -> None:
    await store.insert(job("job_a"))
    await store.insert(job("job_b"))
    for seq in (1, 2, 3):
        await store.append_event("job_a", seq, "update", {"n": seq})
    await store.append_event("job_a", 2, "update", {"n": "late"})  # a former holder's late write loses
    assert [(seq, data) for seq, _, data in await store.events("job_a", after=1)] == [(2, {"n": 2}), (3, {"n": 3})]
    assert await store.last_seqs(["job_a", "job_b", "job_missing"]) == {"job_a": 3}
    assert await store.last_seqs([]) == {}


async def test_a_brief_list_has_what_list_views_show(store: JobStore) -> None:
    from router.jobs.store import LIST_REQUEST_FIELDS

    request = {"prompt": "a fox", "duration_seconds": 8, "aspect_ratio": "16:9", "resolution": "720p",
               "image_list": [{"image": {"content": "iVBORw0K" * 1000, "content_type": "image/png"},
                               "type": "first_frame"}]}
    assert await store.insert(job("job_media", request=request))
    [brief] = await store.list(kind=None, owner=None, limit=10, after=None, brief=True)
    assert {k: v for k, v in brief.request.items() if k in LIST_REQUEST_FIELDS} == \
        {k: request[k] for k in LIST_REQUEST_FIELDS}
    assert set(brief.request) <= set(LIST_REQUEST_FIELDS)  # no store reads inline input media for a list
    assert (await store.get("job_media")).request == request  # type: ignore[union-attr] # whole when asked for


async def test_only_a_shared_store_narrows_to_the_shared_protocol(store: JobStore) -> None:
    if store.shared:  # the methods only several instances need are there
        shared = shared_store(store)
        assert shared is store
        for name in ("record_outbox_try", "claim_outbox", "release_outbox", "note_push", "take_pushes"):
            assert callable(getattr(shared, name))
    else:
        with pytest.raises(TypeError, match="not shared"):
            shared_store(store)
