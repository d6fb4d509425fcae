"""Request bodies in: JSON objects read with precise 400s, and the ``model`` + fields of a generation turned
into a route and a spec request by the daemon's ``Generations`` service."""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

import structlog
from aiohttp import web

from router.http.errors import ApiError
from router.http.intake import check_request
from router.http.keys import DAEMON, INTAKE_LIMITS
from router.json_text import text_of
from router.models import AnyRequest, Kind
from router.routes import Route

#: No legitimate request nests this deep; refusing early keeps pathological bodies cheap.
MAX_JSON_DEPTH = 32
#: Characters no client text may hold: NUL and lone surrogates (not Unicode). The PostgreSQL job store cannot
#: store either (text and jsonb refuse them), and a vendor would get a string that cannot be encoded.
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a precise 400."""
    return parse_json(await request.read())  # aiohttp raises 413 past client_max_size


def parse_json(raw: bytes) -> dict[str, Any]:
    """``raw`` (a request body) as a JSON object, or a precise 400."""
    if not raw:
        raise ApiError(400, "request body is empty; send a JSON object", code="invalid_json")
    try:
        body = _DECODER.decode(text_of(raw))  # as json.loads(raw) does, with the number hooks
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, and integers past Python's 4,300 digits
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    # Nesting deeper than the limit needs more opening brackets than the limit: most bodies skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
        raise ApiError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    # Either character needs a \u escape, or raw surrogate bytes (0xED 0xA0-0xBF): most bodies skip the walk.
    if b"\\u" in raw or b"\xed" in raw:
        refuse_bad_text(body)
    return body


def query_int(request: web.Request, name: str, default: int) -> int:
    """Query parameter ``name`` as a whole number (``default`` when absent), or a 400 naming it. ASCII digits only:
    int() also took "５", "5_0" and " 5 "."""
    value = request.query.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise ApiError(400, f"{name} must be a whole number, like 20", param=name)
    return int(value)


def refuse_bad_text(fields: dict[str, Any]) -> None:
    """``ApiError(400)`` naming the first field whose text (a string, or a key, at any depth) holds NUL or a lone
    surrogate."""
    param = _bad_text(fields, "")
    if param is not None:
        raise ApiError(400, f"{param or 'body'}: text may not contain NUL characters or lone surrogates",
                       code="invalid_value", param=param or None)


def _bad_text(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        # isascii() is O(1) on CPython: a large base64 payload costs one memchr for NUL, never a regex scan.
        bad = "\x00" in value or (not value.isascii() and _BAD_CHARACTER.search(value) is not None)
        return path if bad else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        if isinstance(key, str) and _bad_text(key, path) is not None:
            return path
        found = _bad_text(child, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent. Python reads ``1e400`` as infinity; JSON has no such value, and a
    non-finite number would reach ``int()`` (OverflowError) or a vendor (as ``Infinity``, which is not JSON)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is too large")
    return value


def _not_json(name: str) -> NoReturn:
    """Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity``; JSON (RFC 8259) has none of them."""
    raise ValueError(f"{name} is not a JSON value")


#: Made once: ``json.loads`` with these hooks would build a decoder per call (4 µs of a request's CPU).
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_not_json)


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def model_name(body: dict[str, Any]) -> str:
    """The body's ``model`` (the public route name), or a 400 naming it."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "missing 'model': the public route name to use", code="missing_field", param="model")
    return model


def route_request(app: web.Application, body: dict[str, Any], kind: Kind) -> tuple[Route, AnyRequest]:
    """Route + spec request from a generation body (``model`` and the request fields). An unknown model is a
    404, a field the spec refuses a 400 (the error middleware shapes both)."""
    generations = app[DAEMON].generations
    route = generations.route(model_name(body), kind)
    structlog.contextvars.bind_contextvars(route=route.name)  # on every later line, the access line too
    fields = {key: value for key, value in body.items() if key not in ("model", "max_cost_usd")}
    spec_request = generations.build_request(route, fields)
    try:
        spec_request = check_request(spec_request, app[INTAKE_LIMITS])
    except ApiError:
        generations.metrics.request_rejected(route.name, kind)
        raise
    return route.with_ceiling(_ceiling(body.get("max_cost_usd"))), spec_request


def _ceiling(value: Any) -> float | None:
    """A request's ``max_cost_usd``: it may lower the route's ceiling for this generation, never raise it."""
    if value is None:
        return None
    try:
        usd = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range (10**400)
        usd = -1.0
    if isinstance(value, bool) or not usd > 0 or usd == float("inf"):
        raise ApiError(400, f"max_cost_usd must be a positive number of USD (got {value!r:.40})",
                       code="invalid_value", param="max_cost_usd")
    return usd
