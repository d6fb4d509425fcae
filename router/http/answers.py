"""JSON answers: aiohttp's ``web.json_response`` with the encoder of ``router.json_text`` (the same bytes as
``json.dumps``, without building an encoder per answer)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import LooseHeaders

from router.json_text import dumps


def json_response(data: Any, *, status: int = 200, headers: LooseHeaders | None = None) -> web.Response:
    """``web.json_response(data, status=status, headers=headers)``."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)
