"""``ProviderHandler``: what every provider implements, in one of two shapes.

*Simple*: override ``generate_video_async`` / ``generate_image_async`` (or their sync twins). Enough for a
custom handler; the orchestrator runs it under the attempt's timeout.

*Stepped*: override ``submit``, ``poll``, ``fetch_result`` and (where the vendor allows) ``cancel``. The
orchestrator then drives the job itself (``router.steps``), which is what lets the daemon persist the vendor's
job id the moment ``submit`` returns and, after a restart, resume polling that job instead of paying for a new
one. Built-in providers are stepped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from router.errors import ProviderTimeoutError, TarashError, UnsupportedCapabilityError
from router.handler_checks import expect, handler_fault
from router.models import (
    AnyConfig,
    AnyRequest,
    AnyResponse,
    AnyUpdate,
    ImageGenerationConfig,
    ImageGenerationRequest,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    Kind,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
    VideoGenerationUpdate,
)
from router.provider_job import PollStatus, ProviderJob
from router.steps import drive
from router.sync import run_sync

#: ``provider_config`` key the daemon sets, for one submit, to the URL the vendor should push completion to.
WEBHOOK_URL_KEY = "_webhook_url"

ProgressCallback = Callable[[VideoGenerationUpdate], Awaitable[None] | None]
ImageProgressCallback = Callable[[ImageGenerationUpdate], Awaitable[None] | None]
AnyProgressCallback = Callable[[Any], Awaitable[None] | None]


class ProviderHandler:
    """Base class for provider handlers (any object with the same methods also works).

    Class attributes a handler sets:
        kinds: the kinds it can generate.
        api_key_env: conventional env vars holding its key, first found wins.
        requires_api_key: False for handlers that need no key (mock, or token-based auth).
        webhook_scheme: how its completion webhooks are verified, None if it has none.
    """

    kinds: ClassVar[frozenset[Kind]] = frozenset({"video", "image"})
    api_key_env: ClassVar[tuple[str, ...]] = ()
    requires_api_key: ClassVar[bool] = True
    #: How this vendor's completion webhooks are verified (``router.webhooks.inbound``: "fal", "replicate",
    #: "luma", "google"), or None when it pushes nothing. A handler that sets it sends
    #: ``provider_config[WEBHOOK_URL_KEY]`` with its submit when that key is set (``webhook_supported`` may
    #: narrow it to some kinds or surfaces).
    webhook_scheme: ClassVar[str | None] = None
    #: True when ``submit`` awaits ``router.steps.submit_going_out()`` itself, just before its request leaves
    #: (after any wait for a connection). A durable job records the submit then, so a crash while the request
    #: still waited is not taken for a submit that went out. False: it is recorded before ``submit`` is called.
    announces_submit: ClassVar[bool] = False

    # ---- capability check ---------------------------------------------------------------------------------
    def unsupported_reason(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> str | None:
        """Why this handler cannot serve ``request`` (the attempt is then skipped), or None if it can."""
        if kind not in self.kinds:
            return f"provider does not support {kind} generation"
        return None

    # ---- stepped shape ------------------------------------------------------------------------------------
    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        """Start a vendor job. Return its ``ProviderJob``, or the final response for synchronous vendor APIs."""
        raise NotImplementedError

    async def poll(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> PollStatus:
        """Ask the vendor how the job is doing. Raise a ``TarashError`` when the vendor says it failed."""
        raise NotImplementedError

    async def fetch_result(
        self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob, status: PollStatus
    ) -> AnyResponse:
        """Build the response of a completed job (fetching the vendor's result if it is separate)."""
        raise NotImplementedError

    async def cancel(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> None:
        """Cancel the vendor job where the vendor allows it. Best effort; the default does nothing."""

    def webhook_supported(self, kind: Kind, config: AnyConfig) -> bool:
        """Whether this attempt's vendor can push its completion (default: the handler has a ``webhook_scheme``).
        A vendor that pushes only on some surfaces or kinds says no for the others, so they keep plain polling."""
        return self.webhook_scheme is not None

    async def webhook_secret(self, config: AnyConfig) -> str:
        """The secret that verifies this vendor's signed webhooks, fetched from the vendor with ``config``'s key
        (its ``whsec_...`` Standard Webhooks secret for the "replicate" scheme). Only handlers whose
        ``webhook_scheme`` needs a vendor-held secret implement it; ``router.webhooks.inbound`` caches the answer."""
        raise NotImplementedError(f"{type(self).__name__} has no webhook secret to fetch")

    def pushed(self, kind: Kind, config: AnyConfig, job: ProviderJob, payload: Any) -> PollStatus | None:
        """What a verified push (its signature checked by ``router.webhooks.inbound``) says about ``job``, when
        its payload is the job's whole outcome: a terminal ``PollStatus`` the steps take as a poll's answer (with
        ``result`` set when it holds the result, so none is fetched); raises as ``poll`` does when the vendor
        reports the job failed. None (the default): the push is only a hint, and a status poll decides. A handler
        parses a push with the same code as its poll's answer, so both paths give the same outcome."""
        return None

    def poll_delay(self, config: AnyConfig) -> float:
        """Seconds between polls."""
        return float(config.poll_interval)

    # ---- simple shape (defaults drive the steps, so stepped handlers get these for free) -------------------
    async def generate_video_async(
        self,
        config: VideoGenerationConfig,
        request: VideoGenerationRequest,
        on_progress: ProgressCallback | None = None,
    ) -> VideoGenerationResponse:
        """Generate one video with this handler alone (no fallback chain)."""
        return await self._generate("video", config, request, on_progress)  # type: ignore[return-value]

    async def generate_image_async(
        self,
        config: ImageGenerationConfig,
        request: ImageGenerationRequest,
        on_progress: ImageProgressCallback | None = None,
    ) -> ImageGenerationResponse:
        """Generate images with this handler alone (no fallback chain)."""
        return await self._generate("image", config, request, on_progress)  # type: ignore[return-value]

    def generate_video(
        self,
        config: VideoGenerationConfig,
        request: VideoGenerationRequest,
        on_progress: ProgressCallback | None = None,
    ) -> VideoGenerationResponse:
        """Blocking form of ``generate_video_async``."""
        return run_sync(self.generate_video_async(config, request, on_progress))

    def generate_image(
        self,
        config: ImageGenerationConfig,
        request: ImageGenerationRequest,
        on_progress: ImageProgressCallback | None = None,
    ) -> ImageGenerationResponse:
        """Blocking form of ``generate_image_async``."""
        return run_sync(self.generate_image_async(config, request, on_progress))

    async def _generate(
        self, kind: Kind, config: AnyConfig, request: AnyRequest, on_progress: AnyProgressCallback | None
    ) -> AnyResponse:
        if not is_stepped(self):
            raise UnsupportedCapabilityError(f"{type(self).__name__} implements no {kind} generation")
        reason = expect(self, "unsupported_reason", self.unsupported_reason(kind, config, request), str, type(None))
        if reason:
            raise UnsupportedCapabilityError(reason, provider=config.provider, model=config.model)

        completing: list[AnyUpdate] = []

        async def deliver(update: AnyUpdate) -> None:
            if on_progress is not None:
                result = on_progress(update)
                if asyncio.iscoroutine(result):
                    await result

        async def emit(update: AnyUpdate) -> None:
            if update.status == "completed":
                completing.append(update)  # sent below, once, with the result attached
            else:
                await deliver(update)

        try:
            async with asyncio.timeout(config.timeout):
                response = await drive(self, kind, config, request, emit, generation_id="")
        except TarashError:
            raise
        except TimeoutError as exc:
            raise ProviderTimeoutError(f"attempt timed out after {config.timeout} s", provider=config.provider,
                                       model=config.model) from exc
        except Exception as exc:  # noqa: BLE001 - a bug in this handler, reported as the orchestrator does
            raise handler_fault(self, exc) from exc
        if completing:
            await deliver(completing[-1].model_copy(update={"result": response, "progress_percent": 100}))
        return response


def is_stepped(handler: object) -> bool:
    """True when ``handler`` overrides the job steps (so the orchestrator can drive and resume it)."""
    submit = getattr(type(handler), "submit", None)
    return submit is not None and submit is not ProviderHandler.submit


def overrides(handler: object, method: str) -> bool:
    """True when ``handler`` defines ``method`` itself (duck-typed handlers count if they have it)."""
    impl = getattr(type(handler), method, None)
    return impl is not None and impl is not getattr(ProviderHandler, method, None)
