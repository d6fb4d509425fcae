"""``HttpProvider``: the stepped handler every vendor module configures.

The engine owns what is the same for every vendor: sending with a per-call timeout on the provider's shared
connections (the lean client of ``providers._engine.wire`` for JSON and bodyless calls, aiohttp for the rest),
auth headers, turning transport failures and HTTP errors into the core error classes (with the vendor's message
and request id, scrubbed of the key), ambiguous-submit detection, and parsing failures becoming
``BadProviderResponseError``. A vendor module supplies data (base URL, auth, status map, error
reader, content-policy words) and small build/parse hooks for each step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from providers._engine import wire
from providers._engine.capabilities import missing_reason
from providers._engine.errors import first_text, for_status, looks_like_content_policy, retry_after_seconds
from providers._engine.http import FormFile, HttpRequest, Step, VendorResponse
from providers._engine.sessions import ProviderPool, pool_for
from router import json_text
from router.deadlines import connect_bound
from router.errors import (
    AmbiguousSubmitError,
    BadProviderResponseError,
    ConfigurationError,
    ContentPolicyError,
    GenerationFailedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    TarashError,
    scrub,
    secret_forms,
)
from router.handler import WEBHOOK_URL_KEY, PollStatus, ProviderHandler, ProviderJob
from router.models import AnyConfig, AnyRequest, AnyResponse, Kind, StatusType
from router.steps import submit_going_out

T = TypeVar("T")

#: Upper bound for one network call; the attempt's own ``timeout`` bounds the whole attempt.
DEFAULT_CALL_TIMEOUT = 60.0
_ABSOLUTE = ("https://", "http://")
#: Methods the lean client sends (with a JSON body or none); anything else goes through aiohttp.
_WIRE_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})

#: A relative path ``urljoin`` appends to a plain base unchanged: no scheme (no colon or dot in the first
#: segment), no leading "/", no empty, "." or ".." segment, no query, fragment or params. Nearly every call's.
_PLAIN_PATH = re.compile(r"[\w\-~%]+(?:/(?!\.\.?(?:/|$))[\w\-~%.:@=+,]+)*", re.ASCII)
#: An http(s) base URL with a host, a path of non-empty segments ending in "/", and nothing after it.
_PLAIN_BASE = re.compile(r"https?://[^/?#@;]+/(?:[^/?#;]+/)*", re.ASCII)


def join_plain(base: str, path: str) -> str | None:
    """``urljoin(base, path)`` when both are plain (see ``_PLAIN_PATH``/``_PLAIN_BASE``): ``base + path``, on
    ``base``'s host by construction, without urljoin's parsing (a few µs a call). None otherwise: then the
    caller joins with urljoin and checks the host."""
    if _PLAIN_PATH.fullmatch(path) and _PLAIN_BASE.fullmatch(base):
        return base + path
    return None


class HttpProvider(ProviderHandler):
    """Base class for vendor handlers speaking HTTP. Subclasses set the class attributes and hooks below."""

    #: Provider id as configs spell it ("fal", "azure-openai"...).
    name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    #: Vendor status value -> spec status. Unknown values are a bad response.
    status_map: ClassVar[dict[str, StatusType]] = {}
    #: Lower-case words in a vendor error that mean moderation / safety filtering.
    content_policy_markers: ClassVar[tuple[str, ...]] = ("content policy", "content_policy", "moderation", "safety", "nsfw")
    #: Response headers carrying the vendor's request id, first found wins.
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id",)
    #: Kind -> what this provider can do, in the vocabulary of ``_engine/capabilities.py``.
    capabilities: ClassVar[dict[str, frozenset[str]]] = {}
    #: REST-style job vendors (``POST`` answers ``{"id"}``, the job lives at one path): set the path, e.g.
    #: ``"tasks/{id}"``, and the default ``submitted``/``status_request``/``cancel_request`` below apply.
    job_path: ClassVar[str] = ""
    #: The method that cancels a job at ``job_path`` (None: the vendor has no cancel).
    cancel_method: ClassVar[str | None] = None
    #: ``send`` records a submit once the call holds a connection slot (see ``send``).
    announces_submit: ClassVar[bool] = True

    def capabilities_for(self, kind: Kind, config: AnyConfig) -> frozenset[str]:
        """Per-model support; the default is the provider-wide table."""
        return self.capabilities.get(kind, frozenset())

    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        if kind not in self.kinds:
            return f"{self.name} does not generate {kind}s"
        return missing_reason(kind, request, self.capabilities_for(kind, config), f"{self.name} model {config.model}")

    # ---- configuration hooks ------------------------------------------------------------------------------
    def base_url(self, config: AnyConfig) -> str:
        base = config.base_url or self.default_base_url
        if not base:
            raise ConfigurationError(f"{self.name}: no base_url configured", provider=config.provider, model=config.model)
        return base.rstrip("/") + "/"

    def auth_headers(self, config: AnyConfig) -> dict[str, str]:
        """Headers that carry the key. Default: ``Authorization: Bearer <key>``."""
        return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    def call_timeout(self, config: AnyConfig) -> float:
        return float(config.provider_config.get("request_timeout", DEFAULT_CALL_TIMEOUT))

    def read_error(self, response: VendorResponse) -> tuple[str, str | None]:
        """``(message, code)`` of a vendor error body. Default: common JSON shapes, else the raw text."""
        try:
            body = response.json()
        except ValueError:
            return response.text(300) or f"HTTP {response.status}", None
        if isinstance(body, dict):
            error = body.get("error", body)
            code = error.get("code") if isinstance(error, dict) else body.get("code") or body.get("name")
            message = first_text(error) or first_text(body.get("detail")) or first_text(body.get("errors"))
            return message or f"HTTP {response.status}", (str(code) if code is not None else None)
        return first_text(body) or f"HTTP {response.status}", None

    def retry_after(self, response: VendorResponse) -> float | None:
        """Seconds the vendor asked us to wait. Default: ``retry-after-ms`` / ``Retry-After`` headers."""
        return retry_after_seconds(response.headers)

    def is_content_policy(self, response: VendorResponse, message: str, code: str | None) -> bool:
        return looks_like_content_policy(f"{message} {code or ''}", self.content_policy_markers)

    # ---- step hooks (override per vendor) -----------------------------------------------------------------
    def submit_request(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> HttpRequest:
        raise NotImplementedError

    def with_webhook(self, request: HttpRequest, url: str) -> HttpRequest:
        """The submit asking the vendor to push the job's completion to ``url`` (vendors with a
        ``webhook_scheme`` override this)."""
        return request

    def submitted(self, kind: Kind, config: AnyConfig, request: AnyRequest, response: VendorResponse) -> ProviderJob | AnyResponse:
        """The vendor job from the submit answer, or the final response for synchronous APIs."""
        if not self.job_path:
            raise NotImplementedError
        return ProviderJob(id=response.json()["id"])

    def status_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest:
        if not self.job_path:
            raise NotImplementedError
        return HttpRequest("GET", self.job_path.format(id=job.id))

    def polled(self, kind: Kind, config: AnyConfig, job: ProviderJob, response: VendorResponse) -> PollStatus:
        raise NotImplementedError

    def result_request(self, kind: Kind, config: AnyConfig, job: ProviderJob, status: PollStatus) -> HttpRequest | None:
        """The call that fetches a finished job's result, or None when the last poll already holds it."""
        return None

    def build_response(
        self,
        kind: Kind,
        config: AnyConfig,
        request: AnyRequest,
        job: ProviderJob,
        status: PollStatus,
        result: VendorResponse | None,
    ) -> AnyResponse:
        raise NotImplementedError

    def cancel_request(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> HttpRequest | None:
        """The vendor's cancel call, or None if the vendor has none."""
        if self.job_path and self.cancel_method:
            return HttpRequest(self.cancel_method, self.job_path.format(id=job.id), expect="bytes")
        return None

    # ---- ProviderHandler steps ----------------------------------------------------------------------------
    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        http_request = self.submit_request(kind, config, request)
        if webhook_url := config.provider_config.get(WEBHOOK_URL_KEY):
            http_request = self.with_webhook(http_request, webhook_url)
        response = await self.send(config, http_request, "submit")
        return self.parse(config, response, lambda: self.submitted(kind, config, request, response))

    async def poll(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> PollStatus:
        response = await self.send(config, self.status_request(kind, config, job), "status", job_id=job.id)
        return self.parse(config, response, lambda: self.polled(kind, config, job, response), job_id=job.id)

    async def fetch_result(
        self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob, status: PollStatus
    ) -> AnyResponse:
        http_request = self.result_request(kind, config, job, status)
        result = await self.send(config, http_request, "result", job_id=job.id) if http_request else None
        return self.parse(
            config, result, lambda: self.build_response(kind, config, request, job, status, result), job_id=job.id
        )

    async def cancel(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> None:
        http_request = self.cancel_request(kind, config, job)
        if http_request is not None:
            await self.send(config, http_request, "cancel", job_id=job.id)

    # ---- helpers for hooks --------------------------------------------------------------------------------
    def map_status(self, value: Any, config: AnyConfig, job_id: str | None = None) -> StatusType:
        try:
            return self.status_map[str(value)]
        except KeyError:
            raise BadProviderResponseError(
                f"unknown {self.name} status {value!r}", provider=config.provider, model=config.model,
                provider_request_id=job_id,
            ) from None

    def failure(
        self,
        config: AnyConfig,
        message: str,
        *,
        job_id: str | None,
        code: str | None = None,
        raw: Any = None,
        error_class: type[TarashError] | None = None,
    ) -> TarashError:
        """The error for a job the vendor reports failed: content policy if its words say so."""
        if error_class is None:
            error_class = (
                ContentPolicyError
                if looks_like_content_policy(f"{message} {code or ''}", self.content_policy_markers)
                else GenerationFailedError
            )
        return error_class(
            scrub(message, _secrets(config)), provider=config.provider, model=config.model,
            provider_request_id=job_id, code=code, raw=raw,
        )

    async def download(self, config: AnyConfig, url: str, *, with_auth: bool = False) -> tuple[bytes, str | None]:
        """Fetch result media (for vendors whose media URL needs the key, or that serve bytes only)."""
        response = await self.send(
            config, HttpRequest("GET", url, expect="bytes"), "content", auth=with_auth
        )
        return response.body, response.headers.get("Content-Type")

    # ---- the engine ---------------------------------------------------------------------------------------
    async def send(
        self, config: AnyConfig, request: HttpRequest, step: Step, *, job_id: str | None = None, auth: bool = True
    ) -> VendorResponse:
        """Send one call on the provider's session, bounded by its own timeout; map every failure."""
        base = self.base_url(config)
        url = join_plain(base, request.url)
        if url is None:
            # A vendor's absolute status/result URL: joining would give it back (a few µs on every poll).
            url = request.url if request.url.startswith(_ABSOLUTE) else urljoin(base, request.url)
            # Vendors hand us status/result URLs; our key only ever goes to the configured host. A URL starting with
            # the base (which ends in "/" after its host) is on it: no parsing (~2.4 µs a poll with unique URLs).
            if auth and not url.startswith(base) and urlsplit(url).netloc != urlsplit(base).netloc:
                raise BadProviderResponseError(
                    f"{self.name} pointed us at {urlsplit(url).netloc}, not {urlsplit(base).netloc}; "
                    "refusing to send credentials there", provider=config.provider, model=config.model,
                    provider_request_id=job_id,
                )
        headers = {**(self.auth_headers(config) if auth else {}), **request.headers}
        context = {"provider": config.provider, "model": config.model, "provider_request_id": job_id}
        pool = pool_for(self.name or config.provider)
        # A submit is recorded (``submit_going_out``) only once it holds one of the pool's slots, so it can go
        # out: a process killed while the call still queued for a connection sent nothing, and its job is
        # submitted normally after the restart rather than ended ambiguous. (Not from an aiohttp TraceConfig
        # signal: when on_connection_create_end's callback raises, a cancel during the record, aiohttp 3.14
        # leaves the new socket open.) The wait for a slot is bounded by the attempt's timeout, like the
        # connector's own queue was; the call's own timeout starts once it holds one.
        async with pool.slots:
            if step == "submit":
                await submit_going_out()
            return await self._exchange(pool, config, request, step, url, headers, context)

    async def _exchange(self, pool: ProviderPool, config: AnyConfig, request: HttpRequest, step: Step,
                        url: str, headers: dict[str, str], context: dict[str, Any]) -> VendorResponse:
        """The call itself, on a connection slot the caller holds, bounded by ``call_timeout`` (see
        ``router.deadlines``: a long one on the pool's shared timer, not a timer of its own). A JSON or
        bodyless call goes on the pool's lean client (``providers._engine.wire``), the rest through aiohttp."""
        job_id = context["provider_request_id"]
        seconds = self.call_timeout(config)
        where = wire.target(url, request.params) if request.form is None and request.method in _WIRE_METHODS else None
        try:
            if where is not None:
                response = await self._on_wire(pool, request, where, headers, seconds)
            else:
                response = await self._on_aiohttp(pool, request, url, headers, seconds)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, wire.WireConnectError) as exc:
            # Nothing reached the vendor: always safe to fall back.
            cause = exc.__cause__ if isinstance(exc, wire.WireConnectError) and exc.__cause__ else exc
            raise ProviderUnavailableError(f"cannot connect to {self.name}: {type(cause).__name__}", **context) from exc
        except (TimeoutError, aiohttp.ClientError, wire.WireError) as exc:
            if step == "submit":
                raise AmbiguousSubmitError(
                    f"{self.name} submit sent but no complete answer came back ({_describe(exc)}); "
                    "the vendor may have accepted the job",
                    **context,
                ) from exc
            error_class = ProviderTimeoutError if isinstance(exc, TimeoutError) else ProviderUnavailableError
            raise error_class(f"{self.name} {step} failed: {_describe(exc)}", **context) from exc
        if response.status >= 400:
            raise self._http_error(config, response, step, job_id)
        if request.expect == "json":
            try:
                response.json()
            except ValueError as exc:
                raise BadProviderResponseError(
                    f"{self.name} {step} answered HTTP {response.status} with a body that is not JSON: "
                    f"{scrub(response.text(120), _secrets(config))!r}",
                    **{**context, "provider_request_id": job_id or response.request_id},
                    http_status=response.status,
                ) from exc
        return response

    async def _on_wire(self, pool: ProviderPool, request: HttpRequest, where: wire.Target, headers: dict[str, str],
                       seconds: float) -> VendorResponse:
        bound, exact = pool.deadlines.limit(seconds)
        # aiohttp's ``json=``: json.dumps with its default separators, UTF-8, as application/json.
        body = None if request.json is None else json_text.dumps(request.json).encode()
        async with bound:
            raw = await pool.wire.request(
                request.method, where, headers, body, content_type="application/json" if body is not None else None,
                connect_timeout=connect_bound(seconds), timeout=exact, follow_redirects=request.follow_redirects,
            )
        return VendorResponse(status=raw.status, headers=raw.headers, body=raw.body,
                              request_id=self._request_id(raw.headers))

    async def _on_aiohttp(self, pool: ProviderPool, request: HttpRequest, url: str, headers: dict[str, str],
                          seconds: float) -> VendorResponse:
        bound, timeout = pool.deadlines.bound(seconds)
        async with bound, pool.session.request(
            request.method,
            url,
            json=request.json if request.form is None else None,
            data=_form(request.form) if request.form is not None else None,
            params=request.params,
            headers=headers,
            timeout=timeout,
            allow_redirects=request.follow_redirects,
        ) as raw:
            body = await raw.read()
            return VendorResponse(status=raw.status, headers=raw.headers, body=body,
                                  request_id=self._request_id(raw.headers))

    def parse(self, config: AnyConfig, response: VendorResponse | None, build: Callable[[], T], *, job_id: str | None = None) -> T:
        """Run a parse hook; a vendor answer of the wrong shape becomes ``BadProviderResponseError``."""
        try:
            return build()
        except TarashError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            snippet = scrub(response.text(200), _secrets(config)) if response is not None else ""
            raise BadProviderResponseError(
                f"{self.name} answered an unexpected shape ({type(exc).__name__}: {exc}): {snippet!r}",
                provider=config.provider, model=config.model,
                provider_request_id=job_id or (response.request_id if response else None),
                http_status=response.status if response else None,
            ) from exc

    def _http_error(self, config: AnyConfig, response: VendorResponse, step: Step, job_id: str | None) -> TarashError:
        message, code = self.read_error(response)
        error_class = for_status(response.status, step)
        if response.status in (400, 403, 422) and self.is_content_policy(response, message, code):
            error_class = ContentPolicyError
        return error_class(
            scrub(f"{self.name} {step} HTTP {response.status}: {message}", _secrets(config)),
            provider=config.provider,
            model=config.model,
            provider_request_id=job_id or response.request_id,
            http_status=response.status,
            retry_after=self.retry_after(response),
            code=code,
        )

    def _request_id(self, headers: Any) -> str | None:
        for name in self.request_id_headers:
            if value := headers.get(name):
                return str(value)
        return None


def _secrets(config: AnyConfig) -> list[str]:
    return list(secret_forms(config.api_key)) if config.api_key else []


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _form(fields: dict[str, str | FormFile | list[str | FormFile]]) -> aiohttp.FormData:
    # Always multipart: some vendors (Stability) require it even when there is no file.
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, FormFile):
                form.add_field(name, item.data, filename=item.filename, content_type=item.content_type)
            else:
                form.add_field(name, item)
    return form


__all__ = ["FormFile", "HttpProvider", "HttpRequest", "VendorResponse"]
