"""The spend ledger's batched writes (router/spend_writer.py): generations ending together share one write,
summed per ledger row; flush writes at once and waits; a failed write keeps its entries and is retried."""

from __future__ import annotations

import asyncio

import pytest

from router.jobs.memory import MemoryJobStore
from router.jobs.store import SpendEntry
from router.spend_writer import SpendWriter, summed


class CountingStore(MemoryJobStore):
    """The memory store, counting ``add_spend`` calls and failing them while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[SpendEntry]] = []
        self.down = False

    async def add_spend(self, entries: list[SpendEntry]) -> None:
        if self.down:
            raise OSError("disk full")
        self.writes.append(entries)
        await super().add_spend(entries)


def entry(client: str = "alice", usd: float = 0.4, generations: int = 1, model: str = "m") -> SpendEntry:
    return SpendEntry(client, "2026-12-01", "r", "fal", model, usd, generations)


async def test_spends_recorded_together_share_one_write_summed_per_row() -> None:
    store = CountingStore()
    writer = SpendWriter(store, delay=60)  # only flush writes in this test
    for _ in range(3):
        writer.add([entry()])
    writer.add([entry(model="other", usd=0.1, generations=0), entry("bob")])
    assert store.writes == []  # nothing written yet: the writes wait for company
    await writer.flush()
    assert len(store.writes) == 1
    assert sorted(store.writes[0], key=lambda e: (e.client, e.model)) == [
        entry(usd=pytest.approx(1.2), generations=3), entry(model="other", usd=0.1, generations=0), entry("bob")]
    await writer.flush()  # nothing buffered: no write
    assert len(store.writes) == 1
    assert sum(e.usd for e in await store.spend("alice", "2026-12-01", "2026-12-01")) == pytest.approx(1.3)


async def test_a_recorded_spend_is_written_after_the_delay_without_a_flush() -> None:
    store = CountingStore()
    writer = SpendWriter(store, delay=0.01)
    writer.add([entry()])
    for _ in range(500):
        if store.writes:
            break
        await asyncio.sleep(0.01)
    assert store.writes == [[entry()]]


async def test_a_failed_write_keeps_its_entries_and_flush_raises_until_the_store_is_back() -> None:
    store = CountingStore()
    writer = SpendWriter(store, delay=60)
    writer.add([entry()])
    store.down = True
    with pytest.raises(OSError, match="disk full"):
        await writer.flush()
    writer.add([entry()])
    store.down = False
    await writer.flush()
    assert store.writes == [[entry(usd=pytest.approx(0.8), generations=2)]]


class TimedStore(MemoryJobStore):
    """Each ``add_spend``'s start and end on the loop's clock; the first one waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()  # the first write is in flight
        self.spans: list[tuple[float, float]] = []

    async def add_spend(self, entries: list[SpendEntry]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self.spans:
            self.entered.set()
            await self.gate.wait()
        await super().add_spend(entries)
        self.spans.append((started, loop.time()))


async def test_spends_recorded_during_a_write_wait_the_delay_too() -> None:
    """Under load a write is in flight nearly all the time; the next one still waits ``delay`` after it, so
    writes come once per delay, not back to back (they did: one every ~10 ms at 2,400 requests a second)."""
    store, delay = TimedStore(), 0.05
    writer = SpendWriter(store, delay=delay)
    writer.add([entry()])
    await asyncio.wait_for(store.entered.wait(), 5)  # the first write has started and waits for the gate
    writer.add([entry("bob")])  # recorded while it is in flight
    store.gate.set()
    for _ in range(500):
        if len(store.spans) == 2:
            break
        await asyncio.sleep(0.01)
    (_, first_end), (second_start, _) = store.spans
    assert second_start - first_end >= delay - 0.005
    assert sorted(e.client for e in await store.spend(None, "2026-12-01", "2026-12-01")) == ["alice", "bob"]


async def test_flush_writes_what_arrived_during_a_write_without_waiting_for_the_delay() -> None:
    store = TimedStore()
    writer = SpendWriter(store, delay=60)
    writer.add([entry()])
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.wait_for(store.entered.wait(), 5)
    writer.add([entry("bob")])  # during the flush's first write
    store.gate.set()
    await asyncio.wait_for(flushing, 5)
    assert len(store.spans) == 2 and sorted(e.client for e in await store.spend(None, "2026-12-01", "2026-12-01")) \
        == ["alice", "bob"]


def test_summed_keeps_distinct_rows_apart() -> None:
    rows = summed([entry(), entry("bob"), entry(), SpendEntry("alice", "2026-12-02", "r", "fal", "m", 0.4, 1)])
    assert len(rows) == 3 and rows[0] == entry(usd=pytest.approx(0.8), generations=2)
