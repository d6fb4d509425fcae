"""OpenAI-compatible endpoints, so an app using the official ``openai`` SDK works by setting ``base_url``."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from router.errors import BadProviderResponseError
from router.fetch import RESULT_IMAGE, FetchError, fetch_bytes
from router.http.answers import json_response
from router.http.bodies import read_json, route_request
from router.http.errors import ApiError
from router.http.keys import CLIENT, DAEMON
from router.models import ImageGenerationResponse
from router.routes import RoutesSnapshot



def _model(name: str, snapshot: RoutesSnapshot) -> dict[str, object]:
    return {"id": name, "object": "model", "created": int(snapshot.loaded_at.timestamp()), "owned_by": "tarash-router"}


async def list_models(request: web.Request) -> web.Response:
    snapshot = request.app[DAEMON].routes.current
    return json_response({"object": "list", "data": [_model(name, snapshot) for name in sorted(snapshot.routes)]})


async def retrieve_model(request: web.Request) -> web.Response:
    snapshot = request.app[DAEMON].routes.current
    route = snapshot.resolve(request.match_info["model"])  # 404 model_not_found for an unknown name
    return json_response(_model(route.name, snapshot))


async def images_generations(request: web.Request) -> web.Response:
    return json_response(await image_answer(request.app, await read_json(request), request[CLIENT]))


async def image_answer(app: web.Application, body: dict[str, Any], client: str) -> dict[str, Any]:
    """The OpenAI-shaped answer to an image generation body."""
    response_format = body.pop("response_format", None) or "url"
    if response_format not in ("url", "b64_json"):
        raise ApiError(400, "response_format must be 'url' or 'b64_json'", code="invalid_value", param="response_format")
    route, spec_request = route_request(app, body, "image")
    response = await app[DAEMON].generations.generate(route, spec_request, client=client)
    assert isinstance(response, ImageGenerationResponse)
    data = []
    for image in response.images:
        answer = _image_as(image, response_format, response.content_type)
        data.append({response_format: answer if answer is not None else await _fetched_base64(image),
                     "revised_prompt": response.revised_prompt})
    return {"created": int(time.time()), "data": data}


def _image_as(image: str, response_format: str, content_type: str | None) -> str | None:
    """Convert between what the provider gave (URL or base64) and what the client asked for; None when only
    fetching it will do (``_fetched_base64``).

    A client asking ``url`` for a provider that returns base64 gets a ``data:`` URI (there is no URL to give);
    a client asking ``b64_json`` for a provider that returns a URL gets the fetched bytes, base64-encoded.
    """
    is_url = image.startswith(("http://", "https://", "data:"))
    if response_format == "url":
        return image if is_url else f"data:{content_type or 'image/png'};base64,{image}"
    if not is_url:
        return image
    if image.startswith("data:"):
        return image.partition(",")[2]
    return None


async def _fetched_base64(url: str) -> str:
    """The image at the provider's ``url``, base64-encoded (a client asked ``b64_json``)."""
    try:
        data, _ = await fetch_bytes(url, RESULT_IMAGE)
    except FetchError as exc:
        raise BadProviderResponseError(f"cannot fetch the provider's image to return b64_json: {exc}") from exc
    return base64.b64encode(data).decode()


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_post("/v1/images/generations", images_generations)
