"""``PollPacer``: sleeps wake in deadline order, at most ``batch`` per loop iteration, and cancel like
``asyncio.sleep``."""

from __future__ import annotations

import asyncio

import pytest

from router.jobs.pacer import PollPacer


async def _iterations(counter: list[int]) -> None:
    """Count loop iterations: one step per iteration (``sleep(0)`` yields exactly once)."""
    while True:
        counter[0] += 1
        await asyncio.sleep(0)


async def test_due_sleeps_wake_at_most_a_batch_per_loop_iteration() -> None:
    pacer, tick, woke = PollPacer(batch=3), [0], []
    ticker = asyncio.create_task(_iterations(tick))

    async def sleeper(i: int) -> None:
        await pacer.sleep(0.01)
        woke.append((tick[0], i))

    await asyncio.gather(*(sleeper(i) for i in range(10)))
    ticker.cancel()
    assert [i for _, i in woke] == list(range(10))  # in the order they slept
    per_iteration: dict[int, int] = {}
    for at, _ in woke:
        per_iteration[at] = per_iteration.get(at, 0) + 1
    assert max(per_iteration.values()) == 3
    assert len(per_iteration) == 4  # 3 + 3 + 3 + 1, each batch in an iteration of its own


async def test_earlier_deadlines_wake_first_and_none_wakes_early() -> None:
    pacer, loop, woke = PollPacer(), asyncio.get_running_loop(), []

    async def sleeper(seconds: float) -> None:
        started = loop.time()
        await pacer.sleep(seconds)
        assert loop.time() - started >= seconds - 0.001
        woke.append(seconds)

    await asyncio.gather(sleeper(0.03), sleeper(0.01), sleeper(0.02), sleeper(0))
    assert woke == [0, 0.01, 0.02, 0.03]


async def test_a_cancelled_sleep_raises_and_takes_no_wake_up() -> None:
    pacer, woke = PollPacer(batch=1), []
    cancelled = asyncio.create_task(pacer.sleep(0.01))

    async def sleeper() -> None:
        await pacer.sleep(0.01)
        woke.append(True)

    other = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    async with asyncio.timeout(1):
        await other
    assert woke == [True]
