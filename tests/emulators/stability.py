"""Stability AI v2beta : synchronous Stable Image generate/edit, and the legacy async Stable
Video Diffusion image-to-video.

Every call is ``multipart/form-data`` (text fields alone are fine; a JSON body gets 400) with
``Authorization: Bearer <key>``. ``Accept: image/*`` (or none) answers raw bytes with ``finish-reason`` and
``seed`` headers; ``Accept: application/json`` answers ``{"image", "finish_reason", "seed"}`` with content type
``application/json; type=image/png``. Errors are ``{"id", "name", "errors": [...]}``; the names other than
``bad_request``, ``unauthorized`` and ``content_moderation`` are guesses. A moderated result is, by default, the
vendor's 200 with ``finish_reason: CONTENT_FILTERED`` (a blurred image); ``moderation="reject"`` makes it the
vendor's 403 ``content_moderation`` instead. Bytes are always PNG (the emulator has no JPEG/WebP encoder), while
``Content-Type`` follows ``output_format``.

Video finding (for the provider author): Stability discontinued the Stable Video API on 2025-07-24 ("API Price
Update", https://stability.ai/api-pricing-update-25, 2025-07-09: "We will be discontinuing two API endpoints on
July 24, 2025: Stable Video API, Stable Diffusion 1.6 API"); no later source shows it back. Declare video
unsupported. The endpoints below are kept, flagged LEGACY, because they cost little: ``POST /v2beta/image-to-video``
(``image`` file of 1024x576, 576x1024 or 768x768, checked for PNGs) -> ``{"id"}`` (64 hex), then
``GET /v2beta/image-to-video/result/{id}``: 202 ``{"id", "status": "in-progress"}`` per poll, then 200 with MP4
bytes (``Accept: video/*``) or ``{"video", "finish_reason", "seed"}``.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from providers._mock_media import image_size_for, png_bytes, video_asset
from tests.emulators._base import OUTCOME_FAULTS, Emulator, Fault

ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
#: SVD input sizes -> the sample video of the same shape .
SVD_SIZES = {(1024, 576): "16:9", (576, 1024): "9:16", (768, 768): "1:1"}
_NAMES = {400: "bad_request", 401: "unauthorized", 403: "content_moderation", 404: "not_found",
          413: "payload_too_large", 422: "invalid_request", 429: "rate_limit_exceeded", 500: "internal_error",
          503: "service_unavailable"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str | None
    data: bytes

    def summary(self) -> dict[str, Any]:
        return {"filename": self.filename, "bytes": len(self.data), "content_type": self.content_type}


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, or None when ``data`` is not a PNG."""
    if data[:8] != _PNG_SIGNATURE or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])  # type: ignore[return-value]


class StabilityEmulator(Emulator):
    name = "stability"

    def __init__(self, *, moderation: str = "filtered", **kw: Any) -> None:
        super().__init__(**kw)
        if moderation not in ("filtered", "reject"):
            raise ValueError("moderation is 'filtered' or 'reject'")
        self.moderation = moderation

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for mode in ("ultra", "core", "sd3"):
            router.add_post(f"/v2beta/stable-image/generate/{mode}", self.generate)
        router.add_post("/v2beta/stable-image/edit/inpaint", self.generate)
        router.add_post("/v2beta/image-to-video", self.start_video)  # LEGACY: discontinued 2025-07-24
        router.add_get("/v2beta/image-to-video/result/{id}", self.video_result)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 401:
            message = "authorization: invalid or missing API key"  # wording a guess
        return web.json_response({"id": uuid.uuid4().hex, "name": _NAMES.get(status, "error"), "errors": [message]},
                                 status=status)

    async def _form(self, request: web.Request) -> dict[str, str | Upload] | None:
        """The multipart fields (files as ``Upload``), or None when the body is not multipart."""
        if not request.content_type.startswith("multipart/form-data"):
            return None
        fields: dict[str, str | Upload] = {}
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: not something Stability accepts
            if part.filename is not None:
                fields[part.name or "file"] = Upload(part.filename, part.headers.get("Content-Type"),
                                                     bytes(await part.read()))
            else:
                fields[part.name or ""] = await part.text()
        return fields

    @staticmethod
    def _recorded(form: dict[str, str | Upload] | None) -> dict[str, Any] | None:
        if form is None:
            return None
        return {k: v.summary() if isinstance(v, Upload) else v for k, v in form.items()}

    def _generate_problem(self, mode: str, form: dict[str, str | Upload]) -> str | None:
        """The bad_request message for a generate/edit form, or None (messages are guesses in Stability's style)."""
        prompt = form.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt: is required"
        if mode == "inpaint" and not isinstance(form.get("image"), Upload):
            return "image: is required"
        if "aspect_ratio" in form and form["aspect_ratio"] not in ASPECT_RATIOS:
            return f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)}"
        formats = ("png", "jpeg") if mode == "sd3" else ("png", "jpeg", "webp")
        if form.get("output_format", "png") not in formats:
            return f"output_format: must be one of {', '.join(formats)}"
        seed = str(form.get("seed", "0"))
        if not seed.isdigit() or int(seed) > 4294967294:
            return "seed: must be an integer between 0 and 4294967294"
        has_image = isinstance(form.get("image"), Upload)
        if mode == "sd3":
            if form.get("model", "sd3.5-large") not in SD3_MODELS:
                return f"model: must be one of {', '.join(SD3_MODELS)}"
            wanted = form.get("mode", "text-to-image")
            if wanted not in ("text-to-image", "image-to-image"):
                return "mode: must be one of text-to-image, image-to-image"
            if (wanted == "image-to-image") != has_image:
                return "image: required in image-to-image mode and not allowed in text-to-image mode"
        if has_image and mode != "inpaint":
            try:
                strength = float(str(form.get("strength", "")))
            except ValueError:
                return "strength: is required when an image is provided"
            if not 0 <= strength <= 1:
                return "strength: must be between 0 and 1"
        return None

    # ---- Stable Image (synchronous) -----------------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.StreamResponse:
        mode = request.path.rsplit("/", 1)[1]
        form = await self._form(request)
        prompt = form.get("prompt") if form else None
        prompt = prompt if isinstance(prompt, str) else None
        if early := await self.enter(request, "submit", self._recorded(form), prompt):
            return early
        if form is None:
            return self.error(400, "content-type: must be multipart/form-data")
        if problem := self._generate_problem(mode, form):
            return self.error(400, problem)
        outcome = self._take("submit", str(prompt), OUTCOME_FAULTS)
        if outcome is Fault.JOB_FAILED:
            return self.error(500, "An unexpected server error occurred, please try again.")
        if outcome is Fault.CONTENT_POLICY and self.moderation == "reject":
            return self.error(403, "Your request was flagged by our content moderation system, as a result your "
                                   "request was denied and you were not charged.")
        width, height = image_size_for(str(form.get("aspect_ratio", "1:1")), None)
        data = b"" if outcome is Fault.EMPTY_RESULT else png_bytes(width, height, seed=len(str(prompt)))
        seed = int(str(form.get("seed", "0"))) or 1_234_567  # 0 means "random" to the vendor
        finish = "CONTENT_FILTERED" if outcome is Fault.CONTENT_POLICY else "SUCCESS"
        return self._media_answer(request, "image", f"image/{form.get('output_format', 'png')}", data, finish, seed)

    def _media_answer(self, request: web.Request, field: str, media_type: str, data: bytes, finish: str,
                      seed: int) -> web.Response:
        """Raw bytes with finish-reason/seed headers, or the JSON form when the client accepts JSON."""
        request_id = uuid.uuid4().hex
        if "application/json" in request.headers.get("Accept", ""):
            body = {field: base64.b64encode(data).decode(), "finish_reason": finish, "seed": seed}
            return web.Response(body=json.dumps(body).encode(), headers={
                "Content-Type": f"application/json; type={media_type}", "x-request-id": request_id})
        return web.Response(body=data, headers={"Content-Type": media_type, "finish-reason": finish,
                                                "seed": str(seed), "x-request-id": request_id})

    # ---- Stable Video Diffusion (LEGACY, asynchronous) ----------------------------------------------------
    async def start_video(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        if early := await self.enter(request, "submit", self._recorded(form)):
            return early
        if form is None:
            return self.error(400, "content-type: must be multipart/form-data")
        image = form.get("image")
        if not isinstance(image, Upload):
            return self.error(400, "image: is required")
        size = png_size(image.data)
        if size is not None and size not in SVD_SIZES:
            return self.error(400, "image: dimensions must be one of 1024x576, 576x1024, 768x768")
        for name, low, high in (("cfg_scale", 0, 10), ("motion_bucket_id", 1, 255)):
            try:
                if name in form and not low <= float(str(form[name])) <= high:
                    raise ValueError
            except ValueError:
                return self.error(400, f"{name}: must be between {low} and {high}")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        job = self.new_job("stable-video-diffusion", fields, None)
        del self.jobs[job.id]
        job.id = uuid.uuid4().hex + uuid.uuid4().hex  # Stability generation ids are 64 hex characters
        job.extra["aspect"] = SVD_SIZES.get(size or (1024, 576), "16:9")
        self.jobs[job.id] = job
        return web.json_response({"id": job.id})

    async def video_result(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, f"generation {request.match_info['id']} not found")
        if job.advance() != "done":
            return web.json_response({"id": job.id, "status": "in-progress"}, status=202)
        if job.outcome is Fault.JOB_FAILED:  # how a failed SVD generation answered is unconfirmed: a guess
            return self.error(500, "An unexpected server error occurred while generating the video.")
        data = b"" if job.outcome is Fault.EMPTY_RESULT else video_asset(job.extra["aspect"]).data()
        finish = "CONTENT_FILTERED" if job.outcome is Fault.CONTENT_POLICY else "SUCCESS"
        return self._media_answer(request, "video", "video/mp4", data, finish, int(job.payload.get("seed") or 0) or 42)
