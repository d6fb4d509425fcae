"""The fallback loop: one implementation, generic over kind (video | image), run by the library, the daemon and
the job runner alike.

A caller describes one generation as a ``Generation`` (kind, request, the chain of attempt configs, who
listens, and the daemon's safeguards when there are any) and hands it to ``run_generation``; the library's
``run_chain`` builds one from a config and its ``fallback_configs``. The chain runs its attempts in order:

1. checks (``_checked``): the handler exists, the key resolves, the provider can take the request, the
   provider's circuit is not open; a check that fails *skips* the attempt (never sent);
2. the calls (``_with_retries``): submit/poll/result or the simple call, under the attempt's ``timeout``
   and its provider slot, retried per the route's policy;
3. the breaker accounting (``_BreakerClaim``): how the attempt ended tells the vendor's circuit.

An attempt that fails yields the error and the fallback decision (``_Failure.falls_back``, from
``router.policy``); a decision to fall back moves on to the next config, any other ends the chain. Every
event goes to the observers (metrics, logs, the job store) from here, the one place that knows them all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.breakers import CircuitBreakers
from router.deadlines import CallDeadlines
from router.errors import (
    AllAttemptsFailedError,
    AmbiguousSubmitError,
    BadProviderResponseError,
    CircuitOpenError,
    CostCeilingError,
    GenerationCancelledError,
    ProviderTimeoutError,
    Secret,
    TarashError,
    UnsupportedCapabilityError,
    redact,
    scrub,
    secret_forms,
)
from router.handler import is_stepped, overrides
from router.handler_checks import check_response, expect, handler_fault
from router.limits import ProviderLimits
from router.models import (
    UPDATE_TYPES,
    AnyConfig,
    AnyRequest,
    AnyResponse,
    AnyUpdate,
    AttemptMetadata,
    ExecutionMetadata,
    Kind,
    StatusType,
    flatten_chain,
    utc_now,
)
from router.observers import ChainEvents, ChainObserver, ProgressCallback
from router.policy import AttemptPolicy
from router.pricing import Quote, chain_costs, charged, estimate, failed_cost
from router.pricing.ceiling import ceiling_reason
from router.provider_job import ProviderJob
from router.registry import handler_for, resolve_api_key
from router.steps import PushChannel, drive

log = logging.getLogger("router.orchestrator")

_NO_LIMITS = ProviderLimits()

__all__ = ["ChainObserver", "Generation", "ProgressCallback", "ResumePoint", "run_chain", "run_generation"]


@dataclass
class ResumePoint:
    """Where to pick a chain up after a restart: attempts already ended, the 1-based attempt to run next,
    and that attempt's vendor job if it had been submitted (it is polled, not submitted again)."""

    next_attempt: int
    attempts: list[AttemptMetadata] = field(default_factory=list)
    job: ProviderJob | None = None
    started_at: datetime | None = None
    #: The next attempt's submit went out and its answer was never recorded (the process died in between):
    #: the vendor may hold that job, so the attempt ends ambiguous (``on_ambiguous_submit``), never resubmitted.
    submit_unanswered: bool = False


@dataclass(slots=True)
class Generation:
    """One generation as the orchestrator runs it: built once by the caller, read by every attempt, changed by
    nobody (not a frozen dataclass: its ``__init__`` would set each of its fields through ``object.__setattr__``,
    2.6 against 0.4 µs a generation).

    ``generation_id`` is the response's ``request_id`` (the job id for a job). ``breakers`` skips attempts on
    providers whose circuit is open; ``limits`` caps each provider's concurrency and rate: a busy provider is
    skipped, or waited for with ``wait_for_capacity`` (a durable job is never dropped for capacity).
    ``keep_vendor_job``, checked when the task is cancelled, leaves the vendor job running for a later
    resume (the daemon's shutdown). ``resume`` picks the chain up where a previous process left it.
    ``push_for`` gives an attempt a vendor webhook (``router.steps.PushChannel``), or None for plain polling.
    ``before_submit`` is awaited just before an attempt's submit goes out (a durable job records it, so a
    crash before the answer is recorded is never followed by a second submit). ``pause`` is how an attempt
    waits between status polls (``asyncio.sleep``; a job service passes its ``PollPacer``'s: see ``drive``).
    ``policies``, when given, are the chain's ``AttemptPolicy`` per attempt (a route works them out once per routes
    load, ``Route.policies``); otherwise each is read from its config as its attempt starts. ``deadlines``, when
    given, bounds an attempt's ``timeout`` of 5 s or more on its shared tick (``router.deadlines``: within a second
    after it is due, with no timer of the attempt's own); otherwise each attempt has an exact timer.
    """

    kind: Kind
    request: AnyRequest
    chain: tuple[AnyConfig, ...]
    generation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    on_progress: ProgressCallback | None = None
    observers: Sequence[ChainObserver] = ()
    breakers: CircuitBreakers | None = None
    limits: ProviderLimits = _NO_LIMITS
    wait_for_capacity: bool = False
    keep_vendor_job: Callable[[], bool] | None = None
    resume: ResumePoint | None = None
    push_for: Callable[[AttemptMetadata, AnyConfig], PushChannel | None] | None = None
    before_submit: Callable[[AttemptMetadata], Awaitable[None]] | None = None
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep
    policies: Sequence[AttemptPolicy] = ()
    deadlines: CallDeadlines | None = None


async def run_chain(
    kind: Kind,
    config: AnyConfig,
    request: AnyRequest,
    on_progress: ProgressCallback | None = None,
    *,
    observers: Sequence[ChainObserver] = (),
    breakers: CircuitBreakers | None = None,
    chain: Sequence[AnyConfig] | None = None,
    resume: ResumePoint | None = None,
) -> AnyResponse:
    """Run ``request`` through the fallback chain of ``config`` and return the first success.

    Raises the first error that does not fall back (see ``router.policy``), or ``AllAttemptsFailedError``
    when the chain is exhausted; either carries ``execution_metadata``. ``chain`` replaces the flattened
    ``[config, *fallback_configs]``. The daemon's safeguards (limits, detaching at shutdown) are fields of
    ``Generation``: see ``run_generation``.
    """
    configs = tuple(chain) if chain is not None else tuple(flatten_chain(config))
    return await run_generation(Generation(kind, request, configs, on_progress=on_progress, observers=observers,
                                           breakers=breakers, resume=resume))


async def run_generation(generation: Generation) -> AnyResponse:
    """Run ``generation``'s chain: the first success is returned, the end of the chain raised (as ``run_chain``)."""
    return await _ChainRun(generation).run()


@dataclass(slots=True)
class _Attempt:
    """One attempt of a chain run: its config, its ``AttemptMetadata`` (filled in as it goes), its policy, and
    the persisted vendor job it resumes, if any. Slotted, and its hooks are its methods rather than closures: a
    job's attempt lives for minutes, and every object it holds is walked by the cyclic GC."""

    generation: Generation
    events: ChainEvents
    config: AnyConfig
    metadata: AttemptMetadata
    policy: AttemptPolicy
    resume_job: ProviderJob | None = None
    #: Resumed after its submit went out unanswered: it ends ambiguous, without a call (``ResumePoint``).
    submit_unanswered: bool = False
    #: The attempt's price and estimate (router/pricing), set by the checks.
    quote: Quote | None = None
    #: The update of the poll that saw the job complete: held back, and sent once as the final update, with the
    #: result attached, when this attempt's result is the one returned.
    completing: AnyUpdate | None = None
    #: The attempt's credentials, once resolved: no vendor-supplied string that reaches a client, a log or the
    #: job store may carry them (a hostile or broken vendor may echo them anywhere).
    secrets: tuple[Secret, ...] = ()
    #: The config the calls go out with (its key resolved), set by the checks.
    keyed: AnyConfig | None = None

    async def progress(self, update: AnyUpdate) -> None:
        """An update from the running try: sent on, except a "completed" one (held, see ``completing``)."""
        if self.secrets:
            raw = redact(update.update, self.secrets)
            if raw is not update.update:
                update = update.model_copy(update={"update": raw})
        if update.status == "completed":
            self.completing = update
        else:
            await self.events.progress(update)

    async def on_job(self, job: ProviderJob) -> None:
        """The vendor job a submit returned: recorded in the metadata, told to the observers."""
        if redact(job.id, self.secrets) is not job.id or redact(job.data, self.secrets) is not job.data:
            # The id must be stored to resume the job, and must never be stored: the attempt ends here.
            raise BadProviderResponseError("the vendor's job id contains our credentials; not stored, not used")
        self.metadata.request_id = job.id
        assert self.keyed is not None  # a submit follows the checks
        await self.events.provider_job(self.metadata, self.keyed, job)

    async def before_submit(self) -> None:
        """The generation's ``before_submit``, for this attempt."""
        assert self.generation.before_submit is not None
        await self.generation.before_submit(self.metadata)


@dataclass
class _Failure:
    """How an attempt failed: the error (provider, model and vendor id filled in, secrets scrubbed) and whether
    the chain falls back to the next attempt."""

    error: TarashError
    falls_back: bool


class _ChainRun:
    """One run of a generation's chain: the attempts so far, the open one, and the end events."""

    __slots__ = ("generation", "events", "attempts", "open", "finished", "sent_error")

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.events = ChainEvents(generation.on_progress, generation.observers)
        self.attempts: list[AttemptMetadata] = list(generation.resume.attempts) if generation.resume else []
        self.open: _Attempt | None = None  # started, not yet finished
        self.finished = False  # chain_finished delivered
        self.sent_error: TarashError | None = None  # of the last attempt that was sent, not skipped

    async def run(self) -> AnyResponse:
        chain = self.generation.chain
        resume = self.generation.resume
        last_error: TarashError | None = None
        try:
            for number in range(resume.next_attempt if resume else 1, len(chain) + 1):
                attempt = await self._start(number)
                outcome = await _run_attempt(attempt)
                self.open = None
                if not isinstance(outcome, _Failure):
                    return await self._succeed(attempt, outcome)
                last_error = outcome.error
                if attempt.metadata.status == "failed":
                    self.sent_error = outcome.error
                await self.events.attempt_finished(attempt.metadata, attempt.config, outcome.error)
                if not outcome.falls_back or number == len(chain):
                    raise await self._fail(outcome)
                await self._fall_back(attempt, chain[number], outcome.error)
            # Only reachable when resuming past the end of the chain (nothing left to try).
            error = AllAttemptsFailedError(last_error or ProviderTimeoutError("no attempt left to run"),
                                           self._metadata(None), self.sent_error)
            await self._end(error.execution_metadata, error)  # type: ignore[arg-type]
            raise error
        except asyncio.CancelledError:
            # Wherever the cancel lands (in an attempt, or while an observer awaited between attempts), every
            # observer still hears the open attempt and the chain end: metrics' in-flight gauge depends on it.
            if not self.finished:
                await asyncio.shield(self._end_cancelled())
            raise

    async def _start(self, number: int) -> _Attempt:
        generation, config = self.generation, self.generation.chain[number - 1]
        resume = generation.resume if generation.resume and number == generation.resume.next_attempt else None
        metadata = AttemptMetadata(
            provider=config.provider,
            model=config.model,
            attempt_number=number,
            started_at=(resume.started_at if resume and resume.started_at else utc_now()),
            status="failed",
        )
        self.attempts.append(metadata)
        policy = generation.policies[number - 1] if generation.policies else AttemptPolicy.of(generation.kind, config)
        attempt = _Attempt(generation, self.events, config, metadata, policy,
                           resume.job if resume else None,
                           submit_unanswered=bool(resume and resume.job is None and resume.submit_unanswered))
        self.open = attempt
        await self.events.attempt_started(metadata, config)
        return attempt

    async def _succeed(self, attempt: _Attempt, response: AnyResponse) -> AnyResponse:
        attempt.metadata.status = "success"
        attempt.metadata.ended_at = utc_now()
        metadata = self._metadata(attempt.metadata.attempt_number)
        await self.events.attempt_finished(attempt.metadata, attempt.config, None)
        response = response.model_copy(update={"request_id": self.generation.generation_id,
                                                "execution_metadata": metadata})
        if self.events.active:
            await self.events.progress(self._final_update("completed", result=response, completing=attempt.completing))
        await self._end(metadata, None)
        return response

    async def _fall_back(self, attempt: _Attempt, to_config: AnyConfig, error: TarashError) -> None:
        await self.events.fallback(attempt.config, to_config, error)
        if self.events.active:
            await self.events.progress(UPDATE_TYPES[self.generation.kind](
                request_id=self.generation.generation_id,
                status="queued",
                update={
                    "event": "fallback",
                    "from_provider": attempt.config.provider,
                    "to_provider": to_config.provider,
                    "error_type": type(error).__name__,
                    "error": error.message,
                },
            ))

    async def _fail(self, failure: _Failure) -> TarashError:
        """The error that ends the chain: a refusal as it is, the last fallback's as ``AllAttemptsFailedError``."""
        error = failure.error
        metadata = self._metadata(None)
        final = error if not failure.falls_back else AllAttemptsFailedError(error, metadata, self.sent_error)
        final.execution_metadata = error.execution_metadata = metadata
        if final is not error:
            final.__cause__ = error
        if self.events.active:
            await self.events.progress(self._final_update("failed", error=str(final)))
        await self._end(metadata, final)
        return final

    async def _end(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        self.finished = True
        await self.events.chain_finished(metadata, error)

    async def _end_cancelled(self) -> None:
        """Tell the observers a cancelled chain ended: the open attempt (if any) as cancelled, then the chain."""
        last = self.attempts[-1]
        cancelled = GenerationCancelledError("the caller cancelled the generation", provider=last.provider,
                                             model=last.model)
        if self.open is not None:
            _record_failure(self.open.metadata, cancelled, (), falls_back=False)
        cancelled.execution_metadata = self._metadata(None)
        if self.open is not None:
            await self.events.attempt_finished(self.open.metadata, self.open.config, cancelled)
        await self.events.chain_finished(cancelled.execution_metadata, cancelled)

    def _metadata(self, successful: int | None) -> ExecutionMetadata:
        estimated, total = chain_costs(self.attempts, successful)
        return ExecutionMetadata(
            estimated_cost_usd=estimated,
            total_cost_usd=total,
            total_attempts=len(self.attempts),
            successful_attempt=successful,
            attempts=[a.model_copy() for a in self.attempts],
            fallback_triggered=len(self.attempts) > 1,
            configs_in_chain=len(self.generation.chain),
        )

    def _final_update(self, status: StatusType, *, result: AnyResponse | None = None,
                      error: str | None = None, completing: AnyUpdate | None = None) -> AnyUpdate:
        """The update that ends the generation. A success carries the completing poll's raw payload when the
        vendor was polled (a synchronous answer has none: ``{"event": "completed"}``)."""
        return UPDATE_TYPES[self.generation.kind](
            request_id=self.generation.generation_id,
            status=status,
            progress_percent=100 if status == "completed" else None,
            update=completing.update if completing is not None else {"event": status},
            result=result,
            error=error,
        )


# ---- one attempt --------------------------------------------------------------------------------------------
async def _run_attempt(attempt: _Attempt) -> AnyResponse | _Failure:
    """Checks, calls, breaker accounting: the response, or how the attempt failed. A cancel propagates."""
    config = attempt.config
    claim: _BreakerClaim | None = None
    handler: Any = None
    try:
        handler = handler_for(attempt.config)
        config = attempt.keyed = _checked(attempt, handler)
        attempt.secrets = secret_forms(config.api_key) if config.api_key else ()
        claim = _BreakerClaim.take(attempt.generation.breakers, config)
        response = await _with_retries(attempt, handler, config)
    except asyncio.CancelledError:
        if claim is not None:
            claim.abandoned()
        raise
    except TimeoutError as exc:
        error: TarashError = ProviderTimeoutError(f"attempt timed out after {config.timeout} s")
        error.__cause__ = exc
    except TarashError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - a handler bug or an unmapped library error
        error = handler_fault(handler, exc) if handler is not None else BadProviderResponseError(
            f"loading provider {config.provider!r} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    else:
        response = _redacted(response, attempt.secrets)
        vendor_job_id = response.provider_metadata.get("provider_request_id")
        if vendor_job_id and not attempt.metadata.request_id:
            attempt.metadata.request_id = str(vendor_job_id)
        attempt.metadata.request_id = redact(attempt.metadata.request_id, attempt.secrets)
        attempt.metadata.cost_usd = charged(attempt.quote, attempt.generation.request, response)
        if claim is not None:
            claim.succeeded()
        return response
    falls_back = attempt.policy.falls_back(error)
    if isinstance(error, AmbiguousSubmitError):
        error.message += (f" (on_ambiguous_submit={attempt.policy.on_ambiguous_submit}: "
                          f"{'falling back' if falls_back else 'stopping'})")
    if claim is not None:
        claim.failed(error)
    error.provider = error.provider or config.provider
    error.model = error.model or config.model
    error.provider_request_id = error.provider_request_id or attempt.metadata.request_id
    _record_failure(attempt.metadata, error, attempt.secrets, falls_back=falls_back)
    attempt.metadata.cost_usd = failed_cost(config.provider, error.outcome != "skipped", error.raw, attempt.quote)
    return _Failure(error, falls_back)


def _checked(attempt: _Attempt, handler: Any) -> AnyConfig:
    """The attempt's config with the key resolved, or the error that skips the attempt."""
    config = resolve_api_key(handler, attempt.config)
    attempt.quote = quote = estimate(config, attempt.generation.request)
    attempt.metadata.estimated_cost_usd, attempt.metadata.price_source = quote.usd, quote.source
    reason = _unsupported_reason(handler, attempt.generation.kind, config, attempt.generation.request)
    if reason:
        raise UnsupportedCapabilityError(reason)
    if reason := ceiling_reason(config, quote):
        raise CostCeilingError(reason, code="cost_ceiling")
    return config


@dataclass(slots=True)
class _BreakerClaim:
    """An attempt that passed its provider's circuit breaker, and so must report back how it ended."""

    breakers: CircuitBreakers
    provider: str
    model: str

    @classmethod
    def take(cls, breakers: CircuitBreakers | None, config: AnyConfig) -> _BreakerClaim | None:
        """Pass the breaker (None without breakers), or ``CircuitOpenError`` when its circuit is open."""
        if breakers is None:
            return None
        if reason := breakers.allow(config.provider, config.model):
            raise CircuitOpenError(reason)
        return cls(breakers, config.provider, config.model)

    def succeeded(self) -> None:
        self.breakers.record(self.provider, self.model, success=True)

    def abandoned(self) -> None:
        """Cancelled, or skipped for our own capacity limit: says nothing about the vendor's health."""
        self.breakers.record(self.provider, self.model, success=False, counts=False)

    def failed(self, error: TarashError) -> None:
        # Only failures that say the vendor is unhealthy count; a refusal (policy, bad input) means it is up.
        if error.outcome == "skipped":
            self.abandoned()
        else:
            self.breakers.record(self.provider, self.model, success=not error.retryable)


async def _with_retries(attempt: _Attempt, handler: Any, config: AnyConfig) -> AnyResponse:
    """The attempt's calls, retried per its policy. One timeout bounds the attempt, its retries and their
    backoff (and a job's wait for a provider slot)."""
    generation = attempt.generation
    if attempt.submit_unanswered:
        raise AmbiguousSubmitError(f"{config.provider} submit was sent before a restart and its answer was never "
                                   "recorded; the vendor may have accepted the job, so it is not submitted again",
                                   provider=config.provider)
    deadline = generation.deadlines.block(config.timeout) if generation.deadlines else asyncio.timeout(config.timeout)
    async with deadline, generation.limits.slot(config.provider, wait=generation.wait_for_capacity):
        tried = 0
        while True:
            try:
                return await _call(attempt, handler, config, attempt.resume_job if tried == 0 else None)
            except TarashError as exc:
                if not attempt.policy.retries_on(exc, tried):
                    raise
                delay = attempt.policy.backoff(tried)
                tried += 1
                log.info("retrying %s/%s in %.2f s (%s)", config.provider, config.model, delay, type(exc).__name__)
                await asyncio.sleep(delay)


async def _call(attempt: _Attempt, handler: Any, config: AnyConfig, resume_job: ProviderJob | None) -> AnyResponse:
    """One try: the stepped handler driven (or its persisted vendor job resumed), or the simple call."""
    generation = attempt.generation
    attempt.completing = None  # a completing poll of an earlier, failed try is not this try's
    if is_stepped(handler):
        if resume_job is not None:
            attempt.metadata.request_id = resume_job.id
        push = generation.push_for(attempt.metadata, config) if generation.push_for else None
        if push is not None:
            attempt.secrets += (push.secret,)
        return await drive(  # drive checks what the handler's steps return
            handler, generation.kind, config, generation.request, attempt.progress,
            generation_id=generation.generation_id, job=resume_job, on_job=attempt.on_job,
            keep_vendor_job=generation.keep_vendor_job, push=push,
            before_submit=attempt.before_submit if generation.before_submit else None,
            pause=generation.pause,
        )
    result = check_response(handler, generation.kind, await _call_simple(handler, attempt, config))
    # A simple handler reports the vendor's id in provider_metadata["provider_request_id"], or as its response's
    # request_id as tarash-gateway handlers do (the response then gets the generation's id).
    vendor_id = result.provider_metadata.get("provider_request_id") or result.request_id
    if vendor_id:
        attempt.metadata.request_id = str(vendor_id)
    return result


def _unsupported_reason(handler: Any, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
    check = getattr(handler, "unsupported_reason", None)
    if check is not None:
        return expect(handler, "unsupported_reason", check(kind, config, request), str, type(None))
    kinds = getattr(handler, "kinds", None)
    if kinds is not None and kind not in kinds:
        return f"provider does not support {kind} generation"
    return None


async def _call_simple(handler: Any, attempt: _Attempt, config: AnyConfig) -> AnyResponse:
    """Call a handler that only implements ``generate_<kind>[_async]``."""
    kind, request = attempt.generation.kind, attempt.generation.request

    async def relay(update: AnyUpdate) -> None:
        await attempt.progress(update.model_copy(update={"request_id": attempt.generation.generation_id}))

    if overrides(handler, f"generate_{kind}_async"):
        return await getattr(handler, f"generate_{kind}_async")(config, request, relay)  # type: ignore[no-any-return]
    if overrides(handler, f"generate_{kind}"):
        loop = asyncio.get_running_loop()

        def relay_from_thread(update: AnyUpdate) -> None:
            asyncio.run_coroutine_threadsafe(relay(update), loop).result()

        # A sync-only handler blocks; a worker thread keeps the loop (and other requests) running.
        return await asyncio.to_thread(getattr(handler, f"generate_{kind}"), config, request, relay_from_thread)  # type: ignore[no-any-return]
    raise UnsupportedCapabilityError(f"{type(handler).__name__} implements no {kind} generation")


def _redacted(response: AnyResponse, secrets: Sequence[Secret]) -> AnyResponse:
    """``response`` with the attempt's credentials removed from every vendor-supplied field (raw answer,
    provider metadata, media URLs...); the same object when none carries them."""
    if not secrets:
        return response
    values = list(response.__dict__.values())  # pydantic keeps the fields here: one walk when all are clean
    if redact(values, secrets) is values:
        return response
    changed = {name: clean for name in type(response).model_fields
               if (clean := redact(value := getattr(response, name), secrets)) is not value}
    return response.model_copy(update=changed) if changed else response


def _record_failure(metadata: AttemptMetadata, error: TarashError, secrets: Sequence[Secret], *,
                    falls_back: bool) -> None:
    """Write a failed attempt's end into its metadata. ``is_retryable`` reports the fallback decision (the
    spec's field: whether the chain moved on because of this error)."""
    error.message = scrub(error.message, secrets)
    error.args = (error.message,)
    # Everything else a vendor may have put in the error reaches the client and the job store too.
    error.code = redact(error.code, secrets)
    error.provider_request_id = redact(error.provider_request_id, secrets)
    error.raw = redact(error.raw, secrets)
    metadata.status = type(error).outcome
    metadata.ended_at = utc_now()
    metadata.error_type = type(error).__name__
    metadata.error_message = error.message
    metadata.is_retryable = falls_back
    metadata.request_id = metadata.request_id or error.provider_request_id
