"""The error hierarchy: retryable flags, attributes, snake_case type names, secret scrubbing."""

from __future__ import annotations

import json
import re

import pytest

import router
from router import errors as E
from router.errors import ERROR_CLASSES, TarashError, redact, scrub
from router.log_setup import REDACTED, Redactor

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


def test_every_error_class_is_exported_at_top_level() -> None:
    """daemon.md §1: ``import router`` gives TarashError and its subclasses (those a mock or a policy can name,
    and the skip base class a handler may subclass)."""
    for name in (*ERROR_CLASSES, "AllAttemptsFailedError", "AttemptSkippedError"):
        assert getattr(router, name, None) is getattr(E, name) and name in router.__all__, name


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


def test_redact_copies_only_the_paths_that_held_a_secret() -> None:
    secret = "sk-secret-1234"
    clean = {"id": "req-1", "images": [{"url": "https://x/1.png"}], "n": 2, "pair": ("a", "b")}
    tree = {"clean": clean, "leak": ["x", {"echo": f"key={secret}", "ok": "y"}, (secret,)], secret: 1}
    out = redact(tree, [secret, "", "abc"])  # empty and short values are never redacted
    assert out == {"clean": clean, "leak": ["x", {"echo": "key=[REDACTED]", "ok": "y"}, ("[REDACTED]",)],
                   "[REDACTED]": 1}
    assert out["clean"] is clean and isinstance(out["leak"][2], tuple)
    assert tree["leak"][1]["echo"] == f"key={secret}"  # the input is left as it was
    assert redact(clean, [secret]) is clean and redact(tree, []) is tree and redact(tree, ["abc"]) is tree


class _Text(str):
    """A str subclass (an enum's value, say): not a type the quick check knows."""


@pytest.mark.parametrize("tree", [
    {"id": "req-1", "data": [{"url": "https://x/1.png", "n": 1, "ok": True, "none": None}], "t": ("a", 2.5)},
    {"echo": ["a", {"deep": [{"deeper": "key=sk-secret-1234!"}]}]},
    {"sk-secret-1234": 1},
    {"split": ["sk-secret", "-1234"]},  # the secret only across two texts: a false alarm, nothing to redact
    {"sub": _Text("sk-secret-1234")},
    {1: "x", None: ["sk-secret-1234"]},
    "sk-secret-1234",
    ["no", "secret", 3],
])
@pytest.mark.parametrize("secrets", [["sk-secret-1234"], ["sk-secret-1234", "sk%2Dsecret"], ["a\x00secret"]])
def test_redacting_a_tree_agrees_with_the_walk_and_keeps_a_clean_tree_as_it_is(tree: object,
                                                                                secrets: list[str]) -> None:
    """``redact``'s quick check over the joined texts answers what the recursive walk answers, and hands back the
    same object when nothing was found."""
    walked = E._redact(tree, tuple(secrets), ())
    assert redact(tree, secrets) == walked
    assert (redact(tree, secrets) is tree) is (walked is tree)
    assert "sk-secret-1234" not in repr(redact(tree, secrets)) or "sk-secret-1234" not in secrets


def test_a_pattern_secret_redacts_whatever_has_its_shape() -> None:
    # A webhook token known only by its hash after a restart: every token after the attempt's prefix goes.
    token = re.compile(r"(?<=job_1\.1\.)[A-Za-z0-9_-]+")
    echo = {"callback_url": "https://r/v1/webhooks/luma/job_1.1.Ab_-9z", "id": "job_1"}
    assert redact(echo, [token]) == {"callback_url": "https://r/v1/webhooks/luma/job_1.1.[REDACTED]", "id": "job_1"}
    assert redact(clean := {"id": "job_1.2.x"}, [token]) is clean
    assert scrub("bad callback job_1.1.Ab_-9z", [token]) == "bad callback job_1.1.[REDACTED]"


@pytest.mark.parametrize("event", [
    {"event": "http_request", "path": "/v1/x", "status": 200, "latency_ms": 1.5, "error": None, "ok": True},
    {"event": "attempt_finished", "error": "vendor said tok-live-123456 was wrong"},
    {"event": "x", "first": "tok-live", "second": "-123456"},  # a match only across two values: a false alarm
    {"event": "x", "Authorization": "Bearer abc"},
    {"event": "x", "nested": {"token": "t", "items": ["tok-live-123456"]}},
    {"event": "x", 3: "tok-live-123456"},
])
def test_the_log_redactors_fast_path_agrees_with_the_full_scrub(event: dict[object, object]) -> None:
    redactor = Redactor()
    redactor.add_values(["tok-live-123456", "tok-live\n-123456"])
    expected = redactor.scrub(dict(event))
    assert redactor(None, "info", dict(event)) == expected
    assert redactor(None, "info", dict(event)) == expected  # again, with the event keys now known as safe
    assert "tok-live-123456" not in str(expected) and (REDACTED in str(expected)) is (len(event) == 2)


@pytest.mark.parametrize("secrets", [["tok-live-123456"], ["tok-live-123456", 'tok"quoted"-1']])
@pytest.mark.parametrize("event", [
    {"event": "http_request", "status": 200, "latency_ms": 1.5, "path": "/v1/jobs", "ok": True, "none": None},
    {"event": "attempt_finished", "error": "vendor said tok-live-123456 was wrong"},
    {"event": "x", "first": "tok-live", "second": "-123456"},
    {"event": "x", "Authorization": "Bearer abc"},
    {"event": "x", "nested": {"token": "t"}},
    {"event": "x", "note": 'said tok"quoted"-1'},
])
def test_a_clean_lines_text_is_its_json_and_anything_else_goes_to_the_processors(
        event: dict[str, object], secrets: list[str]) -> None:
    """``render_clean`` (the router's JSON lines) writes a line only when the redactor would pass it unchanged,
    and then exactly as the JSON renderer would; a secret JSON escapes (a quote) turns the shortcut off."""
    redactor = Redactor()
    redactor.add_values(secrets)
    text = redactor.render_clean(dict(event))
    if text is not None:
        assert text == json.dumps(event) and redactor(None, "info", dict(event)) == event
    clean = len(secrets) == 1 and set(event) != {"event", "Authorization"} and "nested" not in event and \
        not any(isinstance(value, str) and any(secret in value for secret in secrets) for value in event.values())
    assert (text is not None) is clean
