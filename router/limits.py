"""Load limits: per-provider concurrency and request rate, and a token bucket per client.

A provider at capacity is a reason to *skip* an attempt in a synchronous request (the chain moves on to a
vendor with room, or the daemon sheds the request with 429), and a reason to *wait* in a durable job (an
accepted job is never dropped: it waits for a slot, bounded by its attempt timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from router.errors import ProviderBusyError

#: The slot of a provider without limits: nothing to hold (a stateless context, shared by every such attempt).
_FREE: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()


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


class Slots:
    """A FIFO semaphore whose size may change while slots are held (``None``: no limit). A reload that edits
    ``max_concurrency`` resizes the live pool instead of starting an empty one beside it, which would admit a
    second full set of attempts while the first still runs."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def busy(self) -> bool:
        """True when an acquire would wait."""
        return self._full() or bool(self._waiters)

    async def acquire(self) -> None:
        if not self.busy():
            self.held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over as the task was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.held -= 1
        self._hand_over()

    def resize(self, size: int | None) -> None:
        """Change the size; holders above a smaller size keep their slots until they release them."""
        self.size = size
        self._hand_over()

    def _full(self) -> bool:
        return self.size is not None and self.held >= self.size

    def _hand_over(self) -> None:
        while self._waiters and not self._full():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.held += 1
                waiter.set_result(None)


@dataclass
class ProviderLimit:
    max_concurrency: int | None = None
    requests_per_minute: int | None = None
    #: Attempts waiting for a slot right now (the status page shows them, with ``in_use``).
    waiting: int = 0
    slots: Slots = field(init=False, repr=False)
    bucket: TokenBucket | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.slots = Slots(self.max_concurrency or None)
        if self.requests_per_minute:
            self.bucket = TokenBucket(self.requests_per_minute)

    @property
    def in_use(self) -> int:
        """Slots held right now."""
        return self.slots.held

    def update(self, max_concurrency: int | None, requests_per_minute: int | None) -> None:
        """Apply a reloaded routes file's values, keeping the slots held and the tokens taken so far."""
        self.max_concurrency = max_concurrency
        self.slots.resize(max_concurrency or None)
        if requests_per_minute != self.requests_per_minute:
            taken = self.bucket.capacity - self.bucket.tokens if self.bucket else 0.0
            self.bucket = TokenBucket(requests_per_minute) if requests_per_minute else None
            if self.bucket is not None:
                self.bucket.tokens = max(0.0, self.bucket.capacity - taken)
            self.requests_per_minute = requests_per_minute


class ProviderLimits:
    """The limits of every provider that has some (routes.toml ``[providers.<name>]``). With ``shared`` (several
    instances on one PostgreSQL job store: ``router.cluster.SharedVendorState``) they hold for the cluster."""

    def __init__(self, limits: dict[str, ProviderLimit] | None = None, shared: Any = None) -> None:
        self.limits = limits or {}
        self.shared = shared

    def slot(self, provider: str, *, wait: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of ``provider``'s slots (and a token of its rate) for an ``async with`` block; busy: wait for
        one (``wait``) or ``ProviderBusyError``. A provider without limits gets a no-op context at once (most
        attempts: no generator-based context manager to create and step through)."""
        limit = self.limits.get(provider)
        return _FREE if limit is None else self._slot(provider, limit, wait=wait)

    @contextlib.asynccontextmanager
    async def _slot(self, provider: str, limit: ProviderLimit, *, wait: bool) -> AsyncIterator[None]:
        if self.shared is not None:
            try:
                holder = await self._shared_slot(provider, limit, wait=wait)
            except ProviderBusyError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is down: this process's own limits still hold
                self.shared.failed("slot", exc)
            else:
                self.shared.succeeded()
                limit.slots.held += 1  # the cluster admitted it: counted here for the status page and reloads
                try:
                    yield
                finally:
                    limit.slots.release()
                    if holder is not None:
                        with contextlib.suppress(Exception):  # unreleased, it lapses with its lease
                            await asyncio.shield(self.shared.release(provider, holder))
                return
        if limit.bucket is not None:
            while (delay := limit.bucket.take()) > 0:
                if not wait:
                    raise ProviderBusyError(f"{provider} is at its {limit.requests_per_minute} requests/minute limit",
                                            provider=provider, retry_after=delay)
                await asyncio.sleep(delay)
        if not wait and limit.slots.busy():
            raise ProviderBusyError(f"{provider} is at its max_concurrency of {limit.max_concurrency}",
                                    provider=provider, retry_after=1.0)
        limit.waiting += 1
        try:
            await limit.slots.acquire()
        finally:
            limit.waiting -= 1
        try:
            yield
        finally:
            limit.slots.release()

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
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, client: str) -> float:
        """0.0 if the request may go; else seconds to wait (the Retry-After)."""
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = TokenBucket(self.per_minute, self._clock)
        return bucket.take()
