"""A deadline for a connection's first request head, against slow-header (slowloris) clients.

aiohttp has no header-read timeout: a client that connects and dribbles header bytes holds its connection open
forever. This runner gives every new connection ``header_timeout`` seconds to deliver a complete request head,
then closes it. (aiohttp offers no hook for this, so the runner swaps in a server class whose protocol factory
arms the deadline; the rest of aiohttp's behaviour is untouched.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server


class _DeadlineHandler(RequestHandler):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._deadline = asyncio.get_running_loop().call_later(self._header_timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self._request_count:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _expire(self) -> None:
        self._deadline = None
        if not self._request_count and self.transport is not None:
            self.transport.close()


class _DeadlineServer(Server):
    header_timeout: float

    def __call__(self) -> RequestHandler:
        return _DeadlineHandler(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections must send their first request head within ``header_timeout``."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _DeadlineServer
        server.header_timeout = self._header_timeout  # type: ignore[attr-defined]
        return server
