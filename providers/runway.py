"""Runway API: ``https://api.dev.runwayml.com/v1`` with ``X-Runway-Version`` on every call. One task endpoint
per input shape (text_to_video, image_to_video, video_to_video, text_to_image), then ``GET /v1/tasks/{id}``
(PENDING/THROTTLED, RUNNING with ``progress`` 0..1, SUCCEEDED with ``output`` URLs, FAILED with
``failureCode``, CANCELLED) and ``DELETE /v1/tasks/{id}`` to cancel. Sources:
runwayml/sdk-python 5.13.0 (``types/*_create_params.py``, ``task_retrieve_response.py``); docs "Task failures".

Per-model differences are data (``VIDEO_MODELS``, ``IMAGE_MODELS``): which endpoints a model has, its pixel
ratios (an aspect ratio the model lacks gets its nearest one, reported in the response), allowed durations
(rounded up), and which optional fields it takes (``seed``, ``audio``, ``negativePrompt``): Runway validates
bodies per model, so a field is only sent to a model whose schema has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, media_url
from router.errors import BadProviderResponseError, ContentPolicyError, GenerationFailedError, RateLimitError, TarashError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind, StatusType,
    VideoGenerationRequest, VideoGenerationResponse
)

API_VERSION = "2024-11-06"  # the only version sdk-python 5.13.0 knows; override with provider_config["runway_version"]

Ratios = dict[str, str]  # spec aspect ratio -> Runway pixel ratio
_GEN4 = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960", "4:3": "1104:832", "21:9": "1584:672"}
_VEO_720 = {"16:9": "1280:720", "9:16": "720:1280"}
_VEO_1080 = {"16:9": "1920:1080", "9:16": "1080:1920"}
_SEEDANCE_480 = {"16:9": "864:496", "9:16": "496:864", "1:1": "640:640", "4:3": "752:560", "21:9": "992:432"}
_SEEDANCE_720 = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960", "4:3": "1112:834", "21:9": "1470:630"}
_SEEDANCE_1080 = {"16:9": "1920:1080", "9:16": "1080:1920", "1:1": "1440:1440", "4:3": "1664:1248", "21:9": "2206:946"}
_SEEDANCE_4K = {"16:9": "3840:2160", "9:16": "2160:3840", "1:1": "3840:3840", "4:3": "3840:2880", "21:9": "3840:1646"}
_GEN4_IMAGE = {"16:9": "1920:1080", "9:16": "1080:1920", "1:1": "1024:1024", "4:3": "1440:1080", "21:9": "2112:912"}
_GEMINI_IMAGE = {"16:9": "1344:768", "9:16": "768:1344", "1:1": "1024:1024", "4:3": "1184:864", "21:9": "1536:672"}


@dataclass(frozen=True)
class VideoModel:
    """What one Runway video model accepts (its members of the sdk-python ``*_create_params`` unions)."""

    match: tuple[str, ...]  # model-id prefixes, first table match wins
    #: Ratio tables by resolution tier: "low" (360p/480p), "sd" (720p, the default), "hd" (1080p), "4k".
    ratios: dict[str, Ratios]
    text: bool = True  # has text_to_video
    image: bool = True  # has image_to_video
    last_frame: bool = False  # promptImage may carry position "last"
    #: The video_to_video input field, None when the model has no video_to_video.
    video_field: str | None = None
    #: Allowed durations, a request is rounded up; () = any whole number, sent only when asked for.
    durations: tuple[int, ...] = ()
    options: frozenset[str] = frozenset()  # optional body fields: "seed", "audio", "negativePrompt"
    text_aspects: tuple[str, ...] | None = None  # aspect ratios text_to_video takes, when fewer than image_to_video
    #: The fields (of ratio, duration and ``options``) video_to_video takes besides the video and prompt.
    video_takes: frozenset[str] = frozenset()

    def ratio_table(self, resolution: str | None) -> Ratios:
        """The table for the requested resolution, else the nearest tier the model has (lower first)."""
        tier = {"360p": "low", "480p": "low", "1080p": "hd", "4k": "4k"}.get(resolution or "", "sd")
        return next(self.ratios[t] for t in TIER_PREFERENCE[tier] if t in self.ratios)


TIER_PREFERENCE = {"low": ("low", "sd", "hd", "4k"), "sd": ("sd", "low", "hd", "4k"),
                   "hd": ("hd", "sd", "low", "4k"), "4k": ("4k", "hd", "sd", "low")}
_SEED = frozenset({"seed"})
_VEO = frozenset({"negativePrompt"})
_AUDIO_VEO = frozenset({"audio", "negativePrompt"})
_SEEDANCE_V2V = frozenset({"ratio", "duration", "audio"})
#: sdk-python 5.13.0. Unknown model ids get the last entry (gen4-like) and Runway's validator decides.
VIDEO_MODELS: tuple[VideoModel, ...] = (
    VideoModel(("veo3.1",), {"sd": _VEO_720, "hd": _VEO_1080}, last_frame=True, durations=(4, 6, 8), options=_AUDIO_VEO),
    VideoModel(("veo3",), {"sd": _VEO_720, "hd": _VEO_1080}, durations=(8,), options=_VEO),
    VideoModel(("seedance2_fast", "seedance2_mini"), {"low": _SEEDANCE_480, "sd": _SEEDANCE_720}, last_frame=True,
               video_field="promptVideo", options=frozenset({"audio"}), video_takes=_SEEDANCE_V2V),
    VideoModel(("seedance",), {"low": _SEEDANCE_480, "sd": _SEEDANCE_720, "hd": _SEEDANCE_1080, "4k": _SEEDANCE_4K},
               last_frame=True, video_field="promptVideo", options=frozenset({"audio"}), video_takes=_SEEDANCE_V2V),
    VideoModel(("gemini_omni_flash",), {"sd": _VEO_720}, video_field="videoUri"),
    VideoModel(("aleph",), {"sd": _GEN4}, text=False, image=False, video_field="videoUri", options=_SEED,
               video_takes=_SEED),
    VideoModel(("gen4_turbo",), {"sd": _GEN4}, text=False, durations=(5, 10), options=_SEED),
    VideoModel(("gen4",), {"sd": _GEN4}, durations=(5, 10), options=_SEED, text_aspects=("16:9", "9:16")),
)


@dataclass(frozen=True)
class ImageModel:
    match: tuple[str, ...]
    ratios: Ratios
    text: bool = True  # referenceImages optional (gen4_image_turbo requires them)
    seed: bool = True


IMAGE_MODELS: tuple[ImageModel, ...] = (
    ImageModel(("gen4_image_turbo",), _GEN4_IMAGE, text=False),
    ImageModel(("gemini",), _GEMINI_IMAGE, seed=False),
    ImageModel(("gen4",), _GEN4_IMAGE),
)

#: failureCode prefix -> error class. Documented (docs "Task failures"): SAFETY.INPUT.*/SAFETY.OUTPUT.* and
#: INPUT_PREPROCESSING.SAFETY.TEXT are moderation ("do not retry"); INTERNAL.BAD_OUTPUT.* and
#: INPUT_PREPROCESSING.INTERNAL are failed generations. No throttling failureCode is documented (THROTTLED is a
#: queued *status*), so any code naming throttling is taken as a rate limit, defensively.
FAILURE_CODES: tuple[tuple[str, type[TarashError]], ...] = (
    ("SAFETY", ContentPolicyError),
    ("INPUT_PREPROCESSING.SAFETY", ContentPolicyError),
    ("THROTTL", RateLimitError),
    ("INTERNAL.THROTTL", RateLimitError),
)


def video_model(model: str) -> VideoModel:
    return next((m for m in VIDEO_MODELS if model.startswith(m.match)), VIDEO_MODELS[-1])


def image_model(model: str) -> ImageModel:
    return next((m for m in IMAGE_MODELS if model.startswith(m.match)), IMAGE_MODELS[-1])


def nearest(table: Ratios, aspect: str | None, allowed: tuple[str, ...] | None = None) -> tuple[str, str]:
    """``(aspect, pixel ratio)``: the asked aspect if the table has it, else the closest one it has."""
    choices = {a: r for a, r in table.items() if allowed is None or a in allowed}
    wanted = aspect or "16:9"
    if wanted in choices:
        return wanted, choices[wanted]

    def distance(candidate: str) -> float:
        (w1, h1), (w2, h2) = (map(int, x.split(":")) for x in (candidate, wanted))
        return abs(math.log((w1 / h1) / (w2 / h2)))

    best = min(choices, key=distance)
    return best, choices[best]


def _failure_class(code: str) -> type[TarashError]:
    return next((cls for prefix, cls in FAILURE_CODES if code.startswith(prefix)), GenerationFailedError)


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
    #: Provider-wide (the README table); ``capabilities_for`` narrows it per model.
    capabilities = {
        "video": frozenset({"text_to_video", "image_to_video", "first_frame", "last_frame", "video_input", "audio"}),
        "image": frozenset({"text_to_image", "image_to_image"}),
    }

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        if kind == "image":
            spec = image_model(config.model)
            return frozenset({"image_to_image"} | ({"text_to_image"} if spec.text else set()))
        model = video_model(config.model)
        caps = {"text_to_video"} if model.text else set()
        if model.image:
            caps |= {"image_to_video", "first_frame"} | ({"last_frame"} if model.last_frame else set())
        if model.video_field:
            caps.add("video_input")
        if "audio" in model.options:
            caps.add("audio")
        return frozenset(caps)

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        if isinstance(request, VideoGenerationRequest) and request.video is not None and request.image_list:
            return "runway takes a video or frames as the input of one task, not both"
        return super().unsupported_reason(kind, config, request)

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
        if isinstance(request, VideoGenerationRequest):
            endpoint, body = _video_body(config.model, request)
        else:
            assert isinstance(request, ImageGenerationRequest)
            endpoint, body = "text_to_image", _image_body(config.model, request)
        body.update(request.extra_params)
        return HttpRequest("POST", endpoint, json=body)

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        status = self.map_status(data["status"], config, job.id)
        if status == "failed":
            code = str(data.get("failureCode") or ("CANCELLED" if data["status"] == "CANCELLED" else ""))
            raise self.failure(config, f"runway: {data.get('failure') or data['status'].lower()}", job_id=job.id,
                               code=code or None, raw=data, error_class=_failure_class(code))
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
        if isinstance(request, VideoGenerationRequest):
            aspect = _video_aspect(video_model(config.model), request)
            return VideoGenerationResponse(request_id="", video=urls[0], content_type="video/mp4", raw_response=status.raw,
                                           aspect_ratio=aspect, provider_metadata=meta)
        return ImageGenerationResponse(request_id="", images=urls, content_type="image/png", raw_response=status.raw,
                                       provider_metadata=meta)


def _frames(request: VideoGenerationRequest) -> list[dict[str, str]]:
    return [{"uri": media_url(i["image"]), "position": "first" if i["type"] == "first_frame" else "last"}
            for i in request.image_list if i["type"] in ("first_frame", "last_frame")]


def _endpoint(request: VideoGenerationRequest) -> str:
    if request.video is not None:
        return "video_to_video"
    return "image_to_video" if _frames(request) else "text_to_video"


def _video_aspect(model: VideoModel, request: VideoGenerationRequest) -> str | None:
    """The aspect ratio the task is asked for: None when it takes no ratio (video_to_video that follows its input)."""
    endpoint = _endpoint(request)
    if endpoint == "video_to_video" and "ratio" not in model.video_takes:
        return None
    allowed = model.text_aspects if endpoint == "text_to_video" else None
    return nearest(model.ratio_table(request.resolution), request.aspect_ratio, allowed)[0]


def _video_body(model_id: str, request: VideoGenerationRequest) -> tuple[str, dict[str, Any]]:
    model = video_model(model_id)
    endpoint = _endpoint(request)
    body: dict[str, Any] = {}
    aspect = _video_aspect(model, request)
    if aspect is not None:
        body["ratio"] = model.ratio_table(request.resolution)[aspect]
    if model.durations:
        wanted = request.duration_seconds or model.durations[0]
        body["duration"] = next((d for d in model.durations if d >= wanted), model.durations[-1])
    elif request.duration_seconds:
        body["duration"] = request.duration_seconds
    optional = {"seed": request.seed, "audio": request.generate_audio, "negativePrompt": request.negative_prompt}
    body.update({k: v for k, v in optional.items() if k in model.options and v is not None})
    if endpoint == "video_to_video":
        body = {k: v for k, v in body.items() if k in model.video_takes}
        body[model.video_field or "videoUri"] = media_url(request.video, "video/mp4")  # type: ignore[arg-type]
    elif endpoint == "image_to_video":
        frames = _frames(request)
        body["promptImage"] = frames[0]["uri"] if len(frames) == 1 and frames[0]["position"] == "first" else frames
    return endpoint, {"model": model_id, "promptText": request.prompt, **body}


def _image_body(model_id: str, request: ImageGenerationRequest) -> dict[str, Any]:
    model = image_model(model_id)
    body: dict[str, Any] = {"model": model_id, "promptText": request.prompt,
                            "ratio": nearest(model.ratios, request.aspect_ratio or "1:1")[1]}
    if request.seed is not None and model.seed:
        body["seed"] = request.seed
    if request.image_list:
        body["referenceImages"] = [{"uri": media_url(i["image"])} for i in request.image_list]
    return body
