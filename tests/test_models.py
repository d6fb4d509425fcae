"""Model rules of docs/models.md: defaults, immutability, extra_params capture, secrets, JSON round-trips."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

import router
from router.models import (
    AttemptMetadata,
    ExecutionMetadata,
    ImageGenerationConfig,
    ImageGenerationRequest,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
    VideoGenerationUpdate,
    flatten_chain,
    media_data_uri,
    media_form,
)

SECRET = "sk-canary-DO-NOT-LEAK-1234567890"


def test_config_defaults_match_spec() -> None:
    video = VideoGenerationConfig(provider="fal", model="fal-ai/veo3")
    assert (video.timeout, video.max_poll_attempts, video.poll_interval) == (600, 120, 5)
    assert video.api_key is None and video.base_url is None and video.api_version is None
    assert video.mock is None and video.fallback_configs is None and video.provider_config == {}
    image = ImageGenerationConfig(provider="openai", model="dall-e-3")
    assert (image.timeout, image.max_poll_attempts, image.poll_interval) == (120, 60, 2)


def test_request_defaults_match_spec() -> None:
    video = VideoGenerationRequest(prompt="p")
    assert video.number_of_videos == 1 and video.image_list == [] and video.extra_params == {}
    assert video.duration_seconds is None and video.resolution is None and video.video is None
    image = ImageGenerationRequest(prompt="p")
    assert image.n is None and image.size is None and image.mask_image is None and image.image_list == []


def test_configs_are_immutable_and_derive_with_model_copy() -> None:
    config = VideoGenerationConfig(provider="fal", model="m")
    with pytest.raises(ValidationError):
        config.timeout = 5  # type: ignore[misc]
    derived = config.model_copy(update={"timeout": 30})
    assert derived.timeout == 30 and config.timeout == 600


def test_fallback_configs_nest_and_flatten_depth_first() -> None:
    leaf = VideoGenerationConfig(provider="c", model="c1")
    middle = VideoGenerationConfig(provider="b", model="b1", fallback_configs=[leaf])
    root = VideoGenerationConfig(provider="a", model="a1", fallback_configs=[middle, VideoGenerationConfig(provider="d", model="d1")])
    assert [c.provider for c in flatten_chain(root)] == ["a", "b", "c", "d"]
    assert all(c.fallback_configs is None for c in flatten_chain(root))


def test_fractional_seconds_are_accepted_and_ints_stay_ints() -> None:
    assert VideoGenerationConfig(provider="x", model="y", poll_interval=0.01).poll_interval == 0.01
    assert isinstance(VideoGenerationConfig(provider="x", model="y").timeout, int)
    with pytest.raises(ValidationError, match="timeout"):
        VideoGenerationConfig(provider="x", model="y", timeout=0)


@pytest.mark.parametrize("cls", [VideoGenerationRequest, ImageGenerationRequest])
def test_unknown_kwargs_land_in_extra_params(cls: type) -> None:
    request = cls(prompt="p", cfg_scale=0.5, extra_params={"mode": "pro"})
    assert request.extra_params == {"cfg_scale": 0.5, "mode": "pro"}
    from_json = cls.model_validate_json('{"prompt": "p", "camera": {"zoom": 2}, "seed": 3}')
    assert from_json.extra_params == {"camera": {"zoom": 2}} and from_json.seed == 3


def test_explicit_extra_params_win_over_loose_keys() -> None:
    request = VideoGenerationRequest(prompt="p", mode="std", extra_params={"mode": "pro"})
    assert request.extra_params == {"mode": "pro"}


def test_validation_errors_name_field_and_allowed_values() -> None:
    with pytest.raises(ValidationError) as info:
        VideoGenerationRequest(prompt="p", resolution="999p", aspect_ratio="2:1")
    text = str(info.value)
    assert "resolution" in text and "'720p'" in text and "'4k'" in text
    assert "aspect_ratio" in text and "'16:9'" in text and "'21:9'" in text
    with pytest.raises(ValidationError, match="first_frame"):
        VideoGenerationRequest(prompt="p", image_list=[{"image": "https://x/y.png", "type": "middle"}])


def test_image_roles_accept_all_spec_roles() -> None:
    roles = ["reference", "first_frame", "last_frame", "asset", "style"]
    request = VideoGenerationRequest(prompt="p", image_list=[{"image": "https://x/y.png", "type": r} for r in roles])
    assert [i["type"] for i in request.image_list] == roles


def test_api_key_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    config = VideoGenerationConfig(
        provider="fal", model="m", api_key=SECRET,
        fallback_configs=[VideoGenerationConfig(provider="openai", model="sora-2", api_key=SECRET)],
    )
    assert config.api_key == SECRET  # usable by handlers...
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r", config, config)
    for text in (repr(config), str(config), config.model_dump_json(), json.dumps(config.model_dump()), caplog.text):
        assert SECRET not in text
    assert SECRET not in repr(config.model_copy(update={"timeout": 1}))


def test_api_key_not_echoed_by_validation_errors() -> None:
    with pytest.raises(ValidationError) as info:
        VideoGenerationConfig(provider="fal", model="m", api_key=SECRET, timeout=-1)
    assert SECRET not in str(info.value)


def test_media_content_round_trips_as_base64() -> None:
    payload = bytes(range(256))
    response = VideoGenerationResponse(request_id="r", video={"content": payload, "content_type": "video/mp4"})
    dumped = json.loads(response.model_dump_json())
    assert dumped["video"]["content"] == base64.b64encode(payload).decode()
    assert VideoGenerationResponse.model_validate_json(response.model_dump_json()) == response


def _metadata() -> ExecutionMetadata:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    attempts = [
        AttemptMetadata(provider="fal", model="a", attempt_number=1, started_at=start,
                        ended_at=start + timedelta(seconds=2), status="failed", error_type="RateLimitError",
                        error_message="busy", is_retryable=True),
        AttemptMetadata(provider="openai", model="b", attempt_number=2, started_at=start + timedelta(seconds=2),
                        ended_at=start + timedelta(seconds=5), status="success", request_id="vid_1"),
    ]
    return ExecutionMetadata(total_attempts=2, successful_attempt=2, attempts=attempts, fallback_triggered=True,
                             configs_in_chain=3)


def test_metadata_computed_fields() -> None:
    metadata = _metadata()
    assert metadata.total_elapsed_seconds == 5.0
    assert [a.elapsed_seconds for a in metadata.attempts] == [2.0, 3.0]
    running = AttemptMetadata(provider="x", model="y", attempt_number=1, started_at=datetime.now(timezone.utc), status="failed")
    assert running.elapsed_seconds is None
    dumped = metadata.model_dump(mode="json")
    assert dumped["total_elapsed_seconds"] == 5.0 and dumped["attempts"][0]["elapsed_seconds"] == 2.0


def test_attempt_datetimes_are_utc() -> None:
    naive = AttemptMetadata(provider="x", model="y", attempt_number=1, started_at=datetime(2026, 1, 1), status="skipped")
    assert naive.started_at.tzinfo == timezone.utc
    plus_two = timezone(timedelta(hours=2))
    aware = AttemptMetadata(provider="x", model="y", attempt_number=1,
                            started_at=datetime(2026, 1, 1, 12, tzinfo=plus_two), status="skipped")
    assert aware.started_at == datetime(2026, 1, 1, 10, tzinfo=timezone.utc) and aware.started_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "model",
    [
        VideoGenerationResponse(request_id="r", video="https://cdn/x.mp4", duration=4.0, resolution="720p",
                                aspect_ratio="16:9", content_type="video/mp4", audio_url="https://cdn/a.mp3",
                                raw_response={"a": [1]}, provider_metadata={"k": "v"}, execution_metadata=_metadata()),
        VideoGenerationResponse(request_id="r", video={"content": b"\x00mp4", "content_type": "video/mp4"}, is_mock=True),
        ImageGenerationResponse(request_id="r", images=["aGk="], revised_prompt="better", execution_metadata=_metadata()),
        VideoGenerationUpdate(request_id="r", status="processing", progress_percent=40, update={"queue_position": 2}),
        VideoGenerationUpdate(request_id="r", status="completed", progress_percent=100,
                              result=VideoGenerationResponse(request_id="r", video={"content": b"\xff", "content_type": "video/mp4"})),
        ImageGenerationUpdate(request_id="r", status="failed", error="boom"),
        _metadata(),
    ],
)
def test_json_round_trip(model: object) -> None:
    cls = type(model)
    assert cls.model_validate_json(model.model_dump_json()) == model  # type: ignore[attr-defined]


def test_update_progress_bounds() -> None:
    with pytest.raises(ValidationError, match="progress_percent"):
        VideoGenerationUpdate(request_id="r", status="processing", progress_percent=101)


def test_media_helpers() -> None:
    assert media_form("https://x/y.png") == "url"
    assert media_form("data:image/png;base64,aGk=") == "data_uri"
    assert media_form("aGk=") == "base64"
    assert media_form({"content": b"hi", "content_type": "image/png"}) == "content"
    assert media_data_uri({"content": b"hi", "content_type": "image/png"}) == "data:image/png;base64,aGk="
    assert media_data_uri("https://x/y.png") == "https://x/y.png"


def test_top_level_surface() -> None:
    for name in ("VideoGenerationConfig", "VideoGenerationRequest", "VideoGenerationResponse", "VideoGenerationUpdate",
                 "ImageGenerationConfig", "ImageGenerationRequest", "ImageGenerationResponse", "ImageGenerationUpdate",
                 "ExecutionMetadata", "AttemptMetadata", "MockConfig", "ProviderHandler", "register_provider",
                 "generate_video", "generate_video_async", "generate_image", "generate_image_async", "TarashError",
                 "InvalidRequestError", "AuthenticationError", "ContentPolicyError", "RateLimitError",
                 "ProviderTimeoutError", "ProviderUnavailableError", "BadProviderResponseError", "GenerationFailedError",
                 "AmbiguousSubmitError", "MissingCredentialsError", "UnsupportedCapabilityError",
                 "GenerationCancelledError", "AllAttemptsFailedError"):
        assert hasattr(router, name), name
