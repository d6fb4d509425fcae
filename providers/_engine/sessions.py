"""One ``aiohttp.ClientSession`` and one ``WirePool`` per provider per event loop, reused by every request and
closed on shutdown, with the provider's connection slots.

The engine sends its common calls (JSON or no body) on the ``WirePool`` (``providers._engine.wire``: kept-alive
connections at a fraction of aiohttp's CPU and objects per call) and the rest (multipart forms, URLs it does not
take) on the session, which other users of the provider's connections (token fetches, media fetches) share.

Per loop, because a session belongs to the loop that made it: the daemon has one loop, but the library's
sync functions run each call on a fresh loop.

Its ``CallDeadlines`` bound each call's duration (``HttpProvider.send``), the long ones on one timer per pool.

The slots (a semaphore of ``CONNECTION_LIMIT``, the connector's own limit) are taken by every call before it
asks the pool for a connection, so a call holding one never queues in the connector. That is what lets a submit
be recorded only once it can go out: a job that was still waiting for a connection when the process died did
not submit anything, and is submitted normally after the restart (see ``HttpProvider.send``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from providers._engine.wire import WirePool
from router.deadlines import CallDeadlines
from router.sync import register_loop_cleanup

#: Connection pool per provider: enough for thousands of concurrent polls without exhausting sockets.
CONNECTION_LIMIT = 256
USER_AGENT = "tarash-router/0.1 (+https://github.com/tarash-router)"


@dataclass(frozen=True)
class ProviderPool:
    """A provider's session and lean client, the slots their calls take (one per connection the pool may hold),
    and the timer of their timeouts."""

    session: aiohttp.ClientSession
    slots: asyncio.Semaphore
    deadlines: CallDeadlines
    wire: WirePool


_pools: dict[tuple[int, str], ProviderPool] = {}


def pool_for(provider: str, *, limit: int = CONNECTION_LIMIT, deadlines: CallDeadlines | None = None) -> ProviderPool:
    """The shared session and slots of ``provider`` on the running loop (``limit``: its connections, and
    ``deadlines``: its calls' timeouts, when made)."""
    key = (id(asyncio.get_running_loop()), provider)
    pool = _pools.get(key)
    if pool is None or pool.session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
            headers={"User-Agent": USER_AGENT},
            # Timeouts are set per request (every network await has its own); none here by design.
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
        )
        pool = _pools[key] = ProviderPool(session, asyncio.Semaphore(limit), deadlines or CallDeadlines(),
                                          WirePool(user_agent=USER_AGENT))
    return pool


def session_for(provider: str) -> aiohttp.ClientSession:
    """The shared session of ``provider`` on the running loop."""
    return pool_for(provider).session


async def close_sessions() -> None:
    """Close every session and lean client's connection opened on the running loop."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _pools if k[0] == loop_id]:
        pool = _pools.pop(key)
        pool.wire.close()
        await asyncio.sleep(0)  # the closed transports' sockets are released in the loop's next callbacks
        await pool.session.close()


register_loop_cleanup(close_sessions)
