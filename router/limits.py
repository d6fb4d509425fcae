"""Load limits: per-provider concurrency and request rate, and a token bucket per client.

A provider at capacity is a reason to *skip* an attempt in a synchronous request (the chain moves on to a
vendor with room, or the daemon sheds the request with 429), and a reason to *wait* in a durable job (an
accepted job is never dropped: it waits for a slot, bounded by its attempt timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from router.errors import ProviderBusyError


class TokenBucket:
    """``rate`` tokens per minute, bursts up to ``rate``. ``clock`` is injectable for tests."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self.tokens = self.capacity
        self._clock = clock
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.per_second)
        self._at = now

    def take(self) -> float:
        """Take a token; 0.0 if one was free, else the seconds until one will be (nothing taken)."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


@dataclass
class ProviderLimit:
    max_concurrency: int | None = None
    requests_per_minute: int | None = None
    #: Slots held and attempts waiting for one right now (the status page shows them).
    in_use: int = 0
    waiting: int = 0
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _bucket: TokenBucket | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrency:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        if self.requests_per_minute:
            self._bucket = TokenBucket(self.requests_per_minute)


class ProviderLimits:
    """The limits of every provider that has some (routes.toml ``[providers.<name>]``). With ``shared`` (several
    instances on one PostgreSQL job store: ``router.cluster.SharedVendorState``) they hold for the cluster."""

    def __init__(self, limits: dict[str, ProviderLimit] | None = None, shared: Any = None) -> None:
        self.limits = limits or {}
        self.shared = shared

    @contextlib.asynccontextmanager
    async def slot(self, provider: str, *, wait: bool) -> AsyncIterator[None]:
        limit = self.limits.get(provider)
        if limit is None:
            yield
            return
        if self.shared is not None:
            try:
                holder = await self._shared_slot(provider, limit, wait=wait)
            except ProviderBusyError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is down: this process's own limits still hold
                self.shared.failed("slot", exc)
            else:
                self.shared.succeeded()
                limit.in_use += 1
                try:
                    yield
                finally:
                    limit.in_use -= 1
                    if holder is not None:
                        with contextlib.suppress(Exception):  # unreleased, it lapses with its lease
                            await asyncio.shield(self.shared.release(provider, holder))
                return
        if limit._bucket is not None:  # noqa: SLF001
            while (delay := limit._bucket.take()) > 0:  # noqa: SLF001
                if not wait:
                    raise ProviderBusyError(f"{provider} is at its {limit.requests_per_minute} requests/minute limit",
                                            provider=provider, retry_after=delay)
                await asyncio.sleep(delay)
        if limit._slots is None:  # noqa: SLF001
            yield
            return
        if not wait and limit._slots.locked():  # noqa: SLF001
            raise ProviderBusyError(f"{provider} is at its max_concurrency of {limit.max_concurrency}",
                                    provider=provider, retry_after=1.0)
        limit.waiting += 1
        try:
            await limit._slots.acquire()  # noqa: SLF001
        finally:
            limit.waiting -= 1
        limit.in_use += 1
        try:
            yield
        finally:
            limit.in_use -= 1
            limit._slots.release()  # noqa: SLF001


    async def _shared_slot(self, provider: str, limit: ProviderLimit, *, wait: bool) -> str | None:
        """Take the cluster's request token and slot (None: no concurrency limit); busy when ``wait`` is False."""
        assert self.shared is not None
        if limit.requests_per_minute:
            while (delay := await self.shared.take_token(provider, limit.requests_per_minute)) > 0:
                if not wait:
                    raise ProviderBusyError(f"{provider} is at its {limit.requests_per_minute} requests/minute limit "
                                            "(across instances)", provider=provider, retry_after=delay)
                await asyncio.sleep(delay)
        if not limit.max_concurrency:
            return None
        limit.waiting += 1
        try:
            while (holder := await self.shared.acquire(provider, limit.max_concurrency)) is None:
                if not wait:
                    raise ProviderBusyError(f"{provider} is at its max_concurrency of {limit.max_concurrency} "
                                            "(across instances)", provider=provider, retry_after=1.0)
                await self.shared.freed(provider)
        finally:
            limit.waiting -= 1
        return holder


class ClientRateLimiter:
    """One token bucket per client identity (a token fingerprint, never the token)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, client: str) -> float:
        """0.0 if the request may go; else seconds to wait (the Retry-After)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.per_minute, self._clock)
        return bucket.take()
