"""The error hierarchy. Every error a generation can end with is a ``TarashError``.

Each error knows whether it is *retryable* (the orchestrator falls back to the next attempt) and carries the
provider, model, the vendor's request id and the HTTP status when known. None of them ever carries an API key:
vendor text passes through ``scrub`` (which removes the attempt's secrets and truncates) before it is stored.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

if TYPE_CHECKING:
    from router.models import ExecutionMetadata

Outcome = Literal["failed", "skipped"]

MAX_MESSAGE_CHARS = 600
# Shapes of credentials that must never be echoed even when we don't know the exact value.
_KEY_PATTERNS = re.compile(
    r"(?i)(bearer\s+|key\s+|token\s+|api[-_]?key[=:]\s*)([A-Za-z0-9._:\-]{8,})"
)


#: A secret to keep out of vendor text: its exact value, or a pattern where only its shape is known (a webhook
#: token after a restart: only its hash survived).
Secret = str | re.Pattern[str]


def scrub(text: str, secrets: Sequence[Secret] = (), limit: int = MAX_MESSAGE_CHARS) -> str:
    """Remove known secret values and credential-looking tokens from ``text``, then truncate it."""
    for secret in secrets:
        if isinstance(secret, re.Pattern):
            text = secret.sub("[REDACTED]", text)
        elif len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    text = _KEY_PATTERNS.sub(lambda m: m.group(1) + "[REDACTED]", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@functools.lru_cache(maxsize=64)  # per attempt, for the same few keys: a quote and a regex each time
def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` and the spellings a vendor may echo it in: percent-encoded, as in a URL it returns (a fal key's
    ":" becomes "%3A"), with upper- and lower-case hex."""
    encoded = quote(secret, safe="")
    return tuple(dict.fromkeys((secret, encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded))))


def redact(value: Any, secrets: Sequence[Secret]) -> Any:
    """``value`` (a JSON-like tree of dicts, lists and strings, as vendors answer) with every occurrence of a
    known secret replaced; the very same object when none occurs, so clean answers cost no copy."""
    exact = tuple(secret for secret in secrets if isinstance(secret, str) and len(secret) >= 4)
    patterns = tuple(secret for secret in secrets if isinstance(secret, re.Pattern))
    if not patterns and (not exact or _surely_clean(value, exact)):
        return value
    return _redact(value, exact, patterns)


#: Leaves that hold no text, answered by one type lookup (most of a vendor answer's leaves are these or str).
_NO_TEXT = frozenset({int, float, bool, type(None)})
#: Between the texts ``_surely_clean`` searches at once: no secret holds it, so none matches across two texts.
_SEPARATOR = "\x00"


def _surely_clean(value: Any, secrets: tuple[str, ...]) -> bool:
    """True when no text of the tree (a string, or a dict key, at any depth) holds one of ``secrets``: nearly every
    vendor answer, told by one search per secret over its texts joined, gathered without a call per node (the
    recursive walk was a seventh of a request's Python). False when unsure (a type it does not know): the walk
    decides."""
    texts: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str:
            texts.append(node)
        elif kind is dict:
            for key in node:
                if type(key) is str:
                    texts.append(key)
                elif type(key) not in _NO_TEXT:
                    return False
            stack.extend(node.values())
        elif kind is list or kind is tuple:
            stack.extend(node)
        elif kind not in _NO_TEXT:
            return False
    joined = _SEPARATOR.join(texts)
    return not any(secret in joined or _SEPARATOR in secret for secret in secrets)


def _redact(value: Any, secrets: tuple[str, ...], patterns: tuple[re.Pattern[str], ...]) -> Any:
    # One pass: a container is copied only from its first changed item on (clean trees allocate nothing). The
    # exact types first: a walk of a vendor's answer was half isinstance calls.
    kind = type(value)
    if kind in _NO_TEXT:
        return value
    if kind is str or isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "[REDACTED]")
        for pattern in patterns:
            value = pattern.sub("[REDACTED]", value)  # the same object when nothing matched
        return value
    if kind is dict or isinstance(value, dict):
        copied: dict[Any, Any] | None = None
        for index, (key, item) in enumerate(value.items()):
            clean_key, clean_item = _redact(key, secrets, patterns), _redact(item, secrets, patterns)
            if copied is None:
                if clean_key is key and clean_item is item:
                    continue
                copied = dict(itertools.islice(value.items(), index))
            copied[clean_key] = clean_item
        return value if copied is None else copied
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            clean = _redact(item, secrets, patterns)
            if items is None:
                if clean is item:
                    continue
                items = list(value[:index])
            items.append(clean)
        return value if items is None else type(value)(items)
    return value


class TarashError(Exception):
    """Base of every tarash-router error.

    Attributes:
        provider, model: the attempt that failed, when known.
        provider_request_id: the vendor's id for the request or job, when known.
        http_status: the vendor's HTTP status, when the error came from one.
        retryable: whether the orchestrator moves on to the next attempt.
        retry_after: seconds the vendor asked us to wait (``Retry-After``), when it said so.
        execution_metadata: set by the orchestrator on the error it finally raises.
    """

    retryable: bool = False
    #: How the orchestrator records an attempt that ends with this error.
    outcome: ClassVar[Outcome] = "failed"
    #: The HTTP status the daemon answers when a generation ends with this error (see ``status_for``).
    daemon_status: ClassVar[int] = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        provider_request_id: str | None = None,
        http_status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        raw: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.provider_request_id = provider_request_id
        self.http_status = http_status
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.code = code
        self.raw = raw
        self.execution_metadata: ExecutionMetadata | None = None

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        for name in ("provider", "model", "provider_request_id", "http_status"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def type_name(self) -> str:
        """snake_case class name, the ``type`` of the daemon's error body."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class InvalidRequestError(TarashError):
    """The vendor (or the model's rules) rejected a field of the request: 400/422."""

    daemon_status = 400


class AuthenticationError(TarashError):
    """The vendor refused the credentials: 401/403. A 502 from the daemon: the client did nothing wrong, our
    vendor credentials did."""


class ContentPolicyError(TarashError):
    """Moderation or a safety filter blocked the prompt, an input or the output."""

    daemon_status = 422


class RateLimitError(TarashError):
    """429 or vendor throttling."""

    retryable = True
    daemon_status = 429


class ProviderTimeoutError(TarashError):
    """The attempt ran past its timeout, or the poll budget ran out."""

    retryable = True
    daemon_status = 504


class ProviderUnavailableError(TarashError):
    """5xx, connection refused/reset, DNS failure."""

    retryable = True


class BadProviderResponseError(TarashError):
    """The vendor answered with garbage: bad JSON, missing media, an empty result."""

    retryable = True


class GenerationFailedError(TarashError):
    """The vendor accepted the job, then reported it failed."""

    retryable = True


class AmbiguousSubmitError(TarashError):
    """The submit went out and no answer came back: the vendor may have accepted (and may bill) the job.

    Whether the chain falls back is the attempt's ``on_ambiguous_submit`` policy (see the orchestrator).
    """


class AttemptSkippedError(TarashError):
    """Base of the errors that skip an attempt before anything is sent: recorded ``skipped``, and the chain
    moves on at once."""

    outcome = "skipped"
    retryable = True


class MissingCredentialsError(AttemptSkippedError):
    """No key in the config nor in the provider's env var: the attempt is skipped, never sent."""


class ConfigurationError(AttemptSkippedError):
    """The attempt's config cannot work (unknown provider, missing ``api_version``...): skipped."""


class UnknownProviderError(ConfigurationError, KeyError):
    """No handler is registered under that provider name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class CircuitOpenError(AttemptSkippedError):
    """The provider's circuit breaker is open after repeated failures: the attempt is skipped at once."""

    daemon_status = 503


class ProviderBusyError(AttemptSkippedError):
    """The provider is at its configured concurrency or rate limit (routes.toml ``[providers.<name>]``), or a
    route at its ``max_concurrency`` shed the request."""

    daemon_status = 429


class UnsupportedCapabilityError(AttemptSkippedError):
    """The provider cannot do what the request needs: the attempt is skipped before any paid call."""

    daemon_status = 422


class CostCeilingError(AttemptSkippedError):
    """The attempt's estimate exceeds the route's (or request's) ``max_cost_usd``, or its price is unknown
    under a ceiling: skipped before any call, so an expensive fallback never runs unnoticed."""

    daemon_status = 422


class GenerationCancelledError(TarashError):
    """The caller cancelled the generation."""

    daemon_status = 499  # nginx's "client closed request"


class AllAttemptsFailedError(TarashError):
    """Every attempt of the chain failed or was skipped.

    ``last_error`` is the error of the last attempt; ``execution_metadata`` lists every attempt.
    ``decisive_error`` is the one the chain is answered with (its status, code, provider and ``Retry-After``):
    ``sent_error``, the error of the last attempt that was sent, when there is one, else ``last_error``. A chain
    whose vendor failed and whose later attempts were only skipped (no key, unsupported input, open circuit...)
    is reported as that vendor's failure, not as "no provider could take it".
    """

    def __init__(self, last_error: TarashError, execution_metadata: ExecutionMetadata,
                 sent_error: TarashError | None = None) -> None:
        decisive = sent_error or last_error
        super().__init__(
            _chain_summary(execution_metadata) or f"all attempts failed; last error: {last_error.message}",
            provider=decisive.provider,
            model=decisive.model,
            provider_request_id=decisive.provider_request_id,
            http_status=decisive.http_status,
            retryable=False,
            retry_after=decisive.retry_after,
            code=decisive.code,
        )
        self.last_error = last_error
        self.decisive_error = decisive
        self.execution_metadata = execution_metadata


def _chain_summary(metadata: ExecutionMetadata) -> str:
    """What happened to each attempt, e.g. ``no attempt was sent (all 2 skipped): 1 fal/fal-ai/veo3 skipped:
    no API key ... FAL_KEY; 2 openai/sora-2 skipped: ...``: a chain that never reached a vendor must not read
    like one that failed there, and the first attempt's reason matters as much as the last one's."""
    attempts = metadata.attempts
    if not attempts:
        return ""
    n = len(attempts)
    if all(a.status == "skipped" for a in attempts):
        head = f"no attempt was sent (all {n} skipped)" if n != 1 else "no attempt was sent (it was skipped)"
    else:
        head = f"all {n} attempt{'s' if n != 1 else ''} failed"
    return head + ": " + "; ".join(
        f"{a.attempt_number} {a.provider}/{a.model} {a.status}: "
        + (f"{a.error_type}: {a.error_message}" if a.status == "failed" else a.error_message or a.error_type or "")
        for a in attempts
    )


ERROR_CLASSES: dict[str, type[TarashError]] = {
    cls.__name__: cls
    for cls in (
        TarashError,
        InvalidRequestError,
        AuthenticationError,
        ContentPolicyError,
        RateLimitError,
        ProviderTimeoutError,
        ProviderUnavailableError,
        BadProviderResponseError,
        GenerationFailedError,
        AmbiguousSubmitError,
        MissingCredentialsError,
        ConfigurationError,
        UnknownProviderError,
        UnsupportedCapabilityError,
        CircuitOpenError,
        ProviderBusyError,
        CostCeilingError,
        GenerationCancelledError,
    )
}
"""Error classes by name, for configs that name an error (mock outcomes, fallback policies)."""


def status_for(error: TarashError) -> int:
    """The daemon's HTTP status for a generation that ended with ``error`` (an exhausted chain: its decisive one)."""
    if isinstance(error, AllAttemptsFailedError):
        return status_for(error.decisive_error)
    return error.daemon_status


#: ``error.code`` as clients see it, per class (looked up along the MRO): one documented vocabulary of slugs.
#: A vendor's own code (a number, its wording, or whatever a hostile vendor sends) stays on the exception for
#: library users and never becomes the public code; OpenAI's names are used where OpenAI has one.
PUBLIC_CODES: dict[type[TarashError], str] = {
    InvalidRequestError: "invalid_request",
    AuthenticationError: "provider_auth_failed",
    ContentPolicyError: "content_policy_violation",
    RateLimitError: "rate_limit_exceeded",
    ProviderTimeoutError: "provider_timeout",
    ProviderUnavailableError: "provider_unavailable",
    BadProviderResponseError: "bad_provider_response",
    GenerationFailedError: "generation_failed",
    AmbiguousSubmitError: "ambiguous_submit",
    MissingCredentialsError: "missing_credentials",
    UnknownProviderError: "unknown_provider",
    ConfigurationError: "configuration_error",
    CircuitOpenError: "circuit_open",
    ProviderBusyError: "provider_busy",
    UnsupportedCapabilityError: "unsupported_capability",
    CostCeilingError: "cost_ceiling",
    GenerationCancelledError: "cancelled",
    TarashError: "provider_error",
}
#: Codes the router itself sets on a specific error, more precise than its class's (route_busy is a
#: ProviderBusyError of a route, not of a provider) or on classes defined elsewhere (budgets).
ROUTER_CODES = frozenset({"model_not_found", "wrong_kind", "route_busy", "budget_exceeded"})


def public_code(error: TarashError) -> str:
    """The ``error.code`` a client gets for ``error`` (an exhausted chain: its decisive error's)."""
    if isinstance(error, AllAttemptsFailedError):
        return public_code(error.decisive_error)
    if error.code in ROUTER_CODES:
        return error.code
    return next(PUBLIC_CODES[cls] for cls in type(error).__mro__ if cls in PUBLIC_CODES)


def error_body(error: TarashError) -> dict[str, Any]:
    """What a client is told of a generation's error outside an HTTP error response (an SSE ``error`` event,
    a job's ``error``): message, type, code and the status a synchronous call would have got."""
    return {"message": error.message, "type": error.type_name, "code": public_code(error),
            "status": status_for(error)}
