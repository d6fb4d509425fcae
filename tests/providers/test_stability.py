"""Stability against its emulator: multipart forms per endpoint, JSON answers, moderation, skips, fallback.

The shared fault menu (429, 5xx, hang, malformed JSON, drop, 401, empty result) is in test_faults.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

import router
from router.netguard import ALLOW_PRIVATE_ENV
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.providers.vendors import CANARY, VENDORS, make_emulator, recorded, request_for

STABILITY = VENDORS["stability"]
PNG = {"content": b"\x89PNG-input", "content_type": "image/png"}
FILE = {"filename": "image.png", "bytes": len(PNG["content"]), "content_type": "image/png"}


async def generate(model: str, emu: Any = None, **request: Any) -> tuple[Any, Any]:
    async with make_emulator("stability") as own:
        emu = emu or own
        response = await run_chain("image", STABILITY.config(emu, "image", model=model), request_for("image", **request))
        return recorded(emu, "submit"), response


async def test_sd3_text_to_image_form_and_json_answer() -> None:
    submit, response = await generate("sd3.5-large", aspect_ratio="16:9", negative_prompt="blur", seed=3)
    assert submit.path == "/v2beta/stable-image/generate/sd3" and submit.headers["Accept"] == "application/json"
    assert submit.headers["Content-Type"].startswith("multipart/form-data")
    assert submit.headers["Authorization"] == "Bearer test-key"
    assert submit.body == {"prompt": "a red fox in the snow", "output_format": "png", "negative_prompt": "blur",
                           "seed": "3", "model": "sd3.5-large", "aspect_ratio": "16:9"}
    assert base64.b64decode(response.images[0])[:4] == b"\x89PNG" and response.content_type == "image/png"
    assert response.provider_metadata["seed"] == 3 and response.provider_metadata["provider_request_id"]
    assert response.raw_response == {"finish_reason": "SUCCESS", "seed": 3}  # the image itself is not repeated


@pytest.mark.parametrize("model,path,extra", [
    ("sd3.5-medium", "generate/sd3", {"model": "sd3.5-medium", "mode": "image-to-image"}),
    ("stable-image-core", "generate/core", {"style_preset": "anime"}),
    ("stable-image-ultra", "generate/ultra", {}),
])
async def test_image_to_image_per_endpoint(model: str, path: str, extra: dict[str, str]) -> None:
    submit, response = await generate(model, aspect_ratio="16:9", style="anime",
                                      image_list=[{"image": PNG, "type": "reference"}])
    assert submit.path == f"/v2beta/stable-image/{path}"
    # image-to-image takes the input's shape: no aspect_ratio; style_preset exists on core only
    assert submit.body == {"prompt": "a red fox in the snow", "output_format": "png", "image": FILE, "strength": "0.6",
                           **extra}
    assert response.images


async def test_inpainting_sends_image_and_mask() -> None:
    submit, _ = await generate("stable-image-core", image_list=[{"image": PNG, "type": "reference"}], mask_image=PNG,
                               strength=0.3)
    assert submit.path == "/v2beta/stable-image/edit/inpaint"
    assert submit.body["image"] == FILE and submit.body["mask"] == {**FILE, "filename": "mask.png"}
    assert "strength" not in submit.body


async def test_url_inputs_are_fetched_through_the_ssrf_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)  # the guard's default
    async with make_emulator("stability") as emu:
        url = f"{emu.url}/_media/input.png"
        with pytest.raises(router.InvalidRequestError, match="refused"):  # loopback: never fetched by default
            await generate("core", emu, image_list=[{"image": url, "type": "reference"}])
        assert emu.calls["submit"] == emu.calls["content"] == 0
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "true")
        submit, _ = await generate("core", emu, image_list=[{"image": url, "type": "reference"}])
        assert emu.calls["content"] == 1 and submit.body["image"]["content_type"] == "image/png"


@pytest.mark.parametrize("moderation,status", [("filtered", None), ("reject", 403)])
async def test_moderation_either_way_is_content_policy(moderation: str, status: int | None) -> None:
    async with make_emulator("stability", moderation=moderation, api_key=CANARY) as emu:
        emu.inject(Fault.CONTENT_POLICY)
        with pytest.raises(router.ContentPolicyError) as info:
            await run_chain("image", STABILITY.config(emu, "image"), request_for("image"))
    error = info.value
    assert error.http_status == status and not error.retryable and error.provider_request_id
    assert ("CONTENT_FILTERED" if status is None else "content moderation") in error.message
    assert CANARY not in str(error) + repr(error)


async def test_video_and_several_images_are_skipped_and_the_chain_goes_on() -> None:
    async with make_emulator("stability") as stability, make_emulator("google") as google:
        video = router.VideoGenerationConfig(provider="stability", model="sd3.5-large", api_key="test-key",
                                             base_url=stability.url, fallback_configs=[VENDORS["google"].config(google, "video")])
        response = await run_chain("video", video, request_for("video"))
        several = STABILITY.config(stability, "image").model_copy(update={"fallback_configs": [
            VENDORS["google"].config(google, "image")]})
        images = await run_chain("image", several, request_for("image", n=2))
        assert stability.requests == []
    skipped, served = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert skipped.status == "skipped" and "discontinued its video API" in (skipped.error_message or "")
    assert served.provider == "google" and served.status == "success"
    skipped, served = images.execution_metadata.attempts  # type: ignore[union-attr]
    assert "multiple_outputs" in (skipped.error_message or "") and len(images.images) == 2  # type: ignore[union-attr]


async def test_server_error_falls_back_with_metadata() -> None:
    async with make_emulator("stability") as stability, make_emulator("luma") as luma:
        stability.inject(Fault.JOB_FAILED)  # Stability's synchronous failure: a 500
        config = STABILITY.config(stability, "image").model_copy(update={"fallback_configs": [VENDORS["luma"].config(luma, "image")]})
        response = await run_chain("image", config, request_for("image"))
    first, second = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert (first.error_type, first.is_retryable, second.provider, second.status) == (
        "ProviderUnavailableError", True, "luma", "success")
    assert "An unexpected server error occurred" in (first.error_message or "")
