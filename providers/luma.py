"""Luma Dream Machine: ``POST /generations/video`` and ``/generations/image`` under
``https://api.lumalabs.ai/dream-machine/v1``, poll ``GET /generations/{id}`` (``state`` queued / dreaming /
completed / failed with ``failure_reason``), media in ``assets.video`` / ``assets.image``, ``DELETE`` to cancel.
Sources: lumalabs/lumaai-python (``resources/generations/*.py``, ``types/generation.py``).

Keyframes: ``first_frame`` -> ``frame0``, ``last_frame`` -> ``frame1``. Extending an earlier Luma generation:
pass ``video="luma://generations/<id>"`` and it becomes ``frame0 = {"type": "generation", "id": ...}`` (a
``last_frame`` image may still end it). Any other video input is skipped before a call: Luma takes no video files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, media_url
from router.errors import BadProviderResponseError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationResponse, Kind, StatusType, VideoGenerationRequest,
    VideoGenerationResponse
)

GENERATION_REF = "luma://generations/"
#: Spec resolution -> Luma's (Luma's smallest is 540p).
RESOLUTIONS = {"360p": "540p", "480p": "540p", "720p": "720p", "1080p": "1080p", "4k": "4k"}
#: Luma renders 5 s or 9 s; a request is rounded up (capped at 9).
DURATIONS = (5, 9)
IMAGE_ROLES = {"reference": "image_ref", "asset": "image_ref", "style": "style_ref"}


class LumaProvider(HttpProvider):
    name = "luma"
    default_base_url = "https://api.lumalabs.ai/dream-machine/v1"
    api_key_env = ("LUMAAI_API_KEY",)
    webhook_scheme = "luma"
    kinds = frozenset({"video", "image"})
    job_path = "generations/{id}"
    cancel_method = "DELETE"
    status_map: ClassVar[dict[str, StatusType]] = {
        "queued": "queued", "dreaming": "processing", "completed": "completed", "failed": "failed",
    }
    content_policy_markers = ("moderation", "not allowed", "safety", "nsfw", "content policy")
    capabilities = {
        "video": frozenset({"text_to_video", "image_to_video", "first_frame", "last_frame", "video_input"}),
        "image": frozenset({"text_to_image", "image_to_image"}),
    }

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        # Luma's only video input is an earlier Luma generation (a keyframe): skip, don't fail, on anything else.
        if isinstance(request, VideoGenerationRequest) and request.video is not None:
            if generation_id(request.video) is None:
                return f"luma extends only its own generations: pass video='{GENERATION_REF}<generation id>'"
            if any(image["type"] == "first_frame" for image in request.image_list):
                return "luma extends a generation from its last frame: a first_frame cannot be given too"
        return super().unsupported_reason(kind, config, request)

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        body: dict[str, Any] = {"model": config.model, "prompt": request.prompt}
        if request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if isinstance(request, VideoGenerationRequest):
            if request.resolution:
                body["resolution"] = RESOLUTIONS[request.resolution]
            if request.duration_seconds:
                body["duration"] = f"{next((d for d in DURATIONS if d >= request.duration_seconds), DURATIONS[-1])}s"
            keyframes: dict[str, Any] = {}
            if request.video is not None:
                keyframes["frame0"] = {"type": "generation", "id": generation_id(request.video)}
            for image in request.image_list:
                frame = {"first_frame": "frame0", "last_frame": "frame1"}.get(image["type"])
                if frame:
                    keyframes.setdefault(frame, {"type": "image", "url": media_url(image["image"])})
            if keyframes:
                body["keyframes"] = keyframes
            body.update(request.extra_params)
            return HttpRequest("POST", "generations/video", json=body)
        for image in request.image_list:
            key = IMAGE_ROLES.get(image["type"], "image_ref")
            body.setdefault(key, []).append({"url": media_url(image["image"]), "weight": 0.85})
        body.update(request.extra_params)
        return HttpRequest("POST", "generations/image", json=body)

    def with_webhook(self, request: HttpRequest, url: str) -> HttpRequest:
        return replace(request, json={**(request.json or {}), "callback_url": url})

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        status = self.map_status(data["state"], config, job.id)
        if status == "failed":
            raise self.failure(config, f"luma: {data.get('failure_reason') or 'generation failed'}", job_id=job.id,
                               raw=data)
        # Luma reports no percentage: the state is all there is.
        return PollStatus(status=status, raw=data)

    def build_response(self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob,
                       status: PollStatus, result: VendorResponse | None) -> AnyResponse:
        assets = status.raw.get("assets") or {}
        url = assets.get(kind)
        if not url:
            raise BadProviderResponseError(f"luma generation completed without assets.{kind}",
                                           provider=config.provider, model=config.model, provider_request_id=job.id)
        meta = {"provider_request_id": job.id, "luma_generation_id": job.id}
        if kind == "video":
            return VideoGenerationResponse(request_id="", video=url, content_type="video/mp4", raw_response=status.raw,
                                           aspect_ratio=request.aspect_ratio, provider_metadata=meta)
        return ImageGenerationResponse(request_id="", images=[url], content_type="image/jpeg", raw_response=status.raw,
                                       provider_metadata=meta)


def generation_id(video: Any) -> str | None:
    """The id in a ``luma://generations/<id>`` reference, or None for any other video input."""
    text = "" if isinstance(video, dict) else str(video)  # the reference validates as a (base64) string
    return text.removeprefix(GENERATION_REF) or None if text.startswith(GENERATION_REF) else None
