"""Jobs over HTTP: the native ``/v1/jobs`` API and OpenAI's ``/v1/videos``, two views of one job store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar, get_args

import aiohttp
from aiohttp import web

from router.fetch import RESULT_VIDEO, FetchError, iter_limited, open_url
from router.http import sse
from router.http.answers import json_response
from router.http.bodies import model_name, query_int, read_json, refuse_bad_text, route_request
from router.http.errors import ApiError
from router.http.keys import CLIENT, CREATE_GATE, DAEMON, SCOPES
from router.jobs import JobRecord, JobService
from router.jobs.view import delivery_view, job_view
from router.jobs.service import IdempotencyKeyReusedError, fingerprint
from router.jobs.store import JobStatus
from router.log_setup import get_logger
from router.models import Kind, media_bytes, media_form
from router.registry import get_handler
from router.routes import CONFIG_TYPES
from router.webhooks.outbound import NO_SECRET, WebhookSecretError, WebhookURLError, check_webhook_url

log = get_logger("router.webhooks")

#: An idle event stream (a job waiting in the queue, a vendor that reports nothing) gets an SSE comment this
#: often, so proxies with idle timeouts (nginx: 60 s) keep it open.
KEEPALIVE_SECONDS = 15.0
T = TypeVar("T")
JOB_STATUSES = get_args(JobStatus)
KINDS = get_args(Kind)


def _service(request: web.Request) -> JobService:
    return request.app[DAEMON].jobs


def _owner(request: web.Request) -> str | None:
    return request.get(CLIENT)


async def _visible_job(request: web.Request) -> JobRecord:
    """The job in the path, if this client may see it (its own, or any for admins); else 404."""
    job = await _service(request).get(request.match_info["id"])
    if job is None or ("admin" not in request.get(SCOPES, frozenset()) and job.owner != _owner(request)):
        raise ApiError(404, f"no job {request.match_info['id']!r}", "not_found_error", "job_not_found")
    return job


async def _create(request: web.Request, body: dict[str, Any], kind: Kind) -> JobRecord:
    """Resolve the route and create the job. An ``Idempotency-Key`` retry gets the same job back; the same
    key with a different body (or on the other create endpoint) is refused with 422. Counted by the create
    gate (``router.http.create_gate``) while it runs."""
    with request.app[CREATE_GATE].held(request):
        return await _create_held(request, body, kind)


async def _create_held(request: web.Request, body: dict[str, Any], kind: Kind) -> JobRecord:
    key = request.headers.get("Idempotency-Key")
    # The body as the client sent it (before route defaults, which a reload may change between retries); only a
    # retry is checked against it.
    sent = fingerprint(request.path, body) if key else None
    webhook_url = _webhook_url(request, body)
    route, spec_request = route_request(request.app, {k: v for k, v in body.items() if k != "webhook_url"}, kind)
    generations, client, service = request.app[DAEMON].generations, request[CLIENT], _service(request)
    # A retried POST gets its job back whatever the budget says now; a new job is checked first (402 before
    # anything is stored) and its estimate is held until it ends.
    retried = key is not None and await service.store.find_idempotent(_owner(request), key) is not None
    # The reservation's key is the job's id: the job's spend recorder ends it, here or on whichever instance
    # runs the job to its end.
    job_id = service.new_id()
    reservation = None if retried else await generations.admit(client, route, spec_request, key=job_id)
    created = False
    try:
        job, created = await service.create(route, spec_request, owner=_owner(request), idempotency_key=key,
                                            request_fingerprint=sent, webhook_url=webhook_url, job_id=job_id)
    except IdempotencyKeyReusedError as exc:
        raise ApiError(422, f"{exc}; use a new key for a new request", code="idempotency_key_reused") from None
    finally:
        if not created:  # no job of that id runs
            await generations.release(client, reservation)
    return job


def _webhook_url(request: web.Request, body: dict[str, Any]) -> str | None:
    """The body's ``webhook_url``, checked now (a URL the router will not call is a 400 naming the field)."""
    if body.get("webhook_url") is None:
        return None
    daemon = request.app[DAEMON]
    if daemon.outbound is None:
        raise ApiError(400, NO_SECRET, code="webhooks_not_configured", param="webhook_url")
    try:
        daemon.outbound.key_for(_owner(request))
    except WebhookSecretError as exc:
        if str(exc) == NO_SECRET:
            raise ApiError(400, NO_SECRET, code="webhooks_not_configured", param="webhook_url") from None
        log.warning("client_webhook_secret_missing", reason=str(exc))  # names the env var, never a value
        raise ApiError(400, "webhook_url: this client's webhook secret is not configured on the router; ask its "
                       "operator", code="webhooks_not_configured", param="webhook_url") from None
    try:
        return check_webhook_url(body["webhook_url"], allow_private=daemon.outbound.allow_private)
    except WebhookURLError as exc:
        raise ApiError(400, str(exc), code="invalid_webhook_url", param="webhook_url") from None


async def _with_delivery(request: web.Request, job: JobRecord) -> dict[str, Any]:
    """``job_view`` plus the state of the job's client webhook, if it has one."""
    view = job_view(job)
    if job.webhook_id is not None:
        message = await _service(request).store.outbox_for_job(job.id)
        if message is not None:
            view["webhook"] = delivery_view(message)
    return view


# ---- native jobs ------------------------------------------------------------------------------------------
async def create_job(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = model_name(body)
    snapshot = request.app[DAEMON].routes.current
    kind = snapshot.routes[model].kind if model in snapshot.routes else "video"
    job = await _create(request, body, kind)
    return json_response({"id": job.id, "kind": job.kind, "model": job.route, "status": job.status},
                         status=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def get_job(request: web.Request) -> web.Response:
    return json_response(await _with_delivery(request, await _visible_job(request)))


async def list_jobs(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(JOB_STATUSES)}", param="status")
    kind = request.query.get("kind") or None
    if kind is not None and kind not in KINDS:  # a typo ("videos") would otherwise list nothing, silently
        raise ApiError(400, f"kind must be one of {', '.join(KINDS)}", param="kind")
    jobs, more = await _list(request, kind=kind, status=status, route=request.query.get("model") or None)
    return json_response({"object": "list", "data": [job_view(j) for j in jobs], "has_more": more})


async def job_events(request: web.Request) -> web.StreamResponse:
    job = await _visible_job(request)
    stream = await sse.open_stream(request)
    async for item in with_keepalives(_service(request).events(job.id), KEEPALIVE_SECONDS):
        if item is None:
            await sse.keepalive(stream)
        else:
            await sse.send(stream, *item)
    await stream.write_eof()
    return stream


async def with_keepalives(items: AsyncIterator[T], every: float) -> AsyncIterator[T | None]:
    """``items``, with a ``None`` whenever nothing came for ``every`` seconds. The pending ``__anext__`` is
    waited on, never cancelled, so a quiet stretch does not close ``items``."""
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(items))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
            pending = asyncio.ensure_future(anext(items))
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await items.aclose()  # type: ignore[attr-defined]


async def cancel_job(request: web.Request) -> web.Response:
    job = await _visible_job(request)
    cancelled = await _service(request).cancel(job.id)
    return json_response(job_view(cancelled or job))


def _limit(request: web.Request) -> int:
    return max(1, min(100, query_int(request, "limit", 20)))


async def _list(request: web.Request, kind: str | None, status: str | None = None,
                route: str | None = None) -> tuple[list[JobRecord], bool]:
    """One page of the jobs this client may see, newest first, and whether more follow."""
    owner = None if "admin" in request.get(SCOPES, frozenset()) else _owner(request)
    limit = _limit(request)
    jobs = await _service(request).list(kind=kind, owner=owner, limit=limit + 1, after=request.query.get("after"),
                                        status=status, route=route)
    return jobs[:limit], len(jobs) > limit


# ---- OpenAI /v1/videos ------------------------------------------------------------------------------------
_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "21:9": 21 / 9}
_RESOLUTIONS = {360: "360p", 480: "480p", 720: "720p", 1080: "1080p", 2160: "4k"}
#: OpenAI's ``/content`` variants; only ``video`` is ever held (see video_content).
SORA_VARIANTS = ("video", "thumbnail", "spritesheet")
_OPENAI_STATUS = {"queued": "queued", "running": "in_progress", "completed": "completed", "failed": "failed",
                  "cancelled": "failed"}


def size_to_request(size: str) -> dict[str, str]:
    """``"1280x720"`` -> aspect ratio and resolution: the closest spec values."""
    match = re.fullmatch(r"([1-9]\d{0,4})x([1-9]\d{0,4})", size)
    if not match:
        raise ApiError(400, f"size must look like 1280x720 (positive width and height), got {size[:40]!r}",
                       param="size")
    width, height = int(match[1]), int(match[2])
    ratio = min(_RATIOS, key=lambda r: abs(_RATIOS[r] - width / height))
    short = min(width, height)
    resolution = _RESOLUTIONS[min(_RESOLUTIONS, key=lambda p: abs(p - short))]
    return {"aspect_ratio": ratio, "resolution": resolution}


async def _video_fields(request: web.Request) -> dict[str, Any]:
    """The create body, JSON or multipart (what the official SDK sends), as spec request fields."""
    if request.content_type.startswith("multipart/"):
        fields = await _multipart_fields(request)
    else:
        fields = await read_json(request)
    out: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("seconds", "size", "input_reference")}
    if "seconds" in fields:
        out["duration_seconds"] = _seconds(fields["seconds"])
    if fields.get("size"):
        out.update(size_to_request(str(fields["size"])))
    reference = fields.get("input_reference")
    if isinstance(reference, dict) and ("image_url" in reference or "content" in reference):
        image = reference.get("image_url") or reference
        out["image_list"] = [{"image": image, "type": "first_frame"}]
    return out


def _seconds(value: Any) -> int:
    """OpenAI's ``seconds`` ("8", or 8 from a JSON client) as whole seconds. int() alone took 5.5 as 5, true as 1
    and "５" as 5: a clip of another length than asked, silently."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,6}", value.strip()):
        return int(value)
    raise ApiError(400, "seconds must be a whole number of seconds, like \"8\"", param="seconds")


async def _multipart_fields(request: web.Request) -> dict[str, Any]:
    """A multipart create body as fields, read within ``MAX_BODY_BYTES`` (aiohttp's limit covers only
    ``read()``); anything malformed (no boundary, garbage, a nested multipart, bad text) is a 400."""
    limit = request.app[DAEMON].settings.max_body_bytes
    fields: dict[str, Any] = {}
    total = 0
    try:
        async for part in await request.multipart():
            if not isinstance(part, aiohttp.BodyPartReader):
                raise ApiError(400, "nested multipart bodies are not supported", code="invalid_multipart")
            chunks = []
            while chunk := await part.read_chunk():
                total += len(chunk)
                if total > limit:
                    raise ApiError(413, f"request body too large (limit {limit} bytes)", code="body_too_large")
                chunks.append(chunk)
            data = b"".join(chunks)
            if part.name == "input_reference" and part.filename:
                fields["input_reference"] = {"content": data,
                                             "content_type": part.headers.get("Content-Type", "image/png")}
            elif part.name:
                fields[part.name] = data.decode(part.get_charset(default="utf-8"))
    except (ValueError, LookupError, AssertionError) as exc:  # aiohttp's parser reports bad input with these
        raise ApiError(400, f"malformed multipart body: {exc}", code="invalid_multipart") from None
    refuse_bad_text(fields)
    return fields


def video_view(job: JobRecord) -> dict[str, Any]:
    request = job.request
    view: dict[str, Any] = {
        "id": job.id, "object": "video", "model": job.route, "status": _OPENAI_STATUS[job.status],
        "progress": job.progress_percent or (100 if job.status == "completed" else 0),
        "created_at": int(job.created_at.timestamp()) if job.created_at else None,
        "completed_at": int(job.updated_at.timestamp()) if job.finished and job.updated_at else None,
        "expires_at": None, "prompt": request.get("prompt"),
        "seconds": str(request.get("duration_seconds") or 4),
        "size": size_of(request), "remixed_from_video_id": None, "error": None,
    }
    if job.status == "completed" and job.result:
        view.update(delivered(job.result))  # what the provider produced wins over what was asked
    if job.error:
        view["error"] = {"code": job.error.get("code") or job.error.get("type"), "message": job.error["message"]}
    return view


def delivered(result: dict[str, Any]) -> dict[str, str]:
    """``seconds`` and ``size`` of the video a provider returned, as far as its response tells them: the
    duration it reports, and its pixel size when it reports one (else its resolution and aspect ratio)."""
    out = {}
    if isinstance(result.get("duration"), (int, float)) and result["duration"] > 0:
        out["seconds"] = f"{result['duration']:g}"
    raw = result.get("raw_response") or {}
    if isinstance(raw.get("width"), int) and isinstance(raw.get("height"), int):
        out["size"] = f"{raw['width']}x{raw['height']}"
    elif result.get("resolution") in _RESOLUTIONS.values() and result.get("aspect_ratio") in _RATIOS:
        out["size"] = size_of({"resolution": result["resolution"], "aspect_ratio": result["aspect_ratio"]})
    return out


def size_of(request: dict[str, Any]) -> str:
    """Back from aspect ratio + resolution to a ``WxH`` size (Sora's four sizes where they fit)."""
    ratio = request.get("aspect_ratio") or "16:9"
    short = {v: k for k, v in _RESOLUTIONS.items()}.get(request.get("resolution") or "720p", 720)
    sora = {("16:9", 720): "1280x720", ("9:16", 720): "720x1280", ("16:9", 1080): "1792x1024",
            ("9:16", 1080): "1024x1792"}
    if (ratio, short) in sora:
        return sora[(ratio, short)]
    long = round(short * max(_RATIOS[ratio], 1 / _RATIOS[ratio]) / 2) * 2
    return f"{long}x{short}" if _RATIOS[ratio] >= 1 else f"{short}x{long}"


async def create_video(request: web.Request) -> web.Response:
    job = await _create(request, await _video_fields(request), "video")
    return json_response(video_view(job))


async def _visible_video(request: web.Request) -> JobRecord:
    """``_visible_job``, if it is a video job: an image job is no video of OpenAI's API (404)."""
    job = await _visible_job(request)
    if job.kind != "video":
        raise ApiError(404, f"{job.id} is not a video", "not_found_error", "job_not_found")
    return job


async def get_video(request: web.Request) -> web.Response:
    job = await _visible_video(request)
    headers = {} if job.finished else {"openai-poll-after-ms": str(poll_after_ms(job))}
    return json_response(video_view(job), headers=headers)


def poll_after_ms(job: JobRecord) -> int:
    """How soon polling again is useful: the running attempt's vendor poll delay (OpenAI's SDK ``poll`` and
    ``create_and_poll`` wait this long instead of their 1 s default), at least 100 ms, at most 10 s."""
    attempt = job.vendor_job.attempt_number if job.vendor_job else len(job.attempts) + 1
    try:
        config = CONFIG_TYPES[job.kind].model_validate(job.chain[min(attempt, len(job.chain)) - 1])
        seconds = float(get_handler(config.provider).poll_delay(config))
    except (LookupError, ValueError, TypeError):  # a provider gone from this install: the SDK's own default
        seconds = 1.0
    return int(min(max(seconds, 0.1), 10.0) * 1000)


async def list_videos(request: web.Request) -> web.Response:
    jobs, more = await _list(request, kind="video")
    return json_response({"object": "list", "data": [video_view(j) for j in jobs],
                          "first_id": jobs[0].id if jobs else None, "last_id": jobs[-1].id if jobs else None,
                          "has_more": more})


async def delete_video(request: web.Request) -> web.Response:
    job = await _visible_video(request)  # an image job is no video to delete here (GET says 404 too)
    await _service(request).delete(job.id)
    return json_response({"id": job.id, "object": "video.deleted", "deleted": True})


async def video_content(request: web.Request) -> web.StreamResponse:
    """The video bytes: inline results are decoded; vendor URLs are fetched and streamed through."""
    job = await _visible_video(request)  # an image job's result has no "video" (a KeyError: 500)
    variant = request.query.get("variant", "video")
    if variant not in SORA_VARIANTS:
        raise ApiError(400, f"variant must be one of {', '.join(SORA_VARIANTS)}, got {variant!r}", param="variant")
    if job.status != "completed" or not job.result:
        raise ApiError(409 if not job.finished else 404, f"video {job.id} is {job.status}, no content yet",
                       code="video_not_ready")
    if variant != "video":
        # Providers hand back the video only; answering the MP4 under an image variant would mislead clients.
        raise ApiError(404, f"video {job.id} has no {variant}: its provider returned only the video "
                       "(variant=video)", "not_found_error", "variant_unavailable", param="variant")
    video = job.result["video"]
    local = (job.result.get("provider_metadata") or {}).get("local_copy")
    if local and Path(local).is_file():
        return web.FileResponse(local, headers={"Content-Type": "video/mp4"})
    return await send_media(request, video, "video/mp4")


async def send_media(request: web.Request, media: Any, default_type: str) -> web.StreamResponse:
    """A result's media as the response: inline media decoded, a vendor URL fetched and streamed through."""
    if isinstance(media, dict) or media_form(media) != "url":
        inline = {"content": base64.b64decode(media["content"]), "content_type": media["content_type"]} \
            if isinstance(media, dict) else media
        data, mime = media_bytes(inline)
        return web.Response(body=data, content_type=mime or default_type)
    response = web.StreamResponse(headers={"Content-Type": default_type})
    try:
        async with open_url(media, RESULT_VIDEO) as upstream:
            if upstream.content_length:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in iter_limited(upstream, RESULT_VIDEO):
                await response.write(chunk)
    except (FetchError, aiohttp.ClientError, TimeoutError) as exc:
        if response.prepared:
            raise  # mid-stream: nothing left to do but drop the connection
        expired = isinstance(exc, FetchError) and exc.status is not None
        raise ApiError(502, f"cannot fetch the provider's media: {exc}" + (" (expired?)" if expired else ""),
                       "bad_provider_response_error", "content_unavailable") from exc
    await response.write_eof()
    return response


# ---- wiring -----------------------------------------------------------------------------------------------
def setup(app: web.Application) -> None:
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{id}", get_job)
    app.router.add_get("/v1/jobs/{id}/events", job_events)
    app.router.add_delete("/v1/jobs/{id}", cancel_job)
    app.router.add_post("/v1/videos", create_video)
    app.router.add_get("/v1/videos", list_videos)
    app.router.add_get("/v1/videos/{id}", get_video)
    app.router.add_get("/v1/videos/{id}/content", video_content)
    app.router.add_delete("/v1/videos/{id}", delete_video)
