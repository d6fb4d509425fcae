"""fal queue API (fal_client ``client.py`` at fal-ai/fal c6f0afaa).

* submit ``POST /{owner}/{alias}[/{subpath}]`` (also under the ``workflows/`` and ``comfy/`` namespaces,
  fal_client ``APP_NAMESPACES``), JSON body = the model input. The answer's URLs drop the subpath, as the real
  queue does; status/result/cancel under any other model path are 404.
* status ``GET .../requests/{id}/status[?logs=1|true]``: IN_QUEUE (``queue_position``), IN_PROGRESS (``logs``),
  COMPLETED (``logs``, ``metrics``). ``logs`` is null unless asked for (fal_client ``_parse_status`` requires the
  key). A failed or cancelled request still says COMPLETED, with ``error``/``error_type``; its result GET is then
  the HTTP error.
* result ``GET .../requests/{id}``: the model output verbatim (video models: ``{"video": File}``; image models:
  ``{"images": [...], "seed", "has_nsfw_concepts", "prompt", "timings"}``, ``num_images`` honoured), with the
  ``x-fal-billable-units`` header the real queue sets on a completed result (fal docs "Publishing to the
  marketplace": the units the caller is billed, in the endpoint's priced unit; TanStack/ai #722 reads it the same
  way). Here: seconds of video asked for (else the sample's length), or megapixels (2^20 px, rounded up) per image.
* cancel ``PUT .../requests/{id}/cancel``: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED, 404 NOT_FOUND (the
  codes are the brief's; fal docs name the values only).

Errors come in fal's two documented shapes: model errors (422, ``{"detail": [{loc, msg, type, url}]}``, docs
"Model Errors") and request errors (``{"detail": str, "error_type"}`` + ``X-Fal-Error-Type``, docs "Request
Errors"). Auth is ``Authorization: Key <key>``. Every answer about a request carries ``x-fal-request-id``
(fal_client treats a 5xx without it as an ingress error).

Webhooks (docs "Webhooks"; fal_client ``submit(webhook_url=)`` adds ``?fal_webhook=<url>`` to the submit): when
the request is done, a POST of ``{"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload"}`` (an
error adds ``error``), signed with ED25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256_hex(body)`` in the
``X-Fal-Webhook-*`` headers. The emulator's key is served as a JWKS at ``/.well-known/jwks.json`` (fal's own is
at ``rest.alpha.fal.ai``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aiohttp import web

from providers._mock_media import video_asset
from tests.emulators._base import Emulator, Fault, Job, WebhookFault, image_dims, is_video_model

NAMESPACES = ("workflows", "comfy")
#: ``image_size`` presets of fal's image endpoints (fal-ai/flux docs); flux/dev defaults to landscape_4_3.
IMAGE_SIZES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
               "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576)}
ERRORS_DOC = "https://docs.fal.ai/errors"
#: Request-error types per HTTP status (docs "Request Errors" table).
_REQUEST_ERROR_TYPES = {500: "internal_error", 502: "runner_incomplete_response", 503: "runner_scheduling_failure",
                        504: "request_timeout"}
#: How a finished job fails: (result HTTP status, error type, message).
_FAILURES = {
    # Type from fal's error reference (model error ``content_policy_violation``, 422); the message is a guess.
    Fault.CONTENT_POLICY: (422, "content_policy_violation",
                           "The content could not be processed because it was flagged by a content checker."),
    Fault.JOB_FAILED: (500, "runner_server_error", "The runner encountered an internal server error."),
}
#: A cancelled request: fal's app layer answers 499 ``{"detail": "Request cancelled by the client."}``
#: (fal ``app.py``, RequestCancelledException); ``client_cancelled`` is its documented request-error type.
_CANCELLED = (499, "client_cancelled", "Request cancelled by the client.")


def queue_path(model: str) -> str | None:
    """``/[namespace/]owner/alias`` of a model id (the subpath dropped), or None when it names no app."""
    parts = model.strip("/").split("/")
    take = 3 if parts[0] in NAMESPACES else 2
    return "/" + "/".join(parts[:take]) if len(parts) >= take and all(parts[:take]) else None


class FalEmulator(Emulator):
    name = "fal"
    validation_status = 422
    #: The account fal names in X-Fal-Webhook-User-Id.
    user_id = "emulated-user"

    def __init__(self, **kwargs: Any) -> None:
        self.signing_key = Ed25519PrivateKey.generate()
        super().__init__(**kwargs)

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/.well-known/jwks.json", self.jwks)
        for prefix in ("", "/{namespace:workflows|comfy}"):
            base = f"{prefix}/{{owner}}/{{alias}}/requests/{{id}}"
            router.add_get(f"{base}/status", self.status)
            router.add_get(base, self.result)
            router.add_put(f"{base}/cancel", self.cancel)
        router.add_post("/{model:.+}", self.submit)

    # ---- auth, errors, headers ----------------------------------------------------------------------------
    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Key {self.api_key}"

    def unauthorized(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Key "):
            # Body seen from queue.fal.run for a wrong key (fal-ai/fal issue #1068).
            return web.json_response({"detail": "No user found for Key ID and Secret"}, status=401)
        return web.json_response({"detail": "Authentication is required to access this application."},
                                 status=401)  # wording a guess: no source shows the missing-key answer

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 422:
            return self.model_error("prompt", message, "value_error")
        body: dict[str, Any] = {"detail": message}
        headers = {}
        if error_type := _REQUEST_ERROR_TYPES.get(status):
            body["error_type"] = headers["X-Fal-Error-Type"] = error_type
        return web.json_response(body, status=status, headers=headers)

    def model_error(self, field: str | None, message: str, error_type: str, *, status: int = 422,
                    value: Any = None) -> web.Response:
        """fal's model-error answer (docs "Model Errors": a ``detail`` array, ``X-Fal-Retryable``)."""
        item: dict[str, Any] = {"loc": ["body", field] if field else ["body"], "msg": message, "type": error_type,
                                "url": f"{ERRORS_DOC}#{error_type}"}
        if value is not None:
            item["input"] = value
        return web.json_response({"detail": [item]}, status=status, headers={"X-Fal-Retryable": "false"})

    def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        if "id" in request.match_info:  # submit answers name their new request themselves
            response.headers["x-fal-request-id"] = request.match_info["id"]

    # ---- handlers -----------------------------------------------------------------------------------------
    async def submit(self, request: web.Request) -> web.StreamResponse:
        try:
            payload: Any = await request.json()
        except ValueError:
            payload = None
        prompt = payload.get("prompt") if isinstance(payload, dict) else None
        if early := await self.enter(request, "submit", payload, prompt if isinstance(prompt, str) else None):
            return early
        path = queue_path(request.match_info["model"])
        if path is None:
            return self.error(404, "Not Found")
        if not isinstance(payload, dict):
            return self.model_error(None, "JSON decode error", "json_invalid")
        if not isinstance(prompt, str):
            return self.model_error("prompt", "field required", "missing")
        count = payload.get("num_images", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return self.model_error("num_images", "Input should be a valid positive integer", "int_type", value=count)
        job = self.new_job(request.match_info["model"], payload, prompt)
        job.extra.update(queue_path=path, logs=[])
        base = f"{self.url}{path}/requests/{job.id}"
        if webhook := request.query.get("fal_webhook"):
            await self.start_webhook(job, webhook)
        # status and queue_position too: seen in answers quoted by third-party docs; fal_client reads only the URLs.
        return web.json_response({"status": "IN_QUEUE", "request_id": job.id, "gateway_request_id": job.id,
                                  "response_url": base,
                                  "status_url": f"{base}/status", "cancel_url": f"{base}/cancel",
                                  "queue_position": job.polls_needed}, headers={"x-fal-request-id": job.id})

    def _job(self, request: web.Request) -> Job | None:
        job = self.jobs.get(request.match_info["id"])
        if job is None or not request.path.startswith(f"{job.extra['queue_path']}/requests/"):
            return None  # unknown id, or asked for under another app (or with the subpath)
        return job

    def _failure(self, job: Job) -> tuple[int, str, str] | None:
        if job.cancelled:
            return _CANCELLED
        return _FAILURES.get(job.outcome) if job.failed and job.outcome else None

    async def status(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "Request not found")  # wording a guess
        state = job.advance()
        if not job.cancelled:
            job.extra["logs"].append({"message": f"Step {job.polls}/{job.polls_needed}", "level": "INFO",
                                      "source": "user", "timestamp": dt.datetime.now(dt.UTC).isoformat()})
        logs = list(job.extra["logs"]) if request.query.get("logs") in ("1", "true") else None
        response_url = f"{self.url}{job.extra['queue_path']}/requests/{job.id}"
        if state == "queued":
            return web.json_response({"status": "IN_QUEUE", "queue_position": job.polls_needed - job.polls,
                                      "response_url": response_url})
        if state == "running":
            return web.json_response({"status": "IN_PROGRESS", "logs": logs, "response_url": response_url})
        failure = self._failure(job)
        return web.json_response({"status": "COMPLETED", "logs": logs, "metrics": {"inference_time": 0.5 * job.polls},
                                  "response_url": response_url, "error": failure[2] if failure else None,
                                  "error_type": failure[1] if failure else None})

    async def result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "result", job=job):
            return early
        if job is None:
            return self.error(404, "Request not found")
        if (failure := self._failure(job)) is not None:
            status, error_type, message = failure
            if error_type == "content_policy_violation":
                return self.model_error("prompt", message, error_type, value=job.prompt)
            return web.json_response({"detail": message, "error_type": error_type}, status=status,
                                     headers={"X-Fal-Error-Type": error_type})
        if job.status != "done":
            return self.error(400, "Request is still in progress")  # wording a guess
        body = self._video(job) if is_video_model(job.model) else self._images(job)
        return web.json_response(body, headers={"x-fal-billable-units": f"{self._billable_units(job, body):g}"})

    @staticmethod
    def _billable_units(job: Job, body: dict[str, Any]) -> float:
        if "video" in body:
            asked = str(job.payload.get("duration", "")).rstrip("s")
            ratio = job.payload.get("aspect_ratio")
            return float(asked) if asked.isdigit() else video_asset(ratio if isinstance(ratio, str) else None).duration_seconds
        size = job.payload.get("image_size", "landscape_4_3")
        width, height = (size["width"], size["height"]) if isinstance(size, dict) else \
            IMAGE_SIZES.get(str(size), IMAGE_SIZES["landscape_4_3"])
        return float(len(body["images"]) * math.ceil(width * height / 2**20))

    def _video(self, job: Job) -> dict[str, Any]:
        if job.outcome is Fault.EMPTY_RESULT:
            return {"video": None}
        ratio = job.payload.get("aspect_ratio")
        asset = video_asset(ratio if isinstance(ratio, str) else None)
        return {"video": {"url": self.media_url("video", job, asset.aspect_ratio), "content_type": "video/mp4",
                          "file_name": asset.path.name, "file_size": len(asset.data())}}

    def _images(self, job: Job) -> dict[str, Any]:
        size = job.payload.get("image_size", "landscape_4_3")
        if isinstance(size, dict) and isinstance(size.get("width"), int) and isinstance(size.get("height"), int):
            requested = (size["width"], size["height"])
        else:
            requested = IMAGE_SIZES.get(str(size), IMAGE_SIZES["landscape_4_3"])
        width, height = image_dims(*requested)
        count = 0 if job.outcome is Fault.EMPTY_RESULT else job.payload.get("num_images", 1)
        images = [{"url": self.media_url("image", job, size=requested, index=i), "width": width, "height": height,
                   "content_type": "image/png"} for i in range(count)]
        return {"images": images, "timings": {"inference": 0.5 * job.polls}, "seed": job.payload.get("seed", 42),
                "has_nsfw_concepts": [False] * count, "prompt": job.prompt}

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return web.json_response({"status": "NOT_FOUND"}, status=404)
        if job.status == "done":
            return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
        job.cancelled = True
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)

    # ---- webhooks -----------------------------------------------------------------------------------------
    async def jwks(self, request: web.Request) -> web.Response:
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return web.json_response({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "emulated-1",
                                            "alg": "EdDSA", "use": "sig"}]})

    def webhook_message(self, job: Job) -> tuple[bytes, dict[str, str]]:
        message: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
        if job.status != "done":  # an EARLY delivery: fal has nothing to say yet, we send what a poll would
            message.update(status="IN_PROGRESS", payload=None)
        elif (failure := self._failure(job)) is not None:
            message.update(status="ERROR", error=f"Invalid status code: {failure[0]}",
                           payload={"detail": failure[2], "error_type": failure[1]})
        elif self._webhook_fault(job) is WebhookFault.NO_PAYLOAD:
            # docs "Webhooks" > "Payload errors": a payload fal cannot send is null, with payload_error saying why.
            message.update(status="OK", payload=None, payload_error="Response payload is not JSON serializable.")
        else:
            message.update(status="OK", payload=self._video(job) if is_video_model(job.model) else self._images(job))
        body = json.dumps(message).encode()
        timestamp = str(int(time.time()))
        signed = "\n".join((job.id, self.user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()
        return body, {"X-Fal-Webhook-Request-Id": job.id, "X-Fal-Webhook-User-Id": self.user_id,
                      "X-Fal-Webhook-Timestamp": timestamp,
                      "X-Fal-Webhook-Signature": self.signing_key.sign(signed).hex()}

    def forge(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "X-Fal-Webhook-Signature": Ed25519PrivateKey.generate().sign(b"forged").hex()}
