"""OpenAI Images and Sora 2 videos (openai-python ``resources/{images,videos}.py``,
``types/video*.py``, ``_client.py``), and the same handlers on Azure OpenAI's URL shapes (§3).

OpenAI (base ``/v1``, ``Authorization: Bearer <key>``):

* ``POST /images/generations`` (JSON, synchronous): ``data[].url`` or ``data[].b64_json`` per ``response_format``
  (gpt-image models: always b64_json, plus ``background``/``output_format``/``quality``/``size``/``usage``);
  ``revised_prompt`` for dall-e-3; ``n`` honoured.
* ``POST /images/edits`` (multipart: ``image`` or ``image[]`` files, optional ``mask``), same answer.
* ``POST /videos`` (multipart, what the SDK sends, or JSON), ``GET /videos``, ``GET /videos/{id}`` (progress per
  poll, ``openai-poll-after-ms`` while running), ``GET /videos/{id}/content[?variant=]`` (the ``result`` step:
  authenticated bytes), ``DELETE /videos/{id}`` (the ``cancel`` step; the video is gone afterwards).

Errors are ``{"error": {message, type, param, code}}``; a wrong key's message shows it masked, never whole.
Every answer has an ``x-request-id`` (deterministic here: ``req_img_<n>``/``req_vid_<n>``, n = requests so far).

Azure OpenAI (``api-key: <key>``): images on the classic deployments API
``/openai/deployments/{deployment}/images/{generations,edits}?api-version=<any>`` (no api-version: Azure's 404),
and on the v1 API ``/openai/v1/images/...`` (``model`` = deployment; unconfirmed); Sora on
``/openai/v1/videos...`` (no api-version needed). Azure's own bodies for 401, 404 and 429, and its
content-filter error with ``inner_error``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from providers._mock_media import video_asset
from tests.emulators._base import Emulator, Fault, Job, aspect_of, image_dims, png

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SORA_SECONDS = ("4", "8", "12")  # types/video_seconds.py
SORA_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")  # types/video_size.py
SORA_VARIANTS = ("video", "thumbnail", "spritesheet")  # types/video_download_content_params.py
KEYS_URL = "https://platform.openai.com/account/api-keys"


def masked(key: str) -> str:
    """A key as OpenAI echoes it: 8 leading and 4 trailing characters (e.g. ``sk-XG6GW****wlmi``); short keys
    are starred out entirely."""
    return f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}" if len(key) >= 16 else "*" * len(key)


def _split(size: str) -> tuple[int, int] | None:
    width, _, height = size.partition("x")
    return (int(width), int(height)) if width.isdigit() and height.isdigit() else None


async def read_fields(request: web.Request) -> Any:
    """A JSON body, or multipart fields (files as ``{"filename", "bytes", "content_type"}``; repeated names as
    lists). None when the body is not JSON."""
    if not request.content_type.startswith("multipart/"):
        try:
            return await request.json()
        except ValueError:
            return None
    fields: dict[str, Any] = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: no client of these APIs sends one
        value: Any = ({"filename": part.filename, "bytes": len(await part.read()),
                       "content_type": part.headers.get("Content-Type")} if part.filename else await part.text())
        name = part.name or ""
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


class OpenAIEmulator(Emulator):
    name = "openai"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        self.add_image_routes(router, "/v1")
        self.add_video_routes(router, "/v1")

    def add_image_routes(self, router: web.UrlDispatcher, prefix: str,
                         wrap: Callable[[Handler], Handler] = lambda handler: handler) -> None:
        router.add_post(f"{prefix}/images/generations", wrap(self.generations))
        router.add_post(f"{prefix}/images/edits", wrap(self.edits))

    def add_video_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(f"{prefix}/videos", self.create_video)
        router.add_get(f"{prefix}/videos", self.list_videos)
        router.add_get(f"{prefix}/videos/{{id}}", self.get_video)
        router.add_get(f"{prefix}/videos/{{id}}/content", self.content)
        router.add_delete(f"{prefix}/videos/{{id}}", self.delete_video)

    # ---- auth, errors, headers ----------------------------------------------------------------------------
    @staticmethod
    def openai_error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                     param: str | None = None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}},
                                 status=status)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        # Wordings, types and codes of 429/5xx as OpenAI answers them (recalled, unconfirmed).
        if status == 429:
            return self.openai_error(429, "Rate limit reached for requests. Please try again later.", "requests",
                                     "rate_limit_exceeded")
        if status == 503:
            return self.openai_error(503, "The engine is currently overloaded, please try again later.",
                                     "server_error")
        if status >= 500:
            return self.openai_error(status, "The server had an error while processing your request. Sorry about "
                                             "that!", "server_error")
        return self.openai_error(status, message, code=code)

    def no_route(self, request: web.Request, status: int) -> web.Response:
        return self.openai_error(404, f"Invalid URL ({request.method} {request.path})")  # OpenAI's wording (recalled)

    def unauthorized(self, request: web.Request) -> web.Response:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return self.openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                          "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                                          f"YOUR_KEY). You can obtain an API key from {KEYS_URL}.")
        return self.openai_error(401, f"Incorrect API key provided: {masked(key)}. You can find your API key at "
                                      f"{KEYS_URL}.", code="invalid_api_key")

    def moderation_error(self, model: str) -> web.Response:
        if model.startswith("gpt-image"):
            # Shape seen in several clients' recorded answers (find_string "moderation_blocked"), not in OpenAI docs.
            return self.openai_error(400, "Your request was rejected by the safety system.",
                                     "image_generation_user_error", "moderation_blocked")
        return self.openai_error(400, "Your request was rejected as a result of our safety system. Your prompt may "
                                      "contain text that is not allowed by our safety system.",
                                 code="content_policy_violation")

    def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        kind = "img" if "/images/" in request.path else "vid"
        response.headers["x-request-id"] = f"req_{kind}_{len(self.requests)}"

    # ---- images (synchronous) -----------------------------------------------------------------------------
    async def generations(self, request: web.Request) -> web.StreamResponse:
        body = await read_fields(request)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if early := await self.enter(request, "submit", body, prompt if isinstance(prompt, str) else None):
            return early
        if not isinstance(body, dict):
            return self.openai_error(400, "We could not parse the JSON body of your request. (HINT: This likely "
                                          "means you aren't using your HTTP library correctly.)")
        return self._images(request, body)

    async def edits(self, request: web.Request) -> web.StreamResponse:
        fields = await read_fields(request) if request.content_type.startswith("multipart/") else None
        prompt = fields.get("prompt") if isinstance(fields, dict) else None
        if early := await self.enter(request, "submit", fields, prompt if isinstance(prompt, str) else None):
            return early
        if fields is None:
            return self.openai_error(400, "Invalid Content-Type header, expected multipart/form-data.")
        if "image" not in fields and "image[]" not in fields:
            return self.openai_error(400, "Missing required parameter: 'image'.", code="missing_required_parameter",
                                     param="image")
        return self._images(request, fields)

    def _images(self, request: web.Request, fields: dict[str, Any]) -> web.StreamResponse:
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return self.openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter",
                                     param="prompt")
        model = str(fields.get("model") or request.match_info.get("deployment") or "dall-e-2")
        size = str(fields.get("size") or "auto")
        requested = (1024, 1024) if size == "auto" else _split(size)
        count = str(fields.get("n") or 1)
        if requested is None or not count.isdigit() or not 1 <= int(count) <= 10:
            bad, value = ("size", size) if requested is None else ("n", count)
            return self.openai_error(400, f"Invalid value for '{bad}': {value!r}.", code="invalid_value", param=bad)
        outcome = self._take("submit", prompt, frozenset({Fault.CONTENT_POLICY, Fault.EMPTY_RESULT, Fault.JOB_FAILED}))
        if outcome is Fault.CONTENT_POLICY:
            return self.moderation_error(model)
        if outcome is Fault.JOB_FAILED:
            return self.error(500, "")
        gpt_image = model.startswith("gpt-image")
        inline = gpt_image or fields.get("response_format") == "b64_json"
        data: list[dict[str, Any]] = []
        for i in range(0 if outcome is Fault.EMPTY_RESULT else int(count)):
            item: dict[str, Any] = ({"b64_json": base64.b64encode(png(*image_dims(*requested), i)).decode()} if inline
                                    else {"url": self.media_url("image", size=requested, index=i)})
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed rendering of {prompt}"
            data.append(item)
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if gpt_image:
            width, height = requested
            answer.update(background=fields.get("background") or "opaque", quality=fields.get("quality") or "medium",
                          output_format=fields.get("output_format") or "png", size=f"{width}x{height}",
                          usage={"input_tokens": 50, "output_tokens": 1056 * len(data),
                                 "total_tokens": 50 + 1056 * len(data),
                                 "input_tokens_details": {"image_tokens": 0, "text_tokens": 50}})
        return web.json_response(answer)

    # ---- videos (Sora 2) ----------------------------------------------------------------------------------
    def _video(self, job: Job) -> dict[str, Any]:
        state = job.status
        status = {"queued": "queued", "running": "in_progress"}.get(state, "failed" if job.failed else "completed")
        created = job.extra["created"]
        finished = created + job.polls if state == "done" else None
        error = None
        if job.failed:
            # moderation_blocked and its wording: seen in several clients' recorded Sora answers (find_string);
            # the generic failure's code is a guess.
            error = ({"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}
                     if job.outcome is Fault.CONTENT_POLICY else
                     {"code": "video_generation_failed", "message": "Video generation failed."})
        return {
            "id": job.id, "object": "video", "model": job.model, "status": status,
            "progress": {"queued": 0, "completed": 100}.get(status, round(job.progress * 100)),
            "created_at": created, "completed_at": finished,
            "expires_at": finished + 3600 if finished and not error else None,  # ~1 h (third-party docs)
            "prompt": job.prompt, "seconds": job.payload["seconds"], "size": job.payload["size"],
            "remixed_from_video_id": None, "error": error,
        }

    def _live(self, request: web.Request) -> Job | None:
        job = self.jobs.get(request.match_info["id"])
        return None if job is None or job.cancelled else job  # a deleted video is gone

    def _missing(self, request: web.Request) -> web.Response:
        return self.openai_error(404, f"Video with id '{request.match_info['id']}' not found.",
                                 code="video_not_found", param="id")  # wording a guess

    async def create_video(self, request: web.Request) -> web.StreamResponse:
        fields = await read_fields(request)
        prompt = fields.get("prompt") if isinstance(fields, dict) else None
        if early := await self.enter(request, "submit", fields, prompt if isinstance(prompt, str) else None):
            return early
        if not isinstance(fields, dict):
            return self.openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(prompt, str) or not prompt:
            return self.openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter",
                                     param="prompt")
        seconds, size = str(fields.get("seconds", "4")), str(fields.get("size", "720x1280"))
        for param, value, allowed in (("seconds", seconds, SORA_SECONDS), ("size", size, SORA_SIZES)):
            if value not in allowed:
                # Wording as OpenAI answered an invalid seconds value (quoted in a third-party fix note).
                choices = ", ".join(f"'{v}'" for v in allowed[:-1]) + f", and '{allowed[-1]}'"
                return self.openai_error(400, f"Invalid value: '{value}'. Supported values are: {choices}.",
                                         code="invalid_value", param=param)
        job = self.new_job(str(fields.get("model") or "sora-2"), {**fields, "seconds": seconds, "size": size}, prompt,
                           id_prefix="video_")
        job.extra["created"] = int(time.time())
        return web.json_response(self._video(job))

    async def list_videos(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "status"):
            return early
        videos = [job for job in self.jobs.values() if not job.cancelled]
        if request.query.get("order", "desc") == "desc":
            videos.reverse()
        if after := request.query.get("after"):
            ids = [job.id for job in videos]
            videos = videos[ids.index(after) + 1:] if after in ids else []
        limit = request.query.get("limit", "20")
        page = videos[:int(limit) if limit.isdigit() else 20]
        return web.json_response({"object": "list", "data": [self._video(job) for job in page],
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
                                  "has_more": len(videos) > len(page)})

    async def get_video(self, request: web.Request) -> web.StreamResponse:
        job = self._live(request)
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self._missing(request)
        job.advance()
        video = self._video(job)
        # The SDK's poll helper waits this long between polls (default 1000 ms); 10 keeps tests fast.
        headers = {"openai-poll-after-ms": "10"} if video["status"] in ("queued", "in_progress") else {}
        return web.json_response(video, headers=headers)

    async def content(self, request: web.Request) -> web.StreamResponse:
        job = self._live(request)
        if early := await self.enter(request, "result", job=job):
            return early
        if job is None:
            return self._missing(request)
        variant = request.query.get("variant", "video")
        if variant not in SORA_VARIANTS:
            return self.openai_error(400, f"Invalid value for 'variant': {variant!r}.", code="invalid_value",
                                     param="variant")
        if job.status != "done" or job.failed:
            return self.openai_error(404, "Video is not ready yet, use GET /v1/videos/{video_id} to check status.",
                                     code="video_not_ready")  # status and wording a guess
        if job.outcome is Fault.EMPTY_RESULT:
            return web.Response(body=b"", content_type="video/mp4")
        if variant != "video":  # thumbnail (webp) and spritesheet (jpg) at OpenAI: a PNG here (no encoder for those)
            return web.Response(body=png(*image_dims(*(_split(job.payload["size"]) or (16, 9)))),
                                content_type="image/png")
        width, height = _split(job.payload["size"]) or (16, 9)
        return web.Response(body=video_asset(aspect_of(width, height)).data(), content_type="video/mp4")

    async def delete_video(self, request: web.Request) -> web.StreamResponse:
        job = self._live(request)
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return self._missing(request)
        job.cancelled = True  # deleted; whether the real DELETE also stops a running job is unconfirmed (§2b)
        return web.json_response({"id": job.id, "deleted": True, "object": "video.deleted"})


class AzureOpenAIEmulator(OpenAIEmulator):
    """Azure OpenAI: the OpenAI handlers on Azure's URL shapes, auth header and error bodies."""

    name = "azure-openai"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        self.add_image_routes(router, "/openai/deployments/{deployment}", wrap=self._versioned)
        self.add_image_routes(router, "/openai/v1")
        self.add_video_routes(router, "/openai/v1")

    def _versioned(self, handler: Handler) -> Handler:
        """The classic deployments API needs ``?api-version=``; without it Azure answers 404 (recalled)."""

        async def versioned(request: web.Request) -> web.StreamResponse:
            if not request.query.get("api-version"):
                self.record(request, "submit")
                return self.error(404, "Resource not found")
            return await handler(request)

        return versioned

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("api-key") == self.api_key

    def unauthorized(self, request: web.Request) -> web.Response:
        return self.error(401, "")

    def no_route(self, request: web.Request, status: int) -> web.Response:
        return self.error(404, "")

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        # Azure's gateway answers these itself, as {"error": {"code": "<status>", "message"}} (recalled wording).
        if status == 401:
            message = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                       "valid key for an active subscription and use a correct regional API endpoint for your "
                       "resource.")
        elif status == 404:
            message = "Resource not found"
        elif status == 429:
            message = (f"Requests to the OpenAI API under this deployment have exceeded the call rate limit of your "
                       f"current pricing tier. Please retry after {self.retry_after} second.")
        else:
            return super().error(status, message, code)
        return web.json_response({"error": {"code": str(status), "message": message}}, status=status)

    def moderation_error(self, model: str) -> web.Response:
        # Azure's image content filter (recalled, unconfirmed): OpenAI's error plus inner_error.
        results = {name: {"filtered": name == "sexual", "severity": "high" if name == "sexual" else "safe"}
                   for name in ("hate", "self_harm", "sexual", "violence")}
        return web.json_response({"error": {
            "code": "content_policy_violation", "type": "invalid_request_error", "param": None,
            "message": "Your request was rejected as a result of our safety system. Your prompt may contain text "
                       "that is not allowed by our safety system.",
            "inner_error": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": results}}}, status=400)

    def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        super().stamp(request, response)
        response.headers["apim-request-id"] = f"00000000-0000-4000-8000-{len(self.requests):012d}"
