"""Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with a ``whsec_<base64>`` secret.
Replicate signs this way; the router signs its own client webhooks the same way."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping

#: Deliveries whose timestamp is further than this from now are refused (replays of old captures).
TOLERANCE_SECONDS = 300.0
SECRET_PREFIX = "whsec_"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookVerificationError(ValueError):
    """A delivery that does not prove where it came from (the reason is safe to log: no secrets)."""


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (the prefix is optional, as in the standardwebhooks library)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body)}


def check_timestamp(value: str | None, now: float, tolerance: float = TOLERANCE_SECONDS) -> int:
    """The integer timestamp of a delivery, refused when missing, malformed, or more than ``tolerance`` away."""
    # ASCII digits, as many as a Unix time has: str.isdigit() also takes "²" (int() refuses it) and 5,000 digits
    # (past int()'s limit), and that ValueError was taken for a failed key fetch (503, "retry later").
    if not value or not _TIMESTAMP.fullmatch(value.strip()):
        raise WebhookVerificationError("missing or malformed timestamp")
    timestamp = int(value)
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError(f"timestamp {timestamp} is more than {tolerance:.0f} s from now")
    return timestamp


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> str:
    """Check a Standard Webhooks delivery; its ``webhook-id``. Several space-separated signatures (a secret
    being rotated) pass when any one matches."""
    msg_id = headers.get("webhook-id")
    signatures = headers.get("webhook-signature")
    if not msg_id or not signatures:
        raise WebhookVerificationError("missing webhook-id or webhook-signature")
    timestamp = check_timestamp(headers.get("webhook-timestamp"), now, tolerance)
    expected = sign(key, msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise WebhookVerificationError("no matching signature")
