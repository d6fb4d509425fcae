"""``PollPacer`` on a real loop: sleeps wake in deadline order, at most ``batch`` per loop iteration, and cancel like
``asyncio.sleep``; while the loop is behind (a fake signal, or the real one made late by blocking the loop for
40 ms) and API requests come in, a due sleep is held up to its slack; without requests nothing is held, and a
cancel is never held. The policy itself, on an injected clock:
``test_pacer_policy.py``."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.jobs.pacer import LoopLag, PollPacer


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


def _always_behind(late: float, now: float) -> bool:
    return True


async def test_while_behind_a_due_sleep_wakes_at_its_slack_not_before() -> None:
    """A fake signal says the loop is behind throughout: the sleep of 20 ms is held its slack (half of it: 10 ms)."""
    pacer, loop = PollPacer(behind=_always_behind), asyncio.get_running_loop()
    assert pacer.slack(0.02) == 0.01 and pacer.slack(60) == pacer.max_defer == 2.5  # half the wait, at most 2.5 s
    assert pacer.slack(0) == 0  # the first poll after a submit is never held
    pacer.demand()  # an API request came in
    started = loop.time()
    await pacer.sleep(0.02)
    assert loop.time() - started >= 0.03 - 0.001


async def test_without_api_requests_a_behind_loop_holds_nothing() -> None:
    """Polls yield only to API requests: with none in the last second, a due sleep wakes at its time, behind or not
    (holding it would only move its job's later polls)."""
    pacer, loop = PollPacer(behind=_always_behind, max_defer=30, fraction=3000), asyncio.get_running_loop()
    started = loop.time()
    await pacer.sleep(0.01)
    assert loop.time() - started < 0.5


async def test_a_held_sleep_cancels_at_once() -> None:
    """A cancel (a job cancelled, the daemon stopping) is never held: the held sleep raises as soon as it is
    cancelled, long before its slack (30 s) is up."""
    pacer, loop = PollPacer(behind=_always_behind, max_defer=30, fraction=3000), asyncio.get_running_loop()
    pacer.demand()
    held = asyncio.create_task(pacer.sleep(0.01))
    await asyncio.sleep(0.05)  # due, and held
    assert not held.done()
    started = loop.time()
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert loop.time() - started < 0.5


async def test_a_late_timer_holds_due_polls_until_the_loop_caught_up() -> None:
    """The real signal (``LoopLag``): the loop is blocked for 40 ms while a poll comes due, so the pacer's timer
    runs ~25 ms late and the poll is held; it wakes once the loop has run on time for the signal's window (100 ms),
    well before its slack (1 s) is up."""
    pacer, loop = PollPacer(max_defer=1.0, fraction=50), asyncio.get_running_loop()
    assert isinstance(pacer.behind, LoopLag) and pacer.slack(0.02) == 1.0
    loop.call_later(0.005, time.sleep, 0.04)  # blocks the loop from 5 to 45 ms
    pacer.demand()
    started = loop.time()
    await pacer.sleep(0.02)  # due at 20 ms: its timer runs at ~45 ms
    waited = loop.time() - started
    assert 0.045 + pacer.behind.window - 0.005 <= waited < 0.6  # held through the window, not to its 1-s slack


def test_loop_lag_is_behind_for_a_window_after_a_late_look() -> None:
    lag = LoopLag(threshold=0.01, window=0.1)
    assert not lag(0.005, now=1.0)
    assert lag(0.02, now=1.0)  # late
    assert lag(0.0, now=1.09)  # on time, but within the window of the late look
    assert not lag(0.0, now=1.1)
