"""Native endpoints: the spec's models in and out, waiting for the result or streaming it as SSE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from router.errors import TarashError, error_body
from router.http import sse
from router.http.answers import json_response
from router.http.bodies import read_json, route_request
from router.http.keys import CLIENT, DAEMON
from router.models import AnyRequest, AnyUpdate, Kind
from router.routes import Route
from router.tasks import cancel_and_wait

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handler(kind: Kind) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if sse.wants_stream(request):
            return await _stream(request, *route_request(request.app, body, kind))
        return json_response(await generation_answer(request.app, kind, body, request[CLIENT]))

    return handle


async def generation_answer(app: web.Application, kind: Kind, body: dict[str, Any], client: str) -> dict[str, Any]:
    """The answer to a generation body that waits for its result: the spec's response as JSON."""
    route, spec_request = route_request(app, body, kind)
    response = await app[DAEMON].generations.generate(route, spec_request, client=client)
    return response.model_dump(mode="json")


async def _stream(request: web.Request, route: Route, spec_request: AnyRequest) -> web.StreamResponse:
    """``update`` events, then ``result`` or ``error``. A client that goes away cancels the generation
    (aiohttp cancels this handler), and with it the vendor job."""
    generations = request.app[DAEMON].generations
    # The budget is checked before the stream opens, so a refusal is a plain 402, not an error event.
    reservation = await generations.admit(request[CLIENT], route, spec_request)
    try:
        stream = await sse.open_stream(request)
    except BaseException:  # the client went away before the stream opened: nothing runs
        await generations.release(request[CLIENT], reservation)
        raise
    updates: asyncio.Queue[AnyUpdate | None] = asyncio.Queue()

    async def on_progress(update: AnyUpdate) -> None:
        if update.result is None and update.error is None:  # the final one is sent as result/error
            await updates.put(update)

    task = asyncio.create_task(generations.generate(route, spec_request, on_progress, client=request[CLIENT],
                                                    reservation=reservation))
    task.add_done_callback(lambda _: updates.put_nowait(None))
    try:
        while (update := await updates.get()) is not None:
            await sse.send(stream, "update", update.model_dump(mode="json"))
        try:
            result = task.result()
        except TarashError as exc:
            body: dict[str, Any] = error_body(exc)
            if exc.execution_metadata is not None:
                body["execution_metadata"] = exc.execution_metadata.model_dump(mode="json")
            await sse.send(stream, "error", body)
        else:
            await sse.send(stream, "result", result.model_dump(mode="json"))
        await stream.write_eof()
        return stream
    finally:
        await cancel_and_wait([task])


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/video/generations", _handler("video"))
    app.router.add_post("/v1/image/generations", _handler("image"))
