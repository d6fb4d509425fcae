"""The fallback loop: one implementation, generic over kind (video | image) and called by both the async
and the sync public functions.

For each config of the chain ``[config, *fallbacks]`` it resolves the handler and key, checks capability,
runs the attempt under the config's ``timeout`` and records an ``AttemptMetadata``. A retryable error moves
on to the next config; a non-retryable one stops the chain. Observers (metrics, logs, the job store) hear
every attempt event from here, the one place that knows them all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.errors import (
    AllAttemptsFailedError,
    AmbiguousSubmitError,
    BadProviderResponseError,
    CircuitOpenError,
    GenerationCancelledError,
    ProviderTimeoutError,
    TarashError,
    UnsupportedCapabilityError,
    scrub,
)
from router.handler import ProviderJob, is_stepped, overrides
from router.models import (
    AnyConfig,
    AnyRequest,
    AnyResponse,
    AnyUpdate,
    AttemptMetadata,
    ExecutionMetadata,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    Kind,
    StatusType,
    VideoGenerationResponse,
    VideoGenerationUpdate,
    flatten_chain,
    utc_now,
)
from router.health import CircuitBreakers
from router.limits import ProviderLimits
from router.policy import AttemptPolicy
from router.registry import handler_for, resolve_api_key
from router.steps import drive

log = logging.getLogger("router.orchestrator")

ProgressCallback = Callable[[Any], Awaitable[None] | None]

_UPDATE_TYPES = {"video": VideoGenerationUpdate, "image": ImageGenerationUpdate}
_NO_LIMITS = ProviderLimits()


class ChainObserver:
    """Hears every attempt event of one generation. Subclass and override what you need; an observer that
    raises is logged and ignored (a metrics bug must not fail a generation)."""

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None: ...

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None: ...

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None: ...

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None: ...

    async def update(self, update: AnyUpdate) -> None: ...

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None: ...


@dataclass
class ResumePoint:
    """Where to pick a chain up after a restart: attempts already ended, the 1-based attempt to run next,
    and that attempt's vendor job if it had been submitted (it is polled, not submitted again)."""

    next_attempt: int
    attempts: list[AttemptMetadata] = field(default_factory=list)
    job: ProviderJob | None = None
    started_at: Any = None


class _Events:
    """Fan-out to the caller's progress callback and the observers, each failure contained."""

    def __init__(self, on_progress: ProgressCallback | None, observers: Sequence[ChainObserver]) -> None:
        self._on_progress = on_progress
        self._observers = observers
        #: Whether anyone listens: updates are only built when someone will read them (a hot path).
        self.active = on_progress is not None or bool(observers)

    async def progress(self, update: AnyUpdate) -> None:
        if self._on_progress is not None:
            try:
                result = self._on_progress(update)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - a broken callback must not kill the generation
                log.exception("on_progress callback raised; generation continues")
        await self.notify("update", update)

    async def notify(self, event: str, *args: Any) -> None:
        cancelled: asyncio.CancelledError | None = None
        for observer in self._observers:
            try:
                await getattr(observer, event)(*args)
            except asyncio.CancelledError as exc:
                # Cancelled while one observer awaited (a job-store write): the others still hear the event,
                # then the cancel goes on.
                cancelled = exc
            except Exception:  # noqa: BLE001
                log.exception("observer %s.%s raised", type(observer).__name__, event)
        if cancelled is not None:
            raise cancelled


async def run_chain(
    kind: Kind,
    config: AnyConfig,
    request: AnyRequest,
    on_progress: ProgressCallback | None = None,
    *,
    observers: Sequence[ChainObserver] = (),
    request_id: str | None = None,
    resume: ResumePoint | None = None,
    chain: Sequence[AnyConfig] | None = None,
    breakers: CircuitBreakers | None = None,
    keep_vendor_job: Callable[[], bool] | None = None,
    limits: ProviderLimits | None = None,
    wait_for_capacity: bool = False,
) -> AnyResponse:
    """Run ``request`` through the fallback chain of ``config`` and return the first success.

    Raises the first error that does not fall back (see ``router.policy``), or ``AllAttemptsFailedError``
    when the chain is exhausted; either carries ``execution_metadata``. ``chain`` overrides the flattened
    chain (the job store passes the chain it persisted, so a resumed job reaches the same vendor
    deployments). ``breakers`` skips attempts on providers whose circuit is open. ``keep_vendor_job``
    (checked when the task is cancelled) leaves the vendor job running for a later resume. ``limits`` caps
    each provider's concurrency and rate: a busy provider is skipped, or waited for with ``wait_for_capacity``.
    """
    request_id = request_id or uuid.uuid4().hex
    configs = list(chain) if chain is not None else flatten_chain(config)
    events = _Events(on_progress, observers)
    attempts: list[AttemptMetadata] = list(resume.attempts) if resume else []
    first = resume.next_attempt if resume else 1
    last_error: TarashError | None = None

    open_attempt: tuple[AttemptMetadata, AnyConfig] | None = None  # started, not yet finished
    finished = False  # chain_finished delivered
    try:
        for number in range(first, len(configs) + 1):
            attempt_config = configs[number - 1]
            resumed = resume is not None and number == resume.next_attempt
            attempt = AttemptMetadata(
                provider=attempt_config.provider,
                model=attempt_config.model,
                attempt_number=number,
                started_at=(resume.started_at if resumed and resume.started_at else utc_now()),
                status="failed",
            )
            attempts.append(attempt)
            open_attempt = (attempt, attempt_config)
            await events.notify("attempt_started", attempt, attempt_config)
            job = resume.job if resumed else None
            try:
                response = await _run_attempt(
                    kind, attempt_config, request, request_id, attempt, events, job, breakers, keep_vendor_job,
                    limits, wait_for_capacity,
                )
            except TarashError as error:
                open_attempt = None
                last_error = error
                await events.notify("attempt_finished", attempt, attempt_config, error)
                if attempt.is_retryable and number < len(configs):
                    await events.notify("fallback", attempt_config, configs[number], error)
                    if events.active:
                        await events.progress(
                            _UPDATE_TYPES[kind](
                                request_id=request_id,
                                status="queued",
                                update={
                                    "event": "fallback",
                                    "from_provider": attempt_config.provider,
                                    "to_provider": configs[number].provider,
                                    "error_type": type(error).__name__,
                                    "error": error.message,
                                },
                            )
                        )
                    continue
                metadata = _metadata(attempts, len(configs), None)
                final = error if not attempt.is_retryable else AllAttemptsFailedError(error, metadata)
                final.execution_metadata = error.execution_metadata = metadata
                if events.active:
                    await events.progress(_final_update(kind, request_id, "failed", error=str(final)))
                finished = True
                await events.notify("chain_finished", metadata, final)
                raise final from (error if final is not error else None)
            open_attempt = None
            attempt.status = "success"
            attempt.ended_at = utc_now()
            metadata = _metadata(attempts, len(configs), number)
            await events.notify("attempt_finished", attempt, attempt_config, None)
            response = response.model_copy(update={"request_id": request_id, "execution_metadata": metadata})
            if events.active:
                await events.progress(_final_update(kind, request_id, "completed", result=response))
            finished = True
            await events.notify("chain_finished", metadata, None)
            return response

        # Only reachable when resuming past the end of the chain (nothing left to try).
        metadata = _metadata(attempts, len(configs), None)
        error = AllAttemptsFailedError(
            last_error or ProviderTimeoutError("no attempt left to run"), metadata
        )
        finished = True
        await events.notify("chain_finished", metadata, error)
        raise error
    except asyncio.CancelledError:
        # Wherever the cancel lands (in an attempt, or while an observer awaited between attempts), every
        # observer still hears the open attempt and the chain end: metrics' in-flight gauge depends on it.
        if not finished:
            await asyncio.shield(_end_cancelled(events, attempts, len(configs), open_attempt))
        raise


async def _run_attempt(
    kind: Kind,
    config: AnyConfig,
    request: AnyRequest,
    request_id: str,
    attempt: AttemptMetadata,
    events: _Events,
    job: ProviderJob | None,
    breakers: CircuitBreakers | None,
    keep_vendor_job: Callable[[], bool] | None = None,
    limits: ProviderLimits | None = None,
    wait_for_capacity: bool = False,
) -> AnyResponse:
    secrets: tuple[str, ...] = ()
    policy = AttemptPolicy.of(kind, config)
    claimed = False  # whether this attempt passed the breaker (and so must report back to it)
    try:
        handler = handler_for(config)
        config = resolve_api_key(handler, config)
        secrets = (config.api_key,) if config.api_key else ()
        reason = _unsupported_reason(handler, kind, config, request)
        if reason:
            raise UnsupportedCapabilityError(reason)
        if breakers is not None:
            if reason := breakers.allow(config.provider, config.model):
                raise CircuitOpenError(reason)
            claimed = True

        async def on_job(new_job: ProviderJob) -> None:
            attempt.request_id = new_job.id
            await events.notify("provider_job", attempt, config, new_job)

        async def once(resume_job: ProviderJob | None) -> AnyResponse:
            if is_stepped(handler):
                if resume_job is not None:
                    attempt.request_id = resume_job.id
                result = await drive(
                    handler, kind, config, request, events.progress,
                    request_id=request_id, job=resume_job, on_job=on_job, keep_vendor_job=keep_vendor_job,
                )
            else:
                result = await _call_simple(handler, kind, config, request, request_id, events)
            _check_response(kind, result)
            return result

        # One timeout bounds the attempt, its retries and their backoff (and a job's wait for capacity).
        async with asyncio.timeout(config.timeout), (limits or _NO_LIMITS).slot(config.provider, wait=wait_for_capacity):
            tried = 0
            while True:
                try:
                    response = await once(job if tried == 0 else None)
                    break
                except TarashError as exc:
                    if not policy.retries_on(exc, tried):
                        raise
                    delay = policy.backoff(tried)
                    tried += 1
                    log.info("retrying %s/%s in %.2f s (%s)", config.provider, config.model, delay, type(exc).__name__)
                    await asyncio.sleep(delay)
        vendor_id = response.provider_metadata.get("provider_request_id")
        if vendor_id and not attempt.request_id:
            attempt.request_id = str(vendor_id)
        if claimed:
            breakers.record(config.provider, config.model, success=True)  # type: ignore[union-attr]
        return response
    except TimeoutError as exc:
        error: TarashError = ProviderTimeoutError(f"attempt timed out after {config.timeout} s")
        error.__cause__ = exc
    except TarashError as exc:
        error = exc
    except asyncio.CancelledError:
        if claimed:
            breakers.record(config.provider, config.model, success=False, counts=False)  # type: ignore[union-attr]
        raise
    except Exception as exc:  # noqa: BLE001 - a handler bug or an unmapped library error
        error = BadProviderResponseError(f"handler raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    falls_back = policy.falls_back(error)
    if isinstance(error, AmbiguousSubmitError):
        error.message += f" (on_ambiguous_submit={policy.on_ambiguous_submit}: {'falling back' if falls_back else 'stopping'})"
    if claimed:
        # Only failures that say the vendor is unhealthy count; a refusal (policy, bad input) means it is up,
        # and a skip (our own capacity limit) says nothing about it.
        if error.outcome == "skipped":
            breakers.record(config.provider, config.model, success=False, counts=False)  # type: ignore[union-attr]
        else:
            breakers.record(config.provider, config.model, success=not error.retryable)  # type: ignore[union-attr]
    error.provider = error.provider or config.provider
    error.model = error.model or config.model
    error.provider_request_id = error.provider_request_id or attempt.request_id
    _record_failure(attempt, error, secrets)
    attempt.is_retryable = falls_back
    raise error


async def _end_cancelled(
    events: _Events, attempts: list[AttemptMetadata], in_chain: int,
    open_attempt: tuple[AttemptMetadata, AnyConfig] | None,
) -> None:
    """Tell the observers a cancelled chain ended: the open attempt (if any) as cancelled, then the chain."""
    last = attempts[-1]
    cancelled = GenerationCancelledError("the caller cancelled the generation", provider=last.provider, model=last.model)
    if open_attempt is not None:
        _record_failure(open_attempt[0], cancelled, ())
    cancelled.execution_metadata = _metadata(attempts, in_chain, None)
    if open_attempt is not None:
        await events.notify("attempt_finished", *open_attempt, cancelled)
    await events.notify("chain_finished", cancelled.execution_metadata, cancelled)


def _unsupported_reason(handler: Any, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
    check = getattr(handler, "unsupported_reason", None)
    if check is not None:
        return check(kind, config, request)
    kinds = getattr(handler, "kinds", None)
    if kinds is not None and kind not in kinds:
        return f"provider does not support {kind} generation"
    return None


async def _call_simple(
    handler: Any, kind: Kind, config: AnyConfig, request: AnyRequest, request_id: str, events: _Events
) -> AnyResponse:
    """Call a handler that only implements ``generate_<kind>[_async]``."""

    async def relay(update: AnyUpdate) -> None:
        await events.progress(update.model_copy(update={"request_id": request_id}))

    if overrides(handler, f"generate_{kind}_async"):
        return await getattr(handler, f"generate_{kind}_async")(config, request, relay)
    if overrides(handler, f"generate_{kind}"):
        loop = asyncio.get_running_loop()

        def relay_from_thread(update: AnyUpdate) -> None:
            asyncio.run_coroutine_threadsafe(relay(update), loop).result()

        # A sync-only handler blocks; a worker thread keeps the loop (and other requests) running.
        return await asyncio.to_thread(getattr(handler, f"generate_{kind}"), config, request, relay_from_thread)
    raise UnsupportedCapabilityError(f"{type(handler).__name__} implements no {kind} generation")


def _check_response(kind: Kind, response: Any) -> None:
    expected = VideoGenerationResponse if kind == "video" else ImageGenerationResponse
    if not isinstance(response, expected):
        raise BadProviderResponseError(f"handler returned {type(response).__name__}, expected {expected.__name__}")
    if kind == "video" and not response.video:
        raise BadProviderResponseError("the provider returned no video")
    if kind == "image" and not any(response.images):
        raise BadProviderResponseError("the provider returned no images")


def _record_failure(attempt: AttemptMetadata, error: TarashError, secrets: Sequence[str]) -> None:
    error.message = scrub(error.message, list(secrets))
    error.args = (error.message,)
    attempt.status = type(error).outcome
    attempt.ended_at = utc_now()
    attempt.error_type = type(error).__name__
    attempt.error_message = error.message
    attempt.is_retryable = error.retryable
    attempt.request_id = attempt.request_id or error.provider_request_id


def _metadata(attempts: list[AttemptMetadata], in_chain: int, successful: int | None) -> ExecutionMetadata:
    return ExecutionMetadata(
        total_attempts=len(attempts),
        successful_attempt=successful,
        attempts=[a.model_copy() for a in attempts],
        fallback_triggered=len(attempts) > 1,
        configs_in_chain=in_chain,
    )


def _final_update(
    kind: Kind, request_id: str, status: StatusType, *, result: AnyResponse | None = None, error: str | None = None
) -> AnyUpdate:
    return _UPDATE_TYPES[kind](
        request_id=request_id,
        status=status,
        progress_percent=100 if status == "completed" else None,
        update={"event": status},
        result=result,
        error=error,
    )
