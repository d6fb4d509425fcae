"""``router.fetch.open_url`` follows redirects itself: a hop to another origin gets none of the request's headers
and never its body (a Vertex token request's signed assertion stays with the token endpoint it was made for)."""

from __future__ import annotations

import pytest
from aiohttp import web

from router.fetch import FetchError, FetchPolicy, open_url, read_limited
from tests.net import serving

LOOPBACK = FetchPolicy(allow_private=True)


def _app(seen: list[tuple[str, str, str | None, bytes]], redirects: dict[str, tuple[int, str]]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Metadata-Flavor"), await request.read()))
        if request.path in redirects:
            status, location = redirects[request.path]
            return web.Response(status=status, headers={"Location": location})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _fetch(url: str, **kwargs: object) -> str:
    async with open_url(url, LOOPBACK, **kwargs) as response:  # type: ignore[arg-type]
        return (await read_limited(response, LOOPBACK)).decode()


@pytest.mark.parametrize("status", [307, 308])
async def test_a_body_is_re_sent_on_its_own_origin_and_never_to_another(status: int) -> None:
    here: list[tuple[str, str, str | None, bytes]] = []
    away: list[tuple[str, str, str | None, bytes]] = []
    async with serving(_app(away, {})) as elsewhere:
        redirects = {"/token": (status, "/token2"), "/token2": (status, f"{elsewhere}/steal")}
        async with serving(_app(here, redirects)) as base:
            with pytest.raises(FetchError, match="another origin") as info:
                await _fetch(f"{base}/token", method="POST", data={"assertion": "signed-jwt"})
    assert [(m, p, b) for m, p, _, b in here] == [("POST", "/token", b"assertion=signed-jwt"),
                                                 ("POST", "/token2", b"assertion=signed-jwt")]
    assert away == [] and "signed-jwt" not in str(info.value)


async def test_headers_stay_on_their_origin_and_a_post_turned_get_may_leave_it() -> None:
    here: list[tuple[str, str, str | None, bytes]] = []
    away: list[tuple[str, str, str | None, bytes]] = []
    async with serving(_app(away, {})) as elsewhere:
        redirects = {"/meta": (302, "/meta2"), "/meta2": (302, f"{elsewhere}/other"), "/form": (303, f"{elsewhere}/x")}
        async with serving(_app(here, redirects)) as base:
            assert await _fetch(f"{base}/meta", headers={"Metadata-Flavor": "Google"}) == "ok"
            assert await _fetch(f"{base}/form", method="POST", data={"a": "b"}) == "ok"
    assert [flavor for _, _, flavor, _ in here[:2]] == ["Google", "Google"]
    assert away == [("GET", "/other", None, b""), ("GET", "/x", None, b"")]
