"""Runway against its emulator: per-model request bodies, progress, failure codes, skips, fallback.

The shared fault menu (429, 5xx, hang, malformed JSON, drop, 401, job outcomes, cancel) is in test_faults.py.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

import router
from providers.runway import FAILURE_CODES, RunwayProvider
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.providers.vendors import CANARY, VENDORS, make_emulator, recorded, request_for

RUNWAY = VENDORS["runway"]
FIRST = {"image": "https://cdn.example/a.png", "type": "first_frame"}
LAST = {"image": "https://cdn.example/b.png", "type": "last_frame"}
MOCK = router.VideoGenerationConfig(provider="mock", model="spare")


async def submitted_body(model: str, kind: str = "video", **request: Any) -> tuple[str, dict[str, Any], Any]:
    async with make_emulator("runway") as emu:
        response = await run_chain(kind, RUNWAY.config(emu, kind, model=model), request_for(kind, **request))  # type: ignore[arg-type]
        submit = recorded(emu, "submit")
        assert submit.headers["X-Runway-Version"] == "2024-11-06" and submit.headers["Authorization"] == "Bearer test-key"
    return submit.path, submit.body, response


async def test_veo31_first_and_last_frames_audio_and_rounded_duration() -> None:
    path, body, response = await submitted_body(
        "veo3.1", duration_seconds=5, aspect_ratio="9:16", resolution="1080p", image_list=[FIRST, LAST],
        generate_audio=True, negative_prompt="blur", seed=7)
    assert path == "/v1/image_to_video"
    assert body == {"model": "veo3.1", "promptText": "a red fox in the snow", "ratio": "1080:1920", "duration": 6,
                    "audio": True, "negativePrompt": "blur",  # no seed: Veo's schema on Runway has none
                    "promptImage": [{"uri": "https://cdn.example/a.png", "position": "first"},
                                    {"uri": "https://cdn.example/b.png", "position": "last"}]}
    assert response.aspect_ratio == "9:16" and response.video.startswith("http")


async def test_gen45_text_to_video_gets_its_nearest_ratio_and_says_so() -> None:
    # gen4.5 text_to_video takes only 1280:720 / 720:1280 (image_to_video has 960:960 for 1:1).
    path, body, response = await submitted_body("gen4.5", aspect_ratio="1:1", seed=3, duration_seconds=7)
    assert path == "/v1/text_to_video"
    assert body == {"model": "gen4.5", "promptText": "a red fox in the snow", "ratio": "1280:720", "duration": 10, "seed": 3}
    assert response.aspect_ratio == "16:9"
    path, body, response = await submitted_body("gen4.5", aspect_ratio="1:1", image_list=[FIRST])
    assert path == "/v1/image_to_video" and body["ratio"] == "960:960" and body["promptImage"] == FIRST["image"]
    assert response.aspect_ratio == "1:1"


@pytest.mark.parametrize("model,expected", [
    ("seedance2", {"model": "seedance2", "promptText": "a red fox in the snow", "promptVideo": "https://cdn.example/in.mp4",
                   "ratio": "864:496", "duration": 6, "audio": False}),
    ("aleph2", {"model": "aleph2", "promptText": "a red fox in the snow", "videoUri": "https://cdn.example/in.mp4", "seed": 9}),
    ("gemini_omni_flash", {"model": "gemini_omni_flash", "promptText": "a red fox in the snow",
                           "videoUri": "https://cdn.example/in.mp4"}),
])
async def test_video_to_video_fields_per_model(model: str, expected: dict[str, Any]) -> None:
    path, body, response = await submitted_body(model, video="https://cdn.example/in.mp4", resolution="480p",
                                                duration_seconds=6, seed=9, generate_audio=False)
    assert path == "/v1/video_to_video" and body == expected
    assert response.aspect_ratio == ("16:9" if model == "seedance2" else None)  # otherwise it follows the input


async def test_text_to_image_ratio_seed_and_references() -> None:
    path, body, response = await submitted_body("gen4_image", "image", aspect_ratio="21:9", seed=4)
    assert path == "/v1/text_to_image"
    assert body == {"model": "gen4_image", "promptText": "a red fox in the snow", "ratio": "2112:912", "seed": 4}
    assert response.images[0].startswith("http")
    ref = {"image": "https://cdn.example/ref.png", "type": "reference"}
    _, body, _ = await submitted_body("gemini_2.5_flash", "image", seed=4, image_list=[ref])
    assert body == {"model": "gemini_2.5_flash", "promptText": "a red fox in the snow", "ratio": "1024:1024",
                    "referenceImages": [{"uri": "https://cdn.example/ref.png"}]}


@pytest.mark.parametrize("model,kind,request_fields,lacking", [
    ("gen4.5", "video", {"image_list": [LAST]}, "last_frame"),
    ("gen4_turbo", "video", {}, "text_to_video"),  # image-to-video only
    ("veo3", "video", {"generate_audio": True}, "audio"),  # no audio switch in its schema
    ("gen4.5", "video", {"video": "https://cdn.example/in.mp4"}, "video_input"),
    ("seedance2", "video", {"video": "https://cdn.example/in.mp4", "image_list": [FIRST]}, "not both"),
    ("gen4.5", "video", {"number_of_videos": 2}, "multiple_outputs"),
    ("gen4_image_turbo", "image", {}, "text_to_image"),  # needs reference images
])
async def test_what_a_model_cannot_do_is_skipped_before_any_call(model: str, kind: str, request_fields: dict[str, Any],
                                                                  lacking: str) -> None:
    async with make_emulator("runway") as emu:
        spare = MOCK if kind == "video" else router.ImageGenerationConfig(provider="mock", model="spare")
        config = RUNWAY.config(emu, kind, model=model).model_copy(update={"fallback_configs": [spare]})
        response = await run_chain(kind, config, request_for(kind, **request_fields))  # type: ignore[arg-type]
        assert emu.requests == []
    skipped, served = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert (skipped.status, skipped.error_type, served.provider) == ("skipped", "UnsupportedCapabilityError", "mock")
    assert lacking in (skipped.error_message or "")


@pytest.mark.parametrize("throttle,queued", [(False, "PENDING"), (True, "THROTTLED")])
async def test_progress_fraction_becomes_percent(throttle: bool, queued: str) -> None:
    async with make_emulator("runway", polls_to_complete=4, throttle=throttle) as emu:
        updates: list[Any] = []
        await run_chain("video", RUNWAY.config(emu, "video"), request_for("video"), updates.append)
    assert [(u.status, u.progress_percent) for u in updates] == [
        ("queued", None), ("processing", 50), ("processing", 75), ("completed", 100)]
    assert updates[0].update["status"] == queued and updates[1].update["progress"] == 0.5


@pytest.mark.parametrize("fault,error_type,code,retryable", [
    (Fault.CONTENT_POLICY, "ContentPolicyError", "SAFETY.INPUT.TEXT", False),
    (Fault.JOB_FAILED, "GenerationFailedError", "INTERNAL.BAD_OUTPUT.CODE01", True),
])
async def test_failure_codes_from_a_failed_task(fault: Fault, error_type: str, code: str, retryable: bool) -> None:
    async with make_emulator("runway") as emu:
        emu.inject(fault)
        with pytest.raises(router.TarashError) as info:
            await run_chain("video", RUNWAY.config(emu, "video"), request_for("video"))
    error = info.value.last_error if isinstance(info.value, router.AllAttemptsFailedError) else info.value
    assert (type(error).__name__, error.code, error.retryable) == (error_type, code, retryable)
    assert error.provider_request_id in emu.jobs and error.message.startswith("runway: ")


@pytest.mark.parametrize("code,error_type", [
    ("SAFETY.OUTPUT.VIDEO", "ContentPolicyError"),
    ("INPUT_PREPROCESSING.SAFETY.TEXT", "ContentPolicyError"),
    ("INPUT_PREPROCESSING.INTERNAL", "GenerationFailedError"),
    ("INTERNAL.BAD_OUTPUT.CODE02", "GenerationFailedError"),
    ("INTERNAL.THROTTLED", "RateLimitError"),  # undocumented: any throttling code is taken as a rate limit
    ("", "GenerationFailedError"),
])
def test_failure_code_table(code: str, error_type: str) -> None:
    from providers.runway import _failure_class

    assert _failure_class(code).__name__ == error_type
    assert all(prefix.isupper() for prefix, _ in FAILURE_CODES)


async def test_a_task_cancelled_elsewhere_fails_the_attempt() -> None:
    async with make_emulator("runway", polls_to_complete=1000, cancelled_visible=True) as emu:
        config = RUNWAY.config(emu, "video", max_poll_attempts=100_000)
        updates: list[Any] = []

        async def cancel_on_first_poll(update: Any) -> None:
            updates.append(update)
            if len(updates) == 1:  # someone deletes the task from Runway's dashboard / another client
                async with aiohttp.ClientSession() as s, s.delete(
                        f"{emu.url}/v1/tasks/{update.update['id']}",
                        headers={"Authorization": "Bearer test-key", "X-Runway-Version": "2024-11-06"}) as r:
                    assert r.status == 204

        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("video", config, request_for("video"), cancel_on_first_poll)
    error = info.value.last_error
    assert isinstance(error, router.GenerationFailedError) and error.code == "CANCELLED"


async def test_validation_errors_name_the_field_and_version_is_configurable() -> None:
    async with make_emulator("runway", api_key=CANARY) as emu:
        emu.inject(Fault.BAD_REQUEST)
        with pytest.raises(router.InvalidRequestError) as info:
            await run_chain("video", RUNWAY.config(emu, "video"), request_for("video"))
        assert "Validation of body failed: promptText:" in info.value.message and info.value.http_status == 400
        old = RUNWAY.config(emu, "video", provider_config={"runway_version": "2023-01-01"})
        with pytest.raises(router.InvalidRequestError, match="X-Runway-Version"):
            await run_chain("video", old, request_for("video"))
        assert recorded(emu, "submit").headers["X-Runway-Version"] == "2024-11-06"
        assert emu.requests[-1].headers["X-Runway-Version"] == "2023-01-01"
    assert CANARY not in str(info.value)


async def test_moderation_stops_the_chain_a_rate_limit_falls_back() -> None:
    async with make_emulator("runway") as runway, make_emulator("luma") as luma:
        chain = RUNWAY.config(runway, "video").model_copy(update={"fallback_configs": [VENDORS["luma"].config(luma, "video")]})
        runway.inject(Fault.RATE_LIMIT)
        response = await run_chain("video", chain, request_for("video"))
        metadata = response.execution_metadata
        assert metadata is not None and metadata.fallback_triggered and metadata.successful_attempt == 2
        first, second = metadata.attempts
        assert (first.provider, first.status, first.error_type, first.is_retryable) == ("runway", "failed", "RateLimitError", True)
        assert (second.provider, second.status, second.request_id) == ("luma", "success", next(iter(luma.jobs)))
        runway.inject(Fault.CONTENT_POLICY)
        with pytest.raises(router.ContentPolicyError):  # not retryable: the next vendor is not asked
            await run_chain("video", chain, request_for("video"))
        assert luma.calls["submit"] == 1


def test_capabilities_per_model() -> None:
    handler = RunwayProvider()
    caps = {m: handler.capabilities_for("video", router.VideoGenerationConfig(provider="runway", model=m))
            for m in ("gen4.5", "gen4_turbo", "veo3", "veo3.1_fast", "seedance2", "aleph2")}
    assert caps["veo3.1_fast"] >= {"last_frame", "audio"} and "video_input" not in caps["veo3.1_fast"]
    assert caps["aleph2"] == {"video_input"} and "text_to_video" not in caps["gen4_turbo"]
    assert all(c <= handler.capabilities["video"] for c in caps.values())  # the README table is the union
