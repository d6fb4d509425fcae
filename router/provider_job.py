"""A vendor job as the steps see it: ``ProviderJob`` (what ``submit`` returns and the job store persists) and
``PollStatus`` (what one ``poll`` reports). Plain data, below both ``router.handler`` and ``router.steps``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.models import StatusType


@dataclass
class ProviderJob:
    """A vendor-side job: the vendor's id plus whatever the later steps need (status/result URLs...).

    ``data`` must stay JSON-serialisable: the job store persists it so a restarted daemon can resume.
    """

    id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PollStatus:
    """One poll of a vendor job. ``raw`` is the vendor's payload, passed to ``on_progress`` as ``update``."""

    status: StatusType
    raw: dict[str, Any] = field(default_factory=dict)
    progress_percent: int | None = None
    #: Seconds the vendor asked us to wait before the next poll (e.g. OpenAI's ``openai-poll-after-ms``);
    #: it can only lengthen the wait, never shorten ``poll_interval``.
    poll_after: float | None = None
    #: The vendor's result when this status already holds it (a verified push whose signed payload is the whole
    #: outcome, ``ProviderHandler.pushed``): then ``fetch_result`` needs no call of its own.
    result: Any = None
