"""Run a coroutine to completion from synchronous code, inside or outside a running event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
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
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tarash-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
