"""OpenAI Images and Sora videos (vendor-apis.md §2; openai-python ``resources/videos.py``,
``types/video.py``, ``_client.py``), and the same handlers on Azure OpenAI's URL shapes (§3)."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from providers._mock_media import png_bytes, video_asset
from tests.emulators._base import Emulator, Fault, Job

_PORTRAIT = {"720x1280", "1024x1792"}


class OpenAIEmulator(Emulator):
    name = "openai"
    prefix = "/v1"
    video_prefix = "/v1"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.prefix}/images/generations", self.images)
        router.add_post(f"{self.prefix}/images/edits", self.images)
        self.add_video_routes(router, self.video_prefix)

    def add_video_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(f"{prefix}/videos", self.create_video)
        router.add_get(f"{prefix}/videos/{{id}}", self.get_video)
        router.add_get(f"{prefix}/videos/{{id}}/content", self.content)
        router.add_delete(f"{prefix}/videos/{{id}}", self.delete_video)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "invalid_request_error")
        if status == 401:
            message, code = "Incorrect API key provided. You can find your API key at the dashboard.", "invalid_api_key"
        if status >= 500:
            kind = "server_error"
        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}},
                                 status=status, headers={"x-request-id": "req_err"})

    async def _fields(self, request: web.Request) -> dict[str, Any]:
        if request.content_type.startswith("multipart/"):
            fields: dict[str, Any] = {}
            async for part in await request.multipart():
                if part.filename:
                    fields[part.name or "file"] = {"filename": part.filename, "bytes": len(await part.read()),
                                                   "content_type": part.headers.get("Content-Type")}
                else:
                    fields[part.name or ""] = await part.text()
            return fields
        return await request.json()  # type: ignore[no-any-return]

    # ---- images (synchronous) -----------------------------------------------------------------------------
    async def images(self, request: web.Request) -> web.StreamResponse:
        fields = await self._fields(request)
        prompt = str(fields.get("prompt", ""))
        if early := await self.enter(request, "submit", fields, prompt):
            return early
        if not prompt:
            return self.error(400, "you must provide a prompt", "missing_required_parameter")
        outcome = self._take("submit", prompt, frozenset({Fault.CONTENT_POLICY, Fault.EMPTY_RESULT}))
        if outcome is Fault.CONTENT_POLICY:
            return self.error(400, "Your request was rejected as a result of our safety system.", "content_policy_violation")
        model = str(fields.get("model") or request.match_info.get("deployment", "dall-e-2"))
        n = int(fields.get("n") or 1)
        b64 = model.startswith("gpt-image") or fields.get("response_format") == "b64_json"
        data = []
        for i in range(0 if outcome is Fault.EMPTY_RESULT else n):
            item: dict[str, Any] = (
                {"b64_json": base64.b64encode(png_bytes(32, 32, seed=i)).decode()} if b64
                else {"url": f"{self.url}/_media/image-{i}.png"}
            )
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed rendering of {prompt}"
            data.append(item)
        return web.json_response({"created": int(time.time()), "data": data}, headers={"x-request-id": "req_img_1"})

    # ---- videos (Sora 2) ----------------------------------------------------------------------------------
    def _video(self, job: Job, status: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": job.id, "object": "video", "model": job.model, "status": status,
            "progress": 100 if status == "completed" else int(job.progress * 100) if status == "in_progress" else 0,
            "created_at": 1758941485, "completed_at": None, "expires_at": None, "prompt": job.payload.get("prompt"),
            "seconds": str(job.payload.get("seconds", "4")), "size": job.payload.get("size", "720x1280"),
            "remixed_from_video_id": None, "error": None,
        }
        if status == "failed":
            body["error"] = (
                {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}
                if job.outcome is Fault.CONTENT_POLICY  # code wording is a guess (vendor-apis.md §2b: unconfirmed)
                else {"code": "internal_error", "message": "Video generation failed."}
            )
        return body

    async def create_video(self, request: web.Request) -> web.StreamResponse:
        fields = await self._fields(request)
        prompt = str(fields.get("prompt", ""))
        if early := await self.enter(request, "submit", fields, prompt):
            return early
        if not prompt:
            return self.error(400, "Missing required parameter: 'prompt'.", "missing_required_parameter")
        if fields.get("seconds") and str(fields["seconds"]) not in ("4", "8", "12"):
            return self.error(400, "Invalid value for 'seconds': expected one of '4', '8', '12'.", "invalid_value")
        job = self.new_job(str(fields.get("model", "sora-2")), fields, prompt)
        return web.json_response(self._video(job, "queued"))

    async def get_video(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "Video not found", "not_found")
        state = job.advance()
        status = {"queued": "queued", "running": "in_progress", "cancelled": "failed"}.get(state, "completed")
        if state == "done" and job.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED):
            status = "failed"
        return web.json_response(self._video(job, status), headers={"openai-poll-after-ms": "10"})

    async def content(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "result", job=job):
            return early
        if job is None or job.polls < job.polls_needed or job.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED):
            return self.error(404, "Video content is not available", "not_found")
        if job.outcome is Fault.EMPTY_RESULT:
            return web.Response(body=b"", content_type="video/mp4")
        ratio = "9:16" if job.payload.get("size", "720x1280") in _PORTRAIT else "16:9"
        return web.Response(body=video_asset(ratio).data(), content_type="video/mp4")

    async def delete_video(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return self.error(404, "Video not found", "not_found")
        job.cancelled = True
        return web.json_response({"id": job.id, "deleted": True, "object": "video.deleted"})


class AzureOpenAIEmulator(OpenAIEmulator):
    """Azure: images on the classic deployments API (``?api-version`` required), Sora on the v1 API."""

    name = "azure-openai"
    video_prefix = "/openai/v1"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/openai/deployments/{deployment}/images/generations", self.azure_images)
        router.add_post("/openai/deployments/{deployment}/images/edits", self.azure_images)
        self.add_video_routes(router, self.video_prefix)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("api-key") == self.api_key

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 401:  # Azure's own 401 shape
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                                "key or wrong API endpoint."}}, status=401)
        return super().error(status, message, code)

    async def azure_images(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        return await self.images(request)
