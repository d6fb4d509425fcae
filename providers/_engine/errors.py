"""HTTP answers and transport failures -> the core error classes, in one table every provider shares."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from router.errors import (
    AuthenticationError,
    BadProviderResponseError,
    ContentPolicyError,
    GenerationFailedError,
    InvalidRequestError,
    ProviderUnavailableError,
    RateLimitError,
    TarashError,
)

#: Status -> error class. 404 on a job (the job vanished) is handled by the caller's step, see ``for_status``.
STATUS_ERRORS: dict[int, type[TarashError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: AuthenticationError,  # payment required: the account, not the request, is at fault
    403: AuthenticationError,
    404: InvalidRequestError,  # unknown model or path at submit time
    408: RateLimitError,  # the vendor shed the request: like 429, worth trying elsewhere
    409: ProviderUnavailableError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def for_status(status: int, step: str) -> type[TarashError]:
    """The error class for an HTTP error ``status`` met at ``step``."""
    if status == 404 and step != "submit":
        return GenerationFailedError  # the vendor lost (or expired) a job it had accepted
    if status >= 500:
        return ProviderUnavailableError
    return STATUS_ERRORS.get(status, InvalidRequestError if 400 <= status < 500 else BadProviderResponseError)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if the vendor sent one."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))


def looks_like_content_policy(text: str, markers: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in markers)


def first_text(value: Any) -> str | None:
    """A readable message out of a vendor error field (string, list of FastAPI items, or nested dict)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [first_text(item) for item in value]
        return "; ".join(p for p in parts if p) or None
    if isinstance(value, dict):
        for key in ("message", "msg", "detail", "error", "title"):
            if key in value:
                text = first_text(value[key])
                if text:
                    loc = value.get("loc")
                    return f"{'.'.join(map(str, loc))}: {text}" if isinstance(loc, list) else text
    return str(value)


__all__ = [
    "ContentPolicyError",
    "STATUS_ERRORS",
    "first_text",
    "for_status",
    "looks_like_content_policy",
    "retry_after_seconds",
]
