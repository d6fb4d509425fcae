"""Request and response values the providers build and read; the engine does the sending."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from multidict import CIMultiDictProxy

from router import json_text

Step = Literal["submit", "status", "result", "cancel", "content"]


@dataclass(frozen=True)
class FormFile:
    """A file part of a multipart body."""

    data: bytes
    filename: str
    content_type: str


@dataclass
class HttpRequest:
    """One vendor call. ``url`` is absolute, or a path joined to the attempt's base URL.

    Give ``json`` for a JSON body or ``form`` for multipart (values are str or ``FormFile``), not both.
    """

    method: str
    url: str
    json: Any = None
    form: dict[str, str | FormFile | list[str | FormFile]] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: "json" answers must parse as JSON; "bytes" answers are media.
    expect: Literal["json", "bytes"] = "json"
    #: False for calls that carry our key to a vendor that may redirect elsewhere: the caller follows the
    #: redirect itself, without credentials (aiohttp would re-send custom auth headers to the new host).
    follow_redirects: bool = True


@dataclass
class VendorResponse:
    """A vendor's answer: status, headers, raw body; ``json()`` parses (garbage -> BadProviderResponseError)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    request_id: str | None = None
    _parsed: Any = field(default=None, repr=False)

    def json(self) -> Any:
        if self._parsed is None:
            self._parsed = json_text.loads(self.body) if self.body else {}
        return self._parsed

    def text(self, limit: int = 2000) -> str:
        return self.body[:limit].decode("utf-8", "replace")
