"""The job object clients see (``GET /v1/jobs/{id}``, and the ``data`` of a client webhook)."""

from __future__ import annotations

from typing import Any

from router.jobs.store import JobRecord, OutboxMessage


def job_view(job: JobRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id, "object": "job", "kind": job.kind, "model": job.route, "status": job.status,
        "progress_percent": job.progress_percent, "prompt": job.request.get("prompt"),
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
    }
    for key in ("result", "error", "execution_metadata"):
        if getattr(job, key) is not None:
            view[key] = getattr(job, key)
    if job.result and "local_copy" in (job.result.get("provider_metadata") or {}):
        # The copy's server path is ours to know: clients get the media through /content.
        metadata = {k: v for k, v in job.result["provider_metadata"].items() if k != "local_copy"}
        view["result"] = {**job.result, "provider_metadata": {**metadata, "local_copy": True}}
    return view


def delivery_view(message: OutboxMessage) -> dict[str, Any]:
    """A client webhook's delivery state (never its URL: it may carry the receiver's own secret)."""
    return {
        "id": message.id, "status": message.status, "attempts": message.attempts,
        "last_status": message.last_status, "last_error": message.last_error,
        "next_attempt_at": message.next_attempt_at.isoformat() if message.status == "pending" and message.next_attempt_at
        else None,
        "delivered_at": message.delivered_at.isoformat() if message.delivered_at else None,
    }
