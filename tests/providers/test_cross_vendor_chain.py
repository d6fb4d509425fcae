"""One request across all eight providers' emulators: the first seven fail in seven different ways, the eighth
succeeds, and every AttemptMetadata entry says exactly what happened."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from router.models import VideoGenerationConfig
from router.orchestrator import run_chain
from tests.providers.vendors import VENDORS, make_emulator, request_for

#: vendor, (fault, step) to inject or None, config overrides, expected (status, error_type, words in the message)
PLAN: list[tuple[str, tuple[str, str] | None, dict[str, Any], tuple[str, str | None, str | None]]] = [
    ("fal", ("rate_limit", "submit"), {}, ("failed", "RateLimitError", "HTTP 429")),
    ("openai", ("server_error", "submit"), {}, ("failed", "ProviderUnavailableError", "HTTP 500")),
    ("azure-openai", None, {"api_key": None}, ("skipped", "MissingCredentialsError", "AZURE_OPENAI_API_KEY")),
    ("replicate", ("job_failed", "submit"), {}, ("failed", "GenerationFailedError", None)),
    ("runway", ("malformed_json", "submit"), {}, ("failed", "BadProviderResponseError", "not JSON")),
    # accepted, then its status poll never answers: the attempt's own timeout ends it and cancels the job
    ("luma", ("hang", "status"), {"timeout": 0.3, "provider_config": {"request_timeout": 5}},
     ("failed", "ProviderTimeoutError", "timed out")),
    ("stability", None, {}, ("skipped", "UnsupportedCapabilityError", "discontinued its video API")),
    ("google", None, {}, ("success", None, None)),
]
#: Attempts that got as far as a vendor job: their request_id is that job's id.
WITH_JOB = {"replicate", "luma", "google"}


async def test_chain_across_all_eight_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    async with contextlib.AsyncExitStack() as stack:
        emulators = {vendor: await stack.enter_async_context(make_emulator(vendor)) for vendor, *_ in PLAN}
        configs = []
        for vendor, fault, overrides, _ in PLAN:
            if fault:
                emulators[vendor].inject(fault[0], step=fault[1])
            if vendor == "stability":  # no video model: any model id, the provider refuses video itself
                configs.append(VideoGenerationConfig(provider="stability", model="sd3.5-large", api_key="test-key",
                                                     base_url=emulators[vendor].url))
            else:
                configs.append(VENDORS[vendor].config(emulators[vendor], "video", **overrides))
        config = configs[0].model_copy(update={"fallback_configs": configs[1:]})
        updates: list[Any] = []
        response = await run_chain("video", config, request_for("video"), updates.append)
        calls = {vendor: dict(emu.calls) for vendor, emu in emulators.items()}
        jobs = {vendor: list(emu.jobs) for vendor, emu in emulators.items()}
        luma_job = emulators["luma"].jobs[jobs["luma"][0]]
    assert calls["azure-openai"] == {} and calls["stability"] == {}  # skipped: never called
    assert luma_job.cancelled and calls["luma"]["cancel"] == 1  # the abandoned Luma job was cancelled
    assert calls["google"]["submit"] == 1 and "cancel" not in calls["google"]

    metadata = response.execution_metadata
    assert metadata is not None
    assert (metadata.total_attempts, metadata.configs_in_chain, metadata.successful_attempt, metadata.fallback_triggered) == (
        8, 8, 8, True)
    for number, (attempt, chain_config, (vendor, _, _, (status, error_type, words))) in enumerate(
            zip(metadata.attempts, configs, PLAN, strict=True), start=1):
        assert (attempt.attempt_number, attempt.provider, attempt.model) == (number, vendor, chain_config.model)
        assert (attempt.status, attempt.error_type) == (status, error_type)
        assert attempt.ended_at is not None and attempt.elapsed_seconds is not None
        assert attempt.ended_at >= attempt.started_at
        if vendor in WITH_JOB:  # the vendor's job id (the others keep the vendor's request id when it sent one)
            assert attempt.request_id and attempt.request_id.rsplit("/", 1)[-1] in jobs[vendor], attempt.request_id
        if status == "skipped":
            assert attempt.request_id is None
        if status == "success":
            assert attempt.error_message is None and attempt.is_retryable is None
        else:
            assert attempt.error_message and attempt.is_retryable is True  # each one let the chain go on
            assert words is None or words in attempt.error_message, attempt.error_message
    assert [a.started_at for a in metadata.attempts] == sorted(a.started_at for a in metadata.attempts)
    assert metadata.attempts[5].request_id == luma_job.id and not jobs["fal"] and not jobs["runway"]
    assert metadata.attempts[7].request_id.startswith("models/veo-3.0-generate-001/operations/")  # type: ignore[union-attr]
    assert response.video["content"][4:8] == b"ftyp"  # type: ignore[index,union-attr]
    fallbacks = [(u.update["from_provider"], u.update["to_provider"]) for u in updates if u.update.get("event") == "fallback"]
    assert fallbacks == [(PLAN[i][0], PLAN[i + 1][0]) for i in range(7)]
