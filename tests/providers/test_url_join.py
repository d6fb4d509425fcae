"""The engine's plain-path join gives exactly what urljoin gives, and declines whatever it cannot vouch for."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from providers._engine.provider import join_plain

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
