"""Unique ids for what needs no unguessable one (an HTTP request's ``X-Request-ID``, a synchronous generation's
``request_id``): 32 hex digits like ``uuid4().hex``, without an ``os.urandom`` call and a ``UUID`` per id."""

from __future__ import annotations

import itertools
import secrets


class Ids:
    """A random 80-bit prefix drawn once (processes and restarts never share one, in practice) and a 48-bit
    counter after it. Not for ids that grant access: the next one is easy to guess (job ids stay ``uuid4``)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
