"""Waiting in tests for what the code under test does in the background, without sleeping for real seconds."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

#: Every wait's bound: never reached when the code is right (a condition met at once is seen within a poll).
WAIT_SECONDS = 10.0


async def until(predicate: Callable[[], Any], timeout: float = WAIT_SECONDS) -> None:
    """Return once ``predicate()`` is true (a plain function, or one returning an awaitable, which is awaited),
    polled every 5 ms; an ``AssertionError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        await asyncio.sleep(0.005)
