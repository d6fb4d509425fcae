"""Durable async jobs: a store (SQLite by default) and a service that runs, resumes and cancels them."""

from router.jobs.service import JobService
from router.jobs.store import JobRecord, JobStatus, JobStore, OutboxMessage, VendorJob

__all__ = ["JobRecord", "JobService", "JobStatus", "JobStore", "OutboxMessage", "VendorJob"]
