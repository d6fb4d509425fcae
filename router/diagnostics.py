"""What a running daemon is waiting on, on request: ``kill -USR1 <pid>`` logs one ``tasks`` line with every
pending asyncio task and where it is suspended. For a daemon (or a worker) that does not stop or does not answer:
the line names the awaits, which a thread dump (all threads idle in ``epoll``) cannot. And a shutdown that does
not end in time (``stop_within``) logs the same before the process exits.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

#: Frames kept per task: the innermost ones say what it waits on.
FRAMES_PER_TASK = 8


def pending_tasks() -> list[dict[str, Any]]:
    """Every pending task of the running loop: its name and the chain of awaits it is suspended in, outermost
    first, as ``file:line function`` (the innermost ``FRAMES_PER_TASK``), ending with what the last one awaits."""
    found = []
    for task in asyncio.all_tasks():
        found.append({"task": task.get_name(), "waits_in": _awaits(task.get_coro())[-FRAMES_PER_TASK:]})
    return sorted(found, key=lambda item: item["task"])


def _awaits(awaitable: Any) -> list[str]:
    """Follow ``cr_await`` (and ``gi_yieldfrom``) down to the innermost suspended frame."""
    chain: list[str] = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:  # a future, a task, an awaitable object: what the innermost frame waits for
            chain.append(type(awaitable).__name__)
            break
        code = frame.f_code
        chain.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return chain


def log_tasks(log: Any) -> None:
    """One ``tasks`` line (warning level: it is asked for, so it shows at every log level)."""
    tasks = pending_tasks()
    log.warning("tasks", count=len(tasks), tasks=tasks)


async def stop_within(seconds: float, steps: Callable[[], Awaitable[None]], log: Any,
                      exit_now: Callable[[int], Any] = os._exit) -> None:
    """Run the shutdown ``steps`` for ``seconds`` at most. Past that: one ``shutdown_timed_out`` line with every
    pending task, then ``exit_now(1)``, at once, since a task that ignores its cancel would hang ``asyncio.run``'s
    own cleanup too. A worker whose supervisor was killed has nobody else to bound its stop."""
    try:
        async with asyncio.timeout(seconds):
            await steps()
    except TimeoutError:
        log.error("shutdown_timed_out", seconds=seconds, tasks=pending_tasks())
        exit_now(1)
