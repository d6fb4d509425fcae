"""Native endpoints: the spec's models in and out, waiting for the result or streaming it as SSE."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from router.errors import TarashError
from router.http import sse
from router.http.app import STATE
from router.http.errors import ApiError, read_json, status_of, validation_error
from router.models import AnyRequest, AnyUpdate, Kind
from router.routes import Route


def resolve(request: web.Request, body: dict[str, Any], kind: Kind) -> tuple[Route, AnyRequest]:
    """Route + spec request from a JSON body; counts a rejection in metrics when it fails."""
    state = request.app[STATE]
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise ApiError(400, "missing 'model': the public route name to use", code="missing_field", param="model")
    snapshot = state.routes.current  # read once: this request keeps this config to the end
    try:
        route = snapshot.resolve(model, kind)
    except TarashError:
        # Only configured names become labels: a hostile model string is counted as "unknown".
        state.metrics.request_rejected(model if model in snapshot.routes else "unknown", kind)
        raise
    structlog.contextvars.bind_contextvars(route=route.name)  # on every later line, the access line too
    try:
        return route, route.build_request(body)
    except ValidationError as exc:
        state.metrics.request_rejected(route.name, kind)
        raise validation_error(exc) from exc


def _handler(kind: Kind) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        route, spec_request = resolve(request, await read_json(request), kind)
        if sse.wants_stream(request):
            return await _stream(request, route, spec_request)
        response = await state.generate(route, spec_request)
        return web.json_response(response.model_dump(mode="json"))

    return handle


async def _stream(request: web.Request, route: Route, spec_request: AnyRequest) -> web.StreamResponse:
    """``update`` events, then ``result`` or ``error``. A client that goes away cancels the generation
    (aiohttp cancels this handler), and with it the vendor job."""
    state = request.app[STATE]
    stream = await sse.open_stream(request)
    updates: asyncio.Queue[AnyUpdate | None] = asyncio.Queue()

    async def on_progress(update: AnyUpdate) -> None:
        if update.result is None and update.error is None:  # the final one is sent as result/error
            await updates.put(update)

    task = asyncio.create_task(state.generate(route, spec_request, on_progress))
    task.add_done_callback(lambda _: updates.put_nowait(None))
    try:
        while (update := await updates.get()) is not None:
            await sse.send(stream, "update", update.model_dump(mode="json"))
        try:
            result = task.result()
        except TarashError as exc:
            body: dict[str, Any] = {"message": exc.message, "type": exc.type_name, "code": exc.code,
                                    "status": status_of(exc)}
            if exc.execution_metadata is not None:
                body["execution_metadata"] = exc.execution_metadata.model_dump(mode="json")
            await sse.send(stream, "error", body)
        else:
            await sse.send(stream, "result", result.model_dump(mode="json"))
        await stream.write_eof()
        return stream
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/video/generations", _handler("video"))
    app.router.add_post("/v1/image/generations", _handler("image"))
