"""The shared HTTP engine: every vendor module configures ``HttpProvider``; nothing here is vendor-specific."""

from providers._engine.errors import first_text, for_status, looks_like_content_policy, retry_after_seconds
from providers._engine.http import FormFile, HttpRequest, Step, VendorResponse
from providers._engine.media import fetch_media, inline_url_inputs, media_file, media_url
from providers._engine.provider import HttpProvider
from providers._engine.sessions import close_sessions, session_for

__all__ = [
    "FormFile", "HttpProvider", "HttpRequest", "Step", "VendorResponse", "close_sessions", "first_text",
    "fetch_media", "for_status", "inline_url_inputs", "looks_like_content_policy", "media_file", "media_url", "retry_after_seconds", "session_for",
]
