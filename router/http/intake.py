"""Checks on a client's generation request before any vendor work: bounded counts and prompt lengths, and input
media that is really media. What fails here is the client's mistake: a 400 naming the field, never an attempt,
so it can never count against a vendor's circuit breaker.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from router.http.errors import ApiError
from router.models import AnyRequest, ImageGenerationRequest, VideoGenerationRequest

#: Per-kind maxima for counts and durations. Above what any vendor accepts (OpenAI images: n <= 10; Veo: up to 4
#: videos; the longest single clips are about 25 s), so they only stop abuse: ``n = 10**9`` would otherwise have a
#: handler (the mock, or our own loops) build a billion results on the event loop.
MAX_IMAGES = 10
MAX_VIDEOS = 4
MAX_DURATION_SECONDS = 60
#: Seeds are passed to vendors as integers; every vendor takes at most a signed 64-bit one.
SEED_RANGE = (-(2**63), 2**64 - 1)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
#: Leading bytes of the media types vendors take, with the MIME type they mean.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
)
_FORMATS = {"image": "an image (PNG, JPEG, WebP, GIF, BMP, TIFF, AVIF, HEIC)", "video": "a video (MP4, MOV, WebM, AVI)"}
_FTYP_BRANDS = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic", b"heix": "image/heic",
                b"mif1": "image/heif", b"qt  ": "video/quicktime"}


def sniff(data: bytes) -> str | None:
    """The MIME type ``data`` starts like (images and videos vendors accept), or None."""
    for offset, magic, mime in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"AVI "):
        return "image/webp" if data[8:12] == b"WEBP" else "video/x-msvideo"
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "video/mp4")
    return None


@dataclass(frozen=True)
class Limits:
    """What the daemon accepts; ``max_prompt_chars`` comes from ``TARASH_ROUTER_MAX_PROMPT_CHARS``."""

    max_prompt_chars: int = 32_000


def check_request(request: AnyRequest, limits: Limits) -> AnyRequest:
    """``request`` with media URL schemes normalised, or ``ApiError(400)`` naming the first bad field."""
    for name in ("prompt", "negative_prompt"):
        text = getattr(request, name)
        if text is not None and len(text) > limits.max_prompt_chars:
            raise _bad(f"{name} is {len(text)} characters; the limit is {limits.max_prompt_chars}", name, "too_long")
    if request.seed is not None and not SEED_RANGE[0] <= request.seed <= SEED_RANGE[1]:
        raise _bad("seed must fit in 64 bits", "seed", "out_of_range")
    if isinstance(request, ImageGenerationRequest):
        _at_most(request.n, MAX_IMAGES, "n")
    if isinstance(request, VideoGenerationRequest):
        _at_most(request.number_of_videos, MAX_VIDEOS, "number_of_videos")
        _at_most(request.duration_seconds, MAX_DURATION_SECONDS, "duration_seconds")
    updates: dict[str, Any] = {}
    images = [{**item, "image": check_media(item["image"], "image", f"image_list.{i}.image")}
              for i, item in enumerate(request.image_list)]
    if images != request.image_list:
        updates["image_list"] = images
    for name, kind in (("mask_image", "image"), ("video", "video")):
        value = request.__dict__.get(name)  # a field the kind lacks: getattr on a pydantic model raises, slowly
        if value is not None:
            checked = check_media(value, kind, name)
            if checked is not value:
                updates[name] = checked
    return request.model_copy(update=updates) if updates else request


def check_media(media: Any, kind: str, param: str) -> Any:
    """One media input: an http(s) URL (scheme lower-cased), a ``data:`` URI or base64 of a real ``kind``
    (image/video) file, or ``{"content", "content_type"}`` bytes of one. Returns it, normalised."""
    if isinstance(media, dict):
        _check_bytes(media["content"], kind, param)
        return media
    text = str(media)
    scheme = _SCHEME.match(text)
    if scheme is None:
        _check_bytes(_decode_base64(text, param), kind, param)
        return media
    name = scheme[1].lower()
    if name in ("http", "https"):
        return name + text[len(name):] if scheme[1] != name else media
    if name == "data":
        header, comma, payload = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise _bad(f"{param}: a data: URI must be base64 (data:<type>;base64,<data>)", param)
        _check_bytes(_decode_base64(payload, param), kind, param)
        return "data" + text[4:] if scheme[1] != "data" else media
    raise _bad(f"{param}: only http(s) URLs, data: URIs and base64 are accepted, not {name}:", param,
               "unsupported_url_scheme")


def _decode_base64(text: str, param: str) -> bytes:
    compact = "".join(text.split())  # line-wrapped base64 is still base64
    urlsafe = "-" in compact or "_" in compact
    try:
        data = base64.b64decode(compact, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{param}: not a URL and not valid base64", param) from None
    if not data:
        raise _bad(f"{param}: empty media", param)
    return data


def _check_bytes(data: bytes, kind: str, param: str) -> None:
    mime = sniff(data)
    if mime is None or not mime.startswith(f"{kind}/"):
        found = f"a {mime} file" if mime else "data in no known image or video format"
        raise _bad(f"{param}: expected {_FORMATS[kind]}, got {found}", param)


def _at_most(value: int | None, limit: int, param: str) -> None:
    if value is not None and value > limit:
        raise _bad(f"{param} may be at most {limit} per request", param, "out_of_range")


def _bad(message: str, param: str, code: str = "invalid_media") -> ApiError:
    return ApiError(400, message, code=code, param=param)
