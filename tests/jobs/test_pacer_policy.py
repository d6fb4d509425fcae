"""``PaceQueue``, the pacer's policy, on an injected clock (plain numbers, no loop time, no sleeps): due polls wake
in deadline order while the loop keeps up; while it is behind they are held, never past their slack; held ones
wake first once it caught up; nothing starves however long it stays behind."""

from __future__ import annotations

import asyncio

from router.jobs.pacer import PaceQueue


def _queue(entries: list[tuple[float, float]]) -> tuple[PaceQueue, list[asyncio.Future[None]]]:
    loop = asyncio.get_running_loop()
    queue, waiters = PaceQueue(), [loop.create_future() for _ in entries]
    for (deadline, slack), waiter in zip(entries, waiters, strict=True):
        queue.add(deadline, slack, waiter)
    return queue, waiters


def _woken(waiters: list[asyncio.Future[None]]) -> list[int]:
    return [i for i, waiter in enumerate(waiters) if waiter.done()]


async def test_keeping_up_due_waiters_wake_in_deadline_order_a_batch_at_a_time() -> None:
    queue, waiters = _queue([(3.0, 1.0), (1.0, 1.0), (2.0, 1.0), (9.0, 1.0)])
    assert queue.wake(0.5, behind=False, limit=16) == 0  # none before its deadline
    assert queue.wake(3.0, behind=False, limit=2) == 2
    assert _woken(waiters) == [1, 2]  # the two earliest deadlines
    assert queue.next_at(3.0, behind=False, recheck=0.02) == 3.0  # one more is due: at once
    assert queue.wake(3.0, behind=False, limit=2) == 1
    assert _woken(waiters) == [0, 1, 2]
    assert queue.next_at(3.0, behind=False, recheck=0.02) == 9.0


async def test_behind_due_waiters_are_held_until_their_slack_and_never_longer() -> None:
    queue, waiters = _queue([(1.0, 0.5), (1.2, 2.0), (1.1, 0.5)])
    assert queue.wake(1.3, behind=True, limit=16) == 0  # all three due, all held
    # It looks again at the first latest start (1.5), or sooner to see whether the loop caught up.
    assert queue.next_at(1.3, behind=True, recheck=0.02) == 1.32
    assert queue.next_at(1.3, behind=True, recheck=1.0) == 1.5
    assert queue.wake(1.49, behind=True, limit=16) == 0
    assert queue.wake(1.5, behind=True, limit=16) == 1 and _woken(waiters) == [0]  # 1.0 + 0.5, still behind
    assert queue.wake(1.6, behind=True, limit=16) == 1 and _woken(waiters) == [0, 2]  # 1.1 + 0.5
    assert queue.next_at(1.6, behind=True, recheck=5.0) == 3.2  # 1.2 + 2.0
    assert queue.wake(3.2, behind=True, limit=16) == 1 and _woken(waiters) == [0, 1, 2]
    assert queue.next_at(3.2, behind=True, recheck=0.02) == float("inf")


async def test_once_caught_up_held_waiters_wake_first_in_deadline_order() -> None:
    queue, waiters = _queue([(1.0, 3.0), (1.1, 3.0), (1.2, 3.0)])
    queue.wake(1.15, behind=True, limit=16)  # the first two are held
    assert not _woken(waiters)
    assert queue.next_at(1.2, behind=False, recheck=0.02) == 1.2  # caught up: at once
    assert queue.wake(1.2, behind=False, limit=1) == 1 and _woken(waiters) == [0]
    assert queue.wake(1.2, behind=False, limit=1) == 1 and _woken(waiters) == [0, 1]
    assert queue.wake(1.2, behind=False, limit=1) == 1 and _woken(waiters) == [0, 1, 2]


async def test_nothing_starves_while_the_loop_stays_behind() -> None:
    """A new poll comes due every 10 ms for 20 s of fake time, the loop behind the whole time, waking at most 4
    per look, each look 10 ms apart: every poll wakes, none later than its slack past its deadline, in order."""
    loop, queue, clock = asyncio.get_running_loop(), PaceQueue(), [0.0]
    woke: list[tuple[float, float]] = []  # (deadline, the fake time of the look that woke it)

    def look(now: float) -> None:
        clock[0] = now
        queue.wake(now, behind=True, limit=4)

    for step in range(2000):
        waiter, deadline = loop.create_future(), step * 0.01 + 0.5
        waiter.add_done_callback(lambda _, deadline=deadline: woke.append((deadline, clock[0])))
        queue.add(deadline, 0.25, waiter)
        look(step * 0.01)
        await asyncio.sleep(0)  # the done callbacks run before the clock moves on
    while (at := queue.next_at(clock[0], behind=True, recheck=0.01)) < float("inf"):
        look(at)
        await asyncio.sleep(0)
    assert len(woke) == 2000
    assert [deadline for deadline, _ in woke] == sorted(deadline for deadline, _ in woke)  # in deadline order
    assert all(deadline + 0.25 - 1e-9 <= at <= deadline + 0.25 + 0.01 for deadline, at in woke)


async def test_a_cancelled_waiter_takes_no_wake_up_held_or_not() -> None:
    queue, waiters = _queue([(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)])
    waiters[0].cancel()
    assert queue.wake(1.0, behind=False, limit=1) == 1 and _woken(waiters) == [0, 1]  # 0 done by its cancel
    queue.wake(1.5, behind=True, limit=1)  # 2 is held
    waiters[2].cancel()
    assert queue.next_at(1.5, behind=True, recheck=0.02) == float("inf")  # nothing left to wake
