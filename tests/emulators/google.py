"""Google video and image generation on two API surfaces, plus the token endpoints a small token source uses
(googleapis/python-genai @ 66807187 ``models.py``, ``operations.py``, ``files.py``,
``_api_client.py``, ``_transformers.py``).

Gemini API (``/v1beta``, key in ``x-goog-api-key`` or ``?key=``):
  ``POST /v1beta/models/{veo}:predictLongRunning`` -> ``{"name": "models/{m}/operations/{id}"}``;
  ``GET /v1beta/models/{m}/operations/{id}``: ``done`` is absent while running (proto3 JSON drops a false bool,
  and the SDK reads it as optional), then ``response.generateVideoResponse.generatedSamples[].video.uri``;
  ``GET /v1beta/files/{id}:download?alt=media`` needs the key and answers a 302 to the bytes (the SDK downloads
  with ``follow_redirects=True``; third-party clients note the redirect); ``download_redirect=False`` serves the
  bytes directly. ``POST /v1beta/models/{imagen}:predict`` is synchronous (the SDK dropped it for the Gemini
  API in 43ef621f; kept here because the REST method is documented).
Vertex AI (``/v1`` or ``/v1beta1``, ``Authorization: Bearer <access_token>``):
  ``POST .../publishers/google/models/{m}:predictLongRunning``, polled with ``POST ...:fetchPredictOperation``
  ``{"operationName"}``; done -> ``response.videos[]`` with ``bytesBase64Encoded`` (or ``gcsUri`` under
  ``storageUri``); ``...:predict`` for Imagen.
Tokens: ``POST /token`` (RFC 7523 JWT bearer grant; structure and claims are checked, NOT the RS256 signature:
the ``cryptography`` package is not installed here) and the GCE metadata server's
``GET /computeMetadata/v1/instance/service-accounts/default/token`` (``Metadata-Flavor: Google``). Both hand out
``access_token``; change the attribute to make earlier tokens invalid.

Push (Gemini API only): a ``predictLongRunning`` body with ``webhookConfig: {"uris": [...]}`` (python-genai
``GenerateVideosConfig.webhook_config``) makes the job finish on its own and posts a ``video.generated`` event to
the first URI (``webhook_message``); Vertex refuses the field.

Failure encodings: a filtered video is ``done`` with no samples and ``raiMediaFilteredCount``/``Reasons``; a
failed job is ``done`` with ``error{code, message}`` (gRPC code 13); errors are ``{"error": {code, message,
status, details}}``. Auth answers follow Google's usual front end: Gemini without a key 403 PERMISSION_DENIED,
with a wrong key 400 INVALID_ARGUMENT/API_KEY_INVALID (quoted in many public clients), Vertex 401
UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

from aiohttp import web

from providers._mock_media import image_size_for, png_bytes, video_asset
from tests.emulators._base import OUTCOME_FAULTS, Emulator, Fault, Job

GEMINI_VIDEO_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
VERTEX_VIDEO_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"  # Vertex docs sample
#: Parameters python-genai refuses for the Gemini API (Vertex-only), so the emulator refuses them there too.
VERTEX_ONLY = ("seed", "fps", "generateAudio", "storageUri", "pubsubTopic", "mask", "compressionQuality", "labels",
               "resizeMode")
VIDEO_ASPECTS = ("16:9", "9:16")
IMAGE_ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")
# Wording a guess, in the style of Veo's filter messages.
RAI_REASON = "The prompt could not be submitted: it might violate our usage guidelines. Support codes: 90789179"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established identity). Please use API "
                 "Key or other form of API consumer identity to call this API.")
_SEE = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
_BAD_TOKEN = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
              f"valid authentication credential. {_SEE}")
_NO_TOKEN = ("Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
             f"other valid authentication credential. {_SEE}")
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class GoogleEmulator(Emulator):
    name = "google"

    def __init__(self, *, access_token: str = "ya29.emulator-access-token",
                 service_account_email: str = "emulator@tarash-test.iam.gserviceaccount.com",
                 project: str = "emulator-project", download_redirect: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.access_token = access_token
        self.service_account_email = service_account_email
        self.project = project
        self.download_redirect = download_redirect
        self.files: dict[str, tuple[str, int]] = {}  # Gemini file id -> (job id, sample index)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1beta/models/{target}", self.gemini_model)  # target = "{model}:{method}"
        router.add_get("/v1beta/models/{model}/operations/{op}", self.gemini_operation)
        router.add_get("/v1beta/files/{target}", self.gemini_download)  # target = "{id}:download"
        for version in ("v1", "v1beta1"):
            router.add_post(f"/{version}/projects/{{project}}/locations/{{location}}/publishers/google/models/"
                            "{target}", self.vertex_model)
        router.add_post("/token", self.token)
        router.add_get("/computeMetadata/v1/instance/service-accounts/default/token", self.metadata_token)
        router.add_get("/computeMetadata/v1/project/project-id", self.metadata_project)

    # ---- errors and auth ----------------------------------------------------------------------------------
    def google_error(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
        error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        return web.json_response({"error": error}, status=status)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if status == 401:
            return self.google_error(401, _BAD_TOKEN, [{"@type": _ERROR_INFO, "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                                                        "domain": "googleapis.com"}])
        if status == 429:  # quota details ride in google.rpc.RetryInfo 
            delay = f"{self.retry_after}s"
            return self.google_error(429, "Resource has been exhausted (e.g. check quota).",
                                     [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])
        return self.google_error(status, message)

    def denial(self, request: web.Request) -> web.Response | None:
        if request.path.startswith("/v1beta/"):  # Gemini API: an API key
            key = request.headers.get("x-goog-api-key") or request.query.get("key")
            if key is None:
                # A bearer token where a key belongs is read as an OAuth token and refused as one.
                if "Authorization" in request.headers:
                    return self.error(401, "")
                return self.google_error(403, _UNREGISTERED)
            if key != self.api_key:
                return self.google_error(400, "API key not valid. Please pass a valid API key.",
                                         [{"@type": _ERROR_INFO, "reason": "API_KEY_INVALID",
                                           "domain": "googleapis.com",
                                           "metadata": {"service": "generativelanguage.googleapis.com"}}])
            return None
        auth = request.headers.get("Authorization")  # Vertex AI: an OAuth2 access token
        if auth is None:
            if "x-goog-api-key" in request.headers:  # project-scoped paths take no API key (guess: express mode only)
                return self.google_error(401, "API keys are not supported by this API. Expected OAuth2 access token "
                                              "or other authentication credentials that assert a principal.",
                                         [{"@type": _ERROR_INFO, "reason": "CREDENTIALS_MISSING",
                                           "domain": "googleapis.com"}])
            return self.google_error(401, _NO_TOKEN, [{"@type": _ERROR_INFO, "reason": "CREDENTIALS_MISSING",
                                                      "domain": "googleapis.com"}])
        if auth != f"Bearer {self.access_token}":
            return self.error(401, "")
        return None

    # ---- request bodies -----------------------------------------------------------------------------------
    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    @staticmethod
    def _prompt(body: Any) -> str:
        try:
            return str(body["instances"][0].get("prompt") or "")
        except (TypeError, KeyError, IndexError, AttributeError):
            return ""

    def _check(self, body: Any, video: bool, vertex: bool) -> str | None:
        """The INVALID_ARGUMENT message for a bad predict body, or None (messages are guesses)."""
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
            return "Invalid JSON payload: `instances` must be a non-empty list."
        instance = body["instances"][0]
        params = body.get("parameters") or {}
        if not isinstance(instance, dict) or not isinstance(params, dict):
            return "Invalid JSON payload: `instances[0]` and `parameters` must be objects."
        has_prompt = isinstance(instance.get("prompt"), str) and bool(instance["prompt"].strip())
        if not has_prompt and not (video and "image" in instance):
            return "Either a text prompt or an input image is required."
        for name in ("image", "lastFrame"):
            image = instance.get(name)
            if image is not None and not (isinstance(image, dict) and ("bytesBase64Encoded" in image
                                                                        or (vertex and "gcsUri" in image))):
                return f"`{name}` needs bytesBase64Encoded{' or gcsUri' if vertex else ''}."
        aspects = VIDEO_ASPECTS if video else IMAGE_ASPECTS
        if "aspectRatio" in params and params["aspectRatio"] not in aspects:
            return f"Unsupported aspect ratio: {params['aspectRatio']}. Supported: {', '.join(aspects)}."
        count = params.get("sampleCount", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return "sampleCount must be between 1 and 4."
        if video:
            try:
                seconds = int(params.get("durationSeconds", 8))
            except (TypeError, ValueError):
                return "durationSeconds must be a number."
            if not 4 <= seconds <= 8:
                return f"Unsupported video duration {seconds} seconds: supported durations are 4 to 8."
            if not vertex:
                for name in VERTEX_ONLY:
                    if name in params:
                        return f"`{name}` isn't supported by the Gemini API."
        return None

    # ---- Gemini API ---------------------------------------------------------------------------------------
    async def gemini_model(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        body = await self._json(request)
        if early := await self.enter(request, "submit", body, self._prompt(body)):
            return early
        if method == "predictLongRunning" and model.startswith("veo-"):
            return await self._start_video(body, model, f"models/{model}", vertex=False)
        if method == "predict" and model.startswith("imagen-"):
            return self._predict_images(body, vertex=False)
        return self.google_error(404, f"models/{model} is not found for API version v1beta, or is not supported "
                                      f"for {method}. Call ListModels to see the list of available models and their "
                                      "supported methods.")

    async def gemini_operation(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["op"])
        if early := await self.enter(request, "status", job=job):
            return early
        if job is None or job.model != request.match_info["model"] or job.extra["vertex"]:
            return self.google_error(404, "Operation not found.")
        return web.json_response(self._operation(job, job.advance()))

    async def gemini_download(self, request: web.Request) -> web.StreamResponse:
        file_id, _, verb = request.match_info["target"].partition(":")
        entry = self.files.get(file_id)
        job = self.jobs.get(entry[0]) if entry else None
        if early := await self.enter(request, "result", job=job):
            return early
        if verb != "download" or request.query.get("alt") != "media":
            return self.google_error(400, "Only alt=media downloads are supported for generated files.")  # guess
        if job is None:
            return self.google_error(404, f"File files/{file_id} not found.")
        aspect = job.payload.get("parameters", {}).get("aspectRatio")
        if self.download_redirect:
            raise web.HTTPFound(self.media_url("video", job, aspect))
        return web.Response(body=video_asset(aspect).data(), content_type="video/mp4")

    # ---- Vertex AI ----------------------------------------------------------------------------------------
    async def vertex_model(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        body = await self._json(request)
        if method == "fetchPredictOperation":
            name = body.get("operationName") if isinstance(body, dict) else None
            job = self.jobs.get(str(name).rsplit("/", 1)[-1]) if isinstance(name, str) else None
            if early := await self.enter(request, "status", body, job=job):
                return early
            if not isinstance(name, str):
                return self.google_error(400, "operationName is required.")
            if job is None or job.extra["operation"] != name or job.model != model:
                return self.google_error(404, f"Operation {name} not found.")  # wording a guess
            return web.json_response(self._operation(job, job.advance()))
        if early := await self.enter(request, "submit", body, self._prompt(body)):
            return early
        prefix = request.path.split("/", 2)[2].rsplit(":", 1)[0]  # projects/.../models/{m}
        if method == "predictLongRunning" and model.startswith("veo-"):
            return await self._start_video(body, model, prefix, vertex=True)
        if method == "predict" and model.startswith("imagen-"):
            return self._predict_images(body, vertex=True)
        return self.google_error(404, f"Publisher Model `{prefix}` was not found or your project does not have "
                                      "access to it.")

    # ---- shared: Veo operations, Imagen predictions ----------------------------------------------------
    async def _start_video(self, body: Any, model: str, resource: str, vertex: bool) -> web.Response:
        if problem := self._check(body, video=True, vertex=vertex):
            return self.google_error(400, problem)
        hook = body.get("webhookConfig")
        if hook is not None and (vertex or not isinstance(hook, dict) or not isinstance(hook.get("uris"), list)
                                 or not all(isinstance(u, str) for u in hook["uris"])):
            # python-genai refuses webhook_config on Vertex before sending; what Vertex answers is a guess.
            return self.google_error(400, "Invalid JSON payload: webhookConfig" +
                                     (" isn't supported on Vertex AI." if vertex else ".uris must be a list of URIs."))
        job = self.new_job(model, body, self._prompt(body))
        job.extra.update(vertex=vertex, operation=f"{resource}/operations/{job.id}")
        if hook is not None and hook["uris"]:
            await self.start_webhook(job, hook["uris"][0])
        return web.json_response({"name": job.extra["operation"]})

    def webhook_message(self, job: Job) -> tuple[bytes, dict[str, str]]:
        """A ``video.generated`` event. Google documents the Standard Webhooks headers and, for per-request
        webhooks, an RS256 JWT signature whose claims it does not document: the signature sent here has that
        shape only (the router does not verify it). ``data.video_uri`` follows third-party guides; the other
        fields are guesses."""
        operation = self._operation(job, job.status)
        samples = ((operation.get("response") or {}).get("generateVideoResponse") or {}).get("generatedSamples") or []
        data = {"operation": job.extra["operation"], "done": bool(operation.get("done"))}
        if samples:
            data["video_uri"] = samples[0]["video"]["uri"]
        message = {"type": "video.generated", "data": data}
        body = json.dumps(message).encode()
        header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
        claims = base64.urlsafe_b64encode(json.dumps({"iat": int(time.time())}).encode()).rstrip(b"=").decode()
        return body, {"webhook-id": f"msg_{uuid.uuid4().hex}", "webhook-timestamp": str(int(time.time())),
                      "webhook-signature": f"{header}.{claims}.{base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()}"}

    def _operation(self, job: Job, state: str) -> dict[str, Any]:
        op: dict[str, Any] = {"name": job.extra["operation"]}
        if state != "done":
            return op
        op["done"] = True
        if job.outcome is Fault.JOB_FAILED:  # a google.rpc.Status with a gRPC code (13 = INTERNAL)
            op["error"] = {"code": 13, "message": "Video generation failed due to an internal error. Please retry."}
            return op
        params = job.payload.get("parameters") or {}
        count = 0 if job.outcome in (Fault.CONTENT_POLICY, Fault.EMPTY_RESULT) else int(params.get("sampleCount", 1))
        filtered = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [RAI_REASON]} \
            if job.outcome is Fault.CONTENT_POLICY else {}
        if job.extra["vertex"]:
            videos = [self._vertex_video(job, i) for i in range(count)]
            op["response"] = {"@type": VERTEX_VIDEO_TYPE, "raiMediaFilteredCount": 0, **filtered,
                              **({"videos": videos} if videos else {})}
            return op
        samples = []
        for i in range(count):
            file_id = f"{job.id[:12]}{i}"
            self.files[file_id] = (job.id, i)
            samples.append({"video": {"uri": f"{self.url}/v1beta/files/{file_id}:download?alt=media"}})
        op["response"] = {"@type": GEMINI_VIDEO_TYPE,
                          "generateVideoResponse": {**({"generatedSamples": samples} if samples else {}), **filtered}}
        return op

    def _vertex_video(self, job: Job, index: int) -> dict[str, str]:
        params = job.payload.get("parameters") or {}
        if params.get("storageUri"):
            return {"gcsUri": f"{str(params['storageUri']).rstrip('/')}/{job.id}/sample_{index}.mp4",
                    "mimeType": "video/mp4"}
        data = video_asset(params.get("aspectRatio")).data()
        return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": "video/mp4"}

    def _predict_images(self, body: Any, vertex: bool) -> web.Response:
        if problem := self._check(body, video=False, vertex=vertex):
            return self.google_error(400, problem)
        params = body.get("parameters") or {}
        outcome = self._take("submit", self._prompt(body), OUTCOME_FAULTS)
        if outcome is Fault.JOB_FAILED:
            return self.google_error(500, "Internal error encountered.")
        if outcome is Fault.CONTENT_POLICY:
            # A filtered image is an item with raiFilteredReason when asked for (includeRaiReason), else left out.
            return web.json_response({"predictions": [{"raiFilteredReason": RAI_REASON}]}
                                     if params.get("includeRaiReason") else {})
        if outcome is Fault.EMPTY_RESULT:
            return web.json_response({})
        width, height = image_size_for(params.get("aspectRatio"), None)
        predictions = []
        for i in range(int(params.get("sampleCount", 4))):  # Imagen's documented default is 4 (unverified here)
            if vertex and params.get("storageUri"):
                item = {"gcsUri": f"{str(params['storageUri']).rstrip('/')}/{uuid.uuid4().hex}/sample_{i}.png"}
            else:
                item = {"bytesBase64Encoded": base64.b64encode(png_bytes(width, height, seed=i)).decode()}
            predictions.append({**item, "mimeType": "image/png"})  # always PNG: the emulator has no JPEG encoder
        return web.json_response({"predictions": predictions})

    # ---- token endpoints ----------------------------------------------------------------------------------
    def _oauth_error(self, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=400)

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.content_type == "application/x-www-form-urlencoded" else {}
        if early := await self.enter(request, "token", {k: str(v) for k, v in form.items()}, check_auth=False):
            return early
        if form.get("grant_type") != JWT_GRANT:
            return self._oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        if problem := self._jwt_problem(str(form.get("assertion", ""))):
            return self._oauth_error("invalid_grant", problem)
        return web.json_response({"access_token": self.access_token, "expires_in": 3599, "token_type": "Bearer"})

    def _jwt_problem(self, assertion: str) -> str | None:
        """Why Google would refuse this service-account assertion (structure and claims; no signature check)."""
        parts = assertion.split(".")
        if len(parts) != 3 or not parts[2]:
            return "Invalid JWT: the assertion must be header.claims.signature."
        try:
            header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
            base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (ValueError, binascii.Error):
            return "Invalid JWT Signature."
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return "Invalid JWT: only RS256 assertions are accepted."
        if not isinstance(claims, dict):
            return "Invalid JWT: claims must be an object."
        if claims.get("iss") != self.service_account_email:
            return "Invalid grant: account not found"
        if claims.get("aud") not in (f"{self.url}/token", "https://oauth2.googleapis.com/token"):
            return "Invalid JWT: aud must be the token endpoint."
        if not claims.get("scope"):
            return "Invalid JWT: a scope claim is required."
        iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
        if not (isinstance(iat, int) and isinstance(exp, int) and 0 < exp - iat <= 3600
                and iat <= now + 300 and exp > now):
            return ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                    "Check your iat and exp values in the JWT claim.")
        return None

    async def metadata_token(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "token", check_auth=False):
            return early
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing required header: Metadata-Flavor")  # wording a guess
        return web.json_response({"access_token": self.access_token, "expires_in": 3599, "token_type": "Bearer"},
                                 headers={"Metadata-Flavor": "Google"})

    async def metadata_project(self, request: web.Request) -> web.StreamResponse:
        if early := await self.enter(request, "token", check_auth=False):
            return early
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing required header: Metadata-Flavor")
        return web.Response(text=self.project, headers={"Metadata-Flavor": "Google"})
