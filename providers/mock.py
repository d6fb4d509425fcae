"""The mock provider: no network, no key, real media.

Used when ``config.provider == "mock"`` or ``config.mock.enabled``. Outcomes are drawn from
``MockConfig.responses`` by weight; error outcomes raise the real error classes so fallback can be exercised.
With ``MockConfig.polling`` set it behaves like a queued vendor job (one update per ``status_sequence`` entry,
``delay_between_updates`` apart, resumable and cancellable); without it, it answers at once.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from providers._mock_media import image_size_for, png_bytes, video_asset
from router.errors import GenerationFailedError, TarashError
from router.handler import PollStatus, ProviderHandler, ProviderJob
from router.models import (
    RESPONSE_TYPES, AnyConfig, AnyRequest, AnyResponse, ImageGenerationRequest, ImageGenerationResponse, Kind,
    MediaContent, MockConfig, MockResponse, VideoGenerationRequest, VideoGenerationResponse, media_bytes, media_form
)

_DEFAULT_MOCK = MockConfig()
#: Progress per status when ``progress_percentages`` is not given: tarash-gateway's mock reports the same.
_PERCENT = {"queued": 0, "processing": 50, "completed": 100}


@dataclass
class _MockJob:
    outcome: int
    step: int = 0


class MockProvider(ProviderHandler):
    """Mock generations for tests, demos and the out-of-the-box routes."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"video", "image"})
    requires_api_key: ClassVar[bool] = False

    def __init__(self) -> None:
        self._jobs: dict[str, _MockJob] = {}
        self.cancelled: list[str] = []  # job ids cancelled upstream, for tests and demos

    @staticmethod
    def _mock(config: AnyConfig) -> MockConfig:
        # A disabled MockConfig configures nothing: with provider = "mock" the mock answers with its defaults.
        return config.mock if config.mock is not None and config.mock.enabled else _DEFAULT_MOCK

    def poll_delay(self, config: AnyConfig) -> float:
        polling = self._mock(config).polling
        return polling.delay_between_updates if polling else 0.0

    async def submit(self, kind: Kind, config: AnyConfig, request: AnyRequest) -> ProviderJob | AnyResponse:
        mock = self._mock(config)
        index = random.choices(range(len(mock.responses)), weights=[r.weight for r in mock.responses])[0]
        outcome = mock.responses[index]
        if mock.polling is None or not mock.polling.enabled:
            if outcome.error is not None:
                raise _error_of(outcome, config)
            return _response(kind, config, request, outcome, job_id=None)
        job_id = f"mock-{uuid.uuid4().hex[:16]}"
        self._jobs[job_id] = _MockJob(outcome=index)
        return ProviderJob(id=job_id, data={"outcome": index})

    async def poll(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> PollStatus:
        polling = self._mock(config).polling
        assert polling is not None  # only polled jobs exist
        # A job unknown here was submitted by an earlier process: resume it from the start of the sequence.
        state = self._jobs.setdefault(job.id, _MockJob(outcome=int(job.data.get("outcome", 0))))
        step = min(state.step, len(polling.status_sequence) - 1)
        state.step += 1
        status = polling.status_sequence[step]
        raw: dict[str, Any] = {"mock_job_id": job.id, "status": status, "step": step}
        if polling.custom_updates:
            raw.update(polling.custom_updates[step])
        percent = polling.progress_percentages[step] if polling.progress_percentages else _PERCENT.get(status)
        if self._mock(config).responses[state.outcome].error is not None and step == len(polling.status_sequence) - 1:
            # An error outcome walks the sequence first, as tarash-gateway's mock does (callbacks see queued and
            # processing), and fails at its last step: the job ends there and fetch_result raises the error.
            return PollStatus(status="completed", raw={**raw, "status": "failed"}, progress_percent=percent)
        if status == "failed":
            self._jobs.pop(job.id, None)
            raise GenerationFailedError(
                "mock job failed", provider=config.provider, model=config.model, provider_request_id=job.id, raw=raw
            )
        return PollStatus(status=status, raw=raw, progress_percent=percent)

    async def fetch_result(
        self, kind: Kind, config: AnyConfig, request: AnyRequest, job: ProviderJob, status: PollStatus
    ) -> AnyResponse:
        state = self._jobs.pop(job.id, _MockJob(outcome=int(job.data.get("outcome", 0))))
        outcome = self._mock(config).responses[state.outcome]
        if outcome.error is not None:
            error = _error_of(outcome, config)
            error.provider_request_id = error.provider_request_id or job.id
            raise error
        return _response(kind, config, request, outcome, job_id=job.id)

    async def cancel(self, kind: Kind, config: AnyConfig, job: ProviderJob) -> None:
        self._jobs.pop(job.id, None)
        self.cancelled.append(job.id)


def _error_of(outcome: MockResponse, config: AnyConfig) -> TarashError:
    """The configured error, with its class and every field it was given (``http_status``, a ``retryable``
    override...). An instance is copied, not raised itself: the orchestrator annotates the error it raises,
    and the same outcome is drawn again by the next generation."""
    error = outcome.error
    assert error is not None
    if not isinstance(error, TarashError):
        return error.build(config.provider, config.model)
    clone = type(error).__new__(type(error))
    clone.__dict__.update(vars(error))
    clone.args = error.args
    clone.execution_metadata = None
    clone.provider = error.provider or config.provider
    clone.model = error.model or config.model
    return clone


def _response(
    kind: Kind, config: AnyConfig, request: AnyRequest, outcome: MockResponse, job_id: str | None
) -> AnyResponse:
    raw: dict[str, Any] = {"mock": True, "model": config.model}
    meta: dict[str, Any] = {"provider_request_id": job_id} if job_id else {}
    if outcome.mock_response is not None:
        fields = {"status": "completed", **outcome.mock_response, "request_id": "", "is_mock": True}
        cls = RESPONSE_TYPES[kind]
        return cls.model_validate(fields)
    if kind == "video":
        assert isinstance(request, VideoGenerationRequest)
        return _video(request, outcome, raw, meta)
    assert isinstance(request, ImageGenerationRequest)
    return _images(request, outcome, raw, meta)


def _video(
    request: VideoGenerationRequest, outcome: MockResponse, raw: dict[str, Any], meta: dict[str, Any]
) -> VideoGenerationResponse:
    if outcome.output_video is not None:
        video: Any = outcome.output_video
        if outcome.output_video_type == "content" and media_form(video) != "url":
            data, mime = media_bytes(video)
            video = MediaContent(content=data, content_type=mime or "video/mp4")
        return VideoGenerationResponse(
            request_id="", video=video, content_type="video/mp4", is_mock=True, raw_response=raw, provider_metadata=meta
        )
    asset = video_asset(request.aspect_ratio)
    return VideoGenerationResponse(
        request_id="",
        video=MediaContent(content=asset.data(), content_type="video/mp4"),
        content_type="video/mp4",
        duration=asset.duration_seconds,
        resolution=asset.resolution,
        aspect_ratio=asset.aspect_ratio,
        is_mock=True,
        raw_response={**raw, "file": asset.path.name, "width": asset.width, "height": asset.height},
        provider_metadata=meta,
    )


def _images(
    request: ImageGenerationRequest, outcome: MockResponse, raw: dict[str, Any], meta: dict[str, Any]
) -> ImageGenerationResponse:
    if outcome.output_images is not None:
        images = list(outcome.output_images)
    else:
        width, height = image_size_for(request.aspect_ratio, request.size)
        seed = request.seed or 0
        images = [base64.b64encode(png_bytes(width, height, seed=seed + i)).decode() for i in range(request.n or 1)]
        raw = {**raw, "width": width, "height": height}
    return ImageGenerationResponse(
        request_id="", images=images, content_type="image/png", is_mock=True, raw_response=raw, provider_metadata=meta
    )
