"""The committed sample media and the PNG generator produce real, valid files."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import pytest

from providers._mock_media import MEDIA_DIR, image_size_for, png_bytes, video_asset


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1", "4:3", "21:9"])
def test_sample_videos_match_manifest(ratio: str) -> None:
    asset = video_asset(ratio)
    data = asset.data()
    assert data[4:8] == b"ftyp" and len(data) < 64_000
    entry = next(e for e in json.loads((MEDIA_DIR / "manifest.json").read_text()) if e["aspect_ratio"] == ratio)
    assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    w, h = map(int, ratio.split(":"))
    assert abs(asset.width / asset.height - w / h) < 0.08


def test_manifest_lists_every_ratio_with_even_sizes() -> None:
    manifest = json.loads((MEDIA_DIR / "manifest.json").read_text())
    assert sorted(e["aspect_ratio"] for e in manifest) == sorted(["16:9", "9:16", "1:1", "4:3", "21:9"])
    for entry in manifest:
        assert (MEDIA_DIR / entry["file"]).is_file()
        assert entry["width"] % 2 == 0 and entry["height"] % 2 == 0
        assert entry["duration_seconds"] == 2.0 and entry["fps"] == 8
    # Tiny files are labelled by their real short side: the closest spec value is 360p.
    assert {video_asset(e["aspect_ratio"]).resolution for e in manifest} == {"360p"}


def test_unknown_ratio_falls_back_to_landscape() -> None:
    assert video_asset(None).aspect_ratio == video_asset("3:2").aspect_ratio == "16:9"


def test_png_is_valid() -> None:
    png = png_bytes(37, 11, seed=5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (37, 11)
    length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    assert len(zlib.decompress(png[41 : 41 + length])) == 11 * (1 + 3 * 37)
    assert png_bytes(8, 8, seed=1) != png_bytes(8, 8, seed=2)


def test_image_sizes() -> None:
    assert image_size_for(None, "64x32") == (64, 32)
    assert image_size_for(None, "1792x1024") == (1792, 1024)  # what the client asked, not a square
    assert image_size_for(None, "4096x1024") == (2048, 512)  # over the cap: scaled, shape kept
    assert image_size_for(None, "5000x2") == (2048, 8)
    assert image_size_for("16:9", None) == (256, 144)
    assert image_size_for("9:16", None) == (144, 256)
    assert image_size_for(None, None) == (256, 256)
