"""One request across all eight providers' emulators: the first seven fail in seven different ways, the eighth
succeeds, and every AttemptMetadata entry says exactly what happened."""

from __future__ import annotations

import contextlib

import pytest

from router.models import VideoGenerationConfig
from router.orchestrator import run_chain
from tests.providers.vendors import VENDORS, make_emulator, request_for

#: vendor, fault to inject (or None), config overrides, expected (status, error_type)
PLAN = [
    ("fal", "rate_limit", {}, ("failed", "RateLimitError")),
    ("openai", "server_error", {}, ("failed", "ProviderUnavailableError")),
    ("azure-openai", None, {"api_key": None}, ("skipped", "MissingCredentialsError")),
    ("replicate", "job_failed", {}, ("failed", "GenerationFailedError")),
    ("runway", "malformed_json", {}, ("failed", "BadProviderResponseError")),
    ("luma", "hang", {"timeout": 0.3, "provider_config": {"request_timeout": 5}}, ("failed", "ProviderTimeoutError")),
    ("stability", None, {"model": "sd3.5-large"}, ("skipped", "UnsupportedCapabilityError")),
    ("google", None, {}, ("success", None)),
]


async def test_chain_across_all_eight_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    async with contextlib.AsyncExitStack() as stack:
        emulators = {vendor: await stack.enter_async_context(make_emulator(vendor)) for vendor, *_ in PLAN}
        configs = []
        for vendor, fault, overrides, _ in PLAN:
            if fault:
                emulators[vendor].inject(fault)
            spec = VENDORS[vendor]
            if vendor == "stability":  # no video model: any model id, the provider refuses video itself
                configs.append(VideoGenerationConfig(provider="stability", api_key="test-key", base_url=emulators[vendor].url,
                                                     **overrides))
                continue
            configs.append(spec.config(emulators[vendor], "video", **overrides))
        config = configs[0].model_copy(update={"fallback_configs": configs[1:]})
        response = await run_chain("video", config, request_for("video"))
        assert emulators["azure-openai"].calls["submit"] == 0 and emulators["stability"].requests == []
    metadata = response.execution_metadata
    assert metadata is not None
    assert (metadata.total_attempts, metadata.configs_in_chain, metadata.successful_attempt, metadata.fallback_triggered) == (
        8, 8, 8, True)
    for attempt, (vendor, _, _, (status, error_type)) in zip(metadata.attempts, PLAN, strict=True):
        assert (attempt.provider, attempt.status, attempt.error_type) == (vendor, status, error_type)
        assert attempt.attempt_number == PLAN.index(next(p for p in PLAN if p[0] == vendor)) + 1
        assert attempt.ended_at is not None and attempt.elapsed_seconds is not None
        if status != "success":
            assert attempt.error_message and attempt.is_retryable is True
    started = [a.started_at for a in metadata.attempts]
    assert started == sorted(started)
    assert metadata.attempts[3].request_id and metadata.attempts[7].request_id  # vendor job ids kept
    assert response.video["content"][4:8] == b"ftyp"  # type: ignore[index,union-attr]
