"""Google Veo (video) and Imagen (images), on the Gemini API or on Vertex AI.

Gemini API (default): ``https://generativelanguage.googleapis.com/v1beta``, key in ``x-goog-api-key``
(GEMINI_API_KEY or GOOGLE_API_KEY). Veo: ``models/{m}:predictLongRunning`` -> an operation, polled with
``GET /v1beta/{operation}`` until ``done``; ``generatedSamples[].video.uri`` needs the key, so the bytes are
downloaded here (redirects followed without the key) and returned inline. Imagen: ``models/{m}:predict``.

Vertex AI, when ``provider_config`` names ``gcp_project`` (and ``location``, default ``us-central1``):
``projects/{p}/locations/{l}/publishers/google/models/{m}:predictLongRunning``, polled with ``:fetchPredictOperation``;
``response.videos[]`` carries ``bytesBase64Encoded`` (or ``gcsUri`` with ``storageUri``). Auth, first that applies:
the env var named by ``provider_config["access_token_env"]`` (e.g. ``gcloud auth print-access-token``); a
service-account key file (``provider_config["credentials_file"]`` or ``GOOGLE_APPLICATION_CREDENTIALS``), exchanged
for a token with a self-signed RS256 JWT (RFC 7523; needs ``cryptography``: ``pip install 'tarash-router[google]'``);
else the GCE metadata server (``provider_config["metadata_host"]`` overrides its address). Tokens are cached until a
minute before they expire.

Push: with ``PUBLIC_URL`` set, a Gemini API Veo submit carries ``webhookConfig: {"uris": [<router URL>]}``
(python-genai ``GenerateVideosConfig.webhook_config``); the Gemini API then posts a ``video.generated`` event
there. The router takes it as a hint only (see ``router.webhooks.inbound``). Vertex AI and Imagen: polling.

RAI filtering (``raiMediaFilteredReasons``, ``raiFilteredReason``) is a content-policy error. Image roles:
first_frame -> ``image``, last_frame -> ``lastFrame``, reference/asset -> ``referenceImages`` ``asset``, style ->
``style`` (Vertex only: the Gemini API refuses STYLE, so such a request is skipped there). Per-model support
(``VEO_MODELS``): last frame and reference images are Veo 3.1 features, audio Veo 3. A 401 on Vertex drops the
cached token and retries once with a fresh one (a rotated or revoked token).

Imagen on the Gemini API: python-genai 43ef621f (2026-08-21) stopped offering ``generate_images`` there ("only
supported in Gemini Enterprise Agent Platform mode"); the REST method is kept here, but Vertex is the surface
Google supports for Imagen now.
Sources: googleapis/python-genai ``models.py`` (``_Video_from_mldev``: ``uri`` or
``encodedVideo`` + ``encoding``; ``_VideoGenerationReferenceType_to_mldev_enum_validate``), ``operations.py``,
``_api_client.py``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import aiohttp

from providers._engine import HttpProvider, HttpRequest, VendorResponse, inline_url_inputs
from router.errors import AuthenticationError, BadProviderResponseError, ConfigurationError, ContentPolicyError
from router.fetch import FetchError, FetchPolicy, open_url, read_limited
from router.handler import PollStatus, ProviderJob
from router.models import (
    AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind, MediaType,
    VideoGenerationRequest, VideoGenerationResponse, media_bytes
)

GEMINI_BASE = "https://generativelanguage.googleapis.com/v1beta"
METADATA_HOST = "http://metadata.google.internal"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
#: Parameters the Gemini API refuses (python-genai raises for them there): sent to Vertex only.
VERTEX_ONLY = frozenset({"seed", "generateAudio"})
ROLES = {"first_frame": "image", "last_frame": "lastFrame"}
REFERENCE_TYPES = {"reference": "asset", "asset": "asset", "style": "style"}
ALL_VIDEO = frozenset({"text_to_video", "image_to_video", "first_frame", "last_frame", "reference_images", "audio",
                       "multiple_outputs"})
#: Veo model prefix -> what it supports (first match wins; an unknown, newer model gets everything and Google
#: decides). Gemini API docs: first+last frame and reference images arrived with Veo 3.1; Veo 2 has no audio.
VEO_MODELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("veo-3.1", ALL_VIDEO),
    ("veo-3.0", ALL_VIDEO - {"last_frame", "reference_images"}),
    ("veo-2.0", ALL_VIDEO - {"audio", "reference_images"}),
)

T = TypeVar("T")
_tokens: dict[str, tuple[str, float]] = {}  # token source -> (access token, expiry)


JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The token endpoint is the operator's (Google's, or the metadata server at 169.254.169.254), never a client's
#: or a vendor's answer: private addresses are expected. A token answer is a few hundred bytes.
TOKEN_FETCH = FetchPolicy(max_bytes=1024 * 1024, timeout=aiohttp.ClientTimeout(total=10), allow_private=True)
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _service_account_assertion(path: str) -> tuple[str, str]:
    """``(token_uri, signed JWT)`` for a service-account key file (RFC 7523, RS256)."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
    except ImportError as exc:
        raise ValueError("service-account keys need the cryptography package: "
                         "pip install 'tarash-router[google]'") from exc
    with open(path) as f:
        info = json.load(f)
    if info.get("type", "service_account") != "service_account":
        raise ValueError(f"a {info.get('type')!r} credentials file; only service-account key files are read "
                         "(for user credentials set provider_config access_token_env)")
    token_uri = info.get("token_uri", "https://oauth2.googleapis.com/token")
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": info.get("private_key_id")}).encode())
    claims = _b64url(json.dumps({"iss": info["client_email"], "scope": SCOPE, "aud": token_uri,
                                 "iat": now, "exp": now + 3600}).encode())
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return token_uri, f"{header}.{claims}.{_b64url(signature)}"


def _vertex(config: AnyConfig) -> bool:
    return bool(config.provider_config.get("gcp_project"))


def _image(media: MediaType) -> dict[str, str]:
    data, mime = media_bytes(media)
    return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime or "image/png"}


class GoogleProvider(HttpProvider):
    name = "google"
    api_key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    kinds = frozenset({"video", "image"})
    # Specific words only: Google's 403 for a restricted key says "... are blocked", and "rai" is in "portrait".
    content_policy_markers = ("usage guidelines", "responsible ai", "safety", "violate", "filtered")
    capabilities = {"video": ALL_VIDEO, "image": frozenset({"text_to_image", "multiple_outputs"})}
    status_map: ClassVar[dict[str, Any]] = {}
    webhook_scheme = "google"

    def webhook_supported(self, kind: Kind, config: AnyConfig) -> bool:
        # Veo on the Gemini API only: Vertex AI has no per-request webhook (python-genai refuses webhook_config
        # there: "only supported in Gemini Developer API"), and Imagen answers synchronously.
        return kind == "video" and not _vertex(config)

    def with_webhook(self, request: HttpRequest, url: str) -> HttpRequest:
        # python-genai GenerateVideosConfig.webhook_config -> top-level "webhookConfig" of the predictLongRunning
        # body (models.py _GenerateVideosConfig_to_mldev): these URIs are used instead of the project's webhooks.
        return replace(request, json={**(request.json or {}), "webhookConfig": {"uris": [url]}})

    def needs_api_key(self, config: AnyConfig) -> bool:
        return not _vertex(config)  # Vertex authenticates with OAuth tokens

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        if kind == "video":
            return next((caps for prefix, caps in VEO_MODELS if config.model.startswith(prefix)), ALL_VIDEO)
        return super().capabilities_for(kind, config)

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        if kind == "video" and not _vertex(config) and any(i["type"] == "style" for i in request.image_list):
            return "the Gemini API takes no style reference images (Vertex AI does: set provider_config gcp_project)"
        return super().unsupported_reason(kind, config, request)

    # ---- where and how ------------------------------------------------------------------------------------
    def base_url(self, config: AnyConfig) -> str:
        if not _vertex(config):
            return (config.base_url or GEMINI_BASE).rstrip("/") + "/"
        location = config.provider_config.get("location", "us-central1")
        host = config.base_url or (
            "https://aiplatform.googleapis.com" if location == "global" else f"https://{location}-aiplatform.googleapis.com")
        project = config.provider_config["gcp_project"]
        return f"{host.rstrip('/')}/v1/projects/{project}/locations/{location}/publishers/google/"

    def auth_headers(self, config: AnyConfig) -> dict[str, str]:
        if _vertex(config):
            token = _tokens.get(self._token_source(config))
            return {"Authorization": f"Bearer {token[0]}"} if token else {}
        return {"x-goog-api-key": config.api_key} if config.api_key else {}

    def read_error(self, response: VendorResponse) -> tuple[str, str | None]:
        message, _ = super().read_error(response)
        try:
            status = (response.json().get("error") or {}).get("status")
        except (ValueError, AttributeError):
            status = None
        return message, status

    def retry_after(self, response: VendorResponse) -> float | None:
        """``Retry-After`` if sent, else the ``google.rpc.RetryInfo`` ``retryDelay`` ("30s") of the error body."""
        header = super().retry_after(response)
        if header is not None or response.status != 429:
            return header
        try:
            details = response.json()["error"].get("details") or []
            delay = next(d["retryDelay"] for d in details if isinstance(d, dict) and "retryDelay" in d)
            return max(0.0, float(str(delay).removesuffix("s")))
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            return None

    def _token_source(self, config: AnyConfig) -> str:
        env = config.provider_config.get("access_token_env")
        if env:
            return f"env:{env}"
        key_file = config.provider_config.get("credentials_file") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if key_file:
            return f"file:{key_file}"
        return f"metadata:{config.provider_config.get('metadata_host', METADATA_HOST)}"

    async def _ensure_token(self, config: AnyConfig) -> None:
        """Fetch (or reuse until a minute before expiry) the OAuth token Vertex needs."""
        source = self._token_source(config)
        cached = _tokens.get(source)
        if cached and cached[1] > time.monotonic() + 60:
            return
        if source.startswith("env:"):
            token = os.environ.get(source[4:])
            if not token:
                raise ConfigurationError(f"google (Vertex): env var {source[4:]} holds no access token",
                                         provider=config.provider, model=config.model)
            _tokens[source] = (token, time.monotonic() + 3000)  # gcloud tokens live an hour
            return
        try:
            if source.startswith("file:"):
                token_uri, assertion = _service_account_assertion(source[len("file:"):])
                call = open_url(token_uri, TOKEN_FETCH, method="POST",
                                data={"grant_type": JWT_GRANT, "assertion": assertion})
            else:
                url = source[len("metadata:"):].rstrip("/") + METADATA_TOKEN_PATH
                call = open_url(url, TOKEN_FETCH, headers={"Metadata-Flavor": "Google"})
            async with call as response:
                data = json.loads(await read_limited(response, TOKEN_FETCH))
        except (FetchError, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
            where = "the service-account key file" if source.startswith("file:") else "the metadata server"
            raise ConfigurationError(f"google (Vertex): no access token from {where} ({type(exc).__name__}: {exc})",
                                     provider=config.provider, model=config.model) from exc
        _tokens[source] = (data["access_token"], time.monotonic() + float(data.get("expires_in", 3599)))

    async def _authorized(self, config: AnyConfig, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` (on Vertex: with a valid token, and once more with a new token after a 401)."""
        if not _vertex(config):
            return await call()
        await self._ensure_token(config)
        try:
            return await call()
        except AuthenticationError as exc:
            if exc.http_status != 401:
                raise
            _tokens.pop(self._token_source(config), None)  # rotated or revoked before its expiry
            await self._ensure_token(config)
            return await call()

    # ---- steps --------------------------------------------------------------------------------------------
    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        request = await inline_url_inputs(request)  # images travel as bytes
        return await self._authorized(config, lambda: super(GoogleProvider, self).submit(kind, config, request))

    async def poll(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> PollStatus:
        return await self._authorized(config, lambda: super(GoogleProvider, self).poll(kind, config, job))

    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        vertex = _vertex(config)
        instance: dict[str, Any] = {"prompt": request.prompt}
        params: dict[str, Any] = {}
        if request.aspect_ratio:
            params["aspectRatio"] = request.aspect_ratio
        if request.negative_prompt and (kind == "video" or vertex):
            params["negativePrompt"] = request.negative_prompt
        if request.seed is not None:
            params["seed"] = request.seed
        if isinstance(request, VideoGenerationRequest):
            if request.duration_seconds:
                params["durationSeconds"] = request.duration_seconds
            if request.resolution in ("720p", "1080p"):
                params["resolution"] = request.resolution
            if request.number_of_videos > 1:
                params["sampleCount"] = request.number_of_videos
            if request.generate_audio is not None:
                params["generateAudio"] = request.generate_audio
            if request.enhance_prompt is not None:
                params["enhancePrompt"] = request.enhance_prompt
            for image in request.image_list:
                if image["type"] in ROLES:
                    instance.setdefault(ROLES[image["type"]], _image(image["image"]))
                else:
                    instance.setdefault("referenceImages", []).append(
                        {"image": _image(image["image"]), "referenceType": REFERENCE_TYPES[image["type"]]})
            method = "predictLongRunning"
        else:
            assert isinstance(request, ImageGenerationRequest)
            params["sampleCount"] = request.n or 1
            params["includeRaiReason"] = True
            method = "predict"
        if not vertex:
            params = {k: v for k, v in params.items() if k not in VERTEX_ONLY}
        params.update(request.extra_params)
        return HttpRequest("POST", f"models/{config.model}:{method}", json={"instances": [instance], "parameters": params})

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> ProviderJob | AnyResponse:
        data = response.json()
        if kind == "video":
            return ProviderJob(id=data["name"])
        predictions = data.get("predictions") or []
        images = [p["bytesBase64Encoded"] for p in predictions if p.get("bytesBase64Encoded")]
        if not images:
            # We ask includeRaiReason, so a filtered image says why; silence is a bad answer, not a policy.
            reasons = [p["raiFilteredReason"] for p in predictions if p.get("raiFilteredReason")]
            if reasons:
                raise ContentPolicyError(f"google filtered the images: {'; '.join(reasons)}",
                                         provider=config.provider, model=config.model)
            raise BadProviderResponseError("google answered without images", provider=config.provider, model=config.model)
        return ImageGenerationResponse(request_id="", images=images, content_type=predictions[0].get("mimeType", "image/png"),
                                       raw_response={"predictions": len(predictions)},
                                       provider_metadata={"provider_request_id": response.request_id})

    def status_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        if _vertex(config):
            return HttpRequest("POST", f"models/{config.model}:fetchPredictOperation", json={"operationName": job.id})
        return HttpRequest("GET", job.id)

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        data = response.json()
        if not data.get("done"):
            return PollStatus(status="processing", raw=data)  # Veo reports no percentage
        if data.get("error"):
            error = data["error"]
            raise self.failure(config, f"google: {error.get('message', 'operation failed')}", job_id=job.id,
                               code=str(error.get("code")), raw=data)
        result = data.get("response") or {}
        reasons = (result.get("generateVideoResponse") or result).get("raiMediaFilteredReasons")
        samples = (result.get("generateVideoResponse") or {}).get("generatedSamples") or result.get("videos")
        if not samples and reasons:
            raise ContentPolicyError(f"google filtered the video: {'; '.join(reasons)}", provider=config.provider,
                                     model=config.model, provider_request_id=job.id)
        return PollStatus(status="completed", raw=data)

    async def fetch_result(self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob,
                           status: PollStatus) -> AnyResponse:
        result = status.raw.get("response") or {}
        samples = (result.get("generateVideoResponse") or {}).get("generatedSamples") or result.get("videos") or []
        if not samples:
            raise BadProviderResponseError("google operation finished without videos", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        sample = samples[0].get("video", samples[0])
        meta: dict[str, Any] = {"provider_request_id": job.id}
        inline = sample.get("bytesBase64Encoded") or sample.get("encodedVideo")  # Vertex / Gemini API spelling
        mime = sample.get("mimeType") or sample.get("encoding") or "video/mp4"
        if inline:
            video: Any = {"content": base64.b64decode(inline), "content_type": mime}
        elif sample.get("uri"):
            video = {"content": await self._download(config, sample["uri"]), "content_type": mime}
        elif sample.get("gcsUri"):
            video, meta["gcs_uri"] = sample["gcsUri"], sample["gcsUri"]
        else:
            raise BadProviderResponseError("google video sample has no media", provider=config.provider,
                                           model=config.model, provider_request_id=job.id)
        return VideoGenerationResponse(request_id="", video=video, content_type=mime,
                                       aspect_ratio=getattr(request, "aspect_ratio", None),
                                       duration=float(request.duration_seconds) if getattr(request, "duration_seconds", None) else None,
                                       raw_response={"name": status.raw.get("name"), "done": True}, provider_metadata=meta)

    async def _download(self, config: AnyConfig, uri: str) -> bytes:
        """The file URI needs our key; its redirect target must not get it."""
        response = await self.send(config, HttpRequest("GET", uri, expect="bytes", follow_redirects=False), "result")
        if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
            location = aiohttp.client.URL(uri).join(aiohttp.client.URL(response.headers["Location"]))
            return (await self.download(config, str(location)))[0]
        return response.body
