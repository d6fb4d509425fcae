"""Execution metadata the orchestrator attaches to every response (docs/models.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, computed_field, field_validator

AttemptStatus = Literal["success", "failed", "skipped"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AttemptMetadata(BaseModel):
    """One entry per provider tried, in chain order."""

    provider: str
    model: str
    attempt_number: int
    started_at: datetime
    ended_at: datetime | None = None
    status: AttemptStatus
    error_type: str | None = None
    error_message: str | None = None
    is_retryable: bool | None = None
    request_id: str | None = None
    # Cost (additive to the spec): the estimate before the call, the charged figure after it ended (None when
    # unknown; 0 for an attempt never sent or one the vendor does not bill for failing), and the price's source.
    estimated_cost_usd: float | None = None
    cost_usd: float | None = None
    price_source: str | None = None

    @field_validator("started_at", "ended_at")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        # Naive datetimes are taken as UTC; aware ones are converted, so elapsed math never mixes zones.
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def elapsed_seconds(self) -> float | None:
        """Duration of this attempt, or ``None`` while it runs."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class ExecutionMetadata(BaseModel):
    """Timing and fallback details across the whole chain."""

    total_attempts: int
    successful_attempt: int | None = None
    attempts: list[AttemptMetadata]
    fallback_triggered: bool
    configs_in_chain: int
    #: The estimate of the attempt that produced the result (of the last attempt sent, when none did).
    estimated_cost_usd: float | None = None
    #: The charged costs of the attempts summed (None when no attempt's cost is known).
    total_cost_usd: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_elapsed_seconds(self) -> float:
        """Wall-clock time from the first attempt's start to the last attempt's end."""
        if not self.attempts:
            return 0.0
        start = self.attempts[0].started_at
        end = max((a.ended_at for a in self.attempts if a.ended_at is not None), default=start)
        return (end - start).total_seconds()
