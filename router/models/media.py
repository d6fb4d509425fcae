"""Media type aliases shared by requests and responses (docs/models.md, "Type aliases")."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, HttpUrl, PlainSerializer
from typing_extensions import TypedDict

Base64: TypeAlias = str
Resolution = Literal["360p", "480p", "720p", "1080p", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "21:9"]
StatusType = Literal["queued", "processing", "completed", "failed"]
ImageRole = Literal["reference", "first_frame", "last_frame", "asset", "style"]
Kind = Literal["video", "image"]


def _bytes_from_base64(value: Any) -> Any:
    # JSON carries bytes as standard base64; accept the URL-safe alphabet too.
    if isinstance(value, str):
        alt = b"-_" if ("-" in value or "_" in value) else None
        return base64.b64decode(value, altchars=alt)
    return value


Base64Content = Annotated[
    bytes,
    BeforeValidator(_bytes_from_base64),
    PlainSerializer(lambda data: base64.b64encode(data).decode("ascii"), return_type=str, when_used="json"),
]


class MediaContent(TypedDict):
    """Raw media bytes with their MIME type. In JSON, ``content`` is standard base64."""

    content: Base64Content
    content_type: str


MediaType: TypeAlias = Base64 | HttpUrl | MediaContent


class ImageType(TypedDict):
    """An input image with its semantic role."""

    image: MediaType
    type: ImageRole


MediaForm = Literal["url", "data_uri", "base64", "content"]


def media_form(media: MediaType) -> MediaForm:
    """Tell how a ``MediaType`` value carries its media."""
    if isinstance(media, dict):
        return "content"
    text = str(media)
    if text.startswith(("http://", "https://")):
        return "url"
    if text.startswith("data:"):
        return "data_uri"
    return "base64"


def media_bytes(media: MediaType) -> tuple[bytes, str | None]:
    """Decode inline media (bytes, base64 or a data URI) to ``(bytes, mime or None)``.

    URLs are not fetched here (that needs the network and a policy): a URL raises ``ValueError``.
    """
    form = media_form(media)
    if form == "content":
        assert isinstance(media, dict)
        return media["content"], media["content_type"]
    text = str(media)
    if form == "url":
        raise ValueError("media is a URL; fetch it instead of decoding it")
    if form == "data_uri":
        header, _, payload = text.partition(",")
        mime = header[5:].split(";")[0] or None
        return base64.b64decode(payload), mime
    return base64.b64decode(text), None


def media_data_uri(media: MediaType, default_type: str = "application/octet-stream") -> str:
    """Return a URL unchanged, or inline media as a ``data:`` URI (what many vendors accept)."""
    form = media_form(media)
    if form in ("url", "data_uri"):
        return str(media)
    data, mime = media_bytes(media)
    return f"data:{mime or default_type};base64,{base64.b64encode(data).decode()}"
