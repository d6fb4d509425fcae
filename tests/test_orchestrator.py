"""The fallback loop, exercised with handlers registered through ``register_provider``."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import router
from router import (
    AllAttemptsFailedError,
    AmbiguousSubmitError,
    ContentPolicyError,
    ImageGenerationConfig,
    ImageGenerationRequest,
    ImageGenerationResponse,
    PollStatus,
    ProviderHandler,
    ProviderJob,
    ProviderUnavailableError,
    RateLimitError,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
    VideoGenerationUpdate,
)
from router.deadlines import CallDeadlines
from router.models import flatten_chain
from router.orchestrator import ChainObserver, Generation, ResumePoint, run_chain, run_generation

SECRET = "sk-canary-orchestrator-0123456789"


def video_response(**kw: Any) -> VideoGenerationResponse:
    return VideoGenerationResponse(request_id="ignored", video="https://cdn.example/v.mp4", **kw)


class Scripted(ProviderHandler):
    """A simple-shape handler that raises or returns what it is told, and records its calls."""

    api_key_env: ClassVar[tuple[str, ...]] = ()
    requires_api_key: ClassVar[bool] = False

    def __init__(self, outcome: Any = None, delay: float = 0.0) -> None:
        self.outcome = outcome
        self.delay = delay
        self.calls: list[Any] = []

    async def generate_video_async(self, config, request, on_progress=None):  # type: ignore[override]
        self.calls.append(config)
        if on_progress:
            await on_progress(VideoGenerationUpdate(request_id="vendor", status="processing", progress_percent=50))
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome or video_response()

    async def generate_image_async(self, config, request, on_progress=None):  # type: ignore[override]
        self.calls.append(config)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome or ImageGenerationResponse(request_id="x", images=["aGk="])


class Stepped(ProviderHandler):
    """A stepped handler: `statuses` are returned by successive polls; records submits, polls, cancels."""

    requires_api_key: ClassVar[bool] = False

    def __init__(self, statuses: list[Any], submit_error: Exception | None = None) -> None:
        self.statuses = list(statuses)
        self.submit_error = submit_error
        self.submits = 0
        self.polls = 0
        self.cancelled: list[str] = []

    def poll_delay(self, config):  # type: ignore[override]
        return 0.001

    async def submit(self, kind, config, request):  # type: ignore[override]
        self.submits += 1
        if self.submit_error:
            raise self.submit_error
        return ProviderJob(id=f"job-{self.submits}", data={"n": self.submits})

    async def poll(self, kind, config, job):  # type: ignore[override]
        self.polls += 1
        step = self.statuses[min(self.polls - 1, len(self.statuses) - 1)]
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        return PollStatus(status=step, raw={"poll": self.polls}, progress_percent=min(self.polls * 10, 100))

    async def fetch_result(self, kind, config, request, job, status):  # type: ignore[override]
        return video_response(provider_metadata={"job": job.id})

    async def cancel(self, kind, config, job):  # type: ignore[override]
        self.cancelled.append(job.id)


def chain(*providers: str, cls: type = VideoGenerationConfig, **kw: Any) -> Any:
    configs = [cls(provider=p, model=f"{p}-model", **kw) for p in providers]
    return configs[0].model_copy(update={"fallback_configs": configs[1:] or None})


REQUEST = VideoGenerationRequest(prompt="a fox")


async def test_success_first_attempt(provider: Any) -> None:
    name = provider(Scripted())
    response = await router.generate_video_async(chain(name), REQUEST)
    metadata = response.execution_metadata
    assert metadata is not None
    assert (metadata.total_attempts, metadata.successful_attempt, metadata.fallback_triggered, metadata.configs_in_chain) == (1, 1, False, 1)
    attempt = metadata.attempts[0]
    assert attempt.status == "success" and attempt.provider == name and attempt.model == f"{name}-model"
    assert attempt.started_at.tzinfo is not None and attempt.ended_at is not None and attempt.elapsed_seconds >= 0
    assert len(response.request_id) == 32 and response.request_id != "ignored"


async def test_fallback_on_retryable_error(provider: Any) -> None:
    first = provider(Scripted(RateLimitError("busy", http_status=429, provider_request_id="v-1")))
    second = provider(Scripted())
    response = await router.generate_video_async(chain(first, second, "never-reached"), REQUEST)
    metadata = response.execution_metadata
    assert metadata is not None and metadata.fallback_triggered and metadata.successful_attempt == 2
    assert metadata.configs_in_chain == 3 and metadata.total_attempts == 2
    failed, won = metadata.attempts
    assert (failed.attempt_number, failed.status, failed.error_type, failed.error_message, failed.is_retryable,
            failed.request_id) == (1, "failed", "RateLimitError", "busy", True, "v-1")
    assert won.attempt_number == 2 and won.status == "success" and won.started_at >= failed.ended_at


async def test_non_retryable_error_stops_the_chain(provider: Any) -> None:
    first = provider(Scripted(ContentPolicyError("unsafe prompt")))
    second = Scripted()
    with pytest.raises(ContentPolicyError) as info:
        await router.generate_video_async(chain(first, provider(second)), REQUEST)
    assert second.calls == []
    metadata = info.value.execution_metadata
    assert metadata is not None and metadata.total_attempts == 1 and metadata.successful_attempt is None
    assert metadata.attempts[0].is_retryable is False and info.value.provider == first


async def test_all_attempts_failed_carries_metadata(provider: Any) -> None:
    names = [provider(Scripted(ProviderUnavailableError(f"down {i}", http_status=503))) for i in range(3)]
    with pytest.raises(AllAttemptsFailedError) as info:
        await router.generate_video_async(chain(*names), REQUEST)
    error = info.value
    assert isinstance(error.last_error, ProviderUnavailableError) and error.last_error.message == "down 2"
    assert error.http_status == 503 and error.provider == names[2]
    assert [a.status for a in error.execution_metadata.attempts] == ["failed"] * 3
    assert "all 3 attempts failed" in str(error)


async def test_missing_key_is_skipped_and_names_env_var(provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class NeedsKey(Scripted):
        requires_api_key = True
        api_key_env = ("TEST_VENDOR_KEY", "TEST_VENDOR_KEY_ALT")

    monkeypatch.delenv("TEST_VENDOR_KEY", raising=False)
    monkeypatch.delenv("TEST_VENDOR_KEY_ALT", raising=False)
    keyed = NeedsKey()
    response = await router.generate_video_async(chain(provider(keyed), provider(Scripted())), REQUEST)
    skipped = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert keyed.calls == []
    assert skipped.status == "skipped" and skipped.error_type == "MissingCredentialsError"
    assert "TEST_VENDOR_KEY" in (skipped.error_message or "") and "TEST_VENDOR_KEY_ALT" in (skipped.error_message or "")


async def test_key_resolution_order(provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class NeedsKey(Scripted):
        requires_api_key = True
        api_key_env = ("TEST_VENDOR_KEY",)

    handler = NeedsKey()
    name = provider(handler)
    monkeypatch.setenv("TEST_VENDOR_KEY", "from-env")
    monkeypatch.setenv("MY_OWN_KEY_VAR", "from-custom-env")
    await router.generate_video_async(chain(name), REQUEST)
    await router.generate_video_async(chain(name, provider_config={"api_key_env": "MY_OWN_KEY_VAR"}), REQUEST)
    await router.generate_video_async(chain(name, api_key="explicit"), REQUEST)
    assert [c.api_key for c in handler.calls] == ["from-env", "from-custom-env", "explicit"]


async def test_unknown_provider_is_skipped_with_known_names(provider: Any) -> None:
    good = provider(Scripted())
    response = await router.generate_video_async(chain("no-such-vendor", good), REQUEST)
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.status == "skipped" and "no-such-vendor" in (attempt.error_message or "")
    assert "mock" in (attempt.error_message or "") and good in (attempt.error_message or "")
    with pytest.raises(router.UnknownProviderError, match="known providers"):
        router.registry.get_handler("no-such-vendor")


async def test_unsupported_kind_is_skipped(provider: Any) -> None:
    class ImageOnly(Scripted):
        kinds = frozenset({"image"})

    image_only = ImageOnly()
    response = await router.generate_video_async(chain(provider(image_only), provider(Scripted())), REQUEST)
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.status == "skipped" and attempt.error_type == "UnsupportedCapabilityError"
    assert image_only.calls == []


async def test_all_skipped_raises_with_last_skip(provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class ImageOnly(Scripted):
        kinds = frozenset({"image"})

    with pytest.raises(AllAttemptsFailedError) as info:
        await router.generate_video_async(chain(provider(ImageOnly())), REQUEST)
    assert isinstance(info.value.last_error, router.UnsupportedCapabilityError)


async def test_attempt_timeout_falls_back(provider: Any) -> None:
    slow = provider(Scripted(delay=3600))
    fast = provider(Scripted())
    config = chain(slow, fast).model_copy(update={"timeout": 0.05})
    response = await router.generate_video_async(config, REQUEST)
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.error_type == "ProviderTimeoutError" and attempt.is_retryable and "0.05" in (attempt.error_message or "")


async def test_attempt_timeout_on_a_shared_tick_falls_back_the_same(provider: Any) -> None:
    """A daemon's attempts bound a long timeout on one tick (``Generation.deadlines``): the same error and fallback
    as an exact timer, and nothing left open. 10-ms ticks stand for the daemon's 1-s ones."""
    deadlines = CallDeadlines(tick=0.01, exact_below=0.05)
    config = chain(provider(Scripted(delay=3600)), provider(Scripted())).model_copy(update={"timeout": 0.05})
    response = await run_generation(Generation("video", REQUEST, tuple(flatten_chain(config)), deadlines=deadlines))
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.error_type == "ProviderTimeoutError" and attempt.is_retryable
    assert "0.05" in (attempt.error_message or "")
    assert response.execution_metadata.successful_attempt == 2  # type: ignore[union-attr]
    assert not deadlines._due  # noqa: SLF001


async def test_stepped_polls_and_reports_progress(provider: Any) -> None:
    handler = Stepped(["queued", "processing", "processing", "completed"])
    updates: list[VideoGenerationUpdate] = []
    response = await router.generate_video_async(chain(provider(handler)), REQUEST, updates.append)
    assert handler.submits == 1 and handler.polls == 4 and handler.cancelled == []
    assert [u.status for u in updates] == ["queued", "processing", "processing", "completed"]
    assert [u.progress_percent for u in updates[:3]] == [10, 20, 30] and updates[0].update == {"poll": 1}
    assert updates[-1].result == response and updates[-1].progress_percent == 100
    assert {u.request_id for u in updates} == {response.request_id}
    assert response.execution_metadata.attempts[0].request_id == "job-1"  # type: ignore[union-attr]


async def test_async_progress_callback_and_raising_callback(provider: Any, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def on_progress(update: VideoGenerationUpdate) -> None:
        await asyncio.sleep(0)
        seen.append(update.status)
        raise RuntimeError("callback bug")

    handler = Stepped(["processing", "completed"])
    response = await router.generate_video_async(chain(provider(handler)), REQUEST, on_progress)
    assert response.video and seen == ["processing", "completed"]
    assert "on_progress callback raised" in caplog.text


async def test_max_poll_attempts_times_out_and_cancels_vendor_job(provider: Any) -> None:
    handler = Stepped(["processing"])
    config = chain(provider(handler)).model_copy(update={"max_poll_attempts": 3})
    with pytest.raises(AllAttemptsFailedError) as info:
        await router.generate_video_async(config, REQUEST)
    assert isinstance(info.value.last_error, router.ProviderTimeoutError) and handler.polls == 3
    assert handler.cancelled == ["job-1"]


async def test_transient_poll_errors_are_retried(provider: Any) -> None:
    blip = ProviderUnavailableError("502 on status")
    handler = Stepped(["processing", blip, blip, "completed"])
    response = await router.generate_video_async(chain(provider(handler)), REQUEST)
    assert response.video and handler.submits == 1 and handler.cancelled == []


async def test_vendor_failure_falls_back_without_cancel(provider: Any) -> None:
    failing = Stepped(["processing", "failed"])
    response = await router.generate_video_async(chain(provider(failing), provider(Stepped(["completed"]))), REQUEST)
    assert response.execution_metadata.attempts[0].error_type == "GenerationFailedError"  # type: ignore[union-attr]
    assert failing.cancelled == []


async def test_cancellation_propagates_to_vendor(provider: Any) -> None:
    handler = Stepped(["processing", "hang"])
    task = asyncio.create_task(router.generate_video_async(chain(provider(handler)), REQUEST))
    while handler.polls < 2:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handler.cancelled == ["job-1"]


async def test_timeout_cancels_vendor_job(provider: Any) -> None:
    handler = Stepped(["hang"])
    config = chain(provider(handler), provider(Scripted())).model_copy(update={"timeout": 0.05})
    response = await router.generate_video_async(config, REQUEST)
    assert handler.cancelled == ["job-1"] and response.execution_metadata.successful_attempt == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kind,policy,falls_back",
    [("video", None, False), ("image", None, True), ("video", "fallback", True), ("image", "stop", False)],
)
async def test_ambiguous_submit_policy(provider: Any, kind: str, policy: str | None, falls_back: bool) -> None:
    first = provider(Scripted(AmbiguousSubmitError("connection dropped after the submit was sent")))
    second = provider(Scripted())
    extra = {"provider_config": {"on_ambiguous_submit": policy}} if policy else {}
    if kind == "video":
        config, call = chain(first, second, **extra), router.generate_video_async
        request: Any = REQUEST
    else:
        config, call = chain(first, second, cls=ImageGenerationConfig, **extra), router.generate_image_async
        request = ImageGenerationRequest(prompt="x")
    if falls_back:
        response = await call(config, request)
        attempt = response.execution_metadata.attempts[0]
        assert attempt.is_retryable is True and "falling back" in attempt.error_message
    else:
        with pytest.raises(AmbiguousSubmitError) as info:
            await call(config, request)
        attempt = info.value.execution_metadata.attempts[0]
        assert attempt.is_retryable is False and "stopping" in attempt.error_message


async def test_handler_bug_and_empty_result_fall_back(provider: Any) -> None:
    buggy = provider(Scripted(KeyError("video")))
    empty = provider(Scripted(ImageGenerationResponse(request_id="x", images=[])))
    good = provider(Scripted())
    response = await router.generate_image_async(chain(buggy, empty, good, cls=ImageGenerationConfig), ImageGenerationRequest(prompt="x"))
    first, second, _ = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert first.error_type == "BadProviderResponseError" and "KeyError" in (first.error_message or "")
    assert second.error_type == "BadProviderResponseError" and "no images" in (second.error_message or "")


async def test_key_scrubbed_from_error_messages(provider: Any) -> None:
    class Leaky(Scripted):
        requires_api_key = True

    name = provider(Leaky(router.AuthenticationError(f"bad key {SECRET} rejected")))
    with pytest.raises(router.AuthenticationError) as info:
        await router.generate_video_async(chain(name, api_key=SECRET), REQUEST)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in info.value.execution_metadata.model_dump_json()  # type: ignore[union-attr]


async def test_sync_forms_work_inside_a_running_loop(provider: Any) -> None:
    name = provider(Scripted())
    response = router.generate_video(chain(name), REQUEST)  # called from the loop's thread
    assert response.execution_metadata.successful_attempt == 1  # type: ignore[union-attr]
    image = router.generate_image(chain(name, cls=ImageGenerationConfig), ImageGenerationRequest(prompt="x"))
    assert image.images == ["aGk="]


def test_sync_forms_outside_a_loop(provider: Any) -> None:
    name = provider(Scripted())
    assert router.generate_video(chain(name), REQUEST).video


async def test_sync_only_custom_handler(provider: Any) -> None:
    class SyncOnly:
        """Duck-typed: no base class, only the blocking method."""

        def generate_video(self, config, request, on_progress=None):
            on_progress(VideoGenerationUpdate(request_id="theirs", status="processing", progress_percent=5))
            return video_response()

    updates: list[VideoGenerationUpdate] = []
    response = await router.generate_video_async(chain(provider(SyncOnly())), REQUEST, updates.append)
    assert updates[0].request_id == response.request_id and updates[0].progress_percent == 5


async def test_observer_hears_every_event(provider: Any) -> None:
    events: list[str] = []

    class Recorder(ChainObserver):
        async def attempt_started(self, attempt, config):
            events.append(f"start {attempt.attempt_number}")

        async def provider_job(self, attempt, config, job):
            events.append(f"job {job.id}")

        async def attempt_finished(self, attempt, config, error):
            events.append(f"end {attempt.attempt_number} {attempt.status}")

        async def fallback(self, from_config, to_config, error):
            events.append("fallback")

        async def chain_finished(self, metadata, error):
            events.append(f"done {metadata.successful_attempt}")

    config = chain(provider(Scripted(RateLimitError("x"))), provider(Stepped(["completed"])))
    await run_chain("video", config, REQUEST, observers=[Recorder()])
    assert events == ["start 1", "end 1 failed", "fallback", "start 2", "job job-1", "end 2 success", "done 2"]


def test_an_observer_method_named_almost_like_an_event_is_refused_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"Typo.attempt_finish is not a ChainObserver event \(did you mean attempt_finished\?\)"):
        class Typo(ChainObserver):
            async def attempt_finish(self, attempt, config, error):  # never called: the event is attempt_finished
                pass


async def test_an_object_that_lacks_an_event_is_refused_before_any_attempt(provider: Any) -> None:
    class DuckTyped:
        """Not a subclass: every event must be there, as a coroutine method."""

        async def attempt_started(self, attempt, config): ...
        async def provider_job(self, attempt, config, job): ...
        async def attempt_finished(self, attempt, config, error): ...
        async def fallback(self, from_config, to_config, error): ...
        async def update(self, update): ...
        def chain_finished(self, metadata, error): ...  # not async

    handler = Scripted()
    with pytest.raises(TypeError, match="DuckTyped is not a ChainObserver: it has no async chain_finished"):
        await run_chain("video", chain(provider(handler)), REQUEST, observers=[DuckTyped()])  # type: ignore[list-item]
    assert handler.calls == []

    class Complete(DuckTyped):
        async def chain_finished(self, metadata, error):  # type: ignore[override]
            finished.append(metadata.successful_attempt)

    finished: list[int | None] = []
    await run_chain("video", chain(provider(handler)), REQUEST, observers=[Complete()])
    assert finished == [1]


async def test_a_subclass_that_overrides_an_event_with_a_plain_function_is_refused(provider: Any) -> None:
    """Subclasses are checked once, when the class is defined; the verdict still refuses the generation."""
    class Sync(ChainObserver):
        def update(self, update):  # type: ignore[override]  # not async
            pass

    shadowed = type("Fine", (ChainObserver,), {})()
    shadowed.update = lambda update: None  # an instance attribute shadowing the event method
    handler = Scripted()
    for observer in (Sync(), shadowed):
        with pytest.raises(TypeError, match="is not a ChainObserver: it has no async update"):
            await run_chain("video", chain(provider(handler)), REQUEST, observers=[observer])
    assert handler.calls == []


async def test_an_observer_that_raises_is_logged_by_name_and_the_others_still_hear(provider: Any,
                                                                                   caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []

    class Broken(ChainObserver):
        async def attempt_finished(self, attempt, config, error):
            raise RuntimeError("metrics bug")

    class After(ChainObserver):
        async def attempt_finished(self, attempt, config, error):
            heard.append(attempt.status)

    response = await run_chain("video", chain(provider(Scripted())), REQUEST, observers=[Broken(), After()])
    assert response.execution_metadata.successful_attempt == 1 and heard == ["success"]  # type: ignore[union-attr]
    assert "Broken.attempt_finished raised" in caplog.text


async def test_resume_polls_existing_job_without_submitting(provider: Any) -> None:
    handler = Stepped(["processing", "completed"])
    first = provider(Scripted(RateLimitError("x")))
    config = chain(first, provider(handler))
    previous = router.AttemptMetadata(provider=first, model="m", attempt_number=1, started_at=router.models.utc_now(),
                                      ended_at=router.models.utc_now(), status="failed", error_type="RateLimitError")
    resume = ResumePoint(next_attempt=2, attempts=[previous], job=ProviderJob(id="job-from-before"))
    response = await run_chain("video", config, REQUEST, resume=resume)
    assert handler.submits == 0 and handler.polls == 2
    assert response.provider_metadata == {"job": "job-from-before"}
    metadata = response.execution_metadata
    assert metadata.total_attempts == 2 and metadata.attempts[1].request_id == "job-from-before"  # type: ignore[union-attr]


class SyncOnly(ProviderHandler):
    """A simple handler with only the blocking method, reporting the vendor id tarash-gateway's way."""

    requires_api_key: ClassVar[bool] = False

    def generate_video(self, config, request, on_progress=None):  # type: ignore[override]
        return video_response().model_copy(update={"request_id": "vendor-sync-7"})


async def test_a_simple_handler_reports_the_vendor_request_id(provider: Any) -> None:
    by_request_id = provider(Scripted(video_response().model_copy(update={"request_id": "vendor-123"})))
    by_metadata = provider(Scripted(video_response(provider_metadata={"provider_request_id": "vendor-456"})))
    for name, vendor_id in ((by_request_id, "vendor-123"), (by_metadata, "vendor-456"),
                            (provider(SyncOnly()), "vendor-sync-7")):
        response = await router.generate_video_async(chain(name), REQUEST)
        assert response.execution_metadata.attempts[0].request_id == vendor_id  # type: ignore[union-attr]
        assert response.request_id != vendor_id  # the response carries the generation's own id


class WrongHooks(Stepped):
    """A stepped handler whose hooks return the wrong type, one hook at a time."""

    def __init__(self, broken: str) -> None:
        super().__init__(["completed"])
        self.broken = broken

    def poll_delay(self, config):  # type: ignore[override]
        return "soon" if self.broken == "poll_delay" else 0.001

    def unsupported_reason(self, kind, config, request):  # type: ignore[override]
        return True if self.broken == "unsupported_reason" else None

    async def submit(self, kind, config, request):  # type: ignore[override]
        job = await super().submit(kind, config, request)
        return {"id": job.id} if self.broken == "submit" else job

    async def poll(self, kind, config, job):  # type: ignore[override]
        status = await super().poll(kind, config, job)
        return {"status": "completed"} if self.broken == "poll" else status

    async def fetch_result(self, kind, config, request, job, status):  # type: ignore[override]
        return {"video": "x"} if self.broken == "fetch_result" else await super().fetch_result(kind, config, request, job, status)


HOOKS = ["poll_delay", "unsupported_reason", "submit", "poll", "fetch_result"]


@pytest.mark.parametrize("hook", HOOKS)
async def test_a_hook_returning_the_wrong_type_is_a_bad_response_naming_the_handler(provider: Any, hook: str) -> None:
    broken = WrongHooks(hook)
    response = await router.generate_video_async(chain(provider(broken), provider(Scripted())), REQUEST)
    first = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert first.error_type == "BadProviderResponseError" and first.is_retryable, first
    assert "WrongHooks" in (first.error_message or "") and "returned" in (first.error_message or "")
    assert broken.polls <= 1  # a handler bug is not a poll blip: not polled again


@pytest.mark.parametrize("hook", HOOKS)
async def test_a_handler_called_directly_reports_its_bugs_as_bad_responses(hook: str) -> None:
    with pytest.raises(router.BadProviderResponseError, match="WrongHooks"):
        await WrongHooks(hook).generate_video_async(VideoGenerationConfig(provider="x", model="y"), REQUEST)


async def test_a_simple_handler_returning_the_wrong_type_is_named(provider: Any) -> None:
    response = await router.generate_video_async(chain(provider(Scripted({"video": "x"})), provider(Scripted())), REQUEST)
    first = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert first.error_type == "BadProviderResponseError"
    assert "Scripted" in (first.error_message or "") and "returned dict" in (first.error_message or "")
