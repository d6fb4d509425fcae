"""docs/http-api.md documents every endpoint the daemon serves (method and path template, as `METHOD /path`).
When this fails after adding an endpoint, document it in docs/http-api.md."""

from __future__ import annotations

import re
from pathlib import Path

from tests.daemon.conftest import Daemon

HTTP_API_MD = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"


async def test_every_endpoint_is_documented(daemon: Daemon) -> None:
    served = {f"{route.method} {route.resource.canonical}" for route in daemon.server.app.router.routes()
              if route.method != "HEAD" and route.resource is not None}  # aiohttp adds HEAD to every GET
    text = HTTP_API_MD.read_text()
    documented = set(re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE) /[^`\s]*)`", text))
    assert served - documented == set(), f"docs/http-api.md lacks {sorted(served - documented)}"
    assert documented - served == set(), f"docs/http-api.md documents endpoints that do not exist: {sorted(documented - served)}"
