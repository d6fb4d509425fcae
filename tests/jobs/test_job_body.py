"""``job_body``: the JSON a store writes for a job's mutable part, built by hand (not ``asdict``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone

from router.jobs.store import JobRecord, VendorJob, job_body, job_from


def _job() -> JobRecord:
    now = datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)
    return JobRecord(
        id="job_1", kind="video", route="v", request={"prompt": "a fox", "extra_params": {"x": [1, {"y": 2}]}},
        chain=[{"provider": "fal", "model": "m"}], status="running", progress_percent=40, created_at=now,
        updated_at=now, attempts=[{"attempt_number": 1, "status": "running"}],
        vendor_job=VendorJob(1, "req-1", {"status_url": "http://127.0.0.1/s"}, now.isoformat()), owner="c",
        webhook_tokens={"1": "abc"}, worker="w", cancel_requested=True)


def test_the_body_is_every_field_but_the_columns_in_the_same_json_as_asdict_gave() -> None:
    job = _job()
    expected = {k: v for k, v in asdict(job).items() if k not in ("request", "chain", "worker", "cancel_requested")}
    expected["created_at"] = expected["updated_at"] = "2026-12-01T11:00:00+00:00"
    assert json.dumps(job_body(job), default=str) == json.dumps(expected, default=str)


def test_the_body_reads_back_into_the_same_job() -> None:
    job = _job()
    body = json.loads(json.dumps(job_body(job), default=str))
    assert job_from(job.request, job.chain, body, job.worker, job.cancel_requested) == job
