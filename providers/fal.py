"""fal.ai queue API: ``POST https://queue.fal.run/{model}``, then the status/result/cancel URLs the submit
returns (which drop the model's subpath). Auth ``Authorization: Key <FAL_KEY>``. Sources: fal_client
``client.py`` (``_parse_status``, ``SyncRequestHandle``), fal docs "Queue" and "Cancel a request".

Per-model differences are data: each family maps the spec's fields to that family's input keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, media_url
from router.errors import BadProviderResponseError, ContentPolicyError, TarashError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind, StatusType,
    VideoGenerationRequest, VideoGenerationResponse
)

V, I = "video", "image"


@dataclass(frozen=True)
class Family:
    """How one model family spells its inputs. ``match``: substrings of the model id."""

    match: tuple[str, ...]
    kind: Kind
    duration: Callable[[int], Any] = int
    fields: dict[str, str] = field(default_factory=dict)  # spec field -> fal input key
    roles: dict[str, str] = field(default_factory=dict)  # image role -> fal input key
    capabilities: frozenset[str] = frozenset()
    #: Durations the family accepts; a request is rounded up to the next one (capped at the longest).
    durations: tuple[int, ...] = ()
    #: Keys when both first and last frames are given (first-last-frame endpoints name them differently).
    frame_pair: tuple[str, str] | None = None

    def rounded(self, requested: int) -> int:
        """The duration the family renders for ``requested`` seconds."""
        if self.durations:
            return next((d for d in self.durations if d >= requested), self.durations[-1])
        return requested

    def seconds(self, requested: int) -> Any:
        return self.duration(self.rounded(requested))


_COMMON_VIDEO = {"prompt": "prompt", "aspect_ratio": "aspect_ratio", "negative_prompt": "negative_prompt", "seed": "seed"}
_VIDEO_BASE = frozenset({"text_to_video", "image_to_video", "first_frame"})

#: First match wins; the last entry of each kind is its default.
FAMILIES: tuple[Family, ...] = (
    Family(("veo",), V, lambda s: f"{s}s",  # "8s" (tarash VEO3 mapper)
           {**_COMMON_VIDEO, "resolution": "resolution", "generate_audio": "generate_audio", "enhance_prompt": "enhance_prompt"},
           {"first_frame": "image_url", "last_frame": "last_frame_url"}, _VIDEO_BASE | {"last_frame", "audio"},
           durations=(4, 6, 8), frame_pair=("first_frame_url", "last_frame_url")),
    Family(("kling",), V, str,  # "5" | "10"
           _COMMON_VIDEO, {"first_frame": "image_url", "last_frame": "tail_image_url"}, _VIDEO_BASE | {"last_frame"},
           durations=(5, 10)),
    Family(("wan",), V, str,
           {**_COMMON_VIDEO, "resolution": "resolution", "enhance_prompt": "enable_prompt_expansion"},
           {"first_frame": "image_url"}, _VIDEO_BASE, durations=(5, 10)),
    Family(("minimax", "hailuo"), V, str,
           {"prompt": "prompt", "enhance_prompt": "prompt_optimizer"}, {"first_frame": "image_url"}, _VIDEO_BASE,
           durations=(6, 10)),
    Family(("seedance",), V, str,
           {**_COMMON_VIDEO, "resolution": "resolution"},
           {"first_frame": "image_url", "last_frame": "end_image_url"}, _VIDEO_BASE | {"last_frame"},
           durations=(5, 10)),
    Family((), V, int, _COMMON_VIDEO, {"first_frame": "image_url"}, _VIDEO_BASE),
    Family(("flux",), I, fields={"prompt": "prompt", "seed": "seed", "n": "num_images"},
           roles={"reference": "image_url", "first_frame": "image_url", "asset": "image_url"},
           capabilities=frozenset({"text_to_image", "image_to_image", "multiple_outputs"})),
    Family((), I, fields={"prompt": "prompt", "seed": "seed", "n": "num_images", "negative_prompt": "negative_prompt"},
           roles={"reference": "image_url", "first_frame": "image_url"},
           capabilities=frozenset({"text_to_image", "image_to_image", "multiple_outputs"})),
)

#: fal's named image sizes by aspect ratio (fal docs, ImageSize enum).
IMAGE_SIZES = {"1:1": "square_hd", "4:3": "landscape_4_3", "16:9": "landscape_16_9", "9:16": "portrait_16_9",
               "21:9": "landscape_16_9"}
#: fal error_type values that mean moderation (a guess where fal documents none: words checked too).
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "nsfw_content_detected"})


def family_of(kind: Kind, model: str) -> Family:
    """Match on the model's path segments (``fal-ai/kling-video/v2``), not on any substring."""
    parts = model.lower().split("/")[1:] or [model.lower()]
    # Loops, not nested generators: several calls per job (capabilities, payload, duration).
    for family in FAMILIES:
        if family.kind == kind:
            if not family.match:
                return family
            for part in parts:
                if part.startswith(family.match):  # any of the family's prefixes
                    return family
    raise LookupError(f"no fal model family for {kind}")  # unreachable: each kind ends with a default


class FalProvider(HttpProvider):
    name = "fal"
    default_base_url = "https://queue.fal.run"
    api_key_env = ("FAL_KEY",)
    kinds = frozenset({"video", "image"})
    request_id_headers = ("x-fal-request-id",)
    webhook_scheme = "fal"
    status_map: ClassVar[dict[str, StatusType]] = {"IN_QUEUE": "queued", "IN_PROGRESS": "processing", "COMPLETED": "completed"}
    capabilities = {V: family_of(V, "").capabilities, I: family_of(I, "").capabilities}

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        return family_of(kind, config.model).capabilities

    def auth_headers(self, config: AnyConfig) -> dict[str, str]:
        return {"Authorization": f"Key {config.api_key}"}

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        return HttpRequest("POST", config.model.strip("/"), json=self.payload(kind, config, request))

    def with_webhook(self, request: HttpRequest, url: str) -> HttpRequest:
        # fal_client submit(webhook_url=): the queue POSTs the finished request's result to it.
        return replace(request, params={**(request.params or {}), "fal_webhook": url})

    def payload(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> dict[str, Any]:
        family = family_of(kind, config.model)
        body: dict[str, Any] = {}
        for spec_field, key in family.fields.items():
            value = getattr(request, spec_field, None)
            if value is not None:
                body[key] = value
        if isinstance(request, VideoGenerationRequest) and request.duration_seconds:
            body["duration"] = family.seconds(request.duration_seconds)
        if isinstance(request, ImageGenerationRequest):
            if request.size and "x" in request.size:
                width, height = request.size.split("x")
                body["image_size"] = {"width": int(width), "height": int(height)}
            elif request.aspect_ratio:
                body["image_size"] = IMAGE_SIZES[request.aspect_ratio]
        roles = dict(family.roles)
        if family.frame_pair and {"first_frame", "last_frame"} <= {i["type"] for i in request.image_list}:
            roles["first_frame"], roles["last_frame"] = family.frame_pair
        for image in request.image_list:
            key = roles.get(image["type"])
            if key:
                body.setdefault(key, media_url(image["image"]))
        if isinstance(request, VideoGenerationRequest) and request.video is not None:
            body["video_url"] = media_url(request.video, "video/mp4")
        return {**body, **request.extra_params}

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> ProviderJob:
        data = response.json()
        return ProviderJob(id=data["request_id"], data={k: data[k] for k in ("status_url", "response_url", "cancel_url")})

    def status_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        url = job.data["status_url"]
        if "?" in url or "#" in url:  # not fal's: aiohttp merges the query into the URL's as it always did
            return HttpRequest("GET", url, params={"logs": "1"})
        return HttpRequest("GET", url + "?logs=1")  # the same request line, without a query merge per poll

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        status = self.map_status(data["status"], config, job.id)
        if status == "completed" and data.get("error"):
            # A failed fal request still reports COMPLETED, with error/error_type set.
            raise self._failed(config, job.id, data["error"], data.get("error_type"), data)
        # fal reports no percentage; the queue position (0-based) is in the raw update.
        return PollStatus(status=status, raw=data)

    def pushed(self, kind: Kind, config: AnyConfig, job: ProviderJob, payload: Any) -> PollStatus | None:
        # docs.fal.ai "Webhooks": {"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload", "error"}
        # once the request is done; "payload" is the result GET's body (ERROR: the error's body). A payload fal
        # could not serialize is null with "payload_error" set: then the result is fetched as after a poll.
        if not isinstance(payload, dict) or payload.get("request_id") != job.id:
            return None
        body = payload.get("payload")
        head = {k: v for k, v in payload.items() if k != "payload"}  # the update callers see, without the result
        if payload.get("status") == "ERROR":
            detail = body.get("detail") if isinstance(body, dict) else None
            first = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else {}
            message = detail if isinstance(detail, str) else first.get("msg") or payload.get("error") or "failed"
            error_type = (body.get("error_type") if isinstance(body, dict) else None) or first.get("type")
            raise self._failed(config, job.id, str(message), error_type, head)
        if payload.get("status") != "OK" or not isinstance(body, dict):
            return None
        return PollStatus(status="completed", raw=head, result=body)

    def _failed(self, config: AnyConfig, job_id: str, message: str, error_type: Any, raw: dict[str, Any]) -> TarashError:
        """A request fal reports failed, from a poll or a push alike."""
        return self.failure(
            config, f"fal: {message}", job_id=job_id, code=error_type, raw=raw,
            error_class=ContentPolicyError if error_type in CONTENT_POLICY_TYPES else None,
        )

    def result_request(self, kind: Kind, config: AnyConfig, job: ProviderJob,
                       status: PollStatus) -> HttpRequest | None:
        return None if status.result is not None else HttpRequest("GET", job.data["response_url"])

    def build_response(
        self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob, status: PollStatus,
        result: VendorResponse | None,
    ) -> AnyResponse:
        data = result.json() if result is not None else status.result  # fetched, or a push's payload
        # x-fal-billable-units: what fal bills this request, in the endpoint's priced unit (router/pricing). A
        # push carries no such header: the price is then applied to what was delivered.
        meta = {"provider_request_id": job.id, "fal_metrics": status.raw.get("metrics"),
                "billable_units": _units(result.headers.get("x-fal-billable-units")) if result is not None else None}
        if kind == "video":
            video = data.get("video") or {}
            url = video.get("url") if isinstance(video, dict) else None
            url = url or data.get("video_url")
            if not url:
                raise BadProviderResponseError("fal result has no video url", provider=config.provider,
                                               model=config.model, provider_request_id=job.id)
            audio = data.get("audio")
            return VideoGenerationResponse(
                request_id="", video=url, content_type=(video or {}).get("content_type", "video/mp4"),
                audio_url=(audio or {}).get("url") if isinstance(audio, dict) else data.get("audio_url"),
                duration=_seconds(config, request), resolution=getattr(request, "resolution", None),
                aspect_ratio=getattr(request, "aspect_ratio", None), raw_response=data, provider_metadata=meta,
            )
        urls = [image["url"] for image in data.get("images") or [] if isinstance(image, dict) and image.get("url")]
        if not urls:
            raise BadProviderResponseError("fal result has no images", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        flags = data.get("has_nsfw_concepts") or []
        if flags and all(flags):
            raise ContentPolicyError("fal flagged every image as NSFW", provider=config.provider, model=config.model,
                                     provider_request_id=job.id)
        content_type = (data["images"][0] or {}).get("content_type", "image/png")
        return ImageGenerationResponse(request_id="", images=urls, content_type=content_type, raw_response=data,
                                       provider_metadata={**meta, "seed": data.get("seed")})

    def cancel_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        return HttpRequest("PUT", job.data["cancel_url"])


def _seconds(config: AnyConfig, request: AnyRequest) -> float | None:
    """The duration fal rendered: the request's, rounded up as the family does (fal reports no length)."""
    seconds = getattr(request, "duration_seconds", None)
    return float(family_of("video", config.model).rounded(seconds)) if seconds else None


def _units(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None
