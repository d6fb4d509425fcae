"""Server-sent events: ``event: <name>`` + ``data: <json>`` frames."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # proxies (nginx) must not buffer a progress stream
    })
    await response.prepare(request)
    return response


async def send(response: web.StreamResponse, event: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"), default=str)
    await response.write(f"event: {event}\ndata: {payload}\n\n".encode())


async def keepalive(response: web.StreamResponse) -> None:
    """An SSE comment: clients ignore it, proxies see traffic on an otherwise idle stream."""
    await response.write(b": keep-alive\n\n")


def wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")
