"""Run a coroutine to completion from synchronous code, inside or outside a running event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Block until ``coro`` finishes and return its result.

    Outside an event loop this is ``asyncio.run``. Called from a thread whose loop is running (a sync call
    inside async code, or a notebook), the coroutine runs on a fresh loop in a worker thread: nesting loops in
    one thread is impossible, and this keeps the caller's loop objects (sessions, locks) untouched.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_then_cleanup(coro))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tarash-sync") as pool:
        return pool.submit(asyncio.run, _then_cleanup(coro)).result()


LoopCleanup = Callable[[], Awaitable[None]]
_loop_cleanups: list[LoopCleanup] = []


def register_loop_cleanup(cleanup: LoopCleanup) -> None:
    """Run ``cleanup`` before a loop we own closes (and on ``router.aclose()``); providers use it to close
    the HTTP sessions they opened on that loop."""
    if cleanup not in _loop_cleanups:
        _loop_cleanups.append(cleanup)


async def aclose() -> None:
    """Release what the library holds on the running loop (HTTP sessions). Call before your loop ends."""
    for cleanup in list(_loop_cleanups):
        await cleanup()


async def _then_cleanup(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        await aclose()
