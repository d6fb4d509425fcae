"""Google against its emulator: Veo and Imagen on the Gemini API and on Vertex AI, token sources, RAI filtering,
per-model skips, the keyed download, fallback.

The shared fault menu (429, 5xx, hang, malformed JSON, drop, 401, job outcomes) is in test_faults.py.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import aiohttp
import pytest

import router
from router.orchestrator import run_chain
from tests.emulators._base import Fault
from tests.emulators.google import GoogleEmulator
from tests.providers.vendors import CANARY, VENDORS, make_emulator, recorded, request_for

GOOGLE = VENDORS["google"]
PNG = {"content": b"\x89PNG-frame", "content_type": "image/png"}
PNG_B64 = {"bytesBase64Encoded": base64.b64encode(PNG["content"]).decode(), "mimeType": "image/png"}


def vertex(emu: GoogleEmulator, kind: str = "video", model: str = "veo-3.1-generate-preview", **provider_config: Any) -> Any:
    """A Vertex config whose token comes from the emulator's metadata server (unless provider_config says otherwise)."""
    cls = router.VideoGenerationConfig if kind == "video" else router.ImageGenerationConfig
    return cls(provider="google", model=model, base_url=emu.url, poll_interval=0.01, timeout=5,
               provider_config={"gcp_project": "my-proj", "metadata_host": emu.url, **provider_config})


async def test_gemini_veo_roles_and_the_keyed_download(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_emulator("google", api_key=CANARY) as emu:
        config = GOOGLE.config(emu, "video", model="veo-3.1-generate-preview")
        response = await run_chain("video", config, request_for("video", aspect_ratio="9:16", duration_seconds=8, seed=4,
                                                                generate_audio=True, negative_prompt="blur", image_list=[
            {"image": PNG, "type": "first_frame"}, {"image": PNG, "type": "last_frame"}]))
        submit = recorded(emu, "submit")
        assert submit.path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
        assert submit.headers["x-goog-api-key"] == CANARY and "Authorization" not in submit.headers
        assert submit.body["instances"] == [{"prompt": "a red fox in the snow", "image": PNG_B64, "lastFrame": PNG_B64}]
        # seed and generateAudio are Vertex-only (python-genai refuses them for the Gemini API)
        assert submit.body["parameters"] == {"aspectRatio": "9:16", "negativePrompt": "blur", "durationSeconds": 8}
        status = recorded(emu, "status")
        assert status.method == "GET" and status.path.startswith("/v1beta/models/veo-3.1-generate-preview/operations/")
        download, media = recorded(emu, "result"), recorded(emu, "content")
        assert download.headers["x-goog-api-key"] == CANARY  # the file URI needs the key ...
        assert "x-goog-api-key" not in media.headers and "Authorization" not in media.headers  # ... its redirect never
    assert response.video["content"][4:8] == b"ftyp" and response.content_type == "video/mp4"  # type: ignore[index,union-attr]
    shown = json.dumps([response.raw_response, response.provider_metadata, response.aspect_ratio, response.duration])
    assert CANARY not in shown + caplog.text and "uri" not in shown  # no keyed URL is handed out


async def test_vertex_veo_with_a_metadata_server_token_inline_bytes_and_gcs() -> None:
    async with make_emulator("google") as emu:
        response = await run_chain("video", vertex(emu, location="europe-west4"), request_for(
            "video", seed=5, generate_audio=True, image_list=[{"image": PNG, "type": "style"}]))
        submit = recorded(emu, "submit")
        assert submit.path == ("/v1/projects/my-proj/locations/europe-west4/publishers/google/models/"
                               "veo-3.1-generate-preview:predictLongRunning")
        assert submit.headers["Authorization"] == f"Bearer {emu.access_token}" and "x-goog-api-key" not in submit.headers
        assert submit.body["parameters"] == {"seed": 5, "generateAudio": True}  # Vertex-only fields reach Vertex
        assert submit.body["instances"][0]["referenceImages"] == [{"image": PNG_B64, "referenceType": "style"}]
        status = recorded(emu, "status")
        assert status.method == "POST" and status.path.endswith(":fetchPredictOperation")
        assert status.body == {"operationName": next(j.extra["operation"] for j in emu.jobs.values())}
        assert response.video["content"][4:8] == b"ftyp"  # type: ignore[index,union-attr]
        stored = await run_chain("video", vertex(emu), request_for("video", storageUri="gs://bucket/out"))
    assert str(stored.video).startswith("gs://bucket/out/")  # type: ignore[union-attr]
    assert stored.provider_metadata["gcs_uri"] == stored.video  # type: ignore[union-attr]


async def test_vertex_token_is_cached_and_refreshed_after_a_401() -> None:
    async with make_emulator("google") as emu:
        await run_chain("image", vertex(emu, "image", "imagen-4.0-generate-001"), request_for("image"))
        await run_chain("image", vertex(emu, "image", "imagen-4.0-generate-001"), request_for("image"))
        assert emu.calls["token"] == 1 and emu.calls["submit"] == 2  # one token for both requests
        emu.access_token = "ya29.rotated"  # the cached token is no longer honoured
        response = await run_chain("image", vertex(emu, "image", "imagen-4.0-generate-001"), request_for("image"))
        assert emu.calls["token"] == 2 and emu.calls["submit"] == 4  # the 401, then the retry with the new token
        assert emu.requests[-1].headers["Authorization"] == "Bearer ya29.rotated"
    assert response.execution_metadata.attempts[0].status == "success"  # type: ignore[union-attr]


async def test_vertex_with_a_service_account_key_file_signs_rs256(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    async with make_emulator("google") as emu:
        key_file = tmp_path / "sa.json"
        key_file.write_text(json.dumps({"type": "service_account", "client_email": emu.service_account_email,
                                        "private_key": pem, "private_key_id": "k1", "token_uri": f"{emu.url}/token"}))
        config = vertex(emu, "image", "imagen-4.0-generate-001", credentials_file=str(key_file), metadata_host="http://127.0.0.1:9")
        response = await run_chain("image", config, request_for("image", n=2))
        token = next(r for r in emu.requests if r.path == "/token")
        assert recorded(emu, "submit").headers["Authorization"] == f"Bearer {emu.access_token}"
    assert len(response.images) == 2 and token.method == "POST"  # type: ignore[union-attr]
    header, claims, signature = token.body["assertion"].split(".")
    key.public_key().verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                            f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong


async def test_credentials_problems_skip_the_attempt_with_a_clear_reason(tmp_path: Any) -> None:
    user = tmp_path / "adc.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}))
    async with make_emulator("google") as emu:
        spare = router.VideoGenerationConfig(provider="mock", model="spare")
        for provider_config, words in (({"metadata_host": "http://127.0.0.1:9"}, "no access token from the metadata server"),
                                       ({"credentials_file": str(user)}, "'authorized_user' credentials file")):
            config = vertex(emu, **provider_config).model_copy(update={"fallback_configs": [spare]})
            response = await run_chain("video", config, request_for("video"))
            skipped = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
            assert (skipped.status, skipped.error_type) == ("skipped", "ConfigurationError")
            assert words in (skipped.error_message or "")
        assert emu.calls["submit"] == 0


async def test_keys_gemini_needs_one_of_two_env_vars_vertex_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    async with make_emulator("google") as emu:
        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("image", GOOGLE.config(emu, "image", api_key=None), request_for("image"))
        assert "GEMINI_API_KEY or GOOGLE_API_KEY" in str(info.value.last_error) and emu.requests == []
        monkeypatch.setenv("GOOGLE_API_KEY", "test-key")
        assert (await run_chain("image", GOOGLE.config(emu, "image", api_key=None), request_for("image"))).images
        monkeypatch.delenv("GOOGLE_API_KEY")
        assert (await run_chain("image", vertex(emu, "image", "imagen-4.0-generate-001"), request_for("image"))).images


async def test_imagen_body_per_surface_and_filtered_images() -> None:
    async with make_emulator("google") as emu:
        request = request_for("image", n=3, aspect_ratio="16:9", seed=2, negative_prompt="blur")
        response = await run_chain("image", GOOGLE.config(emu, "image"), request)
        assert recorded(emu, "submit").body == {"instances": [{"prompt": "a red fox in the snow"}], "parameters": {
            "aspectRatio": "16:9", "sampleCount": 3, "includeRaiReason": True}}  # seed/negativePrompt: Vertex only
        assert len(response.images) == 3 and base64.b64decode(response.images[0])[:4] == b"\x89PNG"  # type: ignore[union-attr]
        emu.requests.clear()
        await run_chain("image", vertex(emu, "image", "imagen-4.0-generate-001"), request)
        assert recorded(emu, "submit").body["parameters"] == {
            "aspectRatio": "16:9", "negativePrompt": "blur", "seed": 2, "sampleCount": 3, "includeRaiReason": True}
        emu.inject(Fault.CONTENT_POLICY)
        with pytest.raises(router.ContentPolicyError, match="usage guidelines"):
            await run_chain("image", GOOGLE.config(emu, "image"), request_for("image"))


@pytest.mark.parametrize("fault,error_type,words", [
    (Fault.CONTENT_POLICY, "ContentPolicyError", "google filtered the video: The prompt could not be submitted"),
    (Fault.JOB_FAILED, "GenerationFailedError", "google: Video generation failed"),
    (Fault.EMPTY_RESULT, "BadProviderResponseError", "finished without videos"),
])
async def test_finished_operations_that_carry_no_video(fault: Fault, error_type: str, words: str) -> None:
    async with make_emulator("google") as emu:
        emu.inject(fault)
        with pytest.raises(router.TarashError) as info:
            await run_chain("video", GOOGLE.config(emu, "video"), request_for("video"))
    error = info.value.last_error if isinstance(info.value, router.AllAttemptsFailedError) else info.value
    assert type(error).__name__ == error_type and words in error.message
    assert error.provider_request_id and error.provider_request_id.startswith("models/veo-3.0-generate-001/operations/")


@pytest.mark.parametrize("model,image_type,lacking", [
    ("veo-3.0-generate-001", "last_frame", "last_frame"),  # first+last frame arrived with Veo 3.1
    ("veo-3.0-generate-001", "reference", "reference_images"),
    ("veo-3.1-generate-preview", "style", "style reference"),  # Gemini API refuses STYLE; Vertex takes it
])
async def test_what_a_model_or_surface_cannot_do_is_skipped(model: str, image_type: str, lacking: str) -> None:
    async with make_emulator("google") as emu:
        config = GOOGLE.config(emu, "video", model=model).model_copy(update={"fallback_configs": [
            router.VideoGenerationConfig(provider="mock", model="spare")]})
        response = await run_chain("video", config, request_for("video", image_list=[{"image": PNG, "type": image_type}]))
        assert emu.requests == []
    skipped = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert skipped.status == "skipped" and lacking in (skipped.error_message or "")


class _NoRetryAfterHeader(GoogleEmulator):
    """Google's quota errors name the wait in google.rpc.RetryInfo; whether a Retry-After header comes too is
    unconfirmed, so this variant sends the body only."""

    async def enter(self, *args: Any, **kwargs: Any) -> Any:
        early = await super().enter(*args, **kwargs)
        if early is not None and early.status == 429:
            early.headers.popall("Retry-After", None)
        return early


async def test_rate_limit_wait_is_read_from_retry_info() -> None:
    async with _NoRetryAfterHeader() as emu:
        emu.retry_after = "7"
        emu.inject(Fault.RATE_LIMIT)
        with pytest.raises(router.AllAttemptsFailedError) as info:
            await run_chain("video", GOOGLE.config(emu, "video"), request_for("video"))
        emu.inject(Fault.RATE_LIMIT)
        async with aiohttp.ClientSession() as s, s.post(f"{emu.url}/v1beta/models/veo-3.0-generate-001:predictLongRunning",
                                                        json={}, headers={"x-goog-api-key": "test-key"}) as raw:
            assert raw.status == 429 and "Retry-After" not in raw.headers  # so the 7 s below came from the body
    assert info.value.last_error.retry_after == 7.0 and info.value.last_error.code == "RESOURCE_EXHAUSTED"


async def test_a_restricted_key_is_an_auth_error_not_content_policy() -> None:
    # Google's 403 for a key without access to the API says "... are blocked": not a moderation verdict.
    from providers.google import GoogleProvider

    handler = GoogleProvider()
    assert not handler.is_content_policy(None, "Requests to this API method are blocked.", "PERMISSION_DENIED")  # type: ignore[arg-type]
    assert not handler.is_content_policy(None, "Unsupported portrait aspect ratio", "INVALID_ARGUMENT")  # type: ignore[arg-type]
    assert handler.is_content_policy(None, "It might violate Google's Responsible AI practices.", None)  # type: ignore[arg-type]


async def test_falls_back_across_vendors_with_metadata() -> None:
    async with make_emulator("google") as google, make_emulator("luma") as luma:
        google.inject(Fault.JOB_FAILED)
        config = GOOGLE.config(google, "video").model_copy(update={"fallback_configs": [VENDORS["luma"].config(luma, "video")]})
        response = await run_chain("video", config, request_for("video"))
    first, second = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert (first.provider, first.error_type, first.is_retryable) == ("google", "GenerationFailedError", True)
    assert first.request_id and first.request_id.startswith("models/") and (second.provider, second.status) == ("luma", "success")
