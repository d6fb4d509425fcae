"""One ``aiohttp.ClientSession`` per provider per event loop, reused by every request and closed on shutdown.

Per loop, because a session belongs to the loop that made it: the daemon has one loop, but the library's
sync functions run each call on a fresh loop.
"""

from __future__ import annotations

import asyncio

import aiohttp

from router.sync import register_loop_cleanup

_sessions: dict[tuple[int, str], aiohttp.ClientSession] = {}

#: Connection pool per provider: enough for thousands of concurrent polls without exhausting sockets.
CONNECTION_LIMIT = 256
USER_AGENT = "tarash-router/0.1 (+https://github.com/tarash-router)"


def session_for(provider: str) -> aiohttp.ClientSession:
    """The shared session of ``provider`` on the running loop."""
    key = (id(asyncio.get_running_loop()), provider)
    session = _sessions.get(key)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT, ttl_dns_cache=300),
            headers={"User-Agent": USER_AGENT},
            # Timeouts are set per request (every network await has its own); none here by design.
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
        )
        _sessions[key] = session
    return session


async def close_sessions() -> None:
    """Close every session opened on the running loop."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _sessions if k[0] == loop_id]:
        await _sessions.pop(key).close()


register_loop_cleanup(close_sessions)
