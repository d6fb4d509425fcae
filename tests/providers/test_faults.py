"""Every provider x every fault of the emulator menu -> the right error class and retryable flag.

One table, so all vendors are held to the same standard; vendor-specific mappings are in test_<vendor>.py.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

import router
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.providers.vendors import CANARY, CASES, VENDORS, make_emulator, request_for

#: fault, step -> (error class, retryable)
HTTP_CASES = [
    (Fault.RATE_LIMIT, "submit", "RateLimitError", True),
    (Fault.SERVER_ERROR, "submit", "ProviderUnavailableError", True),
    (Fault.UNAVAILABLE, "submit", "ProviderUnavailableError", True),
    (Fault.MALFORMED_JSON, "submit", "BadProviderResponseError", True),
    (Fault.AUTH, "submit", "AuthenticationError", False),
    (Fault.BAD_REQUEST, "submit", "InvalidRequestError", False),
    (Fault.HANG, "submit", "AmbiguousSubmitError", None),  # policy decides: video stops, image falls back
    (Fault.DROP, "submit", "AmbiguousSubmitError", None),
    (Fault.CONTENT_POLICY, "submit", "ContentPolicyError", False),
    (Fault.EMPTY_RESULT, "submit", "BadProviderResponseError", True),
]
SYNC_IMAGE = {("openai", "image"), ("azure-openai", "image"), ("stability", "image"), ("google", "image")}  # no job: job-only faults do not apply


def _expected_retryable(kind: str, retryable: bool | None) -> bool:
    return (kind == "image") if retryable is None else retryable


async def _run(vendor: str, kind: str, emu: Any, **config: Any) -> router.TarashError:
    spec = VENDORS[vendor]
    cfg = spec.config(emu, kind, **config)
    with pytest.raises(router.TarashError) as info:
        await run_chain(kind, cfg, request_for(kind))  # type: ignore[arg-type]
    error = info.value
    return error.last_error if isinstance(error, router.AllAttemptsFailedError) else error


@pytest.mark.parametrize("vendor,kind", CASES)
@pytest.mark.parametrize("fault,step,error_type,retryable", HTTP_CASES, ids=[c[0].value for c in HTTP_CASES])
async def test_fault_maps_to_error(vendor: str, kind: str, fault: Fault, step: str, error_type: str,
                                   retryable: bool | None, caplog: pytest.LogCaptureFixture) -> None:
    async with make_emulator(vendor, api_key=CANARY) as emu:
        emu.inject(fault, step=step)
        caplog.set_level(logging.DEBUG)
        # The hang is cut by the call's timeout, which also bounds the connect: 1 s, not less, so a pause of this
        # process (a full collection of a long suite's objects) cannot turn the connect into the failure.
        timeouts = {"provider_config": {"request_timeout": 1.0}} if fault is Fault.HANG else {}
        error = await _run(vendor, kind, emu, **timeouts)
    assert type(error).__name__ == error_type, repr(error)
    metadata = error.execution_metadata
    attempt = metadata.attempts[-1] if metadata else None
    expected = _expected_retryable(kind, retryable)
    assert attempt is not None and attempt.error_type == error_type and attempt.is_retryable is expected
    assert error.provider == vendor and error.message
    for text in (str(error), repr(error), metadata.model_dump_json() if metadata else "", caplog.text):
        assert CANARY not in text
    if fault is Fault.RATE_LIMIT:
        assert error.retry_after == 1.0 and error.http_status == 429


@pytest.mark.parametrize("vendor,kind", [c for c in CASES if c not in SYNC_IMAGE])
@pytest.mark.parametrize("fault,error_type", [(Fault.JOB_FAILED, "GenerationFailedError"),
                                              (Fault.CONTENT_POLICY, "ContentPolicyError")])
async def test_job_that_fails_after_acceptance(vendor: str, kind: str, fault: Fault, error_type: str) -> None:
    async with make_emulator(vendor, api_key=CANARY) as emu:
        emu.inject(fault, step="submit")
        error = await _run(vendor, kind, emu)
        assert emu.calls["cancel"] == 0  # the vendor ended the job: nothing to cancel
    assert type(error).__name__ == error_type and error.provider_request_id


@pytest.mark.parametrize("vendor,kind", [c for c in CASES if c not in SYNC_IMAGE])
@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.RATE_LIMIT, Fault.DROP])
async def test_status_blips_are_retried(vendor: str, kind: str, fault: Fault) -> None:
    async with make_emulator(vendor) as emu:
        emu.inject(fault, step="status", times=2)
        emu.retry_after = "0.01"
        spec = VENDORS[vendor]
        response = await run_chain(kind, spec.config(emu, kind, provider_config={"request_timeout": 2}),
                                   request_for(kind))  # type: ignore[arg-type]
        assert emu.calls["submit"] == 1 and emu.calls["cancel"] == 0
    assert response.execution_metadata.successful_attempt == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("vendor,kind", [c for c in CASES if c not in SYNC_IMAGE])
async def test_persistent_status_failure_gives_up_and_cancels(vendor: str, kind: str) -> None:
    async with make_emulator(vendor) as emu:
        emu.inject(Fault.SERVER_ERROR, step="status", times=10)
        error = await _run(vendor, kind, emu)
        assert type(error).__name__ == "ProviderUnavailableError"
        assert emu.calls["cancel"] == int(VENDORS[vendor].cancels)


@pytest.mark.parametrize("vendor,kind", [c for c in CASES if c not in SYNC_IMAGE])
async def test_cancelling_the_task_cancels_the_vendor_job(vendor: str, kind: str) -> None:
    async with make_emulator(vendor, polls_to_complete=10_000) as emu:
        spec = VENDORS[vendor]
        task = asyncio.create_task(run_chain(kind, spec.config(emu, kind, max_poll_attempts=100_000),
                                             request_for(kind)))  # type: ignore[arg-type]
        while emu.calls["status"] < 2:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert emu.calls["cancel"] == int(VENDORS[vendor].cancels)
        assert any(job.cancelled for job in emu.jobs.values()) == VENDORS[vendor].cancels


@pytest.mark.parametrize("vendor,kind", [c for c in CASES if c not in SYNC_IMAGE])
async def test_attempt_timeout_cancels_and_falls_back(vendor: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempt's time runs out while its vendor job is polled. The event loop's clock is moved past the
    timeout once the job is polled: a real 0.2 s timeout could expire during the submit on a loaded machine, and
    with no job id yet there would be nothing to cancel."""
    async with make_emulator(vendor, polls_to_complete=10_000) as emu:
        spec = VENDORS[vendor]
        config = spec.config(emu, kind, timeout=5, max_poll_attempts=100_000)  # far below every call's own timeout
        mock = (router.VideoGenerationConfig if kind == "video" else router.ImageGenerationConfig)(
            provider="mock", model="mock")
        chain = asyncio.create_task(run_chain(kind, config.model_copy(update={"fallback_configs": [mock]}),  # type: ignore[arg-type]
                                              request_for(kind)))
        for _ in range(1000):  # the vendor job exists and is being polled
            if emu.calls["status"] or chain.done():
                break
            await asyncio.sleep(0.01)
        assert emu.calls["status"] and not chain.done()
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "time", lambda now=loop.time: now() + config.timeout)
        response = await asyncio.wait_for(chain, 10)
        assert emu.calls["cancel"] == int(VENDORS[vendor].cancels)
    first, second = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert first.error_type == "ProviderTimeoutError" and first.is_retryable and second.provider == "mock"


async def test_connection_refused_is_unavailable_and_safe_to_fall_back() -> None:
    nowhere = SimpleNamespace(api_key="k", url="http://127.0.0.1:9")  # nothing listens on the discard port
    error = await _run("fal", "video", nowhere)
    assert type(error).__name__ == "ProviderUnavailableError" and error.retryable
