"""Input media in the forms vendors accept: URLs pass through; inline media becomes a data URI or a file."""

from __future__ import annotations

import mimetypes
from dataclasses import replace
from typing import Any

from providers._engine.http import FormFile
from router.errors import InvalidRequestError
from router.fetch import INPUT_MEDIA, FetchError, fetch_bytes
from router.models import AnyRequest, MediaType, media_bytes, media_data_uri, media_form


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


async def fetch_media(url: str, *, max_bytes: int = INPUT_MEDIA.max_bytes) -> tuple[bytes, str | None]:
    """Download a client-given media URL for a vendor that needs bytes (``router.fetch``: SSRF guard, redirects
    re-checked, time and size limits). Raises ``InvalidRequestError``: the client's input is at fault."""
    try:
        return await fetch_bytes(url, replace(INPUT_MEDIA, max_bytes=max_bytes))
    except FetchError as exc:
        raise InvalidRequestError(f"input media URL {'refused' if exc.refused else 'failed'}: {exc}") from exc


async def inline_url_inputs(request: AnyRequest) -> AnyRequest:
    """The request with URL image inputs (image_list, mask_image) fetched into bytes, for vendors that take
    files only. Fetching goes through the SSRF guard (``fetch_media``)."""
    updates: dict[str, Any] = {}
    if any(media_form(i["image"]) == "url" for i in request.image_list):
        updates["image_list"] = [{"image": await _inline(i["image"]), "type": i["type"]} for i in request.image_list]
    mask = getattr(request, "mask_image", None)
    if mask is not None and media_form(mask) == "url":
        updates["mask_image"] = await _inline(mask)
    return request.model_copy(update=updates) if updates else request


async def _inline(media: MediaType) -> MediaType:
    if media_form(media) != "url":
        return media
    data, mime = await fetch_media(str(media))
    return {"content": data, "content_type": mime or "image/png"}
