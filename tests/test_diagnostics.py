"""``router.diagnostics``: what the daemon's tasks wait on, and a shutdown bounded in time."""

from __future__ import annotations

import asyncio

import structlog
from structlog.testing import capture_logs

from router.diagnostics import pending_tasks, stop_within


async def test_each_pending_task_is_named_with_the_chain_of_awaits_it_is_suspended_in() -> None:
    async def inner(event: asyncio.Event) -> None:
        await event.wait()

    async def outer(event: asyncio.Event) -> None:
        await inner(event)

    event = asyncio.Event()
    task = asyncio.create_task(outer(event), name="waiting one")
    await asyncio.sleep(0)
    found = {item["task"]: item["waits_in"] for item in pending_tasks()}
    assert [frame.split(" ")[-1] for frame in found["waiting one"][:3]] == ["outer", "inner", "wait"]
    event.set()
    await task


async def test_a_shutdown_past_its_bound_logs_what_is_still_pending_and_exits_at_once() -> None:
    done = False

    async def stubborn() -> None:  # a step that ignores its cancel: what hung a worker's stop in CI
        while not done:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)  # inside its loop now

    async def steps() -> None:
        task.cancel()
        await asyncio.shield(task)

    exits: list[int] = []
    with capture_logs() as logs:
        await stop_within(0.05, steps, structlog.get_logger(), exit_now=exits.append)
    assert exits == [1]
    (line,) = [entry for entry in logs if entry["event"] == "shutdown_timed_out"]
    assert line["seconds"] == 0.05 and any(item["task"] == "stubborn" for item in line["tasks"])
    done = True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_shutdown_within_its_bound_just_ends() -> None:
    exits: list[int] = []

    async def steps() -> None:
        await asyncio.sleep(0)

    await stop_within(1.0, steps, structlog.get_logger(), exit_now=exits.append)
    assert exits == []
