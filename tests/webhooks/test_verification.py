"""fal's JWKS cache (rotation, refetch limits) and the Standard Webhooks signer against the reference library."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook

from router.webhooks import signing
from router.webhooks.fal import REFRESH_SECONDS, FalKeys, message
from router.webhooks.signing import WebhookVerificationError


def jwks(*keys: Ed25519PrivateKey) -> dict[str, Any]:
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(
        k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).rstrip(b"=").decode()} for k in keys]
        + [{"kty": "RSA", "n": "x", "e": "AQAB"}]}  # other key types are ignored


def delivery(key: Ed25519PrivateKey, now: float, body: bytes = b'{"status": "OK"}') -> tuple[dict[str, str], bytes]:
    ts = str(int(now))
    return {"x-fal-webhook-request-id": "req-1", "x-fal-webhook-user-id": "u", "x-fal-webhook-timestamp": ts,
            "x-fal-webhook-signature": key.sign(message("req-1", "u", ts, body)).hex()}, body


async def test_fal_keys_refetch_once_on_an_unknown_key_and_not_more_than_once_a_minute() -> None:
    old, new, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    served = [jwks(old)]
    fetched: list[str] = []
    clock = [1000.0]

    async def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return served[-1]

    keys = FalKeys("https://jwks.example/keys", fetch, lambda: clock[0])
    now = 1_700_000_000.0
    assert await keys.verify(*delivery(old, now), now=now) == "req-1"
    assert await keys.verify(*delivery(old, now), now=now) == "req-1" and len(fetched) == 1  # cached
    served.append(jwks(new))  # fal rotated
    clock[0] += REFRESH_SECONDS + 1
    assert await keys.verify(*delivery(new, now), now=now) == "req-1" and len(fetched) == 2
    with pytest.raises(WebhookVerificationError):  # a forger's key: one refetch allowed per minute, so none now
        await keys.verify(*delivery(stranger, now), now=now)
    assert len(fetched) == 2 and fetched[0] == "https://jwks.example/keys"


@pytest.mark.parametrize("change", ["missing", "not_hex", "stale", "future"])
async def test_fal_deliveries_without_proof_are_refused(change: str) -> None:
    key = Ed25519PrivateKey.generate()

    async def fetch(url: str) -> dict[str, Any]:
        return jwks(key)

    now = 1_700_000_000.0
    headers, body = delivery(key, now - 400 if change == "stale" else now + 400 if change == "future" else now)
    if change == "missing":
        del headers["x-fal-webhook-user-id"]
    if change == "not_hex":
        headers["x-fal-webhook-signature"] = "zz"
    with pytest.raises(WebhookVerificationError):
        await FalKeys("u", fetch, lambda: 0.0).verify(headers, body, now=now)


def test_standard_webhooks_signatures_match_the_reference_library() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    when = dt.datetime.now(dt.UTC)
    body = b'{"type": "job.completed"}'
    headers = signing.headers_for(signing.secret_bytes(secret), "msg_1", int(when.timestamp()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    assert headers["webhook-signature"] == Webhook(secret).sign("msg_1", when, body.decode())
    rotated = {**headers, "webhook-signature": "v1,bm90LWl0 " + headers["webhook-signature"]}
    assert signing.verify(signing.secret_bytes(secret), rotated, body, now=when.timestamp()) == "msg_1"
    with pytest.raises(ValueError):
        signing.secret_bytes("whsec_!!!")
