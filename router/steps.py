"""The one loop that drives a stepped handler: submit, poll every ``poll_delay`` up to ``max_poll_attempts``,
fetch the result; cancel the vendor job when the attempt is abandoned (timeout, caller cancel, poll failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from router.errors import (
    BadProviderResponseError,
    ContentPolicyError,
    GenerationFailedError,
    ProviderTimeoutError,
    Secret,
    TarashError,
)
from router.handler_checks import check_response, expect
from router.models import (
    UPDATE_TYPES,
    AnyConfig,
    AnyRequest,
    AnyResponse,
    AnyUpdate,
    Kind,
)
from router.provider_job import PollStatus, ProviderJob

if TYPE_CHECKING:
    from router.handler import ProviderHandler

log = logging.getLogger("router.steps")

Emit = Callable[[AnyUpdate], Awaitable[None]]
OnJob = Callable[[ProviderJob], Awaitable[None]]
#: The before-submit hook of the attempt whose announcing handler is in ``submit`` (see ``submit_going_out``).
_SUBMIT_HOOK: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("tarash_router_submit_hook", default=None)


class PushChannel(Protocol):
    """A vendor webhook for one attempt (``router.webhooks.inbound``): it names where the vendor should push
    the job's completion, and ends a wait between polls early when a verified push arrived. A push whose signed
    payload is the job's whole outcome finishes the attempt without a poll (``ProviderHandler.pushed``); any
    other push is a hint, and the next poll decides."""

    #: The secret the webhook URL carries: like the attempt's key, kept out of whatever a vendor answers (a vendor
    #: may echo the URL back). A pattern where the attempt's earlier URL, whose secret is gone, may be echoed.
    secret: Secret

    async def open(self, config: AnyConfig) -> AnyConfig:
        """Before the submit: the config to submit with (carrying the webhook URL), or ``config`` unchanged."""
        ...

    async def wait(self, seconds: float) -> None:
        """Wait between two polls: ``seconds``, stretched while a push is expected, ended early by one."""
        ...

    def take(self) -> Any:
        """The payload of a verified, signed push that arrived for this attempt since the last take (None: none,
        or only hints). Unsigned pushes never bring one."""
        ...


#: A vendor job is paid for: a status-poll blip must not abandon it. This many retryable poll errors in a
#: row (each counting against max_poll_attempts) end the attempt; fewer are retried at the next poll.
MAX_CONSECUTIVE_POLL_ERRORS = 3
#: How long a best-effort upstream cancel may take when an attempt is abandoned.
CANCEL_TIMEOUT_SECONDS = 10.0


def make_update(kind: Kind, generation_id: str, status: PollStatus) -> AnyUpdate:
    """A poll's progress update, as the caller sees it (``request_id`` is the generation's id)."""
    return UPDATE_TYPES[kind](
        request_id=generation_id, status=status.status, progress_percent=status.progress_percent, update=status.raw
    )


async def drive(
    handler: ProviderHandler,
    kind: Kind,
    config: AnyConfig,
    request: AnyRequest,
    emit: Emit,
    *,
    generation_id: str,
    job: ProviderJob | None = None,
    on_job: OnJob | None = None,
    keep_vendor_job: Callable[[], bool] | None = None,
    push: PushChannel | None = None,
    before_submit: Callable[[], Awaitable[None]] | None = None,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AnyResponse:
    """Run one attempt through the handler's steps. With ``job`` given, resume polling it (no new submit).
    ``before_submit`` runs just before the submit goes out (a durable job records that it is sending one): from
    inside the handler's ``submit`` when it ``announces_submit``, else right before ``submit`` is called.

    ``keep_vendor_job`` returning True when the attempt is abandoned means "detach, don't cancel upstream":
    the daemon's shutdown uses it so a restarted daemon can resume the vendor job. ``push`` is the attempt's
    vendor webhook, if it has one. ``pause`` waits between polls without a push, and ``pause(0)``
    before the first: a job service passes its ``PollPacer.sleep``.
    """
    if job is None:
        submitted = await _submit(handler, kind, await push.open(config) if push else config, request, before_submit)
        if not isinstance(submitted, ProviderJob):
            return check_response(handler, kind, submitted)  # a synchronous vendor API answered at once
        job = submitted
        if on_job is not None:
            await on_job(job)
    run = _JobRun(handler, kind, config, request, emit, generation_id, job, pause, push)
    try:
        return await run.until_done()
    finally:
        if not run.terminal and not (keep_vendor_job is not None and keep_vendor_job()):
            await run.cancel_quietly()


async def _submit(handler: ProviderHandler, kind: Kind, config: AnyConfig, request: AnyRequest,
                  before_submit: Callable[[], Awaitable[None]] | None) -> ProviderJob | AnyResponse:
    if before_submit is None:
        return await handler.submit(kind, config, request)
    if not getattr(handler, "announces_submit", False):  # then its submit is recorded before it is called
        await before_submit()
        return await handler.submit(kind, config, request)
    token = _SUBMIT_HOOK.set(before_submit)
    try:
        return await handler.submit(kind, config, request)
    finally:
        _SUBMIT_HOOK.reset(token)


async def submit_going_out() -> None:
    """Called by a handler that ``announces_submit``, inside its ``submit``, the moment the vendor request is
    about to be sent (after any wait for a connection): runs the attempt's before-submit hook, which a durable
    job uses to record the submit (the request waits for that write). Once per ``submit``; outside a recorded
    submit (the library's direct calls) it does nothing."""
    hook = _SUBMIT_HOOK.get()
    if hook is not None:
        _SUBMIT_HOOK.set(None)
        await hook()


# Errors a poll raises when the vendor reports the job itself ended badly.
_TERMINAL_ERRORS = (GenerationFailedError, ContentPolicyError)
# A push payload of a shape its handler does not expect (what ``HttpProvider.parse`` turns into a bad response).
_UNREADABLE = (BadProviderResponseError, KeyError, IndexError, TypeError, ValueError, AttributeError)


@dataclass(slots=True)
class _JobRun:
    """One vendor job being polled: what its polls need, and whether it reached an end (``terminal``: then an
    abandoned attempt needs no upstream cancel)."""

    handler: ProviderHandler
    kind: Kind
    config: AnyConfig
    request: AnyRequest
    emit: Emit
    generation_id: str
    job: ProviderJob
    pause: Callable[[float], Awaitable[None]]
    push: PushChannel | None
    terminal: bool = False

    def _from_push(self, payload: Any) -> PollStatus | None:
        """The job's end as a signed push told it (``ProviderHandler.pushed``), or None: then the poll decides
        (no payload, a hint, or one whose shape the handler does not recognise: the vendor's poll is the truth)."""
        pushed = getattr(self.handler, "pushed", None)  # duck-typed handlers may lack it
        if payload is None or pushed is None:
            return None
        try:
            status = pushed(self.kind, self.config, self.job, payload)
        except _UNREADABLE as exc:
            log.warning("push about %s job %s not understood (%s), polling", self.config.provider, self.job.id,
                        type(exc).__name__)
            return None
        if status is None:
            return None
        expect(self.handler, "pushed", status, PollStatus)
        return status if status.status in ("completed", "failed") else None

    def _with_pushed_result(self, polled: PollStatus) -> PollStatus:
        """A completing poll's status, or the push's when a signed one holding the result came during the poll
        (the vendor finished as the safety-net poll went out): then no result is fetched. The poll decided."""
        if self.push is None or polled.result is not None:
            return polled
        try:
            pushed = self._from_push(self.push.take())
        except TarashError:  # a push contradicting the poll: the poll is the truth, the fetch tells
            return polled
        return pushed if pushed is not None and pushed.status == "completed" and pushed.result is not None else polled

    async def until_done(self) -> AnyResponse:
        """Poll every ``poll_delay`` (longer when the vendor asks) up to ``max_poll_attempts``; the result."""
        handler, config, job = self.handler, self.config, self.job
        delay = expect(handler, "poll_delay", handler.poll_delay(config), int, float)
        wait = delay
        errors_in_row = 0
        for poll_number in range(config.max_poll_attempts):
            # Wait for the poll's time: ``pause(0)`` before the first (a pacer bounds bursts of those too), then
            # ``pause(wait)``, or the push's wait. A poll a push woke starts at once: pushes come one request at a
            # time, and the result is what the push is waiting for. (Inline, not a coroutine of its own: one
            # object fewer per job waiting here, and one fewer made per poll.)
            if not poll_number:
                await self.pause(0)
            elif self.push is None:
                await self.pause(wait)
            else:
                await self.push.wait(wait)
            pushed = self.push.take() if self.push is not None else None  # a signed push taken meanwhile
            wait = delay
            try:
                status = self._from_push(pushed)
                if status is None:
                    status = await handler.poll(self.kind, config, job)
            except _TERMINAL_ERRORS:
                self.terminal = True
                raise
            except TarashError as exc:
                errors_in_row += 1
                if not exc.retryable or errors_in_row >= MAX_CONSECUTIVE_POLL_ERRORS:
                    raise
                # A throttled status poll waits as long as the vendor asked (the attempt timeout still bounds it).
                wait = max(delay, exc.retry_after or 0.0)
                log.warning("poll of %s job %s failed (%s), polling again", config.provider, job.id,
                            type(exc).__name__)
                continue
            errors_in_row = 0
            expect(handler, "poll", status, PollStatus)  # a handler bug, not a poll blip: never retried
            if status.status in ("completed", "failed"):
                self.terminal = True
            if status.status == "completed":
                # The completing poll's payload goes out too: the emitter holds it back and sends it once, with
                # the result attached (the orchestrator's final update), so callers see the vendor's answer.
                await self.emit(make_update(self.kind, self.generation_id, status))
                status = self._with_pushed_result(status)
                result = await handler.fetch_result(self.kind, config, self.request, job, status)
                return check_response(handler, self.kind, result)
            if status.status == "failed":
                raise GenerationFailedError(
                    "the vendor reported the job failed",
                    provider=config.provider,
                    model=config.model,
                    provider_request_id=job.id,
                    raw=status.raw,
                )
            wait = max(delay, status.poll_after or 0.0)
            await self.emit(make_update(self.kind, self.generation_id, status))
        raise ProviderTimeoutError(
            f"no result after {config.max_poll_attempts} polls",
            provider=config.provider,
            model=config.model,
            provider_request_id=job.id,
        )

    async def cancel_quietly(self) -> None:
        """Best-effort upstream cancel of an abandoned job (see ``cancel_vendor_job``)."""
        await cancel_vendor_job(self.handler, self.kind, self.config, self.job)


async def cancel_vendor_job(handler: ProviderHandler, kind: Kind, config: AnyConfig, job: ProviderJob) -> None:
    """Best-effort upstream cancel, bounded by ``CANCEL_TIMEOUT_SECONDS``; a failure is logged, not raised.
    Shielded: we are usually here because this task is being cancelled or timed out, and the cancel (which stops
    the vendor billing us) must still go out."""
    try:
        await asyncio.shield(asyncio.wait_for(handler.cancel(kind, config, job), CANCEL_TIMEOUT_SECONDS))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - cancel is best effort; the attempt's own error matters more
        log.warning("cancel of %s job %s failed: %s", config.provider, job.id, type(exc).__name__)
