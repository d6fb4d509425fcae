"""Luma Dream Machine API (lumalabs/lumaai-python @ c00ac17 ``resources/generations/*.py``,
``types/generation.py``, ``types/generations/{video,image}_create_params.py``; lumalabs/lumaai-api
``openapi.yaml``: 201 on create, 204 on delete, ``{"detail"}`` errors).

Under ``/dream-machine/v1`` with ``Authorization: Bearer <key>``: ``POST /generations/video`` (and the pre-2025-05
``POST /generations``), ``POST /generations/image`` -> a Generation (201); ``GET /generations/{id}`` goes
``queued`` -> ``dreaming`` -> ``completed`` (``assets.video`` / ``assets.image``) or ``failed``
(``failure_reason``), with the create body echoed in ``request``; ``DELETE /generations/{id}`` -> 204, after which
the generation is gone (404). ``GET /generations?limit=&offset=`` lists without advancing anything.

Keyframes are ``{"type": "image", "url"}`` or ``{"type": "generation", "id"}``; the latter (how "extend" works)
must name a completed video generation of this emulator. Body errors are FastAPI/pydantic-style 422
``{"detail": [{"type", "loc", "msg", "input"}]}`` (a guess: the SDK maps 422 and Luma is a FastAPI service);
semantic errors are 400 ``{"detail": "..."}``. Failure reasons are guesses (Luma does not document them).

Callbacks (lumaai-python ``generations.create(callback_url=)``; Luma changelog "Callbacks", v1.1.0): the Generation
object is POSTed to ``callback_url`` when it is dreaming, completed or failed. Unsigned: Luma documents no
signature (here: one delivery when it ends; an EARLY one while dreaming).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

from aiohttp import web

from tests.emulators._base import Emulator, Fault, Job

PREFIX = "/dream-machine/v1"
VIDEO_MODELS = ("ray-1-6", "ray-2", "ray-flash-2")
IMAGE_MODELS = ("photon-1", "photon-flash-1")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
_SAMPLE_ASPECT = {"3:4": "9:16", "9:21": "9:16"}  # Luma ratios without a sample video of their own
MODERATION_REASON = "400: prompt not allowed because advanced moderation failed"  # guess
FAILURE_REASON = "Job failed"  # guess


def _literal(field: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    expected = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"
    return {"type": "literal_error", "loc": ["body", field], "msg": f"Input should be {expected}", "input": value,
            "ctx": {"expected": expected}}


def _missing(field: str) -> dict[str, Any]:
    return {"type": "missing", "loc": ["body", field], "msg": "Field required", "input": None}


class LumaEmulator(Emulator):
    name = "luma"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{PREFIX}/generations/video", self.create_video)
        router.add_post(f"{PREFIX}/generations", self.create_video)  # before lumaai-python ddc15c8 (2025-05-28)
        router.add_post(f"{PREFIX}/generations/image", self.create_image)
        router.add_get(f"{PREFIX}/generations", self.list_generations)
        router.add_get(f"{PREFIX}/generations/{{id}}", self.get_generation)
        router.add_delete(f"{PREFIX}/generations/{{id}}", self.delete_generation)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 401:
            message = "Invalid API key is provided"  # lumaai-api openapi.yaml, Error example
        return web.json_response({"detail": message}, status=status)

    def _invalid(self, issues: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"detail": issues}, status=422)

    # ---- validation ---------------------------------------------------------------------------------------
    def _keyframe_problem(self, name: str, frame: Any) -> str | None:
        if not isinstance(frame, dict) or frame.get("type") not in ("image", "generation"):
            return f"keyframes.{name}: type must be 'image' or 'generation'"
        if frame["type"] == "image":
            return None if isinstance(frame.get("url"), str) and frame["url"] else f"keyframes.{name}: url is required"
        source = self.jobs.get(str(frame.get("id")))
        if source is None or source.cancelled or source.extra["kind"] != "video":
            return f"keyframes.{name}: generation {frame.get('id')} not found"
        if self._state(source) != "completed":
            return f"keyframes.{name}: generation {source.id} is not completed"
        return None

    def _check(self, kind: str, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self._invalid([{"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be a "
                                   "valid dictionary or object to extract fields from", "input": body}])
        models = VIDEO_MODELS if kind == "video" else IMAGE_MODELS
        issues = []
        if "model" not in body:
            issues.append(_missing("model"))
        elif body["model"] not in models:
            issues.append(_literal("model", body["model"], models))
        if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
            issues.append(_literal("aspect_ratio", body["aspect_ratio"], ASPECT_RATIOS))
        if kind == "video" and "duration" in body and not re.fullmatch(r"\d+s", str(body["duration"])):
            issues.append({"type": "string_pattern_mismatch", "loc": ["body", "duration"],
                           "msg": "String should match pattern '^\\d+s$'", "input": body["duration"]})
        if kind == "image" and "format" in body and body["format"] not in ("jpg", "png"):
            issues.append(_literal("format", body["format"], ("jpg", "png")))
        keyframes = body.get("keyframes") if kind == "video" else None
        if not (isinstance(body.get("prompt"), str) and body["prompt"].strip()) and not keyframes:
            issues.append(_missing("prompt"))
        if issues:
            return self._invalid(issues)
        if keyframes is not None:
            if not isinstance(keyframes, dict) or not keyframes or set(keyframes) - {"frame0", "frame1"}:
                return self.error(400, "keyframes: only frame0 and frame1 are supported")
            for name, frame in keyframes.items():
                if problem := self._keyframe_problem(name, frame):
                    return self.error(400, problem)
        return None

    # ---- generations --------------------------------------------------------------------------------------
    @staticmethod
    def _state(job: Job) -> str:
        """The current state, without counting a poll."""
        if job.status == "done":
            return "failed" if job.outcome in (Fault.CONTENT_POLICY, Fault.JOB_FAILED) else "completed"
        return "queued" if job.polls == 0 else "dreaming"

    def _generation(self, job: Job) -> dict[str, Any]:
        kind = job.extra["kind"]
        state = self._state(job)
        assets: dict[str, Any] | None = None
        if state == "completed":
            media = job.outcome is not Fault.EMPTY_RESULT  # EMPTY_RESULT: completed, every asset null
            aspect = str(job.payload.get("aspect_ratio", "16:9"))
            video = self.media_url("video", job, _SAMPLE_ASPECT.get(aspect, aspect)) if media else None
            image = self.media_url("image", job) if media else None
            assets = {"video": video, "image": image, "progress_video": None} if kind == "video" else {"image": image}
        failure = None
        if state == "failed":
            failure = MODERATION_REASON if job.outcome is Fault.CONTENT_POLICY else FAILURE_REASON
        return {"id": job.id, "generation_type": kind, "state": state, "failure_reason": failure,
                "created_at": job.extra["created"], "model": job.model, "assets": assets,
                "request": {**job.payload, "generation_type": kind}}

    async def _create(self, request: web.Request, kind: str) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if early := await self.enter(request, "submit", body, prompt if isinstance(prompt, str) else None):
            return early
        if problem := self._check(kind, body):
            return problem
        job = self.new_job(body["model"], body, prompt if isinstance(prompt, str) else "")
        del self.jobs[job.id]
        job.id = str(uuid.UUID(job.id))  # Luma ids are dashed UUIDs
        self.jobs[job.id] = job
        job.extra.update(kind=kind, created=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                         .replace("+00:00", "Z"))
        if isinstance(body.get("callback_url"), str):
            await self.start_webhook(job, body["callback_url"])
        if kind == "image" and body.get("sync"):  # sync mode answers with the finished generation
            job.polls = job.polls_needed
        return web.json_response(self._generation(job), status=201)

    async def create_video(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "video")

    async def create_image(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "image")

    def _job(self, request: web.Request) -> Job | None:
        job = self.jobs.get(request.match_info["id"])
        return None if job is None or job.cancelled else job

    async def get_generation(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "Generation not found")  # wording a guess
        job.advance()
        return web.json_response(self._generation(job))

    async def list_generations(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "status"):
            return early
        try:
            limit, offset = int(request.query.get("limit", 100)), int(request.query.get("offset", 0))
        except ValueError:
            return self._invalid([{"type": "int_parsing", "loc": ["query", "limit"],
                                   "msg": "Input should be a valid integer", "input": request.query.get("limit")}])
        alive = [job for job in reversed(self.jobs.values()) if not job.cancelled]  # newest first
        page = alive[offset:offset + limit]
        return web.json_response({"generations": [self._generation(job) for job in page], "count": len(page),
                                  "has_more": offset + limit < len(alive), "limit": limit, "offset": offset})

    async def delete_generation(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return self.error(404, "Generation not found")
        job.cancelled = True  # deleted: gone from GET and the list (whether it stops the work is unconfirmed)
        return web.Response(status=204)

    def webhook_message(self, job: Job) -> tuple[bytes, dict[str, str]]:
        return json.dumps(self._generation(job)).encode(), {}
