"""``MockConfig``: the shape tarash-gateway users know, so their mock setups move over unchanged."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router.errors import ERROR_CLASSES, TarashError
from router.models.media import MediaType, StatusType


class MockPollingConfig(BaseModel):
    """The simulated polling sequence: one progress update per status, ``delay_between_updates`` apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    status_sequence: list[StatusType] = Field(default_factory=lambda: ["queued", "processing", "completed"])
    delay_between_updates: float = Field(default=0.5, ge=0)
    progress_percentages: list[int] | None = None
    custom_updates: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _lengths_match(self) -> MockPollingConfig:
        for name in ("progress_percentages", "custom_updates"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.status_sequence):
                raise ValueError(f"{name} must have one entry per status_sequence entry ({len(self.status_sequence)})")
        if self.status_sequence and self.status_sequence[-1] not in ("completed", "failed"):
            raise ValueError("status_sequence must end with 'completed' or 'failed'")
        return self


class MockError(BaseModel):
    """An error outcome given by name, as routes.toml writes it: ``{type = "RateLimitError", message = "busy"}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    message: str = "mock error"
    retry_after: float | None = None
    #: The vendor's HTTP status, as a real error would carry it (``fallback_on = [402]`` can match it).
    http_status: int | None = None
    #: Overrides the class's default: False stops the chain where the class would fall back, True falls back.
    retryable: bool | None = None
    code: str | None = None
    provider_request_id: str | None = None

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ERROR_CLASSES:
            raise ValueError(f"unknown error type {value!r}; known: {', '.join(sorted(ERROR_CLASSES))}")
        return value

    def build(self, provider: str, model: str) -> TarashError:
        return ERROR_CLASSES[self.type](
            self.message, provider=provider, model=model, retry_after=self.retry_after, http_status=self.http_status,
            retryable=self.retryable, code=self.code, provider_request_id=self.provider_request_id,
        )


class MockResponse(BaseModel):
    """One weighted outcome. Set at most one of a fixed response, output media, or an error;
    with none set, the mock returns real sample media matching the request."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    weight: float = Field(default=1.0, gt=0)
    mock_response: dict[str, Any] | None = None
    output_video: MediaType | None = None
    output_video_type: Literal["url", "content"] = "url"
    output_images: list[str] | None = None
    error: MockError | TarashError | None = None

    @field_validator("mock_response", mode="before")
    @classmethod
    def _response_as_dict(cls, value: Any) -> Any:
        # Accept a VideoGenerationResponse/ImageGenerationResponse instance as tarash-gateway did.
        return value.model_dump() if isinstance(value, BaseModel) else value

    @model_validator(mode="after")
    def _one_outcome(self) -> MockResponse:
        set_ = [n for n in ("mock_response", "output_video", "output_images", "error") if getattr(self, n) is not None]
        if len(set_) > 1:
            raise ValueError(f"set only one of mock_response, output_video, output_images, error (got {', '.join(set_)})")
        return self


class MockConfig(BaseModel):
    """Mock generation with no network and no key. ``enabled`` defaults to True here (tarash-gateway
    required it); ``responses`` defaults to one success; ``polling=None`` completes at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    responses: list[MockResponse] = Field(default_factory=lambda: [MockResponse()])
    polling: MockPollingConfig | None = None

    @field_validator("responses")
    @classmethod
    def _not_empty(cls, value: list[MockResponse]) -> list[MockResponse]:
        return value or [MockResponse()]
