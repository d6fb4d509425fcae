"""Real sample media for the mock provider and the vendor emulators: committed MP4s and generated PNGs."""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

MEDIA_DIR = Path(__file__).resolve().parent / "_media"
_DEFAULT_RATIO = "16:9"
#: Long side of a mock image when the request gives no size: small keeps base64 payloads light.
_MOCK_IMAGE_LONG_SIDE = 256
_RATIOS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "21:9": (21, 9)}
#: The spec's resolution labels by nominal short side.
_RESOLUTIONS = {360: "360p", 480: "480p", 720: "720p", 1080: "1080p", 2160: "4k"}


def _resolution_label(short_side: int) -> str:
    # Label the file by what it really is, not what a request asked for: the committed samples
    # are tiny (144 px short side), so the closest spec value is "360p".
    return _RESOLUTIONS[min(_RESOLUTIONS, key=lambda nominal: abs(nominal - short_side))]


@dataclass(frozen=True)
class VideoAsset:
    """A committed sample video (made by ``scripts/make_mock_media.py``)."""

    aspect_ratio: str
    width: int
    height: int
    duration_seconds: float
    resolution: str
    path: Path

    def data(self) -> bytes:
        return _read(self.path)


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


@cache
def _assets() -> dict[str, VideoAsset]:
    manifest = json.loads((MEDIA_DIR / "manifest.json").read_text())
    return {
        entry["aspect_ratio"]: VideoAsset(
            aspect_ratio=entry["aspect_ratio"], width=entry["width"], height=entry["height"],
            duration_seconds=float(entry["duration_seconds"]),
            resolution=_resolution_label(min(entry["width"], entry["height"])), path=MEDIA_DIR / entry["file"],
        )
        for entry in manifest
    }


def video_asset(aspect_ratio: str | None) -> VideoAsset:
    """The sample video for ``aspect_ratio`` (16:9 when None or unknown)."""
    assets = _assets()
    return assets.get(aspect_ratio or _DEFAULT_RATIO, assets[_DEFAULT_RATIO])


#: Largest side of a mock image: the vendors' largest sizes (1792x1024, 1536x1024) fit; bigger asks are scaled.
_MOCK_IMAGE_MAX_SIDE = 2048


def image_size_for(aspect_ratio: str | None, size: str | None) -> tuple[int, int]:
    """Pixel size of a mock image: an explicit ``WxH`` as asked (each side at least 8; scaled down, keeping its
    shape, when a side is over 2048), else small per aspect ratio."""
    if size and (match := re.fullmatch(r"(\d+)x(\d+)", size)):
        width, height = (int(v) for v in match.groups())
        scale = min(1.0, _MOCK_IMAGE_MAX_SIDE / max(width, height, 1))
        return max(8, round(width * scale)), max(8, round(height * scale))
    rw, rh = _RATIOS.get(aspect_ratio or "1:1", (1, 1))
    scale = _MOCK_IMAGE_LONG_SIDE / max(rw, rh)
    return max(8, round(rw * scale)), max(8, round(rh * scale))


#: How many generated PNGs are kept: a mock route asks for the same few sizes and seeds again and again, and one
#: costs 3 ms (256 px) to 16 ms (1024 px) of event-loop CPU to build; 16 of the largest are ~5 MB.
_PNG_CACHE_SIZE = 16


@lru_cache(maxsize=_PNG_CACHE_SIZE)
def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A valid RGB PNG with a deterministic gradient that varies with ``seed`` (the same bytes for the same
    arguments: recent ones are cached)."""
    # Rows are built with slice assignment (no per-pixel Python loop): ~ms for 512x512.
    xs = bytes((x * 255 // max(width - 1, 1) + seed * 37) % 256 for x in range(width))
    rows = []
    for y in range(height):
        g = (y * 255 // max(height - 1, 1) + seed * 91) % 256
        b = (seed * 53 + y // 8 * 16) % 256
        row = bytearray(3 * width)
        row[0::3], row[1::3], row[2::3] = xs, bytes((g,)) * width, bytes((b,)) * width
        rows.append(b"\x00" + row)
    raw = b"".join(rows)

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
