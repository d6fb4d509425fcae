"""``cancel_and_wait``: how every component ends the tasks it started."""

from __future__ import annotations

import asyncio

import pytest

from router.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_has_ended_when_it_returns() -> None:
    started = asyncio.Event()
    cleaned: list[str] = []

    async def runs_forever(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that awaits is waited for too
            cleaned.append(name)

    tasks = [asyncio.create_task(runs_forever(name)) for name in ("a", "b")]
    await started.wait()
    await cancel_and_wait(tasks)
    assert all(task.cancelled() for task in tasks)
    assert sorted(cleaned) == ["a", "b"]


async def test_a_task_that_failed_or_finished_does_not_fail_the_stop() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def finishes() -> str:
        return "done"

    tasks = [asyncio.create_task(fails()), asyncio.create_task(finishes())]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert isinstance(tasks[0].exception(), RuntimeError)
    assert tasks[1].result() == "done"


async def test_a_set_the_tasks_leave_when_done_can_be_passed_as_it_is() -> None:
    running: set[asyncio.Task[None]] = set()
    for _ in range(3):
        task = asyncio.create_task(asyncio.Event().wait())  # type: ignore[arg-type]
        running.add(task)
        task.add_done_callback(running.discard)
    ended = list(running)
    await cancel_and_wait(running)
    assert not running and all(task.cancelled() for task in ended)


async def test_a_stop_cancelled_while_waiting_still_lets_the_cleanups_end_then_is_cancelled() -> None:
    hold = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await hold.wait()

    inner = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait([inner]))
    await asyncio.sleep(0)
    stopping.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    assert not stopping.done() and not inner.done()  # a second cancel does not cut a cleanup short
    hold.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 5)
    assert inner.cancelled()
