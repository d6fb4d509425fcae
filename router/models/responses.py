"""Normalized responses and progress updates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from router.models.media import MediaType, StatusType
from router.models.metadata import ExecutionMetadata

_RESPONSE_CONFIG = ConfigDict(frozen=True)


class VideoGenerationResponse(BaseModel):
    """The result of a video generation."""

    model_config = _RESPONSE_CONFIG

    request_id: str
    video: MediaType
    status: Literal["completed", "failed"] = "completed"
    duration: float | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    content_type: str | None = None
    audio_url: str | None = None
    is_mock: bool = False
    raw_response: dict[str, Any] = Field(default_factory=dict)
    provider_metadata: dict[str, Any] = Field(default_factory=dict)
    execution_metadata: ExecutionMetadata | None = None


class ImageGenerationResponse(BaseModel):
    """The result of an image generation."""

    model_config = _RESPONSE_CONFIG

    request_id: str
    images: list[str]
    status: Literal["completed", "failed"] = "completed"
    content_type: str | None = "image/png"
    is_mock: bool = False
    revised_prompt: str | None = None
    raw_response: dict[str, Any] = Field(default_factory=dict)
    provider_metadata: dict[str, Any] = Field(default_factory=dict)
    execution_metadata: ExecutionMetadata | None = None


class VideoGenerationUpdate(BaseModel):
    """Passed to ``on_progress`` on each polling cycle of a video generation."""

    request_id: str
    status: StatusType
    progress_percent: int | None = Field(default=None, ge=0, le=100)
    update: dict[str, Any] = Field(default_factory=dict)
    result: VideoGenerationResponse | None = None
    error: str | None = None


class ImageGenerationUpdate(BaseModel):
    """Passed to ``on_progress`` on each polling cycle of an image generation."""

    request_id: str
    status: StatusType
    progress_percent: int | None = Field(default=None, ge=0, le=100)
    update: dict[str, Any] = Field(default_factory=dict)
    result: ImageGenerationResponse | None = None
    error: str | None = None


AnyResponse = VideoGenerationResponse | ImageGenerationResponse
AnyUpdate = VideoGenerationUpdate | ImageGenerationUpdate
