"""Every failure leaves the daemon in OpenAI's error shape with the right status:
``{"error": {"message", "type", "code", "param"}}`` (plus ``execution_metadata`` when attempts ran)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from router import errors as E
from router.http.answers import json_response
from router.http.slow_clients import BodyTimeoutError
from router.jobs.store import JobStoreUnavailableError
from router.log_setup import get_logger

log = get_logger("router.http")


#: ``error.code`` for errors answered by status alone (aiohttp's own, or ours without a more precise code).
HTTP_CODES = {400: "invalid_request", 404: "endpoint_not_found", 405: "method_not_allowed", 408: "request_timeout",
              413: "body_too_large", 415: "unsupported_media_type", 431: "headers_too_large", 500: "internal_error"}


class ApiError(Exception):
    """An error the HTTP layer raises itself (bad JSON, missing field, auth...)."""

    def __init__(
        self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        code = code or ("invalid_value" if param else HTTP_CODES.get(status, "invalid_request"))
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}


def error_response(
    status: int, message: str, type: str, code: str | None = None, param: str | None = None,
    headers: dict[str, str] | None = None, **extra: Any,
) -> web.Response:
    body = {"error": {"message": message, "type": type, "code": code, "param": param}, **extra}
    return json_response(body, status=status, headers=headers)


def tarash_response(error: E.TarashError) -> web.Response:
    """The response for a generation error; the body lists every attempt when any ran."""
    status = E.status_for(error)
    headers = {}
    if status == 429 and error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    extra: dict[str, Any] = {}
    if error.execution_metadata is not None:
        extra["execution_metadata"] = error.execution_metadata.model_dump(mode="json")
    return error_response(status, error.message, error.type_name, E.public_code(error), None, headers, **extra)


def validation_error(exc: ValidationError) -> ApiError:
    """A request body that fails the spec's model: 400 naming the first bad field."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
    )
    return ApiError(400, message, code="invalid_field", param=param)


_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure leaves in the error shape (answer_for logs the unknown)
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise  # a redirect, not a failure
        return answer_for(exc, request.method, request.path, request.app._client_max_size)  # noqa: SLF001


def answer_for(exc: Exception, method: str, path: str, max_body_bytes: int) -> web.Response:
    """The error-shaped answer to a request of ``method`` on ``path`` whose handling raised ``exc``; an exception
    no branch knows is logged (with its traceback: call it in the ``except`` block) and answered 500."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)
    if isinstance(exc, E.TarashError):
        return tarash_response(exc)
    if isinstance(exc, ValidationError):
        err = validation_error(exc)
        return error_response(err.status, err.message, err.type, err.code, err.param)
    if isinstance(exc, JobStoreUnavailableError):
        # Logged once per outage by the job service; the message names no host or password.
        return error_response(503, "the job store is unreachable right now; nothing was stored, retry shortly",
                              "service_unavailable_error", "job_store_unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, web.RequestPayloadError):
        # aiohttp could not decode the body it was reading: a broken gzip/deflate stream, bad chunked framing.
        reason = getattr(exc.__cause__, "message", None) or str(exc)
        response = error_response(400, f"request body cannot be read: {reason}", "invalid_request_error",
                                  "invalid_request")
        response.force_close()
        return response
    if isinstance(exc, BodyTimeoutError):
        response = error_response(408, str(exc), "invalid_request_error", "body_timeout")
        response.force_close()
        return response
    if isinstance(exc, web.HTTPException):
        message = {
            404: f"no such endpoint: {method} {path}",
            405: f"method {method} not allowed on {path}",
            413: f"request body too large (limit {max_body_bytes} bytes)",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, message, _HTTP_TYPES.get(exc.status, "invalid_request_error"),
                              code=HTTP_CODES.get(exc.status, "invalid_request"), headers=headers)
    log.exception("unhandled_error", path=path)
    return error_response(500, "internal error; see the daemon log for this request id", "server_error",
                          code="internal_error")
