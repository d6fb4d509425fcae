"""``router.json_text``: json.dumps and json.loads to the byte, with the encoder and decoder built once."""

from __future__ import annotations

import json
import math

import pytest

from router import json_text

VALUES = [{"a": 1, "b": [1.5, None, True], "c": {"d": "é\u2028\"\\\n"}}, [], "x", 10**30, -0.0, math.inf, math.nan,
          {1: "int key", None: "none key", 2.5: "float key", False: "bool key"}, ("a", "tuple")]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_is_json_dumps(value: object) -> None:
    assert json_text.dumps(value) == json.dumps(value)


def test_what_json_cannot_encode_fails_as_json_fails() -> None:
    circular: list[object] = []
    circular.append(circular)
    for value, error in ((circular, ValueError), ({"x": object()}, TypeError), ({(1, 2): 1}, TypeError)):
        with pytest.raises(error) as expected:
            json.dumps(value)
        with pytest.raises(error) as got:
            json_text.dumps(value)
        assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                                      "utf-32-be"])
@pytest.mark.parametrize("value", [{"a": "ünï"}, [1, 2], "s", 0])
def test_loads_reads_every_encoding_json_loads_reads(encoding: str, value: object) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode(encoding)
    assert json_text.loads(raw) == json.loads(raw) == value
    assert json_text.text_of(raw) == raw.decode(json.detect_encoding(raw))


@pytest.mark.parametrize("raw", [b"{", b"{\x00", b"", b"\xff\xfe", b'{"a": 1} x', b'{"a": "\xed\xa0\x80"}'])
def test_loads_fails_where_json_loads_fails(raw: bytes) -> None:
    try:
        expected: object = json.loads(raw)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            json_text.loads(raw)
    else:
        assert json_text.loads(raw) == expected
