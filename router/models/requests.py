"""Generation requests. Unknown fields (keyword arguments or JSON keys) land in ``extra_params``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from router.models.media import AspectRatio, ImageType, MediaType, Resolution


class _GenerationRequest(BaseModel):
    prompt: str = Field(description="Text description of the media.")
    negative_prompt: str | None = Field(default=None, description="Elements to avoid.")
    aspect_ratio: AspectRatio | None = None
    image_list: list[ImageType] = Field(default_factory=list, description="Input images with semantic roles.")
    seed: int | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict, description="Provider/model-specific parameters.")

    @model_validator(mode="before")
    @classmethod
    def _capture_extra(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = cls.model_fields.keys()
        unknown = {k: v for k, v in data.items() if k not in known}
        if not unknown:
            return data
        explicit = data.get("extra_params") or {}
        if not isinstance(explicit, dict):
            return data  # let field validation report the bad extra_params
        kept = {k: v for k, v in data.items() if k in known}
        # Explicit extra_params win over loose keys of the same name.
        kept["extra_params"] = {**unknown, **explicit}
        return kept


class VideoGenerationRequest(_GenerationRequest):
    """Parameters for a video generation."""

    duration_seconds: int | None = Field(default=None, gt=0, description="Duration in seconds (provider may round).")
    resolution: Resolution | None = None
    generate_audio: bool | None = None
    video: MediaType | None = Field(default=None, description="Input video for extend or remix.")
    number_of_videos: int = Field(default=1, ge=1)
    enhance_prompt: bool | None = None


class ImageGenerationRequest(_GenerationRequest):
    """Parameters for an image generation."""

    size: str | None = Field(default=None, pattern=r"^(\d+x\d+|auto)$", description="Output size, e.g. '1024x1024'.")
    quality: str | None = None
    style: str | None = None
    n: int | None = Field(default=None, ge=1)
    mask_image: MediaType | None = Field(default=None, description="Inpainting mask (white = edit area).")
