"""Luma against its emulator: keyframes, extend, image references, failure reasons, skips, fallback.

The shared fault menu (429, 5xx, hang, malformed JSON, drop, 401, job outcomes, cancel) is in test_faults.py.
"""

from __future__ import annotations

from typing import Any

import pytest

import router
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.providers.vendors import VENDORS, make_emulator, recorded, request_for

LUMA = VENDORS["luma"]
FIRST = {"image": "https://cdn.example/a.png", "type": "first_frame"}
LAST = {"image": "https://cdn.example/b.png", "type": "last_frame"}


async def test_keyframes_then_extend_the_generation() -> None:
    async with make_emulator("luma", polls_to_complete=3) as emu:
        config = LUMA.config(emu, "video")
        updates: list[Any] = []
        first = await run_chain("video", config, request_for("video", duration_seconds=7, resolution="480p",
                                                             aspect_ratio="9:16", image_list=[FIRST, LAST]), updates.append)
        submit = recorded(emu, "submit")
        assert submit.path == "/dream-machine/v1/generations/video" and submit.headers["Authorization"] == "Bearer test-key"
        assert submit.body == {"model": "ray-2", "prompt": "a red fox in the snow", "aspect_ratio": "9:16",
                               "resolution": "540p", "duration": "9s",
                               "keyframes": {"frame0": {"type": "image", "url": FIRST["image"]},
                                             "frame1": {"type": "image", "url": LAST["image"]}}}
        # Luma has states, no percentage (the emulator's generation is queued only in the create answer).
        assert [(u.status, u.progress_percent) for u in updates] == [
            ("processing", None), ("processing", None), ("completed", 100)]
        assert updates[0].update["state"] == "dreaming"
        generation = first.provider_metadata["luma_generation_id"]  # type: ignore[union-attr]
        assert first.video.endswith(".mp4") and generation in emu.jobs  # type: ignore[union-attr]
        emu.requests.clear()
        extended = await run_chain("video", config, request_for("video", video=f"luma://generations/{generation}",
                                                                image_list=[LAST]))
        assert recorded(emu, "submit").body["keyframes"] == {
            "frame0": {"type": "generation", "id": generation}, "frame1": {"type": "image", "url": LAST["image"]}}
    assert extended.provider_metadata["luma_generation_id"] != generation  # type: ignore[union-attr]


@pytest.mark.parametrize("request_fields,reason", [
    ({"video": "https://cdn.example/clip.mp4"}, "extends only its own generations"),
    ({"video": "luma://generations/abc", "image_list": [FIRST]}, "first_frame"),
    ({"image_list": [{"image": "https://cdn.example/r.png", "type": "reference"}]}, "reference_images"),
    ({"number_of_videos": 2}, "multiple_outputs"),
])
async def test_inputs_luma_cannot_take_are_skipped(request_fields: dict[str, Any], reason: str) -> None:
    async with make_emulator("luma") as emu:
        config = LUMA.config(emu, "video").model_copy(update={"fallback_configs": [
            router.VideoGenerationConfig(provider="mock", model="spare")]})
        response = await run_chain("video", config, request_for("video", **request_fields))
        assert emu.requests == []
    skipped, served = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert (skipped.status, served.provider) == ("skipped", "mock") and reason in (skipped.error_message or "")


async def test_image_references_and_result() -> None:
    async with make_emulator("luma") as emu:
        response = await run_chain("image", LUMA.config(emu, "image"), request_for("image", aspect_ratio="4:3", image_list=[
            {"image": "https://cdn.example/r.png", "type": "reference"},
            {"image": {"content": b"\x89PNG-s", "content_type": "image/png"}, "type": "style"}]))
        submit = recorded(emu, "submit")
    assert submit.path == "/dream-machine/v1/generations/image"
    assert submit.body == {"model": "photon-1", "prompt": "a red fox in the snow", "aspect_ratio": "4:3",
                           "image_ref": [{"url": "https://cdn.example/r.png", "weight": 0.85}],
                           "style_ref": [{"url": "data:image/png;base64,iVBORy1z", "weight": 0.85}]}
    assert response.images[0].endswith(".png") and response.provider_metadata["provider_request_id"]  # type: ignore[union-attr]


@pytest.mark.parametrize("fault,error_type,words", [
    (Fault.CONTENT_POLICY, "ContentPolicyError", "moderation"),
    (Fault.JOB_FAILED, "GenerationFailedError", "Job failed"),
])
async def test_failure_reason_is_kept(fault: Fault, error_type: str, words: str) -> None:
    async with make_emulator("luma") as emu:
        emu.inject(fault)
        with pytest.raises(router.TarashError) as info:
            await run_chain("video", LUMA.config(emu, "video"), request_for("video"))
    error = info.value.last_error if isinstance(info.value, router.AllAttemptsFailedError) else info.value
    assert type(error).__name__ == error_type and words in error.message and error.raw["state"] == "failed"


async def test_validation_detail_names_the_field() -> None:
    async with make_emulator("luma") as emu:
        with pytest.raises(router.InvalidRequestError) as info:
            await run_chain("video", LUMA.config(emu, "video", model="ray-9"), request_for("video"))
    assert info.value.http_status == 422 and "body.model: Input should be" in info.value.message


async def test_falls_back_to_the_next_vendor_with_metadata() -> None:
    async with make_emulator("luma") as luma, make_emulator("runway") as runway:
        luma.inject(Fault.UNAVAILABLE)
        config = LUMA.config(luma, "video").model_copy(update={"fallback_configs": [VENDORS["runway"].config(runway, "video")]})
        response = await run_chain("video", config, request_for("video"))
    first, second = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert (first.provider, first.error_type, first.is_retryable, first.request_id) == (
        "luma", "ProviderUnavailableError", True, None)
    assert "503" in (first.error_message or "") and (second.provider, second.status) == ("runway", "success")
    assert second.request_id in runway.jobs
