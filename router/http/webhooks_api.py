"""``POST /v1/webhooks/{provider}/{token}``: vendors pushing job completions (``router.webhooks.inbound``)."""

from __future__ import annotations

from aiohttp import web

from router.http.answers import json_response
from router.http.errors import ApiError
from router.http.keys import DAEMON
from router.webhooks.inbound import WebhookRejected

_TYPES = {401: "authentication_error", 404: "not_found_error", 503: "service_unavailable_error"}


async def receive(request: web.Request) -> web.Response:
    inbound = request.app[DAEMON].inbound
    if inbound is None:  # no PUBLIC_URL: no vendor was ever given a webhook
        raise ApiError(404, "no such webhook", "not_found_error", "unknown_token")
    provider, token = request.match_info["provider"], request.match_info["token"]
    if request.content_length is not None and request.content_length > inbound.max_body_bytes:
        body = b"\0" * (inbound.max_body_bytes + 1)  # refused (and counted) without reading it
    else:
        body = await request.read()
    try:
        result = await inbound.receive(provider, token, request.headers, body)
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message, _TYPES.get(exc.status, "invalid_request_error"), exc.code) from None
    return json_response({"received": True, "result": result})


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks/{provider}/{token}", receive)
