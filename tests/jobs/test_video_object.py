"""The OpenAI video object and /content report what the provider delivered, and images come in the asked size."""

from __future__ import annotations

import asyncio
import base64
import struct

from tests.daemon.conftest import Daemon


async def _finished_video(daemon: Daemon, **fields: object) -> dict:  # type: ignore[type-arg]
    _, video, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "fox", **fields})
    for _ in range(500):
        _, video, _ = await daemon.request("GET", f"/v1/videos/{video['id']}")
        if video["status"] == "completed":
            return video  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError(video)


async def test_a_completed_video_reports_the_file_it_delivered(daemon: Daemon) -> None:
    _, queued, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "fox",
                                                                    "seconds": "8", "size": "1280x720"})
    assert (queued["seconds"], queued["size"]) == ("8", "1280x720")  # what was asked, until there is a result
    video = await _finished_video(daemon, seconds="8", size="1280x720")
    assert (video["seconds"], video["size"]) == ("2", "256x144")  # the mock's 2-second 256x144 sample


async def test_content_variants(daemon: Daemon) -> None:
    video = await _finished_video(daemon)
    path = f"/v1/videos/{video['id']}/content"
    async with daemon.session.get(daemon.url + path + "?variant=video") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "video/mp4"
        assert (await response.read())[4:8] == b"ftyp"
    for variant in ("thumbnail", "spritesheet"):
        status, body, _ = await daemon.request("GET", f"{path}?variant={variant}")
        assert status == 404, body  # never the MP4 under an image variant
        assert body["error"]["code"] == "variant_unavailable" and body["error"]["param"] == "variant"
    status, body, _ = await daemon.request("GET", path + "?variant=poster")
    assert status == 400 and body["error"]["code"] == "invalid_value"


async def test_an_image_comes_in_the_size_asked(daemon: Daemon) -> None:
    status, body, _ = await daemon.request("POST", "/v1/images/generations", json={
        "model": "image-fast", "prompt": "fox", "size": "1792x1024", "response_format": "b64_json"})
    assert status == 200
    png = base64.b64decode(body["data"][0]["b64_json"])
    assert struct.unpack(">II", png[16:24]) == (1792, 1024)
