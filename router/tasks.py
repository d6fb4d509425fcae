"""Ending background tasks: the one way every component stops the tasks it started."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, however it ends: a stop must not fail because a task
    it stops failed (each logs its own errors where they matter). ``tasks`` is read once, first, so a set the
    tasks remove themselves from when done may be passed as it is. Cancelled while it waits, it still waits for
    the tasks' cleanups to end (``asyncio.gather``'s rule), then raises ``CancelledError``."""
    ending = list(tasks)
    for task in ending:
        task.cancel()
    await asyncio.gather(*ending, return_exceptions=True)
