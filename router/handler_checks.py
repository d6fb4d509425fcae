"""Checks on what a handler hands back: a hook returning the wrong type, or a response without media, is the
attempt's ``BadProviderResponseError`` naming the handler (a handler bug falls back like a vendor fault)."""

from __future__ import annotations

from typing import TypeVar

from router.errors import BadProviderResponseError
from router.models import RESPONSE_TYPES, AnyResponse, ImageGenerationResponse, Kind, VideoGenerationResponse


def handler_fault(handler: object, problem: Exception | str) -> BadProviderResponseError:
    """A handler bug (a hook returned the wrong type, or raised something that is not a ``TarashError``) as
    the attempt's error: ``BadProviderResponseError`` naming the handler, which falls back like a vendor fault."""
    what = problem if isinstance(problem, str) else f"raised {type(problem).__name__}: {problem}"
    return BadProviderResponseError(f"handler {type(handler).__name__} {what}")


T = TypeVar("T")


def expect(handler: object, hook: str, value: T, *types: type) -> T:
    """``value`` (what ``handler.<hook>`` returned) if it has one of ``types``, else a ``handler_fault``."""
    if not isinstance(value, types):
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        raise handler_fault(handler, f"{hook} returned {type(value).__name__}, expected {expected}")
    return value


def check_response(handler: object, kind: Kind, response: object) -> AnyResponse:
    """``response`` if it is a usable result of ``kind`` (the right class, with media); else the error."""
    expected = RESPONSE_TYPES[kind]
    result = expect(handler, f"generate_{kind}", response, expected)
    if isinstance(result, VideoGenerationResponse) and not result.video:
        raise BadProviderResponseError("the provider returned no video")
    if isinstance(result, ImageGenerationResponse) and not any(result.images):
        raise BadProviderResponseError("the provider returned no images")
    return result
