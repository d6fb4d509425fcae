"""``AttemptLogger``: one structured log line per attempt and per fallback, from the orchestrator's events."""

from __future__ import annotations

import logging

from router.errors import TarashError
from router.log_setup import get_logger
from router.models import AnyConfig, AttemptMetadata, ExecutionMetadata
from router.observers import ChainObserver
from router.provider_job import ProviderJob

log = get_logger("router.attempts")


class AttemptLogger(ChainObserver):
    __slots__ = ("route", "kind")

    def __init__(self, route: str, kind: str) -> None:
        self.route = route
        self.kind = kind

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None:
        log.info("vendor_job_submitted", route=self.route, attempt=attempt.attempt_number,
                 provider=config.provider, model=config.model, provider_job_id=job.id)

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        log.log(
            20 if error is None else 30, "attempt_finished",
            route=self.route, kind=self.kind, attempt=attempt.attempt_number, provider=config.provider,
            model=config.model, status=attempt.status, latency_ms=round((attempt.elapsed_seconds or 0) * 1000, 1),
            error_type=attempt.error_type, error=attempt.error_message, provider_request_id=attempt.request_id,
            estimated_cost_usd=attempt.estimated_cost_usd, cost_usd=attempt.cost_usd, price_source=attempt.price_source,
        )

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None:
        log.info("fallback", route=self.route, from_provider=from_config.provider, to_provider=to_config.provider,
                 error_type=type(error).__name__)

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        # debug: the access line and the attempt lines already tell the story at info (and below the level the
        # fields are not worth working out: this runs for every generation).
        if not log.is_enabled_for(logging.DEBUG):
            return
        log.debug("generation_finished", route=self.route, kind=self.kind, attempts=metadata.total_attempts,
                 successful_attempt=metadata.successful_attempt, error_type=type(error).__name__ if error else None,
                 elapsed_ms=round(metadata.total_elapsed_seconds * 1000, 1))
