"""The error hierarchy: retryable flags, attributes, snake_case type names, secret scrubbing."""

from __future__ import annotations

import pytest

import router
from router.errors import ERROR_CLASSES, TarashError, scrub

RETRYABLE = {
    "RateLimitError": True, "ProviderTimeoutError": True, "ProviderUnavailableError": True,
    "BadProviderResponseError": True, "GenerationFailedError": True,
    "InvalidRequestError": False, "AuthenticationError": False, "ContentPolicyError": False,
    "GenerationCancelledError": False, "AmbiguousSubmitError": False,
}


@pytest.mark.parametrize("name,retryable", sorted(RETRYABLE.items()))
def test_retryable_by_class(name: str, retryable: bool) -> None:
    error = getattr(router, name)("x")
    assert isinstance(error, TarashError) and error.retryable is retryable and error.outcome == "failed"


@pytest.mark.parametrize("name", ["MissingCredentialsError", "UnsupportedCapabilityError", "ConfigurationError"])
def test_skipped_errors(name: str) -> None:
    assert ERROR_CLASSES[name].outcome == "skipped"


def test_attributes_and_type_name() -> None:
    error = router.RateLimitError("slow down", provider="fal", model="m", provider_request_id="req-1",
                                  http_status=429, retry_after=3.0)
    assert (error.provider, error.model, error.provider_request_id, error.http_status, error.retry_after) == (
        "fal", "m", "req-1", 429, 3.0)
    assert error.type_name == "rate_limit_error" and str(error) == "slow down"
    assert router.AllAttemptsFailedError.__name__ and router.ProviderTimeoutError("x").type_name == "provider_timeout_error"


def test_retryable_override_per_instance() -> None:
    assert router.AmbiguousSubmitError("x", retryable=True).retryable is True
    assert router.AmbiguousSubmitError("x").retryable is False


def test_scrub_removes_secrets_and_credential_shapes() -> None:
    key = "sk-live-abcdefgh12345678"
    text = f"Incorrect API key provided: {key}. Header was Authorization: Bearer {key} and Key fal_abcdefgh:secret99"
    cleaned = scrub(text, [key])
    assert key not in cleaned and "fal_abcdefgh:secret99" not in cleaned and "[REDACTED]" in cleaned
    assert len(scrub("x" * 5000)) <= 600
