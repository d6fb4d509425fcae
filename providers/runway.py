"""Runway API: ``https://api.dev.runwayml.com/v1`` with ``X-Runway-Version`` on every call. One task endpoint
per input shape (image_to_video, text_to_video, video_to_video, text_to_image), then ``GET /v1/tasks/{id}``
(PENDING/THROTTLED, RUNNING with ``progress`` 0..1, SUCCEEDED with ``output`` URLs, FAILED with
``failureCode``, CANCELLED) and ``DELETE /v1/tasks/{id}`` to cancel. Sources: vendor-apis.md §5;
runwayml/sdk-python 5.13.0 (``types/*_create_params.py``, ``task_retrieve_response.py``); docs "Task failures".

Per-model differences (pixel ratio strings, allowed durations, last-frame support) are tables.
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, media_url
from router.errors import BadProviderResponseError, ContentPolicyError, GenerationFailedError, RateLimitError, TarashError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig,
    AnyRequest,
    AnyResponse,
    ImageGenerationResponse,
    Kind,
    StatusType,
    VideoGenerationRequest,
    VideoGenerationResponse,
)

API_VERSION = "2024-11-06"  # the only version sdk-python 5.13.0 knows; override with provider_config["runway_version"]

# aspect ratio -> Runway pixel ratio, per model family (sdk-python ratio literals).
_GEN4 = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960", "4:3": "1104:832", "21:9": "1584:672"}
_VEO_720 = {"16:9": "1280:720", "9:16": "720:1280"}
_VEO_1080 = {"16:9": "1920:1080", "9:16": "1080:1920"}
_SEEDANCE = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960", "4:3": "1112:834", "21:9": "1470:630"}
_GEN4_IMAGE = {"16:9": "1920:1080", "9:16": "1080:1920", "1:1": "1024:1024", "4:3": "1440:1080", "21:9": "2112:912"}
_GEMINI_IMAGE = {"16:9": "1344:768", "9:16": "768:1344", "1:1": "1024:1024", "4:3": "1184:864", "21:9": "1536:672"}

#: model prefix -> (ratios by resolution ("hd" = 1080p and up), durations, takes a last frame)
VIDEO_MODELS: dict[str, tuple[dict[str, dict[str, str]], tuple[int, ...], bool]] = {
    "veo3.1": ({"sd": _VEO_720, "hd": _VEO_1080}, (4, 6, 8), True),
    "veo3": ({"sd": _VEO_720, "hd": _VEO_1080}, (8,), False),
    "seedance": ({"sd": _SEEDANCE, "hd": _SEEDANCE}, (), True),
    "gen4": ({"sd": _GEN4, "hd": _GEN4}, (5, 10), False),
}
IMAGE_RATIOS = {"gemini": _GEMINI_IMAGE, "gen4": _GEN4_IMAGE}
#: failureCode prefix -> error class (docs "Task failures": SAFETY.*, INTERNAL.*, ASSET.*, INPUT_PREPROCESSING.*)
FAILURE_CODES: tuple[tuple[str, type[TarashError]], ...] = (
    ("SAFETY", ContentPolicyError),
    ("INPUT_PREPROCESSING.SAFETY", ContentPolicyError),
    ("THROTTLED", RateLimitError),
    ("INTERNAL.THROTTL", RateLimitError),
)


def _video_model(model: str) -> tuple[dict[str, dict[str, str]], tuple[int, ...], bool]:
    return next((spec for prefix, spec in VIDEO_MODELS.items() if model.startswith(prefix)), VIDEO_MODELS["gen4"])


class RunwayProvider(HttpProvider):
    name = "runway"
    default_base_url = "https://api.dev.runwayml.com/v1"
    api_key_env = ("RUNWAYML_API_SECRET",)
    kinds = frozenset({"video", "image"})
    job_path = "tasks/{id}"
    cancel_method = "DELETE"
    status_map: ClassVar[dict[str, StatusType]] = {
        "PENDING": "queued", "THROTTLED": "queued", "RUNNING": "processing", "SUCCEEDED": "completed",
        "FAILED": "failed", "CANCELLED": "failed",
    }
    capabilities = {
        "video": frozenset({"text_to_video", "image_to_video", "first_frame", "last_frame", "video_input"}),
        "image": frozenset({"text_to_image", "image_to_image"}),
    }

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        caps = self.capabilities[kind]
        if kind == "video" and not _video_model(config.model)[2]:
            caps = caps - {"last_frame"}
        return caps

    def auth_headers(self, config: AnyConfig) -> dict[str, str]:
        return {**super().auth_headers(config),
                "X-Runway-Version": str(config.provider_config.get("runway_version", API_VERSION))}

    def read_error(self, response: VendorResponse) -> tuple[str, str | None]:
        message, code = super().read_error(response)
        try:
            issues = response.json().get("issues") or []
        except (ValueError, AttributeError):
            issues = []
        if issues:  # zod-style validation: name the fields
            message += ": " + "; ".join(f"{'.'.join(map(str, i.get('path', [])))}: {i.get('message')}" for i in issues[:5])
        return message, code

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        body: dict[str, Any] = {"model": config.model, "promptText": request.prompt}
        if request.seed is not None:
            body["seed"] = request.seed
        aspect = request.aspect_ratio or "16:9"
        if isinstance(request, VideoGenerationRequest):
            ratios, durations, _ = _video_model(config.model)
            hd = "hd" if request.resolution in ("1080p", "4k") else "sd"
            body["ratio"] = ratios[hd].get(aspect, next(iter(ratios[hd].values())))
            if durations:
                wanted = request.duration_seconds or durations[0]
                body["duration"] = next((d for d in durations if d >= wanted), durations[-1])
            frames = [{"uri": media_url(i["image"]), "position": "first" if i["type"] == "first_frame" else "last"}
                      for i in request.image_list if i["type"] in ("first_frame", "last_frame")]
            if request.video is not None:
                endpoint = "video_to_video"
                body["videoUri"] = media_url(request.video, "video/mp4")
            elif frames:
                endpoint = "image_to_video"
                body["promptImage"] = frames[0]["uri"] if len(frames) == 1 and frames[0]["position"] == "first" else frames
            else:
                endpoint = "text_to_video"
        else:
            endpoint = "text_to_image"
            ratios = IMAGE_RATIOS["gemini" if config.model.startswith("gemini") else "gen4"]
            body["ratio"] = ratios.get(aspect, ratios["1:1"])
            if request.image_list:
                body["referenceImages"] = [{"uri": media_url(i["image"])} for i in request.image_list]
        body.update(request.extra_params)
        return HttpRequest("POST", endpoint, json=body)

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        status = self.map_status(data["status"], config, job.id)
        if status == "failed":
            code = str(data.get("failureCode") or ("CANCELLED" if data["status"] == "CANCELLED" else ""))
            error_class = next((cls for prefix, cls in FAILURE_CODES if code.startswith(prefix)), GenerationFailedError)
            raise self.failure(config, f"runway: {data.get('failure') or data['status'].lower()}", job_id=job.id,
                               code=code or None, raw=data, error_class=error_class)
        progress = data.get("progress")
        percent = round(float(progress) * 100) if isinstance(progress, (int, float)) else None
        return PollStatus(status=status, raw=data, progress_percent=percent)

    def build_response(self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob,
                       status: PollStatus, result: VendorResponse | None) -> AnyResponse:
        urls = [u for u in status.raw.get("output") or [] if isinstance(u, str) and u]
        if not urls:
            raise BadProviderResponseError("runway task succeeded without output", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        meta = {"provider_request_id": job.id}
        if kind == "video":
            return VideoGenerationResponse(request_id="", video=urls[0], content_type="video/mp4", raw_response=status.raw,
                                           aspect_ratio=request.aspect_ratio, provider_metadata=meta)
        return ImageGenerationResponse(request_id="", images=urls, content_type="image/png", raw_response=status.raw,
                                       provider_metadata=meta)
