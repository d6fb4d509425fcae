"""The mock provider: real media, weighted outcomes raising real errors, simulated polling, cancellation."""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest

import router
from router import (
    ImageGenerationConfig,
    ImageGenerationRequest,
    MockConfig,
    MockPollingConfig,
    MockResponse,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationUpdate,
)
from router.registry import get_handler

FAST = {"delay_between_updates": 0.001}


def mock_video(**kw: object) -> VideoGenerationConfig:
    return VideoGenerationConfig(provider="mock", model="mock-video", **kw)


@pytest.mark.parametrize("aspect_ratio", ["16:9", "9:16", "1:1", "4:3", "21:9"])
async def test_video_is_a_real_mp4_matching_the_request(aspect_ratio: str) -> None:
    response = await router.generate_video_async(mock_video(), VideoGenerationRequest(prompt="x", aspect_ratio=aspect_ratio))
    assert response.is_mock and response.status == "completed" and response.content_type == "video/mp4"
    assert isinstance(response.video, dict) and response.video["content_type"] == "video/mp4"
    data = response.video["content"]
    assert data[4:8] == b"ftyp" and len(data) < 64_000
    assert response.aspect_ratio == aspect_ratio and response.duration and response.duration > 0
    assert response.resolution in ("360p", "480p", "720p", "1080p", "4k")


async def test_images_are_real_pngs() -> None:
    config = ImageGenerationConfig(provider="mock", model="mock-image")
    response = await router.generate_image_async(config, ImageGenerationRequest(prompt="x", n=3, size="64x32"))
    assert len(response.images) == 3 and len(set(response.images)) == 3 and response.content_type == "image/png"
    png = base64.b64decode(response.images[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (64, 32)


async def test_mock_config_on_a_real_provider_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3", mock=MockConfig(enabled=True))
    response = await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
    assert response.is_mock and response.execution_metadata.attempts[0].provider == "fal"  # type: ignore[union-attr]


async def test_error_outcome_raises_real_class_and_falls_back() -> None:
    failing = mock_video(mock=MockConfig(responses=[MockResponse(error={"type": "RateLimitError", "message": "busy"})]))
    config = failing.model_copy(update={"fallback_configs": [mock_video()]})
    response = await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
    first = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert (first.error_type, first.error_message, first.is_retryable) == ("RateLimitError", "busy", True)


async def test_error_outcome_accepts_exception_instances() -> None:
    config = mock_video(mock=MockConfig(responses=[MockResponse(error=router.ContentPolicyError("nope"))]))
    with pytest.raises(router.ContentPolicyError, match="nope"):
        await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))


def test_unknown_error_type_is_rejected_with_known_names() -> None:
    with pytest.raises(ValueError, match="RateLimitError"):
        MockResponse(error={"type": "NoSuchError", "message": "x"})


async def test_weighted_outcomes_follow_weights() -> None:
    config = mock_video(mock=MockConfig(responses=[
        MockResponse(weight=1, error={"type": "ProviderUnavailableError"}), MockResponse(weight=1)]))
    outcomes = []
    for _ in range(60):
        try:
            await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
            outcomes.append("ok")
        except router.AllAttemptsFailedError:
            outcomes.append("error")
    assert 10 < outcomes.count("ok") < 50


async def test_polling_sequence_reports_updates() -> None:
    polling = MockPollingConfig(status_sequence=["queued", "processing", "processing", "completed"],
                                progress_percentages=[0, 30, 60, 100],
                                custom_updates=[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}], **FAST)
    updates: list[VideoGenerationUpdate] = []
    response = await router.generate_video_async(mock_video(mock=MockConfig(polling=polling)),
                                                 VideoGenerationRequest(prompt="x"), updates.append)
    assert [u.status for u in updates] == ["queued", "processing", "processing", "completed"]
    assert [u.progress_percent for u in updates] == [0, 30, 60, 100]
    assert [u.update.get("n") for u in updates[:3]] == [1, 2, 3]
    assert updates[-1].result == response and response.execution_metadata.attempts[0].request_id.startswith("mock-")  # type: ignore[union-attr]


async def test_polling_sequence_ending_failed_falls_back() -> None:
    polling = MockPollingConfig(status_sequence=["queued", "failed"], **FAST)
    config = mock_video(mock=MockConfig(polling=polling)).model_copy(update={"fallback_configs": [mock_video()]})
    response = await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
    assert response.execution_metadata.attempts[0].error_type == "GenerationFailedError"  # type: ignore[union-attr]


async def test_cancel_reaches_the_mock_job() -> None:
    polling = MockPollingConfig(status_sequence=["queued"] * 1000 + ["completed"], delay_between_updates=0.005)
    seen = asyncio.Event()
    task = asyncio.create_task(router.generate_video_async(
        mock_video(mock=MockConfig(polling=polling), max_poll_attempts=5000), VideoGenerationRequest(prompt="x"),
        lambda update: seen.set()))
    await seen.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert get_handler("mock").cancelled and get_handler("mock").cancelled[-1].startswith("mock-")


async def test_fixed_response_and_output_video() -> None:
    fixed = mock_video(mock=MockConfig(responses=[MockResponse(mock_response={"video": "https://cdn/x.mp4", "duration": 9.0})]))
    response = await router.generate_video_async(fixed, VideoGenerationRequest(prompt="x"))
    assert response.video == "https://cdn/x.mp4" and response.duration == 9.0 and response.is_mock
    url = mock_video(mock=MockConfig(responses=[MockResponse(output_video="https://cdn/y.mp4")]))
    assert (await router.generate_video_async(url, VideoGenerationRequest(prompt="x"))).video == "https://cdn/y.mp4"


def test_polling_config_validation() -> None:
    with pytest.raises(ValueError, match="progress_percentages"):
        MockPollingConfig(status_sequence=["queued", "completed"], progress_percentages=[1])
    with pytest.raises(ValueError, match="end with"):
        MockPollingConfig(status_sequence=["queued", "processing"])


async def test_error_instance_is_raised_with_its_class_and_every_field() -> None:
    configured = router.RateLimitError("busy", http_status=429, retry_after=3, code="too_many", provider_request_id="v-1")
    config = mock_video(mock=MockConfig(responses=[MockResponse(error=configured)]))
    for _ in range(2):  # drawn twice: each generation gets its own copy, not the annotated one of the last
        with pytest.raises(router.AllAttemptsFailedError) as caught:  # retryable, and the chain has one attempt
            await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
        error = caught.value.last_error
        assert type(error) is router.RateLimitError
        assert (error.message, error.http_status, error.retry_after, error.code, error.provider_request_id) == (
            "busy", 429, 3, "too_many", "v-1")
        assert (error.provider, error.model) == ("mock", "mock-video")
    assert configured.execution_metadata is None and configured.provider is None


@pytest.mark.parametrize("error", [
    router.RateLimitError("busy", http_status=429, retryable=False),
    {"type": "RateLimitError", "message": "busy", "http_status": 429, "retryable": False},
], ids=["instance", "dict"])
async def test_a_retryable_false_override_stops_the_chain(error: object) -> None:
    failing = mock_video(mock=MockConfig(responses=[MockResponse(error=error)]))  # type: ignore[arg-type]
    config = failing.model_copy(update={"fallback_configs": [mock_video()]})
    with pytest.raises(router.RateLimitError) as caught:
        await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
    assert caught.value.http_status == 429 and not caught.value.retryable
    metadata = caught.value.execution_metadata
    assert metadata is not None and metadata.total_attempts == 1 and metadata.attempts[0].is_retryable is False


async def test_a_polled_error_outcome_walks_the_status_sequence_first() -> None:
    polling = MockPollingConfig(status_sequence=["queued", "processing", "completed"],
                                progress_percentages=[0, 50, 100], **FAST)
    config = mock_video(mock=MockConfig(
        responses=[MockResponse(error={"type": "ContentPolicyError", "message": "flagged"})], polling=polling))
    seen: list[VideoGenerationUpdate] = []
    with pytest.raises(router.ContentPolicyError, match="flagged") as caught:
        await router.generate_video_async(config, VideoGenerationRequest(prompt="x"), on_progress=seen.append)
    assert [(u.status, u.progress_percent) for u in seen] == [("queued", 0), ("processing", 50), ("failed", None)]
    assert seen[-1].error and "flagged" in seen[-1].error
    # The mock job id is the vendor id of the attempt, as for any polled vendor.
    assert caught.value.provider_request_id and caught.value.provider_request_id.startswith("mock-")


async def test_the_completing_update_carries_the_last_polls_payload_and_the_result() -> None:
    polling = MockPollingConfig(custom_updates=[{"n": 1}, {"n": 2}, {"final": True}], **FAST)
    config = mock_video(mock=MockConfig(polling=polling))
    seen: list[VideoGenerationUpdate] = []
    response = await router.generate_video_async(config, VideoGenerationRequest(prompt="x"), on_progress=seen.append)
    assert [u.status for u in seen] == ["queued", "processing", "completed"]
    assert seen[-1].update["final"] is True and seen[-1].update["status"] == "completed"
    assert seen[-1].result == response


async def test_a_handler_called_directly_ends_with_the_completing_payload_and_result() -> None:
    polling = MockPollingConfig(custom_updates=[{"n": 1}, {"n": 2}, {"final": True}], **FAST)
    seen: list[VideoGenerationUpdate] = []
    response = await get_handler("mock").generate_video_async(
        mock_video(mock=MockConfig(polling=polling)), VideoGenerationRequest(prompt="x"), seen.append)
    assert [(u.status, u.update.get("n"), u.update.get("final")) for u in seen] == [
        ("queued", 1, None), ("processing", 2, None), ("completed", None, True)]
    assert seen[-1].result == response


async def test_progress_defaults_per_status_like_tarash_gateway() -> None:
    config = mock_video(mock=MockConfig(polling=MockPollingConfig(**FAST)))
    seen: list[VideoGenerationUpdate] = []
    await router.generate_video_async(config, VideoGenerationRequest(prompt="x"), on_progress=seen.append)
    assert [(u.status, u.progress_percent) for u in seen] == [("queued", 0), ("processing", 50), ("completed", 100)]


async def test_a_disabled_mock_config_configures_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    disabled = MockConfig(enabled=False, responses=[MockResponse(error={"type": "ContentPolicyError"})])
    # provider = "mock": the mock answers with its defaults, not the disabled config's error.
    response = await router.generate_video_async(mock_video(mock=disabled), VideoGenerationRequest(prompt="x"))
    assert response.is_mock
    # A real provider: the attempt goes to that provider (here skipped: no key), not to the mock.
    monkeypatch.delenv("FAL_KEY", raising=False)
    config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3", mock=disabled)
    with pytest.raises(router.AllAttemptsFailedError) as caught:
        await router.generate_video_async(config, VideoGenerationRequest(prompt="x"))
    assert caught.value.execution_metadata.attempts[0].error_type == "MissingCredentialsError"  # type: ignore[union-attr]
