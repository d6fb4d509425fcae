"""``CallDeadlines``: a long call's timeout on its provider's shared timer behaves as a timer of its own (the call
raises ``TimeoutError``, a cancel from outside stays a cancel, nothing is left open), and through the engine a hung
call maps to the same errors as with aiohttp's own ``total`` timeout. Ticks of 10 ms: no real waits of seconds."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import router
from providers._engine.sessions import pool_for
from router.deadlines import CallDeadlines
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.providers.test_faults import SYNC_IMAGE
from tests.providers.vendors import CASES, VENDORS, make_emulator, request_for

TICK = 0.01


def shared(deadlines: CallDeadlines) -> bool:
    """Whether ``deadlines`` holds no open call and no timer (private state: nothing else shows it)."""
    return not deadlines._due and deadlines._timer is None  # noqa: SLF001


async def test_a_short_timeout_keeps_aiohttps_exact_total() -> None:
    context, timeout = CallDeadlines(tick=TICK, exact_below=0.05).bound(0.04)
    assert isinstance(context, contextlib.nullcontext)
    assert timeout.total == 0.04 and timeout.connect is None and timeout.sock_connect == 10.0


async def test_a_long_call_past_its_deadline_raises_timeout_error_within_a_tick() -> None:
    deadlines = CallDeadlines(tick=TICK, exact_below=0.05)
    context, timeout = deadlines.bound(0.05)
    assert timeout.total is None and timeout.connect == 0.05  # aiohttp still bounds the connect phase
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with context:
            await asyncio.Event().wait()
    assert 0.05 + TICK <= loop.time() - started < 0.05 + 4 * TICK + 0.2  # the connect bound first, then the call's
    await asyncio.sleep(2 * TICK)
    assert shared(deadlines)


async def test_calls_that_end_in_time_are_forgotten_and_the_timer_stops() -> None:
    deadlines = CallDeadlines(tick=TICK, exact_below=0.05)

    async def call(seconds: float) -> str:
        async with deadlines.bound(10.0)[0]:
            await asyncio.sleep(seconds)
        return "answered"

    assert await asyncio.gather(*(call(i * TICK / 4) for i in range(20))) == ["answered"] * 20
    assert not deadlines._due  # noqa: SLF001
    await asyncio.sleep(2 * TICK)
    assert shared(deadlines)


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    deadlines = CallDeadlines(tick=TICK, exact_below=0.05)
    entered = asyncio.Event()

    async def call() -> None:
        async with deadlines.bound(10.0)[0]:
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(2 * TICK)
    assert shared(deadlines)


async def test_a_block_below_the_tick_keeps_an_exact_timer() -> None:
    assert isinstance(CallDeadlines(tick=TICK, exact_below=0.05).block(0.04), asyncio.Timeout)


async def test_blocks_expire_each_at_its_own_tick_never_before_their_deadline() -> None:
    """The timing wheel: blocks of different lengths, open together, each raise ``TimeoutError`` at a tick at or
    after its deadline; one that ended in time is not expired; nothing is left."""
    deadlines = CallDeadlines(tick=TICK, exact_below=0.01)
    loop = asyncio.get_running_loop()

    async def block(seconds: float, work: float = 3600) -> float | str:
        started = loop.time()
        try:
            async with deadlines.block(seconds):
                await asyncio.sleep(work)
        except TimeoutError:
            return loop.time() - started
        return "done"

    results = await asyncio.gather(block(0.05), block(0.02), block(0.08), block(0.05, work=0.01))
    assert results[3] == "done"
    for seconds, took in zip((0.05, 0.02, 0.08), results[:3]):
        assert isinstance(took, float) and took >= seconds  # never early (late by a tick on a free loop: not timed)
    await asyncio.sleep(2 * TICK)
    assert shared(deadlines)


HUNG = [(vendor, kind, "submit", "AmbiguousSubmitError") for vendor, kind in CASES] + [
    (vendor, kind, "status", "ProviderTimeoutError") for vendor, kind in CASES if (vendor, kind) not in SYNC_IMAGE]


@pytest.mark.parametrize("vendor,kind,step,error_type", HUNG)
async def test_a_hung_vendor_call_on_the_shared_timer_fails_as_with_its_own(vendor: str, kind: str, step: str,
                                                                             error_type: str) -> None:
    spec = VENDORS[vendor]
    async with make_emulator(vendor) as emu:
        emu.inject(Fault.HANG, step=step, times=10)
        deadlines = CallDeadlines(tick=TICK, exact_below=0.1)
        pool_for(spec.provider, deadlines=deadlines)  # this test's loop gets a pool with 10-ms ticks
        # 0.25 s, not 0.1: a connect (a status poll may open a fresh connection) that a stalled loop (a GC pause,
        # a busy machine: the cause was not found) keeps past the bound fails as "cannot connect", as it should,
        # not as the hang (CI saw it once with 0.1 s).
        config = spec.config(emu, kind, provider_config={"request_timeout": 0.25}, timeout=30)
        with pytest.raises(router.TarashError) as info:
            await run_chain(kind, config, request_for(kind))  # type: ignore[arg-type]
    error = info.value
    error = error.last_error if isinstance(error, router.AllAttemptsFailedError) else error
    assert type(error).__name__ == error_type, repr(error)
    assert "TimeoutError" in error.message
    assert not deadlines._due  # noqa: SLF001
