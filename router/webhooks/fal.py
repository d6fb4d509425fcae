"""fal's webhook signatures: ED25519 over ``request_id \\n user_id \\n timestamp \\n sha256_hex(body)``, hex in
``X-Fal-Webhook-Signature``, with ``X-Fal-Webhook-Request-Id``, ``-User-Id`` and ``-Timestamp`` (docs.fal.ai
"Webhooks" > "Verifying your webhook"). The public keys are a JWKS (``OKP``/``Ed25519``, base64url ``x``); a
delivery names no key id, so every key is tried, and when none verifies the set is fetched again once (fal
rotated its keys), at most every ``REFRESH_SECONDS``.

Needs ``cryptography`` (the ``webhooks`` extra). Without it fal deliveries cannot be verified and fal jobs
keep plain polling.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from router.webhooks.signing import TOLERANCE_SECONDS, WebhookVerificationError, check_timestamp

DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
#: A JWKS that verified is kept this long; an unknown signature refetches it no more often than REFRESH_SECONDS.
CACHE_SECONDS = 24 * 3600.0
REFRESH_SECONDS = 60.0
HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")

FetchJwks = Callable[[str], Awaitable[dict[str, Any]]]


def available() -> bool:
    """Whether ED25519 verification is possible here (``cryptography`` installed)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    except ImportError:
        return False
    return True


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs."""
    return "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()


def public_keys(jwks: Mapping[str, Any]) -> list[bytes]:
    """The raw ED25519 public keys of a JWKS (other key types are ignored)."""
    keys = []
    for key in jwks.get("keys") or []:
        if isinstance(key, dict) and key.get("kty") == "OKP" and key.get("crv") == "Ed25519" and key.get("x"):
            try:
                keys.append(base64.urlsafe_b64decode(str(key["x"]) + "=="))
            except (binascii.Error, ValueError):
                continue
    return keys


def _loaded(raw: list[bytes]) -> list[Any]:
    """The keys as ``cryptography`` objects, built once per fetch (not per delivery); malformed ones dropped."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for key in raw:
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(key))
        except ValueError:
            continue
    return keys


def _verifies(key: Any, signature: bytes, signed: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


class FalKeys:
    """fal's JWKS for one URL, cached; refetched when no cached key verifies a delivery."""

    def __init__(self, url: str, fetch: FetchJwks, clock: Callable[[], float]) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        self._keys: list[Any] = []  # Ed25519PublicKey
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _refresh(self, *, forced: bool) -> None:
        async with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < (REFRESH_SECONDS if forced else CACHE_SECONDS):
                return
            self._keys = _loaded(public_keys(await self._fetch(self.url)))
            self._fetched_at = now

    async def verify(self, headers: Mapping[str, str], body: bytes, *, now: float,
                     tolerance: float = TOLERANCE_SECONDS) -> str:
        """Check one delivery; fal's request id it names."""
        request_id, user_id, timestamp, signature_hex = (headers.get(name) for name in HEADERS)
        if not (request_id and user_id and timestamp and signature_hex):
            raise WebhookVerificationError("missing X-Fal-Webhook-* headers")
        check_timestamp(timestamp, now, tolerance)
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise WebhookVerificationError("signature is not hex") from None
        signed = message(request_id, user_id, timestamp, body)
        await self._refresh(forced=False)
        if any(_verifies(key, signature, signed) for key in self._keys):
            return request_id
        await self._refresh(forced=True)  # fal may have rotated its keys since we fetched them
        if any(_verifies(key, signature, signed) for key in self._keys):
            return request_id
        raise WebhookVerificationError("no fal key verifies the signature")
