"""Per-attempt retries and fallback widening/narrowing; circuit breakers open, skip, probe and close."""

from __future__ import annotations

from typing import Any

import pytest

import router
from router import (
    AllAttemptsFailedError,
    ContentPolicyError,
    ProviderUnavailableError,
    RateLimitError,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
)
from router.breakers import CircuitBreakers
from router.orchestrator import run_chain
from router.policy import AttemptPolicy, error_kind

REQUEST = VideoGenerationRequest(prompt="x")


class Sequenced:
    """Raises the queued errors in order, then succeeds."""

    kinds = frozenset({"video"})

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def generate_video_async(self, config, request, on_progress=None):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return VideoGenerationResponse(request_id="x", video="https://cdn/v.mp4")


def chain(*names: str, **provider_config: Any) -> VideoGenerationConfig:
    configs = [VideoGenerationConfig(provider=n, model="m", provider_config=provider_config if i == 0 else {})
               for i, n in enumerate(names)]
    return configs[0].model_copy(update={"fallback_configs": configs[1:] or None})


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = AttemptPolicy(retry_backoff=0.5)
    assert [policy.backoff(i, rand=1.0) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.backoff(i, rand=0.0) for i in range(3)] == [0.25, 0.5, 1.0]


def test_error_kinds() -> None:
    assert error_kind(RateLimitError("x")) == "rate_limit" and error_kind(ContentPolicyError("x")) == "content_policy"


def test_default_fallback_set_and_route_overrides() -> None:
    default = AttemptPolicy()
    assert default.falls_back(RateLimitError("x", http_status=429))
    assert default.falls_back(ProviderUnavailableError("x", http_status=503))
    assert not default.falls_back(router.AuthenticationError("x", http_status=402))
    assert not default.falls_back(ContentPolicyError("x"))
    widened = AttemptPolicy(fallback_on=frozenset({"402", "content_policy"}))
    assert widened.falls_back(router.AuthenticationError("quota", http_status=402))
    assert widened.falls_back(ContentPolicyError("x")) and not widened.falls_back(router.AuthenticationError("x", http_status=401))
    narrowed = AttemptPolicy(no_fallback_on=frozenset({"429"}))
    assert not narrowed.falls_back(RateLimitError("x", http_status=429))


async def test_retries_same_attempt_before_falling_through(provider: Any) -> None:
    flaky = Sequenced(ProviderUnavailableError("blip"), ProviderUnavailableError("blip"))
    response = await run_chain("video", chain(provider(flaky), retries=2, retry_backoff=0.001), REQUEST)
    assert flaky.calls == 3 and response.execution_metadata.total_attempts == 1  # type: ignore[union-attr]


async def test_retries_exhausted_then_fallback(provider: Any) -> None:
    flaky = Sequenced(*[ProviderUnavailableError("down")] * 5)
    response = await run_chain("video", chain(provider(flaky), provider(Sequenced()), retries=1, retry_backoff=0.001), REQUEST)
    assert flaky.calls == 2 and response.execution_metadata.successful_attempt == 2  # type: ignore[union-attr]


async def test_non_retryable_is_not_retried(provider: Any) -> None:
    refused = Sequenced(ContentPolicyError("no"))
    with pytest.raises(ContentPolicyError):
        await run_chain("video", chain(provider(refused), retries=3, retry_backoff=0.001), REQUEST)
    assert refused.calls == 1


async def test_route_widens_fallback_to_content_policy(provider: Any) -> None:
    config = chain(provider(Sequenced(ContentPolicyError("strict vendor"))), provider(Sequenced()),
                   fallback_on=["content_policy"])
    response = await run_chain("video", config, REQUEST)
    first = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert first.error_type == "ContentPolicyError" and first.is_retryable is True


async def test_route_narrows_fallback_on_429(provider: Any) -> None:
    config = chain(provider(Sequenced(RateLimitError("busy", http_status=429))), provider(Sequenced()),
                   no_fallback_on=[429])
    with pytest.raises(RateLimitError) as info:
        await run_chain("video", config, REQUEST)
    assert info.value.execution_metadata.attempts[0].is_retryable is False  # type: ignore[union-attr]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(threshold=2, cooldown=30, clock=clock)
    assert breakers.allow("fal", "m") is None
    breakers.record("fal", "m", success=False)
    assert breakers.state("fal", "m") == "closed"
    breakers.record("fal", "m", success=False)
    assert breakers.state("fal", "m") == "open" and "circuit open" in (breakers.allow("fal", "m") or "")
    clock.now += 30
    assert breakers.state("fal", "m") == "half_open"
    assert breakers.allow("fal", "m") is None  # the probe
    assert "probe is in flight" in (breakers.allow("fal", "m") or "")
    breakers.record("fal", "m", success=False)  # failed probe re-opens for a full cool-down
    assert breakers.state("fal", "m") == "open"
    clock.now += 30
    assert breakers.allow("fal", "m") is None
    breakers.record("fal", "m", success=True)
    assert breakers.state("fal", "m") == "closed" and breakers.snapshot() == {("fal", "m"): "closed"}


async def test_open_circuit_skips_attempt_and_chain_goes_on(provider: Any) -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(threshold=2, cooldown=60, clock=clock)
    dead = Sequenced(*[ProviderUnavailableError("down")] * 10)
    dead_name, good_name = provider(dead), provider(Sequenced())
    config = chain(dead_name, good_name)
    for _ in range(2):
        await run_chain("video", config, REQUEST, breakers=breakers)
    assert dead.calls == 2 and breakers.state(dead_name, "m") == "open"
    response = await run_chain("video", config, REQUEST, breakers=breakers)
    skipped = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert dead.calls == 2 and skipped.status == "skipped" and skipped.error_type == "CircuitOpenError"
    clock.now += 60
    dead.errors.clear()  # the vendor recovered: the half-open probe succeeds and closes the circuit
    response = await run_chain("video", config, REQUEST, breakers=breakers)
    assert response.execution_metadata.successful_attempt == 1 and breakers.state(dead_name, "m") == "closed"  # type: ignore[union-attr]


async def test_refusals_do_not_open_the_circuit(provider: Any) -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=60, clock=FakeClock())
    name = provider(Sequenced(ContentPolicyError("no"), ContentPolicyError("no")))
    for _ in range(2):
        with pytest.raises(ContentPolicyError):
            await run_chain("video", chain(name), REQUEST, breakers=breakers)
    assert breakers.state(name, "m") == "closed"


async def test_all_circuits_open_raises_all_attempts_failed(provider: Any) -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=60, clock=FakeClock())
    name = provider(Sequenced(*[ProviderUnavailableError("down")] * 3))
    with pytest.raises(AllAttemptsFailedError):
        await run_chain("video", chain(name), REQUEST, breakers=breakers)
    with pytest.raises(AllAttemptsFailedError) as info:
        await run_chain("video", chain(name), REQUEST, breakers=breakers)
    assert isinstance(info.value.last_error, router.CircuitOpenError)
