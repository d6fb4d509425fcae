"""What instances sharing a PostgreSQL job store share about vendors: each provider's ``max_concurrency`` and
``requests_per_minute`` hold for the whole cluster (a vendor's limits are per account, not per process), and a
circuit opened by one instance's failures is open on the others within about a second.

The mechanism, and why:

- **Slots are leased rows** (``tarash_router_slots``: one row per provider and slot number). An attempt takes a
  free or lapsed row (``FOR UPDATE SKIP LOCKED``), holds it for its whole run, and gives it back at the end;
  holders renew their slots with their job leases. A crashed instance stops renewing, so its slots come back by
  themselves after ``JOB_LEASE_SECONDS``. Advisory locks would come back at once on a crash, but they live in a
  database *session*: every instance would need a session held open for them (they break behind a
  transaction-mode PgBouncer, and a reconnect silently drops every lock while the attempts run on, letting
  others over the limit). Rows can also be read by an operator (``SELECT * FROM tarash_router_slots``).
  Waiters wake on ``NOTIFY`` when a slot is given back, with a one-second poll as the fallback.
- **The request rate is one token bucket row per provider**, refilled and taken in one statement.
- **Circuits**: an instance whose breaker opens writes a row (``tarash_router_circuits``) and notifies; the others
  mirror it into their own breakers (open since the same moment, by the database's clock). Whoever's half-open
  probe succeeds deletes the row, which closes it everywhere.

If the database cannot be reached, limits fall back to this process's own (an attempt is not refused because
the store is down) and circuits stay local until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from router.breakers import CircuitBreakers
from router.jobs.store import Notice
from router.log_setup import get_logger
from router.tasks import cancel_and_wait

log = get_logger("router.cluster")

#: A waiter with no notification re-tries for a free slot this often.
SLOT_POLL_SECONDS = 1.0


class SharedVendorState:
    """Cluster-wide provider slots, request buckets and circuits, kept in a PostgreSQL job store."""

    def __init__(self, store: Any, instance_id: str, lease_seconds: float, breakers: CircuitBreakers) -> None:
        self.store = store  # router.jobs.postgres.PostgresJobStore
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.breakers = breakers
        self._freed: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False
        breakers.listeners.append(self._breaker_changed)

    # ---- slots and rates ----------------------------------------------------------------------------------
    async def acquire(self, provider: str, limit: int) -> str | None:
        """A held slot's token, or None when all ``limit`` slots are held."""
        holder = f"{self.instance_id} {uuid.uuid4().hex[:12]}"
        return holder if await self.store.acquire_slot(provider, limit, holder, self.lease_seconds) else None

    async def release(self, provider: str, holder: str) -> None:
        await self.store.release_slot(provider, holder)

    async def freed(self, provider: str) -> None:
        """Until a slot of ``provider`` may have been given back (a notification, or the poll interval)."""
        event = self._freed.setdefault(provider, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SLOT_POLL_SECONDS):
                await event.wait()
        event.clear()

    async def take_token(self, provider: str, per_minute: int) -> float:
        return float(await self.store.take_token(provider, per_minute))

    def failed(self, what: str, exc: Exception) -> None:
        """A shared operation failed (the store is down): logged once until one succeeds again."""
        if not self._failing:
            log.warning("cluster_state_unavailable", operation=what, error=type(exc).__name__,
                        fallback="this instance's own limits and circuits")
        self._failing = True

    def succeeded(self) -> None:
        self._failing = False

    # ---- circuits -----------------------------------------------------------------------------------------
    def _breaker_changed(self, provider: str, model: str, opened: bool, failures: int) -> None:
        write = (self.store.open_circuit(provider, model, failures) if opened
                 else self.store.close_circuit(provider, model))
        self._spawn(write, "circuit")

    async def load_circuits(self) -> None:
        """Mirror the cluster's open circuits into this instance's breakers (at start, and when told)."""
        try:
            rows = await self.store.open_circuits()
        except Exception as exc:  # noqa: BLE001 - the store is down: circuits stay local
            self.failed("circuits", exc)
            return
        self.breakers.mirror({(p, m): (failures, age) for p, m, failures, age in rows})

    # ---- notifications ------------------------------------------------------------------------------------
    def on_notice(self, notice: Notice, subject: str, sent_at: float | None) -> None:
        if notice == "slot":
            self._freed.setdefault(subject, asyncio.Event()).set()
        elif notice == "circuit":
            self._spawn(self.load_circuits(), None)

    def _spawn(self, coroutine: Any, what: str | None) -> None:
        async def run() -> None:
            try:
                await coroutine
            except Exception as exc:  # noqa: BLE001 - logged once per outage
                self.failed(what or "circuits", exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
