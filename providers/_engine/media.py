"""Input media in the forms vendors accept: URLs pass through; inline media becomes a data URI or a file."""

from __future__ import annotations

import mimetypes

from providers._engine.http import FormFile
from router.models import MediaType, media_bytes, media_data_uri, media_form


def media_url(media: MediaType, default_type: str = "image/png") -> str:
    """A URL as is, or inline media (bytes / base64 / MediaContent) as a ``data:`` URI."""
    return media_data_uri(media, default_type)


def media_file(media: MediaType, name: str, default_type: str = "image/png") -> FormFile:
    """Inline media as a multipart file part. URLs are not fetched here: pass them as URL fields instead."""
    if media_form(media) == "url":
        raise ValueError("a URL cannot be sent as a file part; the vendor needs the bytes")
    data, mime = media_bytes(media)
    content_type = mime or default_type
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return FormFile(data=data, filename=f"{name}{extension}", content_type=content_type)
