"""Moving job history between stores (``tarash-router jobs export`` / ``import``): JSON lines, one job (with its
events) per line, then the budgets' spend ledger. A user who outgrows one box exports the SQLite file and
imports it into PostgreSQL; unfinished jobs come along with their vendor job ids and are resumed (polled, never
resubmitted) by whichever instance claims them, so stop the old daemon first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from router.jobs.store import JobStore, SpendEntry, job_body, job_from

PAGE = 500
#: The ledger from the first day to the last: every entry.
_ALL_DAYS = ("0000-01-01", "9999-12-31")


async def export_lines(store: JobStore) -> AsyncIterator[str]:
    """Every job (oldest last, as listed), each with its events, then the spend ledger."""
    after: str | None = None
    while True:
        page = await store.list(kind=None, owner=None, limit=PAGE, after=after)
        for job in page:
            events = [[seq, event, data] for seq, event, data in await store.events(job.id)]
            yield json.dumps({"type": "job", "request": job.request, "chain": job.chain, "body": job_body(job),
                              "events": events}, default=str)
        if len(page) < PAGE:
            break
        after = page[-1].id
    for entry in await store.spend(None, *_ALL_DAYS):
        yield json.dumps({"type": "spend", **entry._asdict()})


async def import_lines(store: JobStore, lines: Iterable[str]) -> dict[str, int]:
    """Write exported lines into ``store``: jobs nobody holds (any instance may claim the unfinished ones), their
    events, the ledger added to what is there. A job whose id or idempotency key is taken is skipped. Counts."""
    counts = {"jobs": 0, "skipped": 0, "events": 0, "spend": 0}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item: dict[str, Any] = json.loads(line)
            kind = item["type"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"line {number}: not an exported job or spend entry") from None
        if kind == "spend":
            await store.add_spend([SpendEntry(**{k: v for k, v in item.items() if k != "type"})])
            counts["spend"] += 1
            continue
        job = job_from(item["request"], item["chain"], item["body"], None, False)
        if not await store.insert(job):
            counts["skipped"] += 1
            continue
        for seq, event, data in item.get("events", []):
            await store.append_event(job.id, seq, event, data)
            counts["events"] += 1
        counts["jobs"] += 1
    return counts
