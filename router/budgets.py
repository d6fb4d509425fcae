"""Client budgets and usage: named clients (``API_KEYS="alice=tok"``) get daily and monthly USD budgets in
routes.toml (``[clients."alice"]``, hot-reloaded with it). A request whose estimate would cross what is left is
refused before any vendor call (``BudgetExceededError``, HTTP 402 ``budget_exceeded``); spend is recorded from
charged costs when a generation ends, in the job store's spend ledger (``SpendStore``), batched by
``router.spend_writer`` (every read of the ledger flushes it first; a clean shutdown flushes it).

Days and months are UTC. The clock is injectable (tests roll the day over without waiting for midnight).

What generations still running have reserved counts against their client's budgets too. On a store one process
owns (SQLite) that is kept here; on a shared store (PostgreSQL) it is a row every instance counts
(``SharedJobStore.reserve_spend``: checked and reserved in one transaction per client), leased to the instance that
admitted it and deleted with the write of its spend, so N instances never admit more than one budget allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from router.errors import TarashError
from router.jobs.store import Clock, SpendEntry, SpendStore, shared_store
from router.models import AnyRequest, ExecutionMetadata, utc_now
from router.observers import ChainObserver
from router.pricing import counted_cost, estimate
from router.routes import ClientSpec, Route
from router.spend_writer import SpendWriter


class BudgetExceededError(TarashError):
    """The client's budget cannot cover this request's estimate (HTTP 402, ``budget_exceeded``)."""

    daemon_status = 402


@dataclass(frozen=True)
class Period:
    """A budget period: a UTC day or a UTC calendar month."""

    name: str  # "daily" | "monthly"
    first_day: date
    last_day: date

    @property
    def resets_at(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time(0), tzinfo=timezone.utc)


def periods(now: datetime) -> tuple[Period, Period]:
    """Today and this month, in UTC."""
    today = now.astimezone(timezone.utc).date()
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return Period("daily", today, today), Period("monthly", first, next_month - timedelta(days=1))


def request_estimate(route: Route, request: AnyRequest) -> float:
    """What admitting ``request`` reserves: the dearest known attempt estimate of the chain (failed attempts
    are usually free, so the chain rarely costs more than its dearest attempt). 0 when none is known."""
    known = []
    for config in route.chain:
        try:
            usd = estimate(config, request).usd
        except TarashError:
            continue  # an invalid override skips that attempt at run time
        if usd is not None:
            known.append(usd)
    return max(known, default=0.0)


class Budgets:
    """Checks, reserves and records client spend. ``clients`` returns the live ``[clients]`` tables."""

    def __init__(self, store: SpendStore, clients: Callable[[], Mapping[str, ClientSpec]],
                 clock: Clock = utc_now, *, holder: str = "", lease_seconds: float = 30.0) -> None:
        self.store = store
        #: Spend on its way to ``store`` (batched; ``flush`` before reading the ledger).
        self.writer = SpendWriter(store)
        self._clients = clients
        self.clock = clock
        #: On a shared store: the instance reservations are leased to (renewed with its job leases), and how long.
        self._shared = bool(getattr(store, "shared", False))
        self._holder, self._lease_seconds = holder, lease_seconds
        #: client -> reservation key -> USD: generations admitted here and not yet ended (on a shared store, those
        #: with a reservation row).
        self._pending: dict[str, dict[str, float]] = {}
        self._keys = itertools.count(1)  # reservation keys: unique with the holder's name in them

    def new_key(self) -> str:
        """A key for a synchronous generation's reservation (a job's is its id)."""
        return f"reservation-{self._holder} {next(self._keys)}" if self._shared else f"reservation-{next(self._keys)}"

    async def admit(self, client: str, route: Route, request: AnyRequest, key: str | None = None) -> str | None:
        """Refuse (``BudgetExceededError``) a request whose estimate would cross ``client``'s remaining daily or
        monthly budget, counting what generations still running have reserved; else reserve the estimate under
        ``key`` (a new one by default) until ``recorder(..., key)`` hears the end or ``release``. The key; None
        when nothing was reserved (a client without budgets)."""
        spec = self._clients().get(client)
        if spec is None or not (spec.daily_budget_usd or spec.monthly_budget_usd):
            # Nothing to check and nobody to count it against: no estimate, no reservation (the anonymous client
            # of a daemon without API_KEYS takes this path on every request).
            return None
        key = key or self.new_key()
        needed = request_estimate(route, request)
        windows = [(period, budget) for period, budget in zip(
            periods(self.clock()), (spec.daily_budget_usd, spec.monthly_budget_usd)) if budget]
        if self._shared:
            await self._reserve_shared(client, key, needed, windows)
            self._pending.setdefault(client, {})[key] = needed
            return key
        pending = sum(self._pending.get(client, {}).values())
        await self.writer.flush()  # the ledger holds every spend recorded so far
        for period, budget in windows:
            spent = sum(e.usd for e in await self.store.spend(client, period.first_day.isoformat(),
                                                               period.last_day.isoformat()))
            if (left := budget - spent - pending) <= 0 or needed > left:
                raise _exceeded(client, period, budget, left, needed)
        self._pending.setdefault(client, {})[key] = needed
        return key

    async def _reserve_shared(self, client: str, key: str, needed: float,
                              windows: list[tuple[Period, float]]) -> None:
        # No flush first: a generation whose spend is not written yet (here or on another instance) still holds its
        # reservation, deleted by that write, so its estimate counts until its charge does (<= the batch delay).
        refused = await shared_store(self.store).reserve_spend(  # type: ignore[arg-type]
            client, key, needed, self._holder, self._lease_seconds,
            [(period.first_day.isoformat(), period.last_day.isoformat(), budget) for period, budget in windows])
        if refused is not None:
            index, left = refused
            raise _exceeded(client, windows[index][0], windows[index][1], left, needed)

    async def release(self, client: str, key: str) -> None:
        """Give up ``key``'s reservation without spend (its generation was never run)."""
        if self._forget(client, key) and self._shared:
            await shared_store(self.store).release_reservation(key)  # type: ignore[arg-type]

    def _forget(self, client: str, key: str) -> bool:
        reserved = self._pending.get(client)
        if reserved is None or key not in reserved:
            return False
        del reserved[key]
        if not reserved:
            del self._pending[client]
        return True

    def recorder(self, client: str, route: str, key: str | None = None) -> ChainObserver:
        """An observer that records the generation's spend when it ends (and releases its reservation)."""
        return _SpendRecorder(self, client, route, key)

    def record(self, client: str, route: str, metadata: ExecutionMetadata, key: str | None = None) -> None:
        """Record a generation's spend (its attempts' counted costs, and one generation for a success), and end
        its reservation ``key``: here at once (a check flushes the spend first), on a shared store with the
        spend's write."""
        day = self.clock().astimezone(timezone.utc).date().isoformat()
        entries = []
        for attempt in metadata.attempts:
            usd, _ = counted_cost(attempt)
            success = attempt.status == "success"
            if usd or success:
                entries.append(SpendEntry(client, day, route, attempt.provider, attempt.model, usd or 0.0,
                                          1 if success else 0))
        if key is not None:
            self._forget(client, key)
        # On a shared store the row goes with the spend wherever the generation ends: also a job taken over from
        # the instance that admitted it (whose row would otherwise wait for its holder to die).
        self.writer.add(entries, released=key if self._shared else None)

    async def spend(self, client: str | None, first_day: str, last_day: str) -> list[SpendEntry]:
        """The ledger's rows (as ``SpendStore.spend``), with every spend recorded so far written first."""
        await self.writer.flush()
        return await self.store.spend(client, first_day, last_day)

    async def usage(self, client: str | None) -> list[dict[str, Any]]:
        """Spend today and this month per client (one client, or every client with spend or a budget), with
        the budgets, what is left and when each resets, and the month's spend per route and provider."""
        day, month = periods(self.clock())
        rows = await self.spend(client, month.first_day.isoformat(), month.last_day.isoformat())
        reserved = await self._reserved(client)
        clients = self._clients()
        names = {client} if client is not None else {r.client for r in rows} | set(clients)
        return [self._usage_of(name, [r for r in rows if r.client == name], clients.get(name), day, month,
                               reserved.get(name, 0.0))
                for name in sorted(names)]

    async def _reserved(self, client: str | None) -> dict[str, float]:
        """What generations still running hold against each client's budgets (``client`` only, when given):
        every instance's on a shared store, this process's otherwise."""
        if self._shared:
            return await shared_store(self.store).reserved_spend(client)  # type: ignore[arg-type, no-any-return]
        return {name: sum(held.values()) for name, held in self._pending.items() if client in (None, name)}

    def _usage_of(self, client: str, rows: list[SpendEntry], spec: ClientSpec | None, day: Period,
                  month: Period, reserved: float) -> dict[str, Any]:
        today = [r for r in rows if r.day == day.first_day.isoformat()]
        by: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            item = by.setdefault((row.route, row.provider, row.model), {
                "route": row.route, "provider": row.provider, "model": row.model, "today_usd": 0.0,
                "month_usd": 0.0, "generations_month": 0})
            item["month_usd"] = round(item["month_usd"] + row.usd, 6)
            item["generations_month"] += row.generations
            if row.day == day.first_day.isoformat():
                item["today_usd"] = round(item["today_usd"] + row.usd, 6)
        return {
            "client": client,
            "today": _period_view(day, sum(r.usd for r in today), reserved, spec.daily_budget_usd if spec else None),
            "month": _period_view(month, sum(r.usd for r in rows), reserved,
                                  spec.monthly_budget_usd if spec else None),
            "by_route": sorted(by.values(), key=lambda i: (-i["month_usd"], i["route"], i["provider"])),
        }


def _exceeded(client: str, period: Period, budget: float, left: float, needed: float) -> BudgetExceededError:
    return BudgetExceededError(
        f"client {client!r} has ${max(left, 0):.4f} left of its {period.name} budget of ${budget:g} "
        f"(resets {period.resets_at.isoformat().replace('+00:00', 'Z')}); this request is estimated "
        f"at ${needed:.4f}", code="budget_exceeded")


def _period_view(period: Period, spent: float, reserved: float, budget: float | None) -> dict[str, Any]:
    """One budget period as ``GET /v1/usage`` shows it: what is left is what an admission sees (the budget, less
    the spend and what generations still running hold)."""
    return {
        "from": period.first_day.isoformat(), "to": period.last_day.isoformat(),
        "spent_usd": round(spent, 6), "reserved_usd": round(reserved, 6), "budget_usd": budget,
        "remaining_usd": round(max(budget - spent - reserved, 0.0), 6) if budget is not None else None,
        "resets_at": period.resets_at.isoformat().replace("+00:00", "Z"),
    }


class _SpendRecorder(ChainObserver):
    __slots__ = ("budgets", "client", "route", "key")

    def __init__(self, budgets: Budgets, client: str, route: str, key: str | None) -> None:
        self.budgets, self.client, self.route, self.key = budgets, client, route, key

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        self.budgets.record(self.client, self.route, metadata, self.key)
