"""Per-attempt policy: which errors fall back to the next attempt, and how often to retry the same one.

Read from reserved keys of the attempt's ``provider_config`` (routes.toml attempt keys of the same names):

| key | default | meaning |
|---|---|---|
| ``retries`` | 0 | extra tries of the same attempt on a retryable error, before falling through |
| ``retry_backoff`` | 0.5 | first backoff in seconds; doubles each retry, capped at 8 s, with jitter |
| ``fallback_on`` | [] | also fall back on these: HTTP statuses (402, 403, 404, 410...) or error kinds |
| ``no_fallback_on`` | [] | never fall back on these (e.g. 429: wait and fail instead of switching vendor) |
| ``on_ambiguous_submit`` | video "stop", image "fallback" | when a submit went out and no answer came back |

Error kinds are the snake_case error names without ``_error``: ``rate_limit``, ``provider_timeout``,
``provider_unavailable``, ``bad_provider_response``, ``generation_failed``, ``content_policy``,
``authentication``, ``invalid_request``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from router.errors import AmbiguousSubmitError, TarashError
from router.models import AnyConfig, Kind

#: A video job costs dollars and a dropped answer usually means the vendor accepted it, so by default we
#: stop rather than risk paying twice; an image costs cents and the caller is waiting, so we fall back.
AMBIGUOUS_SUBMIT_DEFAULT: dict[str, Literal["stop", "fallback"]] = {"video": "stop", "image": "fallback"}
MAX_BACKOFF_SECONDS = 8.0
POLICY_KEYS = frozenset({"retries", "retry_backoff", "fallback_on", "no_fallback_on", "on_ambiguous_submit"})


def error_kind(error: TarashError) -> str:
    """``rate_limit`` for RateLimitError etc.: the token routes use in fallback_on / no_fallback_on."""
    name = error.type_name
    return name[: -len("_error")] if name.endswith("_error") else name


@dataclass(frozen=True)
class AttemptPolicy:
    retries: int = 0
    retry_backoff: float = 0.5
    fallback_on: frozenset[str] = frozenset()
    no_fallback_on: frozenset[str] = frozenset()
    on_ambiguous_submit: Literal["stop", "fallback"] = "stop"

    @classmethod
    def of(cls, kind: Kind, config: AnyConfig) -> AttemptPolicy:
        extra: dict[str, Any] = config.provider_config
        return cls(
            retries=int(extra.get("retries", 0)),
            retry_backoff=float(extra.get("retry_backoff", 0.5)),
            fallback_on=frozenset(str(v) for v in extra.get("fallback_on", ())),
            no_fallback_on=frozenset(str(v) for v in extra.get("no_fallback_on", ())),
            on_ambiguous_submit=extra.get("on_ambiguous_submit", AMBIGUOUS_SUBMIT_DEFAULT[kind]),
        )

    def _tokens(self, error: TarashError) -> set[str]:
        tokens = {error_kind(error)}
        if error.http_status is not None:
            tokens.add(str(error.http_status))
        return tokens

    def falls_back(self, error: TarashError) -> bool:
        """Whether this error moves the chain on, after the route's widening and narrowing."""
        if isinstance(error, AmbiguousSubmitError):
            return self.on_ambiguous_submit == "fallback"
        tokens = self._tokens(error)
        if tokens & self.no_fallback_on:
            return False
        return error.retryable or bool(tokens & self.fallback_on)

    def retries_on(self, error: TarashError, tried: int) -> bool:
        """Whether to try the same attempt again (only errors that would fall back, never a skip)."""
        return tried < self.retries and error.outcome == "failed" and self.falls_back(error) and not isinstance(
            error, AmbiguousSubmitError
        )

    def backoff(self, retry: int, rand: float | None = None) -> float:
        """Delay before retry number ``retry`` (0-based): exponential, capped, with "equal jitter"."""
        ceiling = min(MAX_BACKOFF_SECONDS, self.retry_backoff * (2**retry))
        r = random.random() if rand is None else rand
        return ceiling / 2 + r * ceiling / 2
