"""Runway API (runwayml/sdk-python 5.13.0 ``_client.py``, ``resources/tasks.py``,
``types/*_create_params.py``, ``types/task_retrieve_response.py``).

Every call needs ``X-Runway-Version: 2024-11-06`` (checked first: the live API answered a bad version even on
an unknown path, find_string id 16199259906; its order against the key check is a guess) and
``Authorization: Bearer <key>``. Submits answer ``{"id"}``; the task goes PENDING (THROTTLED with
``throttle=True``) -> RUNNING (``progress`` 0..1) -> SUCCEEDED (``output`` URLs) or FAILED (``failure`` +
``failureCode``). ``DELETE /v1/tasks/{id}`` cancels or deletes (204); the SDK says
such tasks "will not be able to be fetched again", so a later GET is a 404 unless ``cancelled_visible``
(then it reads CANCELLED, the union's "cancelled or deleted task" variant).

Bodies are validated per model the way Runway's zod validator answers: 400
``{"error": "Validation of body failed", "issues": [...], "docUrl": ...}`` (shape seen in public client code
quoting live answers: find_string ids 68499319791, 58201737136, 25985182203). Asset URLs are not fetched and
http/loopback URLs are allowed unless ``strict_urls`` (the live API wants https on a domain name, docs
"Inputs").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulators._base import Emulator, Fault, Job

API_VERSIONS = frozenset({"2024-11-06"})  # the only version in sdk-python 5.13.0 (2026-07)
DOC_URL = "https://docs.dev.runwayml.com/api"

_GEN4_I2V = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")
_SEEDANCE = ("992:432", "864:496", "752:560", "640:640", "560:752", "496:864", "1470:630", "1280:720", "1112:834",
             "960:960", "834:1112", "720:1280", "2206:946", "1920:1080", "1664:1248", "1440:1440", "1248:1664",
             "1080:1920", "3840:1646", "3840:2160", "3840:2880", "3840:3840", "2880:3840", "2160:3840")
_GEN4_IMAGE = ("1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440", "1808:768", "1920:1080",
               "1080:1920", "2112:912", "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720")
_GEMINI_IMAGE = ("1344:768", "768:1344", "1024:1024", "1184:864", "864:1184", "1536:672", "832:1248", "1248:832",
                 "896:1152", "1152:896")


@dataclass(frozen=True)
class ModelSpec:
    """One member of an endpoint's ``model``-discriminated union (sdk-python ``*_create_params.py``)."""

    required: tuple[str, ...]
    ratios: tuple[str, ...] | None = None  # None: the SDK types ``ratio`` as a free string or omits it
    durations: tuple[int, ...] | None = None
    last_frame: bool = False  # promptImage entries may use position "last"


#: Models per submit path, from sdk-python 5.13.0. gen3a_turbo and gen4_aleph left the SDK in June 2026.
MODELS: dict[str, dict[str, ModelSpec]] = {
    "image_to_video": {
        "gen4.5": ModelSpec(("promptImage", "promptText", "ratio", "duration"), _GEN4_I2V),
        "gen4_turbo": ModelSpec(("promptImage", "ratio"), _GEN4_I2V),
        "veo3": ModelSpec(("promptImage", "ratio", "duration"), _VEO, (8,)),
        "veo3.1": ModelSpec(("promptImage", "ratio"), _VEO, (4, 6, 8), last_frame=True),
        "veo3.1_fast": ModelSpec(("promptImage", "ratio"), _VEO, (4, 6, 8), last_frame=True),
        "seedance2": ModelSpec(("promptImage",), _SEEDANCE, last_frame=True),
    },
    "text_to_video": {
        "gen4.5": ModelSpec(("promptText", "ratio", "duration"), ("1280:720", "720:1280")),
        "veo3": ModelSpec(("promptText", "ratio", "duration"), _VEO, (8,)),
        "veo3.1": ModelSpec(("promptText", "ratio"), _VEO, (4, 6, 8)),
        "veo3.1_fast": ModelSpec(("promptText", "ratio"), _VEO, (4, 6, 8)),
        "seedance2": ModelSpec(("promptText",), _SEEDANCE),
    },
    "video_to_video": {
        "aleph2": ModelSpec(("videoUri",)),
        "seedance2": ModelSpec(("promptVideo",), _SEEDANCE),
        "gemini_omni_flash": ModelSpec(("promptText", "videoUri")),
    },
    "text_to_image": {
        "gen4_image": ModelSpec(("promptText", "ratio"), _GEN4_IMAGE),
        "gen4_image_turbo": ModelSpec(("promptText", "ratio", "referenceImages"), _GEN4_IMAGE),
        "gemini_2.5_flash": ModelSpec(("promptText", "ratio"), _GEMINI_IMAGE),
    },
}
_ASSET_FIELDS = ("promptImage", "videoUri", "promptVideo")
_ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "21:9": 21 / 9}


def aspect_of(ratio: str | None) -> str:
    """Runway's pixel ratio (``"1280:720"``) -> the nearest sample-video aspect ratio."""
    try:
        w, h = (int(v) for v in str(ratio).split(":"))
    except ValueError:
        return "16:9"
    return min(_ASPECTS, key=lambda name: abs(_ASPECTS[name] - w / h))


def _issue(path: str, message: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "path": [path], "message": message}


class RunwayEmulator(Emulator):
    name = "runway"

    def __init__(self, *, throttle: bool = False, cancelled_visible: bool = False, strict_urls: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.throttle = throttle  # report queued polls as THROTTLED instead of PENDING
        self.cancelled_visible = cancelled_visible
        self.strict_urls = strict_urls

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for endpoint in MODELS:
            router.add_post(f"/v1/{endpoint}", self.submit)
        router.add_get("/v1/tasks/{id}", self.get_task)
        router.add_delete("/v1/tasks/{id}", self.delete_task)

    # ---- auth and errors ----------------------------------------------------------------------------------
    def denial(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-Runway-Version") not in API_VERSIONS:
            # Wording seen in a live answer (find_string id 16199259906); a missing header is assumed alike.
            return web.json_response({"error": "The API version that was provided in the X-Runway-Version header "
                                               "is not valid.", "docUrl": DOC_URL}, status=400)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "")
        return None

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 401:  # docs "API Errors": "The provided API key is not valid." (body wording a guess)
            message = "The provided API key is not valid."
        if status == 400 and code == "invalid":  # an injected BAD_REQUEST reads like the validator
            return self._invalid([_issue("promptText", message, code="custom")])
        return web.json_response({"error": message, "docUrl": DOC_URL}, status=status)

    def _invalid(self, issues: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"error": "Validation of body failed", "issues": issues, "docUrl": DOC_URL},
                                 status=400)

    # ---- validation ---------------------------------------------------------------------------------------
    def _asset_issue(self, field: str, uri: Any) -> dict[str, Any] | None:
        if not isinstance(uri, str) or not uri:
            return _issue(field, "Invalid input: expected string", code="invalid_type", expected="string")
        if uri.startswith("data:"):
            head = uri.split(",", 1)[0]
            if ";base64" not in head or "/" not in head:
                return _issue(field, "Invalid data URI.", code="custom")
            return None
        allowed = ("https://",) if self.strict_urls else ("https://", "http://")
        if not uri.startswith(allowed):
            return _issue(field, "Only HTTPS URLs are allowed.", code="custom")  # docs "Troubleshooting"
        return None

    def _validate(self, endpoint: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        spec = MODELS[endpoint].get(body.get("model"))  # type: ignore[arg-type]
        if spec is None:
            return [_issue("model", "Invalid input", code="invalid_union", errors=[],
                           note="No matching discriminator", discriminator="model")]
        issues = [_issue(f, "Invalid input: expected string, received undefined", code="invalid_type",
                         expected="string") for f in spec.required if f not in body]
        if "ratio" in body and spec.ratios is not None and body["ratio"] not in spec.ratios:
            options = "|".join(f'"{r}"' for r in spec.ratios)
            issues.append(_issue("ratio", f"Invalid option: expected one of {options}", code="invalid_value",
                                 values=list(spec.ratios)))
        if "duration" in body:
            duration = body["duration"]
            if not isinstance(duration, int) or isinstance(duration, bool):
                issues.append(_issue("duration", "Invalid input: expected number", code="invalid_type",
                                     expected="number"))
            elif spec.durations is not None and duration not in spec.durations:
                issues.append(_issue("duration", f"Invalid input: expected one of {spec.durations}",
                                     code="invalid_value", values=list(spec.durations)))
        if "promptText" in body and not (isinstance(body["promptText"], str) and body["promptText"].strip()):
            issues.append(_issue("promptText", "Too small: expected string to have >=1 characters", code="too_small"))
        for field in _ASSET_FIELDS:
            if field not in body:
                continue
            value = body[field]
            if field == "promptImage" and isinstance(value, list):
                positions = ("first", "last") if spec.last_frame else ("first",)
                for item in value:
                    if not isinstance(item, dict) or item.get("position") not in positions:
                        issues.append(_issue(field, f"Invalid option: expected one of {positions}",
                                             code="invalid_value"))
                    elif issue := self._asset_issue(field, item.get("uri")):
                        issues.append(issue)
            elif issue := self._asset_issue(field, value):
                issues.append(issue)
        return issues

    # ---- handlers -----------------------------------------------------------------------------------------
    async def submit(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path.rsplit("/", 1)[1]
        try:
            body = await request.json()
        except ValueError:
            body = None
        prompt = body.get("promptText") if isinstance(body, dict) else None
        if early := await self.enter(request, "submit", body, prompt if isinstance(prompt, str) else None):
            return early
        if not isinstance(body, dict):
            return self._invalid([_issue("body", "Invalid input: expected object", code="invalid_type")])
        if issues := self._validate(endpoint, body):
            return self._invalid(issues)
        job = self.new_job(body["model"], body, prompt if isinstance(prompt, str) else "")
        job.extra.update(endpoint=endpoint, created=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                         .replace("+00:00", "Z"))
        return web.json_response({"id": job.id})  # 200 in sdk-python (the exact code is unconfirmed)

    def _task(self, job: Job, state: str) -> dict[str, Any]:
        task: dict[str, Any] = {"id": job.id, "createdAt": job.extra["created"]}
        if state == "cancelled":
            return {**task, "status": "CANCELLED"}
        if state == "queued":
            return {**task, "status": "THROTTLED" if self.throttle else "PENDING"}
        if state == "running":
            return {**task, "status": "RUNNING", "progress": round(job.progress, 3)}
        if job.outcome is Fault.CONTENT_POLICY:  # docs "Task failures": SAFETY.* means do not retry
            return {**task, "status": "FAILED", "failure": "The prompt text was flagged by content moderation.",
                    "failureCode": "SAFETY.INPUT.TEXT"}
        if job.outcome is Fault.JOB_FAILED:  # INTERNAL.BAD_OUTPUT.* per the docs; the CODE01 suffix is a guess
            return {**task, "status": "FAILED", "failure": "An internal error occurred while generating the output.",
                    "failureCode": "INTERNAL.BAD_OUTPUT.CODE01"}
        return {**task, "status": "SUCCEEDED", "output": self._output(job)}

    def _output(self, job: Job) -> list[str]:
        if job.outcome is Fault.EMPTY_RESULT:
            return []
        if job.extra["endpoint"] == "text_to_image":
            return [self.media_url("image", job)]
        return [self.media_url("video", job, aspect_of(job.payload.get("ratio")))]

    async def get_task(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None or (job.cancelled and not self.cancelled_visible):
            return self.error(404, "Task not found.")  # wording a guess
        return web.json_response(self._task(job, job.advance()))

    async def delete_task(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None or job.cancelled:
            return self.error(404, "Task not found.")
        job.cancelled = True  # cancels a PENDING/THROTTLED/RUNNING task, deletes any other
        return web.Response(status=204)
