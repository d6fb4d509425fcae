"""Replicate predictions API (vendor-apis.md §4; replicate-python ``prediction.py``, ``client.py``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.emulators._base import Emulator, Fault, Job

VIDEO_WORDS = ("veo", "kling", "video", "wan", "minimax", "seedance", "hailuo", "ltx")


class ReplicateEmulator(Emulator):
    name = "replicate"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/models/{owner}/{name}/predictions", self.create)
        router.add_post("/v1/predictions", self.create)
        router.add_get("/v1/predictions/{id}", self.get)
        router.add_post("/v1/predictions/{id}/cancel", self.cancel)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        titles = {401: "Unauthenticated", 404: "Not found", 422: "Invalid input", 429: "Too many requests"}
        return web.json_response(
            {"type": f"https://replicate.com/docs/errors/{code or status}", "title": titles.get(status, "Error"),
             "status": status, "detail": message},
            status=status, content_type="application/problem+json")

    def _prediction(self, job: Job, status: str) -> dict[str, Any]:
        url = f"{self.url}/v1/predictions/{job.id}"
        output: Any = None
        error = None
        if status == "succeeded" and job.outcome is not Fault.EMPTY_RESULT:
            video = any(word in job.model for word in VIDEO_WORDS)
            output = self.media_url("video", job, job.payload.get("aspect_ratio")) if video else [
                self.media_url("image", job) for _ in range(int(job.payload.get("num_outputs", 1)))]
        elif status == "failed":
            # NSFW wording follows the messages Replicate models print (a guess: no documented code).
            error = "NSFW content detected. Try running it again, or try a different prompt." \
                if job.outcome is Fault.CONTENT_POLICY else "CUDA out of memory"
        percent = int(job.progress * 100)
        bar = "#" * (percent // 10)
        logs = f"Starting...\n {percent}%|{bar:<10}| {percent}/100 [00:01<00:01]\n"
        return {"id": job.id, "model": job.model, "version": job.extra.get("version") or "hidden", "status": status,
                "input": job.payload, "output": output, "error": error, "logs": logs,
                "metrics": {"predict_time": 1.2} if status == "succeeded" else {},
                "created_at": "2026-01-01T00:00:00Z", "urls": {"get": url, "cancel": f"{url}/cancel"}}

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "body is not JSON")
        payload = body.get("input") if isinstance(body, dict) else None
        prompt = (payload or {}).get("prompt")
        if early := await self.enter(request, "submit", body, prompt):
            return early
        if not isinstance(payload, dict) or not prompt:
            return self.error(422, "- input.prompt: Field required", "validation")
        if "owner" in request.match_info:
            model = f"{request.match_info['owner']}/{request.match_info['name']}"
        elif isinstance(body.get("version"), str):
            model = body["version"]
        else:
            return self.error(422, "version is required", "validation")
        job = self.new_job(model, payload, prompt)
        job.extra["version"] = body.get("version")
        # Prefer: wait holds the request until done: a job that needs no polls comes back finished.
        wait = request.headers.get("Prefer", "").startswith("wait")
        if wait and job.polls_needed <= 1:
            job.polls = job.polls_needed
            return web.json_response(self._prediction(job, self._status(job, "done")), status=201)
        return web.json_response(self._prediction(job, "starting"), status=201)

    def _status(self, job: Job, state: str) -> str:
        if state == "cancelled":
            return "canceled"
        if state == "done":
            return "failed" if job.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED) else "succeeded"
        return "starting" if state == "queued" else "processing"

    async def get(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "prediction not found")
        return web.json_response(self._prediction(job, self._status(job, job.advance())))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return self.error(404, "prediction not found")
        job.cancelled = True
        return web.json_response(self._prediction(job, "canceled"))
