"""JSON text with the stdlib's own codec, its encoder and decoder built once: ``json.dumps(value)`` and
``json.loads(data)`` to the byte, without their set-up on every call (``json.dumps`` builds a C encoder per call:
half of what encoding a small answer costs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """``json.dumps(value, default=default)``, from one C encoder built here (json's own arguments for the defaults)
    without its circular-reference check: a circular value fails as it did, through ``json``'s own encoder."""
    slow = json.JSONEncoder(default=default).encode
    if c_make_encoder is None:  # a Python without the C accelerator
        return slow
    fast = c_make_encoder(None, default, encode_basestring_ascii, None, ": ", ", ", False, False, True)

    def dumps(value: Any) -> str:
        try:
            return "".join(fast(value, 0))
        except (ValueError, RecursionError):  # json's own error (a circular value: "Circular reference detected")
            return slow(value)

    return dumps


#: ``json.dumps(value)``.
dumps = encoder(json.JSONEncoder().default)
_DECODER = json.JSONDecoder()


def text_of(raw: bytes) -> str:
    """The JSON text of ``raw`` as ``json.loads(raw)`` reads it (RFC 8259: UTF-8, -16 or -32); UTF-8 at a glance
    for bytes opening with ``{`` and no NUL after it (no BOM or UTF-16/32 text starts so): nearly every body."""
    encoding = "utf-8" if raw[:1] == b"{" and raw[1:2] != b"\x00" else json.detect_encoding(raw)
    return raw.decode(encoding, "surrogatepass")


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``."""
    return _DECODER.decode(text_of(raw))
