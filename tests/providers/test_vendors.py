"""Happy paths per vendor: the exact request the vendor receives and the normalized response (part-1 vendors'
specifics here; Runway, Google, Stability and Luma have their own test_<vendor>.py)."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

import router
from router.orchestrator import run_chain
from tests.providers.vendors import CASES, VENDORS, make_emulator, recorded, request_for


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


async def media_bytes(media: Any) -> bytes:
    if isinstance(media, dict):
        return media["content"]  # type: ignore[no-any-return]
    text = str(media)
    return await fetch(text) if text.startswith("http") else base64.b64decode(text)


@pytest.mark.parametrize("vendor,kind", CASES)
async def test_happy_path_returns_real_media(vendor: str, kind: str) -> None:
    async with make_emulator(vendor, polls_to_complete=3) as emu:
        updates: list[Any] = []
        response = await run_chain(kind, VENDORS[vendor].config(emu, kind), request_for(kind), updates.append)  # type: ignore[arg-type]
        data = await media_bytes(response.video if kind == "video" else response.images[0])  # type: ignore[union-attr]
    assert data[4:8] == b"ftyp" if kind == "video" else data[:4] == b"\x89PNG"
    assert response.status == "completed" and not response.is_mock
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    # Imagen's synchronous answer carries no request id of any kind; every other vendor names its job.
    assert attempt.status == "success" and (attempt.request_id or (vendor, kind) == ("google", "image"))
    assert updates[-1].status == "completed" and updates[-1].result == response


async def test_fal_request_shapes_follow_the_model_family() -> None:
    async with make_emulator("fal") as emu:
        veo = VENDORS["fal"].config(emu, "video")
        request = request_for("video", duration_seconds=8, aspect_ratio="9:16", generate_audio=True, seed=7,
                              image_list=[{"image": "https://cdn.example/a.png", "type": "first_frame"},
                                          {"image": {"content": b"\x89PNG", "content_type": "image/png"}, "type": "last_frame"}],
                              camera_fixed=True)
        await run_chain("video", veo, request)
        submit = recorded(emu, "submit")
        assert submit.path == "/fal-ai/veo3/fast" and submit.headers["Authorization"] == "Key test-key"
        assert submit.body == {"prompt": "a red fox in the snow", "aspect_ratio": "9:16", "generate_audio": True,
                               "seed": 7, "duration": "8s", "first_frame_url": "https://cdn.example/a.png",
                               "last_frame_url": "data:image/png;base64,iVBORw==", "camera_fixed": True}
        status = recorded(emu, "status")
        assert status.path.startswith("/fal-ai/veo3/requests/") and status.query == {"logs": "1"}  # no subpath
        emu.requests.clear()
        kling = veo.model_copy(update={"model": "fal-ai/kling-video/v2.1/pro/image-to-video"})
        await run_chain("video", kling, request_for("video", duration_seconds=7, image_list=[
            {"image": "https://cdn.example/a.png", "type": "first_frame"},
            {"image": "https://cdn.example/b.png", "type": "last_frame"}]))
        body = recorded(emu, "submit").body
        # 7 s is not a Kling duration: rounded up to the next one it accepts.
        assert body["duration"] == "10" and body["tail_image_url"] == "https://cdn.example/b.png"
        emu.requests.clear()
        flux = VENDORS["fal"].config(emu, "image")
        response = await run_chain("image", flux, request_for("image", n=2, aspect_ratio="16:9"))
        assert recorded(emu, "submit").body == {"prompt": "a red fox in the snow", "num_images": 2, "image_size": "landscape_16_9"}
        assert len(response.images) == 2  # type: ignore[union-attr]


async def test_fal_queue_position_is_surfaced() -> None:
    async with make_emulator("fal", polls_to_complete=4) as emu:
        updates: list[Any] = []
        await run_chain("video", VENDORS["fal"].config(emu, "video"), request_for("video"), updates.append)
    assert updates[0].status == "queued" and updates[0].update["queue_position"] == 3
    assert [u.status for u in updates[1:3]] == ["processing", "processing"] and updates[1].update["logs"]


async def test_fal_unsupported_input_is_skipped_before_any_call() -> None:
    async with make_emulator("fal") as emu:
        config = VENDORS["fal"].config(emu, "video", model="fal-ai/minimax/video-01")
        mock = router.VideoGenerationConfig(provider="mock", model="m")
        request = request_for("video", image_list=[{"image": "https://x/a.png", "type": "last_frame"}])
        response = await run_chain("video", config.model_copy(update={"fallback_configs": [mock]}), request)
        assert emu.calls["submit"] == 0
    skipped = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert skipped.status == "skipped" and "last_frame" in (skipped.error_message or "")


async def test_openai_images_and_edits() -> None:
    async with make_emulator("openai") as emu:
        config = VENDORS["openai"].config(emu, "image")
        response = await run_chain("image", config, request_for("image", aspect_ratio="9:16", quality="hd", style="vivid"))
        submit = recorded(emu, "submit")
        assert submit.path == "/v1/images/generations" and submit.headers["Authorization"] == "Bearer test-key"
        assert submit.body == {"model": "dall-e-3", "prompt": "a red fox in the snow", "size": "1024x1792",
                               "quality": "hd", "style": "vivid"}
        assert response.revised_prompt and response.provider_metadata["provider_request_id"] == "req_img_1"  # type: ignore[union-attr]
        emu.requests.clear()
        gpt = config.model_copy(update={"model": "gpt-image-1"})
        png = {"content": b"\x89PNG-input", "content_type": "image/png"}
        edited = await run_chain("image", gpt, request_for("image", image_list=[{"image": png, "type": "reference"}],
                                                           mask_image=png, n=2))
        edit = recorded(emu, "submit")
        assert edit.path == "/v1/images/edits" and edit.body["mask"]["bytes"] == len(png["content"])
        assert edit.body["image"]["filename"].startswith("image0") and edit.body["n"] == "2"
        assert base64.b64decode(edited.images[0])[:4] == b"\x89PNG"  # type: ignore[union-attr]


async def test_openai_dalle3_cannot_edit_so_it_is_skipped() -> None:
    async with make_emulator("openai") as emu:
        config = VENDORS["openai"].config(emu, "image")
        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("image", config, request_for("image", mask_image="aGk=", image_list=[{"image": "aGk=", "type": "reference"}]))
    assert isinstance(info.value.last_error, router.UnsupportedCapabilityError)


async def test_sora_request_and_progress() -> None:
    async with make_emulator("openai", polls_to_complete=4) as emu:
        updates: list[Any] = []
        response = await run_chain("video", VENDORS["openai"].config(emu, "video"),
                                   request_for("video", duration_seconds=6, aspect_ratio="9:16"), updates.append)
        submit = recorded(emu, "submit")
        assert submit.headers["Content-Type"].startswith("multipart/form-data")
        assert submit.body == {"model": "sora-2", "prompt": "a red fox in the snow", "seconds": "8", "size": "720x1280"}
        assert recorded(emu, "result").headers["Authorization"] == "Bearer test-key"
    assert [u.progress_percent for u in updates] == [0, 50, 75, 100]
    assert response.aspect_ratio == "9:16" and response.duration == 8.0  # type: ignore[union-attr]
    assert response.video["content"][4:8] == b"ftyp"  # type: ignore[index,union-attr]


async def test_azure_url_shapes_and_header() -> None:
    async with make_emulator("azure-openai") as emu:
        await run_chain("image", VENDORS["azure-openai"].config(emu, "image"), request_for("image"))
        submit = recorded(emu, "submit")
        assert submit.path == "/openai/deployments/my-dalle-deployment/images/generations"
        assert submit.query == {"api-version": "2024-02-01"} and submit.headers["api-key"] == "test-key"
        assert "Authorization" not in submit.headers
        emu.requests.clear()
        await run_chain("video", VENDORS["azure-openai"].config(emu, "video"), request_for("video"))
        assert recorded(emu, "submit").path == "/openai/v1/videos" and recorded(emu, "submit").query == {}


async def test_azure_missing_api_version_is_a_clear_config_error() -> None:
    async with make_emulator("azure-openai") as emu:
        config = VENDORS["azure-openai"].config(emu, "image", api_version=None)
        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("image", config, request_for("image"))
        assert emu.calls["submit"] == 0
    assert "api_version" in str(info.value.last_error) and info.value.execution_metadata.attempts[0].status == "skipped"


async def test_replicate_versions_prefer_wait_and_progress() -> None:
    async with make_emulator("replicate", polls_to_complete=4) as emu:
        updates: list[Any] = []
        await run_chain("video", VENDORS["replicate"].config(emu, "video"),
                        request_for("video", duration_seconds=5, aspect_ratio="16:9"), updates.append)
        submit = recorded(emu, "submit")
        assert submit.path == "/v1/models/google/veo-3/predictions" and "Prefer" not in submit.headers
        assert submit.body == {"input": {"prompt": "a red fox in the snow", "aspect_ratio": "16:9", "duration": 5}}
        assert [u.progress_percent for u in updates[:3]] == [25, 50, 75]
        emu.requests.clear()
        emu.calls.clear()
        pinned = VENDORS["replicate"].config(emu, "image", model="stability-ai/sdxl:39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b")
        response = await run_chain("image", pinned, request_for("image", prompt="a fox [[polls:1]]"))
        submit = recorded(emu, "submit")
        assert submit.path == "/v1/predictions" and submit.body["version"].startswith("39ed52")
        assert submit.headers["Prefer"] == "wait=60" and emu.calls["status"] == 0  # answered synchronously
        assert response.images  # type: ignore[union-attr]


async def test_fallback_across_vendors_keeps_every_attempt() -> None:
    async with make_emulator("fal") as fal, make_emulator("openai") as openai, make_emulator("replicate") as replicate:
        fal.inject("rate_limit")
        openai.inject("job_failed")
        chain = [VENDORS["fal"].config(fal, "video"), VENDORS["openai"].config(openai, "video"),
                 VENDORS["replicate"].config(replicate, "video")]
        config = chain[0].model_copy(update={"fallback_configs": chain[1:]})
        response = await run_chain("video", config, request_for("video"))
    metadata = response.execution_metadata
    assert metadata is not None and metadata.fallback_triggered and metadata.successful_attempt == 3
    assert [(a.provider, a.status, a.error_type) for a in metadata.attempts] == [
        ("fal", "failed", "RateLimitError"), ("openai", "failed", "GenerationFailedError"), ("replicate", "success", None)]
    assert metadata.attempts[1].request_id and metadata.attempts[2].request_id


async def test_missing_key_env_skips_without_calling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    async with make_emulator("fal") as emu:
        config = VENDORS["fal"].config(emu, "video", api_key=None)
        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("video", config, request_for("video"))
        assert emu.requests == []
    assert "FAL_KEY" in str(info.value.last_error)
    monkeypatch.setenv("FAL_KEY", "test-key")
    async with make_emulator("fal") as emu:
        assert (await run_chain("video", VENDORS["fal"].config(emu, "video", api_key=None), request_for("video"))).video


async def test_credentials_only_go_to_the_configured_host() -> None:
    from providers.fal import FalProvider
    from router.handler import ProviderJob

    async with make_emulator("fal") as emu:
        config = VENDORS["fal"].config(emu, "video")
        evil = ProviderJob(id="x", data={"status_url": "http://169.254.169.254/latest/meta-data/",
                                         "response_url": "", "cancel_url": ""})
        with pytest.raises(router.BadProviderResponseError, match="refusing to send credentials"):
            await FalProvider().poll("video", config, evil)


async def test_openai_poll_after_header_lengthens_the_wait() -> None:
    from providers.openai import OpenAIProvider
    from router.handler import ProviderJob

    async with make_emulator("openai") as emu:
        config = VENDORS["openai"].config(emu, "video")
        job = await OpenAIProvider().submit("video", config, request_for("video"))
        assert isinstance(job, ProviderJob)
        status = await OpenAIProvider().poll("video", config, job)
    assert status.poll_after == 0.01  # the emulator sends openai-poll-after-ms: 10


async def test_circuit_breaker_against_an_emulator() -> None:
    from router.breakers import CircuitBreakers

    now = [0.0]
    breakers = CircuitBreakers(threshold=2, cooldown=30, clock=lambda: now[0])
    async with make_emulator("fal") as emu:
        config = VENDORS["fal"].config(emu, "image").model_copy(update={"fallback_configs": [
            router.ImageGenerationConfig(provider="mock", model="spare")]})
        emu.inject("unavailable", times=2)
        for _ in range(2):
            await run_chain("image", config, request_for("image"), breakers=breakers)
        assert breakers.state("fal", "fal-ai/flux/dev") == "open" and emu.calls["submit"] == 2
        skipped = await run_chain("image", config, request_for("image"), breakers=breakers)
        assert emu.calls["submit"] == 2  # open: the vendor is not called at all
        assert skipped.execution_metadata.attempts[0].error_type == "CircuitOpenError"  # type: ignore[union-attr]
        now[0] += 30  # cool-down over: one half-open probe reaches the (recovered) vendor and closes the circuit
        probed = await run_chain("image", config, request_for("image"), breakers=breakers)
        assert emu.calls["submit"] == 3 and probed.execution_metadata.successful_attempt == 1  # type: ignore[union-attr]
        assert breakers.state("fal", "fal-ai/flux/dev") == "closed"


#: The field and value of each vendor's status payload that says the job is done.
DONE = {"fal": ("status", "COMPLETED"), "openai": ("status", "completed"), "azure-openai": ("status", "completed"),
        "replicate": ("status", "succeeded"), "runway": ("status", "SUCCEEDED"), "luma": ("state", "completed"),
        "google": ("done", True)}


@pytest.mark.parametrize("vendor,kind", CASES)
async def test_the_completing_update_carries_the_completing_polls_raw_payload(vendor: str, kind: str) -> None:
    async with make_emulator(vendor, polls_to_complete=3) as emu:
        updates: list[Any] = []
        response = await run_chain(kind, VENDORS[vendor].config(emu, kind), request_for(kind), updates.append)  # type: ignore[arg-type]
    final = updates[-1]
    assert final.status == "completed" and final.result == response and final.progress_percent == 100
    assert [u for u in updates if u.status == "completed"] == [final]  # sent once, with the result
    if len(updates) == 1:  # a synchronous answer: no poll to report
        assert final.update == {"event": "completed"}
    else:
        field, done = DONE[vendor]
        assert final.update[field] == done, final.update
