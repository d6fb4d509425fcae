"""The SSRF guard refuses non-http(s) URLs and non-public addresses, literal or resolved."""

from __future__ import annotations

import pytest
from aiohttp import web

from providers._engine.media import fetch_media
from router.errors import InvalidRequestError
from router.netguard import ALLOW_PRIVATE_ENV, BlockedURLError, check_url, is_public
from tests.net import serving


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1",
                                     "64:ff9b::7f00:1", "64:ff9b:1::a9fe:a9fe", "2002:a00:1::", "::10.0.0.1",
                                     "::ffff:0:7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe"])
def test_non_public_addresses(address: str) -> None:
    assert not is_public(address)


def test_public_addresses() -> None:
    assert is_public("8.8.8.8") and is_public("2606:4700:4700::1111") and is_public("64:ff9b::808:808")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http://127.0.0.1:8787/healthz",
                                 "http://[::1]/", "http://169.254.169.254/latest/meta-data/", "ftp://example.com/a"])
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(BlockedURLError):
        check_url(url, allow_private=False)


def test_check_url_allows_public_and_names() -> None:
    check_url("https://cdn.example.com/a.png", allow_private=False)
    check_url("http://127.0.0.1/a.png", allow_private=True)


async def test_fetch_guard_against_a_real_loopback_server(monkeypatch: pytest.MonkeyPatch) -> None:
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\x89PNG-bytes", content_type="image/png")

    app = web.Application()
    app.router.add_get("/x.png", serve)
    async with serving(app) as base:
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
        with pytest.raises(InvalidRequestError, match="refused"):
            await fetch_media(f"{base}/x.png")
        with pytest.raises(InvalidRequestError, match="localhost"):
            await fetch_media(base.replace("127.0.0.1", "localhost") + "/x.png")  # a name resolving to loopback
        assert hits == []  # nothing reached the server
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "true")
        assert await fetch_media(f"{base}/x.png") == (b"\x89PNG-bytes", "image/png")
        with pytest.raises(InvalidRequestError, match="larger than"):
            await fetch_media(f"{base}/x.png", max_bytes=4)
