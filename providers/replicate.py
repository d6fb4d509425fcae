"""Replicate predictions. Official models: ``POST /v1/models/{owner}/{name}/predictions``; pinned versions
(``owner/name:<version>``): ``POST /v1/predictions`` with ``version``. Image models are asked to answer
synchronously (``Prefer: wait``): a finished prediction comes back from the create call itself. Sources:
replicate-python ``prediction.py`` (progress regex), ``client.py``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from providers._engine import HttpProvider, HttpRequest, VendorResponse, media_url
from router.errors import BadProviderResponseError
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind, StatusType,
    VideoGenerationRequest, VideoGenerationResponse
)

#: The SDK's tqdm progress pattern (prediction.py ``Progress.parse``), applied to the last matching line.
PROGRESS = re.compile(r"^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)", re.MULTILINE)
#: Spec field -> Replicate input key (the common names across Replicate's video and image models).
VIDEO_FIELDS = {"prompt": "prompt", "aspect_ratio": "aspect_ratio", "duration_seconds": "duration",
                "resolution": "resolution", "seed": "seed", "negative_prompt": "negative_prompt",
                "generate_audio": "generate_audio", "enhance_prompt": "enhance_prompt"}
IMAGE_FIELDS = {"prompt": "prompt", "aspect_ratio": "aspect_ratio", "seed": "seed", "n": "num_outputs",
                "negative_prompt": "negative_prompt"}
ROLE_KEYS = {"first_frame": "image", "last_frame": "last_frame", "reference": "reference_images",
             "asset": "reference_images", "style": "reference_images"}
#: Prediction statuses that end it (Replicate's "completed" webhook event).
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
#: Seconds a synchronous (Prefer: wait) image call may hold the connection (Replicate allows 1-60).
SYNC_WAIT_SECONDS = 60


class ReplicateProvider(HttpProvider):
    name = "replicate"
    default_base_url = "https://api.replicate.com/v1"
    api_key_env = ("REPLICATE_API_TOKEN",)
    webhook_scheme = "replicate"
    kinds = frozenset({"video", "image"})
    status_map: ClassVar[dict[str, StatusType]] = {
        "starting": "queued", "processing": "processing", "succeeded": "completed", "failed": "failed",
        "canceled": "failed",
    }
    content_policy_markers = ("nsfw", "safety", "content policy", "flagged", "moderation")
    # Replicate hosts thousands of models; the router cannot know each one's inputs, so it declares the
    # common ones and leaves model-specific keys to extra_params.
    capabilities = {
        "video": frozenset({"text_to_video", "image_to_video", "first_frame", "last_frame", "reference_images",
                            "video_input", "audio"}),
        "image": frozenset({"text_to_image", "image_to_image", "inpainting", "multiple_outputs"}),
    }

    def call_timeout(self, config: AnyConfig) -> float:
        if "request_timeout" in config.provider_config:
            return super().call_timeout(config)
        return max(super().call_timeout(config), SYNC_WAIT_SECONDS + 5.0)  # room for Prefer: wait

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        fields = VIDEO_FIELDS if isinstance(request, VideoGenerationRequest) else IMAGE_FIELDS
        inputs: dict[str, Any] = {key: getattr(request, name) for name, key in fields.items()
                                  if getattr(request, name, None) is not None}
        for image in request.image_list:
            key = ROLE_KEYS[image["type"]] if kind == "video" else "image"
            if key == "reference_images":
                inputs.setdefault(key, []).append(media_url(image["image"]))
            else:
                inputs.setdefault(key, media_url(image["image"]))
        if isinstance(request, VideoGenerationRequest) and request.video is not None:
            inputs["video"] = media_url(request.video, "video/mp4")
        if isinstance(request, ImageGenerationRequest) and request.mask_image is not None:
            inputs["mask"] = media_url(request.mask_image)
        inputs.update(request.extra_params)
        # Hold the connection no longer than our own per-call timeout allows (else a slow model would look
        # like an ambiguous submit).
        wait = max(1, min(SYNC_WAIT_SECONDS, int(self.call_timeout(config)) - 5))
        headers = {"Prefer": f"wait={wait}"} if kind == "image" else {}
        model, _, version = config.model.partition(":")
        if version:
            return HttpRequest("POST", "predictions", json={"version": version, "input": inputs}, headers=headers)
        return HttpRequest("POST", f"models/{model}/predictions", json={"input": inputs}, headers=headers)

    def with_webhook(self, request: HttpRequest, url: str) -> HttpRequest:
        # Only the end matters to us: start/output/logs events would be hints with nothing to act on.
        return replace(request, json={**(request.json or {}), "webhook": url, "webhook_events_filter": ["completed"]})

    async def webhook_secret(self, config: AnyConfig) -> str:
        # replicate-python webhooks.default.secret(): GET /v1/webhooks/default/secret -> {"key": "whsec_..."}.
        # The answer is a secret: an unexpected shape is reported without quoting it (unlike parse()).
        response = await self.send(config, HttpRequest("GET", "webhooks/default/secret"), "status")
        try:
            body = response.json()
        except ValueError:
            body = None
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise BadProviderResponseError("replicate: the webhook secret answer holds no key",
                                           provider=config.provider, model=config.model)
        return key

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> ProviderJob | AnyResponse:
        data = response.json()
        job = ProviderJob(id=data["id"], data={"get": data.get("urls", {}).get("get"),
                                               "cancel": data.get("urls", {}).get("cancel")})
        if data.get("status") == "succeeded":  # Prefer: wait finished in time
            return self.build_response(kind, config, request, job, PollStatus("completed", data), None)
        return job

    def status_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        return HttpRequest("GET", job.data.get("get") or f"predictions/{job.id}")

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        return self._status(config, job, response.json())

    def pushed(self, kind: Kind, config: AnyConfig, job: ProviderJob, payload: Any) -> PollStatus | None:
        # The webhook's body is the prediction object itself, as a status GET answers it; only a terminal one
        # (succeeded/failed/canceled: the "completed" event) is an outcome, any other event is a hint.
        if not isinstance(payload, dict) or payload.get("id") != job.id or payload.get("status") not in TERMINAL:
            return None
        return self._status(config, job, payload)

    def _status(self, config: AnyConfig, job: ProviderJob, data: dict[str, Any]) -> PollStatus:
        """A prediction's state, from a poll or a push alike."""
        status = self.map_status(data["status"], config, job.id)
        if status == "failed":
            message = data.get("error") or ("prediction was canceled" if data["status"] == "canceled" else "prediction failed")
            raise self.failure(config, f"replicate: {message}", job_id=job.id, raw=data)
        matches = PROGRESS.findall(data.get("logs") or "")
        percent = int(matches[-1][0]) if matches else None
        return PollStatus(status=status, raw=data, progress_percent=min(percent, 100) if percent is not None else None)

    def build_response(self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob,
                       status: PollStatus, result: VendorResponse | None) -> AnyResponse:
        data = status.raw
        output = data.get("output")
        urls = [output] if isinstance(output, str) else [u for u in output or [] if isinstance(u, str)] \
            if isinstance(output, list) else [output.get("video") or output.get("output")] if isinstance(output, dict) else []
        urls = [u for u in urls if u]
        if not urls:
            raise BadProviderResponseError("replicate prediction succeeded without output", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        meta = {"provider_request_id": job.id, "predict_time": (data.get("metrics") or {}).get("predict_time")}
        if kind == "video":
            return VideoGenerationResponse(
                request_id="", video=urls[0], content_type="video/mp4", raw_response=data, provider_metadata=meta,
                aspect_ratio=getattr(request, "aspect_ratio", None), resolution=getattr(request, "resolution", None),
            )
        return ImageGenerationResponse(request_id="", images=urls, content_type=_image_type(urls[0]),
                                       raw_response=data, provider_metadata=meta)

    def cancel_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        return HttpRequest("POST", job.data.get("cancel") or f"predictions/{job.id}/cancel")


def _image_type(url: str) -> str:
    extension = url.rsplit(".", 1)[-1].lower()
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}.get(extension, "image/png")
