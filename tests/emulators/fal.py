"""fal queue API (vendor-apis.md §1; fal_client client.py): submit, status, result, cancel (PUT).

Status/result/cancel URLs drop the model's subpath, as the real queue does; the submit answer carries them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.emulators._base import Emulator, Fault, Job

VIDEO_WORDS = ("veo", "kling", "wan", "minimax", "hailuo", "seedance", "video", "sora", "ltx", "luma", "pixverse")


class FalEmulator(Emulator):
    name = "fal"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/{owner}/{alias}/requests/{id}/status", self.status)
        router.add_get("/{owner}/{alias}/requests/{id}", self.result)
        router.add_put("/{owner}/{alias}/requests/{id}/cancel", self.cancel)
        router.add_post("/{model:.+}", self.submit)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Key {self.api_key}"

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 422:  # FastAPI-style validation (fal docs "Model Errors")
            body: dict[str, Any] = {"detail": [{"loc": ["body", "prompt"], "msg": message, "type": "value_error"}]}
        else:
            body = {"detail": message, "error_type": code}
        return web.json_response(body, status=status, headers={"x-fal-request-id": "fal-req-err"})

    def _base(self, model: str) -> str:
        owner, alias = model.split("/")[:2]
        return f"{self.url}/{owner}/{alias}"

    async def submit(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        try:
            payload = await request.json()
        except ValueError:
            return self.error(422, "body is not JSON")
        if early := await self.enter(request, "submit", payload, payload.get("prompt")):
            return early
        if not isinstance(payload.get("prompt"), str):
            return self.error(422, "field required")
        job = self.new_job(model, payload, payload["prompt"])
        base = f"{self._base(model)}/requests/{job.id}"
        return web.json_response({"request_id": job.id, "response_url": base, "status_url": f"{base}/status",
                                  "cancel_url": f"{base}/cancel"})

    def _job(self, request: web.Request) -> Job | None:
        return self.jobs.get(request.match_info["id"])

    async def status(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "Request not found")
        state = job.advance()
        logs = [{"message": f"step {job.polls}", "level": "INFO", "source": "user", "timestamp": "2026-01-01T00:00:00Z"}]
        response_url = f"{self._base(job.model)}/requests/{job.id}"
        if state == "queued":
            return web.json_response({"status": "IN_QUEUE", "queue_position": job.polls_needed - job.polls,
                                      "response_url": response_url})
        if state == "running":
            return web.json_response({"status": "IN_PROGRESS", "logs": logs, "response_url": response_url})
        body: dict[str, Any] = {"status": "COMPLETED", "logs": logs, "metrics": {"inference_time": 1.5},
                                "response_url": response_url}
        # A failed fal request still says COMPLETED, with error/error_type set (fal_client _parse_status).
        if state == "cancelled":
            body.update(error="Request was cancelled", error_type="request_cancelled")
        elif job.outcome is Fault.CONTENT_POLICY:
            # error_type wording is a guess: fal documents content checks as a 422 content_policy_violation.
            body.update(error="The content could not be processed because it violates the content policy",
                        error_type="content_policy_violation")
        elif job.outcome is Fault.JOB_FAILED:
            body.update(error="Runner disconnected", error_type="runner_disconnected")
        return web.json_response(body)

    async def result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "result", job=job):
            return early
        if job is None:
            return self.error(404, "Request not found")
        if job.cancelled or job.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED):
            return self.error(422 if job.outcome is Fault.CONTENT_POLICY else 500, "request failed",
                              "content_policy_violation" if job.outcome is Fault.CONTENT_POLICY else "runner_disconnected")
        if job.polls < job.polls_needed:
            return self.error(400, "Request is still in progress")
        if any(word in job.model for word in VIDEO_WORDS):
            video = None if job.outcome is Fault.EMPTY_RESULT else {
                "url": self.media_url("video", job, job.payload.get("aspect_ratio")), "content_type": "video/mp4",
                "file_name": "output.mp4", "file_size": 8000}
            return web.json_response({"video": video})
        count = int(job.payload.get("num_images", 1))
        images = [] if job.outcome is Fault.EMPTY_RESULT else [
            {"url": self.media_url("image", job), "width": 64, "height": 64, "content_type": "image/png"}
            for _ in range(count)]
        return web.json_response({"images": images, "seed": job.payload.get("seed", 42), "has_nsfw_concepts": [False] * count,
                                  "prompt": job.payload["prompt"], "timings": {"inference": 0.5}})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return web.json_response({"status": "NOT_FOUND"}, status=404)
        if job.polls >= job.polls_needed:
            return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
        job.cancelled = True
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)
