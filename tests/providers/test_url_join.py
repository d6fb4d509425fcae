"""The engine's plain-path join gives exactly what urljoin gives, and declines whatever it cannot vouch for; fal's
status URL with its query written in gives the request line aiohttp built by merging the query."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
from yarl import URL

from providers._engine.provider import join_plain
from providers.fal import FalProvider
from router.handler import ProviderJob
from router.models import VideoGenerationConfig

BASES = ["http://127.0.0.1:8080/v1/", "https://api.openai.com/v1/", "https://queue.fal.run/", "https://h/a/b.c/",
         "http://h/v1", "http://h/v1//", "http://h/v1/?x=1", "http://u@h/v1/", "http://h/;p/", "ftp://h/v1/",
         "http://", "http:///v1/", "https://h/a;b/"]
PATHS = ["images/generations", "videos", "videos/vid_123/content", "tasks/abc-DEF_9", "models/veo:predict",
         "operations/a.b.c", "v1.0/x", "a/./b", "a/../b", "./a", "../a", ".", "..", "a/.", "a/..", "/abs",
         "//evil.com/x", "https://evil.com/x", "mailto:x", "a:b/c", "a//b", "a/", "", "a?x=1", "a#f", "a;p",
         "%2e%2e/x", "a/%2e%2e", "a/b c", "é/x", "a/.hidden", "a/..b", "a/b..", "x@y/z", "a/b@c:d"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", PATHS)
def test_plain_join_is_urljoin_or_declines(base: str, path: str) -> None:
    joined = join_plain(base, path)
    if joined is not None:
        assert joined == urljoin(base, path)
        assert joined.startswith(base)


def test_the_usual_vendor_paths_take_the_plain_join() -> None:
    for path in ("images/generations", "videos/vid_1/content", "models/veo-3:predictLongRunning", "v1/tasks/x.y"):
        assert join_plain("http://127.0.0.1:9/v1/", path) == "http://127.0.0.1:9/v1/" + path
    for path in ("https://other/x", "/v2/x", "../x", "a//b", "x?y=1"):
        assert join_plain("http://127.0.0.1:9/v1/", path) is None


@pytest.mark.parametrize("status_url", [
    "https://queue.fal.run/fal-ai/veo3/requests/0f3c-7b2a/status", "http://127.0.0.1:9/fal-ai/x/requests/a%20b/status",
    "https://queue.fal.run/fal-ai/x/requests/r/status?tenant=1", "https://queue.fal.run/fal-ai/x/requests/r/status?",
    "https://queue.fal.run/fal-ai/x/requests/r/status#frag", "https://queue.fal.run/fal-ai/x/requests/r/status?a=1#f"])
def test_fal_status_request_sends_the_request_line_aiohttp_built_from_params(status_url: str) -> None:
    request = FalProvider().status_request("video", VideoGenerationConfig(provider="fal", model="fal-ai/veo3"),
                                           ProviderJob(id="r", data={"status_url": status_url}))
    sent = URL(request.url).extend_query(request.params) if request.params else URL(request.url)
    assert str(sent) == str(URL(status_url).extend_query({"logs": "1"}))
    assert sent.raw_path_qs == URL(status_url).extend_query({"logs": "1"}).raw_path_qs
