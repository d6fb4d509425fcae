"""The daemon's two middlewares around the error middleware: access (request id, access log, HTTP metrics) and
admission (request-head guards, client auth, client rate)."""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from router.http.errors import ApiError, error_response
from router.http.keys import CLIENT, DAEMON, SCOPES
from router.http.slow_clients import BODY_NEVER_SENT
from router.ids import Ids
from router.log_setup import get_logger, redactor
from router.metrics import Metrics
from router.settings import Settings
from router.webhooks.paths import PATH_PREFIX as WEBHOOK_PATH_PREFIX
from router.webhooks.paths import redact_path

log = get_logger("router.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Reachable without a client token: probes and the metrics scrape.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The status page's static files (no data in them: the page asks for a token before it reads any).
PUBLIC_PREFIX = "/ui/"


def access_middleware(metrics: Metrics) -> Any:
    """The outermost middleware: ``X-Request-ID`` in (if sane) or a new one, bound into every log line and echoed
    out; once the answer is known, the access line (``http_request``) and the HTTP request counter, from the one
    status both report (one middleware instead of two wrapping each other)."""
    ids = Ids()

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        http_request_id = new_request_id(ids, request.headers.get("X-Request-ID", ""))
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-ID"] = http_request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-ID"] = http_request_id
            raise
        except asyncio.CancelledError:
            status = 499  # nginx's "client closed request": the client went away, or shutdown's grace ran out
            raise
        finally:
            metrics.http_request(request, status)
            log_access(request.method, request.path, status, started)

    return middleware


def new_request_id(ids: Ids, incoming: str) -> str:
    """The client's ``X-Request-ID`` if it is sane, else a new one; bound into every log line from here on."""
    http_request_id = incoming if _REQUEST_ID.match(incoming) else ids.next()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=http_request_id)
    return http_request_id


def log_access(method: str, path: str, status: int, started: float) -> None:
    """The access line (``http_request``) of a request answered ``status``, started at ``started`` (perf_counter)."""
    log.info("http_request", method=method, path=redact_path(path), status=status,
             latency_ms=round((time.perf_counter() - started) * 1000, 2))


#: Longest ``Idempotency-Key`` accepted (Stripe's limit; a key is an id, not a payload).
MAX_IDEMPOTENCY_KEY_CHARS = 255


def admission_middleware(settings: Settings, auth: AuthCheck) -> Any:
    """What a request must pass before its handler, in this order (one middleware, three checks):

    1. the head (``guard_refusal``): a body announced larger than ``MAX_BODY_BYTES``, a URL with NUL in it, a
       header that is not UTF-8, an oversized ``Idempotency-Key``;
    2. the client token (``AuthCheck``), which also names the request's client and scopes;
    3. the client's rate on the calls that start work (``rate_refusal``).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = guard_refusal(request, settings) or auth.refusal(request) or rate_refusal(request)
        expect = request.headers.get(hdrs.EXPECT) if request.version == HttpVersion11 else None
        if expect is not None:
            if refusal is None and expect.lower() != "100-continue":
                refusal = error_response(417, f"Unknown Expect: {expect[:100]}", "invalid_request_error",
                                         "invalid_request")
            if refusal is not None:
                refusal.force_close()  # its body was never sent: the connection cannot carry another request
                request[BODY_NEVER_SENT] = True
                return refusal
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # as aiohttp's own handler: the interim answer is not the response's
        return refusal if refusal is not None else await handler(request)

    return middleware


async def continue_after_admission(request: web.Request) -> None:
    """Every route's ``Expect`` handler (``create_app``): nothing. aiohttp's own answers ``100 Continue`` before
    the app's middlewares run, so a client with a bad token, or a body past ``MAX_BODY_BYTES``, was told to send
    its body (up to 32 MB) only to be refused; the admission middleware sends it once the head has passed."""


def guard_refusal(request: web.Request, settings: Settings) -> web.Response | None:
    """Refusals that need nothing but the request head: a body announced larger than ``MAX_BODY_BYTES`` (413
    at once, before a byte of it is read; the connection is closed rather than drained), and a URL with NUL in it,
    header values that are not UTF-8 or an oversized ``Idempotency-Key`` (400 instead of a failure deep inside a
    handler)."""
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        response = error_response(413, f"request body too large: {request.content_length} bytes announced, "
                                  f"the limit is {settings.max_body_bytes}", "invalid_request_error",
                                  "body_too_large")
        response.force_close()
        return response
    if "\x00" in request.path or "\x00" in request.query_string:  # both decoded: %00 anywhere in the URL
        # No id, route or client name holds one, and the PostgreSQL job store cannot even look one up (a 500).
        return error_response(400, "the URL may not contain NUL characters (%00)", "invalid_request_error",
                              "invalid_request")
    for name, value in request.headers.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # aiohttp keeps undecodable bytes as surrogates
            return error_response(400, f"header {name} is not valid UTF-8", "invalid_request_error",
                                  "invalid_header", param=name)
    if len(request.headers.get("Idempotency-Key", "")) > MAX_IDEMPOTENCY_KEY_CHARS:
        return error_response(400, f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters",
                              "invalid_request_error", "invalid_header", param="Idempotency-Key")
    return None


class AuthCheck:
    """Client bearer tokens (``API_KEYS``): sets the request's ``CLIENT`` and ``SCOPES``, or refuses it (401)."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = settings.client_tokens()
        redactor.add_values(self.tokens)

    def refusal(self, request: web.Request) -> web.Response | None:
        tokens = self.tokens
        if not tokens:
            request[CLIENT] = "anonymous"
            request[SCOPES] = frozenset({"admin"})
            return None
        if (request.path in PUBLIC_PATHS or request.path == "/ui" or request.path.startswith(PUBLIC_PREFIX)
                or request.path.startswith(WEBHOOK_PATH_PREFIX)):  # a webhook: its token and signature authenticate it
            return None
        header = request.headers.get("Authorization", "")
        if not _bearer(header):
            return error_response(401, "missing bearer token: send Authorization: Bearer <key>",
                                  "authentication_error", "missing_api_key",
                                  headers={"WWW-Authenticate": 'Bearer realm="tarash-router"'})
        identity = self.client_of(header)
        if identity is None:
            return error_response(401, "invalid bearer token", "authentication_error", "invalid_api_key",
                                  headers={"WWW-Authenticate": 'Bearer realm="tarash-router", error="invalid_token"'})
        request[CLIENT], request[SCOPES] = identity
        return None

    def client_of(self, authorization: str) -> tuple[str, frozenset[str]] | None:
        """The client name and scopes an ``Authorization`` header value proves, or None (no token matches); with
        no client tokens configured, every request is the "anonymous" admin."""
        if not self.tokens:
            return "anonymous", frozenset({"admin"})
        if not _bearer(authorization):
            return None
        presented = authorization.partition(" ")[2]
        # Constant-time compare against every configured token (no early exit on a prefix match).
        match = None
        for token, client in self.tokens.items():
            if hmac.compare_digest(presented.encode(), token.encode()):
                match = client
        return None if match is None else (match.name, match.scopes)


def _bearer(authorization: str) -> bool:
    scheme, _, presented = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(presented)


def require_admin(request: web.Request) -> None:
    if "admin" not in request.get(SCOPES, frozenset()):
        raise ApiError(403, "this endpoint needs an admin token (API_KEYS entry 'token:admin')",
                       "permission_error", "admin_required")


def rate_key(request: web.Request) -> str:
    """Whose bucket a request draws from: its client token's identity, or without client tokens (one shared
    "anonymous" identity) its remote address. Behind a reverse proxy that is the proxy's address for everyone."""
    return rate_key_of(request.get(CLIENT), request.remote)


def rate_key_of(client: str | None, remote: str | None) -> str:
    """``rate_key`` from a request's client name and remote address."""
    if client is None or client == "anonymous":
        return f"address:{remote or 'unknown'}"
    return client


def rate_refusal(request: web.Request) -> web.Response | None:
    """Per-client token bucket on the calls that start work (POSTs); status polls stay free."""
    limiter = request.app[DAEMON].client_limiter
    if limiter is not None and request.method == "POST":
        wait = limiter.check(rate_key(request))
        if wait > 0:
            return error_response(429, "too many requests from this client; slow down", "rate_limit_error",
                                  "client_rate_limited", headers={"Retry-After": str(max(1, round(wait)))})
    return None
