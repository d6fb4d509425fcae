"""OpenAI Images (synchronous) and Sora 2 videos (queued). Sources: openai-python
``resources/images.py``, ``resources/videos.py``, ``types/video*.py``, ``_client.py`` (error body).

Known retirement: OpenAI announced the end of the Sora video API on 2026-09-24. The video path stays: Azure
OpenAI serves the same API (``providers/azure_openai.py`` reuses this module) and it is the shape the daemon's
own ``/v1/videos`` offers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, inline_url_inputs, media_file
from router.errors import BadProviderResponseError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind, MediaType,
    StatusType, VideoGenerationRequest, VideoGenerationResponse
)

#: Sora accepts these durations only; a request is rounded up to the next one (capped at 12).
SORA_SECONDS = (4, 8, 12)
#: (aspect ratio family, high resolution?) -> Sora size. Only portrait/landscape exist: 1:1, 4:3 and 21:9 map
#: to landscape (the closest shape Sora renders).
SORA_SIZES = {("portrait", False): "720x1280", ("landscape", False): "1280x720",
              ("portrait", True): "1024x1792", ("landscape", True): "1792x1024"}
#: Image sizes by aspect ratio and model family.
IMAGE_SIZES = {
    "dall-e-3": {"1:1": "1024x1024", "16:9": "1792x1024", "9:16": "1024x1792", "4:3": "1792x1024", "21:9": "1792x1024"},
    "gpt-image": {"1:1": "1024x1024", "16:9": "1536x1024", "9:16": "1024x1536", "4:3": "1536x1024", "21:9": "1536x1024"},
    "dall-e-2": {"1:1": "1024x1024"},
}
IMAGE_CAPABILITIES = {
    "dall-e-2": frozenset({"text_to_image", "image_to_image", "inpainting", "multiple_outputs"}),
    "dall-e-3": frozenset({"text_to_image"}),
    "gpt-image": frozenset({"text_to_image", "image_to_image", "inpainting", "multiple_outputs"}),
}
VIDEO_CAPABILITIES = frozenset({"text_to_video", "image_to_video", "first_frame"})


def image_family(model: str) -> str:
    return next((f for f in ("gpt-image", "dall-e-3", "dall-e-2") if model.startswith(f)), "gpt-image")


def sora_seconds(duration: int | None) -> str | None:
    if duration is None:
        return None
    return str(next((s for s in SORA_SECONDS if s >= duration), SORA_SECONDS[-1]))


def sora_size(request: VideoGenerationRequest, model: str) -> str | None:
    if request.aspect_ratio is None and request.resolution is None:
        return None
    shape = "portrait" if request.aspect_ratio == "9:16" else "landscape"
    high = request.resolution in ("1080p", "4k") and "pro" in model
    return SORA_SIZES[(shape, high)]


class OpenAIProvider(HttpProvider):
    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = ("OPENAI_API_KEY",)
    kinds = frozenset({"video", "image"})
    status_map: ClassVar[dict[str, StatusType]] = {
        "queued": "queued", "in_progress": "processing", "completed": "completed", "failed": "failed",
    }
    content_policy_markers = ("content_policy", "moderation", "safety system", "content policy")
    capabilities = {"video": VIDEO_CAPABILITIES, "image": IMAGE_CAPABILITIES["gpt-image"]}

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        return VIDEO_CAPABILITIES if kind == "video" else IMAGE_CAPABILITIES[image_family(model_id(config))]

    # ---- URL shapes (Azure overrides these) ---------------------------------------------------------------
    def image_path(self, config: AnyConfig, operation: str) -> str:
        return f"images/{operation}"

    def video_path(self, config: AnyConfig, suffix: str = "") -> str:
        return f"videos{suffix}"

    def image_query(self, config: AnyConfig) -> dict[str, str] | None:
        return None

    # ---- submit -------------------------------------------------------------------------------------------
    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        # Input images travel as multipart bytes: fetch client-given URLs first (through the SSRF guard).
        return await super().submit(kind, config, await inline_url_inputs(request))

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        if isinstance(request, VideoGenerationRequest):
            form: dict[str, Any] = {"model": model_id(config), "prompt": request.prompt}
            if seconds := sora_seconds(request.duration_seconds):
                form["seconds"] = seconds
            if size := sora_size(request, config.model):
                form["size"] = size
            if (frame := _first_frame(request)) is not None:
                form["input_reference"] = media_file(frame, "input_reference")
            form.update({k: str(v) for k, v in request.extra_params.items()})
            # The official SDK always sends multipart for video create.
            return HttpRequest("POST", self.video_path(config), form=form)
        assert isinstance(request, ImageGenerationRequest)
        fields = self.image_fields(config, request)
        if request.image_list or request.mask_image is not None:
            form = {k: str(v) for k, v in fields.items()}
            files = [media_file(image["image"], f"image{i}") for i, image in enumerate(request.image_list)]
            # One image is "image"; several are "image[]" (what the SDK sends for gpt-image edits).
            form["image" if len(files) == 1 else "image[]"] = files if len(files) > 1 else files[0]
            if request.mask_image is not None:
                form["mask"] = media_file(request.mask_image, "mask")
            return HttpRequest("POST", self.image_path(config, "edits"), form=form, params=self.image_query(config))
        return HttpRequest("POST", self.image_path(config, "generations"), json=fields, params=self.image_query(config))

    def image_fields(self, config: AnyConfig, request: ImageGenerationRequest) -> dict[str, Any]:
        family = image_family(model_id(config))
        size = request.size or (IMAGE_SIZES[family].get(request.aspect_ratio) if request.aspect_ratio else None)
        fields = {"model": model_id(config), "prompt": request.prompt, "n": request.n, "size": size,
                  "quality": request.quality, "style": request.style, **request.extra_params}
        return {k: v for k, v in fields.items() if v is not None}

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> ProviderJob | AnyResponse:
        data = response.json()
        if kind == "video":
            return ProviderJob(id=data["id"], data={"model": data.get("model")})
        items = data.get("data") or []
        images = [item.get("url") or item.get("b64_json") for item in items]
        if not images or not all(images):
            raise BadProviderResponseError(f"{self.name} answered without images", provider=config.provider,
                                           model=config.model, provider_request_id=response.request_id)
        return ImageGenerationResponse(
            request_id="", images=images, content_type=f"image/{data.get('output_format', 'png')}",
            revised_prompt=items[0].get("revised_prompt"), raw_response=data,
            provider_metadata={"provider_request_id": response.request_id, "usage": data.get("usage")},
        )

    # ---- video polling ------------------------------------------------------------------------------------
    def status_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        return HttpRequest("GET", self.video_path(config, f"/{job.id}"))

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        status = self.map_status(data["status"], config, job.id)
        if status == "failed":
            error = data.get("error") or {}
            raise self.failure(config, f"{self.name}: {error.get('message', 'video generation failed')}",
                               job_id=job.id, code=error.get("code"), raw=data)
        after = response.headers.get("openai-poll-after-ms")
        return PollStatus(status=status, raw=data, progress_percent=data.get("progress"),
                          poll_after=float(after) / 1000 if after and after.isdigit() else None)

    def result_request(self, kind: Kind, config: AnyConfig, job: ProviderJob, status: PollStatus) -> HttpRequest:
        # The video is not a URL in the JSON: /content needs our key, so the bytes are fetched here and
        # returned inline (a URL that needs our key must never be handed to a client).
        return HttpRequest("GET", self.video_path(config, f"/{job.id}/content"),
                           headers={"Accept": "application/binary"}, expect="bytes")

    def build_response(self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob,
                       status: PollStatus, result: VendorResponse | None) -> AnyResponse:
        assert result is not None
        if not result.body:
            raise BadProviderResponseError(f"{self.name} video content is empty", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        raw = status.raw
        width, _, height = str(raw.get("size", "")).partition("x")
        return VideoGenerationResponse(
            request_id="", video={"content": result.body, "content_type": "video/mp4"}, content_type="video/mp4",
            duration=float(raw["seconds"]) if raw.get("seconds") else None,
            resolution=f"{min(int(width), int(height))}p" if width and height else None,
            aspect_ratio=("9:16" if int(height) > int(width) else "16:9") if width and height else None,
            raw_response=raw, provider_metadata={"provider_request_id": job.id},
        )

    def cancel_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest | None:
        # No cancel endpoint: DELETE removes the video (and, where the vendor honours it, stops the job).
        return HttpRequest("DELETE", self.video_path(config, f"/{job.id}"))


def model_id(config: AnyConfig) -> str:
    """The vendor's model id: the spec's examples write ``openai/sora-2``; the API wants ``sora-2``."""
    return config.model.removeprefix("openai/")


def _first_frame(request: VideoGenerationRequest) -> MediaType | None:
    return next((i["image"] for i in request.image_list if i["type"] == "first_frame"), None)


__all__ = ["OpenAIProvider"]
