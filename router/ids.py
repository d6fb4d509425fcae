"""Ids of 32 hex digits like ``uuid4().hex``, without an ``os.urandom`` call and a ``UUID`` per id.

``Ids`` for what needs no unguessable id (an HTTP request's ``X-Request-ID``, a synchronous generation's
``request_id``); ``SecretIds`` for what does (job ids: without client tokens, knowing a job's id is what lets a
client read or cancel it).
"""

from __future__ import annotations

import itertools
import os
import secrets


class Ids:
    """A random 80-bit prefix drawn once (processes and restarts never share one, in practice) and a 48-bit
    counter after it. Not for ids that grant access: the next one is easy to guess (``SecretIds`` are not)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


class SecretIds:
    """128 bits from the OS's CSPRNG per id, as ``uuid4`` draws, read ``batch`` ids at a time. ``os.urandom``
    releases the GIL around its syscall, so an event loop that called it per job waited for the GIL behind the
    job store's writer thread (~15 % of the ``POST /v1/jobs`` handler's samples in bench.scale's accept burst; one
    syscall per 256 jobs now). The bytes drawn and not yet used stay in this object only; a forked child draws its
    own (the buffer is dropped when the pid changes)."""

    def __init__(self, batch: int = 256) -> None:
        self._batch = batch
        self._hex = ""
        self._at = 0
        self._pid = os.getpid()

    def next(self) -> str:
        if self._at == len(self._hex) or self._pid != os.getpid():
            self._hex, self._at, self._pid = os.urandom(16 * self._batch).hex(), 0, os.getpid()
        self._at += 32
        return self._hex[self._at - 32:self._at]
