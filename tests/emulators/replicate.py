"""Replicate predictions API (replicate-python ``prediction.py``, ``client.py`` and the
recorded answers in its ``tests/cassettes`` at 0110c2c).

* create: ``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/deployments/{owner}/{name}/predictions``,
  ``POST /v1/predictions`` (with ``version``: a version id or ``owner/name:id``); body ``{"input": {...}}``;
  201 with the prediction. ``Prefer: wait[=N]`` (sync mode): the held request counts as one status poll, so a job
  of 0 or 1 polls comes back ``succeeded`` and a longer one ``processing``, as Replicate answers a model that
  outlasts the wait; the answer carries ``Preference-Applied`` (cassette
  ``test_predictions_create_blocking[True-10]``). No real seconds pass.
* ``GET /v1/predictions/{id}`` (one poll), ``GET /v1/predictions`` (list, no poll),
  ``POST /v1/predictions/{id}/cancel`` (a finished prediction is returned unchanged).

Prediction: status starting/processing/succeeded/failed/canceled; ``output`` a URL string for video models, a list
of URLs for image models (``num_outputs`` honoured); ``logs`` grows one tqdm line per poll (`` 50%|█████     |
2/4 [...]``, the SDK's progress regex); ``urls.get``/``urls.cancel`` absolute on the emulator. ``logs`` carry a
progress line from the first poll on, even while ``starting`` (a real booting model prints none yet).

Auth: ``Authorization: Bearer <token>`` (the SDK) or ``Token <token>`` (the older form, still in Replicate's docs
and clients). Errors are problem+json: 401 ``{"title": "Unauthenticated", "detail": "You did not pass a valid
authentication token", "status": 401}`` (cassette ``run__invalid-token``), 422 ``{"title": "Input validation
failed", "detail": "- input: prompt is required\\n", "invalid_fields": [...]}`` (answers quoted in public repos).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from typing import Any

from standardwebhooks import Webhook

from aiohttp import web

from tests.emulators._base import Emulator, Fault, Job, WebhookDelivery, is_video_model

#: The error of a failed prediction, per outcome. Both wordings are guesses: Replicate has no moderation
#: code, models print their own text ("NSFW content detected" is what common image models raise).
_FAILURES = {
    Fault.CONTENT_POLICY: "NSFW content detected. Try running it again, or try a different prompt.",
    Fault.JOB_FAILED: "Prediction failed for an unknown reason. It might have run out of memory? (E1001)",
}
_STATUS = {"queued": "starting", "running": "processing", "cancelled": "canceled"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def wait_seconds(prefer: str) -> int | None:
    """Seconds asked for by ``Prefer: wait`` (60) or ``wait=N`` (1-60); None when absent or malformed."""
    name, _, value = prefer.strip().partition("=")
    if name != "wait":
        return None
    if not value:
        return 60
    return int(value) if value.isdigit() and 1 <= int(value) <= 60 else None


class ReplicateEmulator(Emulator):
    name = "replicate"
    validation_status = 422

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/webhooks/default/secret", self.secret)
        router.add_post("/v1/models/{owner}/{name}/predictions", self.create)
        router.add_post("/v1/deployments/{owner}/{name}/predictions", self.create)
        router.add_post("/v1/predictions", self.create)
        router.add_get("/v1/predictions", self.list_predictions)
        router.add_get("/v1/predictions/{id}", self.get)
        router.add_post("/v1/predictions/{id}/cancel", self.cancel)

    # ---- auth and errors ----------------------------------------------------------------------------------
    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") in (f"Bearer {self.api_key}", f"Token {self.api_key}")

    @staticmethod
    def problem(status: int, detail: str, **members: Any) -> web.Response:
        return web.json_response({**members, "detail": detail, "status": status}, status=status,
                                 content_type="application/problem+json")

    def unauthorized(self, request: web.Request) -> web.Response:
        if "Authorization" not in request.headers:  # wording quoted from a 401 in a public issue
            return self.problem(401, "You did not pass an authentication token", title="Unauthenticated")
        return self.problem(401, "You did not pass a valid authentication token", title="Unauthenticated")

    def invalid(self, *problems: tuple[str, str, str]) -> web.Response:
        """422 for ``(field, type, description)`` problems, as Replicate's input validation answers."""
        detail = "".join(f"- {field}: {description}\n" if field else f"- {description}\n"
                         for field, _, description in problems)
        fields = [{"type": kind, "field": field, "description": description} for field, kind, description in problems]
        return self.problem(422, detail, title="Input validation failed", invalid_fields=fields)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 422:
            return self.invalid(("input.prompt", "invalid", message))
        if status == 429:  # Django REST framework's throttle wording (recalled)
            return self.problem(429, f"Request was throttled. Expected available in {self.retry_after} second.")
        if status == 404:
            return self.problem(404, "Not found.")
        return self.problem(status, message)

    # ---- predictions --------------------------------------------------------------------------------------
    def _prediction(self, job: Job) -> dict[str, Any]:
        status = _STATUS.get(job.status) or ("failed" if job.failed else "succeeded")
        terminal = status in ("succeeded", "failed", "canceled")
        url = f"{self.url}/v1/predictions/{job.id}"
        output: Any = None
        if status == "succeeded" and job.outcome is not Fault.EMPTY_RESULT:
            aspect = job.payload.get("aspect_ratio") if isinstance(job.payload.get("aspect_ratio"), str) else None
            output = self.media_url("video", job, aspect) if is_video_model(job.model) else [
                self.media_url("image", job, aspect, index=i) for i in range(job.payload.get("num_outputs", 1))]
        created = job.extra["created_at"]
        return {
            "id": job.id, "model": job.model, "version": job.extra["version"], "input": job.payload,
            "logs": "".join(f"{line}\n" for line in job.extra["logs"]), "output": output, "data_removed": False,
            "error": _FAILURES.get(job.outcome) if status == "failed" and job.outcome else None, "status": status,
            "created_at": created, "started_at": created if status != "starting" else None,
            "completed_at": job.extra.setdefault("completed_at", _now()) if terminal else None,
            "urls": {"get": url, "cancel": f"{url}/cancel", "web": f"https://replicate.com/p/{job.id}"},
            "metrics": {"predict_time": 0.5 * job.polls, "total_time": 0.5 * job.polls + 0.1} if terminal else {},
        }

    def _poll(self, job: Job) -> None:
        """One poll; a tqdm line per poll until the bar is full."""
        total = max(job.polls_needed, 1)
        if job.advance() == "cancelled" or job.polls > total:
            return
        done = job.polls
        percent = 100 * done // total
        bar = ("█" * (percent // 10)).ljust(10)
        job.extra["logs"].append(f"{percent:3d}%|{bar}| {done}/{total} [00:{done:02d}<00:{total - done:02d},  "
                                 "1.00it/s]")

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        inputs = body.get("input") if isinstance(body, dict) else None
        prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
        if early := await self.enter(request, "submit", body, prompt if isinstance(prompt, str) else None):
            return early
        if not isinstance(body, dict):
            return self.problem(400, "JSON parse error")
        if "owner" in request.match_info:
            model, version = f"{request.match_info['owner']}/{request.match_info['name']}", "hidden"  # guess
        elif isinstance(body.get("version"), str) and body["version"]:
            name, _, version = body["version"].rpartition(":")
            model = name or version  # a bare version id names no model here (Replicate would look it up)
        else:
            return self.invalid(("", "required", "version is required"))
        if not isinstance(inputs, dict):
            return self.invalid(("", "required", "input is required"))
        if not isinstance(prompt, str):
            return self.invalid(("input", "required", "prompt is required"))
        count = inputs.get("num_outputs", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4:
            return self.invalid(("input.num_outputs", "number_lte", "Must be an integer from 1 to 4"))
        job = self.new_job(model, inputs, prompt)
        job.extra.update(version=version, created_at=_now(), logs=[])
        if isinstance(body.get("webhook"), str):
            events = body.get("webhook_events_filter") or ["start", "output", "logs", "completed"]
            job.extra["webhook_events"] = events
            await self.start_webhook(job, body["webhook"])
        headers = {}
        if (wait := wait_seconds(request.headers.get("Prefer", ""))) is not None:
            self._poll(job)
            headers["Preference-Applied"] = f"wait={wait}"
        return web.json_response(self._prediction(job), status=201, headers=headers)

    async def list_predictions(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "status"):
            return early
        return web.json_response({"next": None, "previous": None,
                                  "results": [self._prediction(job) for job in reversed(self.jobs.values())]})

    async def get(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None:
            return self.error(404, "")
        self._poll(job)
        return web.json_response(self._prediction(job))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        if early := await self.enter(request, "cancel", job=job):
            return early
        if job is None:
            return self.error(404, "")
        if job.status != "done":  # a finished prediction stays as it ended
            job.cancelled = True
        return web.json_response(self._prediction(job))

    # ---- webhooks -----------------------------------------------------------------------------------------
    async def secret(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "status"):
            return early
        return web.json_response({"key": self.webhook_secret})

    def webhook_message(self, job: Job) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(self._prediction(job)).encode()
        msg_id = f"msg_{uuid.uuid4().hex}"
        signature = Webhook(self.webhook_secret).sign(msg_id, dt.datetime.now(dt.UTC), body.decode())
        return body, {"webhook-id": msg_id, "webhook-timestamp": str(int(dt.datetime.now(dt.UTC).timestamp())),
                      "webhook-signature": signature}

    def forge(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "webhook-signature": "v1," + base64.b64encode(os.urandom(32)).decode()}

    async def deliver_webhook(self, job: Job, url: str, **kwargs: Any) -> WebhookDelivery | None:
        event = "completed" if job.status == "done" else "start"
        if event not in job.extra.get("webhook_events", [event]):
            return None
        return await super().deliver_webhook(job, url, **kwargs)
