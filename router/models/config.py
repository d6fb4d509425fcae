"""Generation configs: which provider and model an attempt uses, with its timeouts and fallbacks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from router.models.mock import MockConfig

# `timeout` and `poll_interval` are `int` in the spec (docs/models.md); we also accept fractional seconds (ints stay ints),
# so tests and fast image vendors can poll every 10 ms. A superset: every spec-valid value means the same.
Seconds = int | float


class _GenerationConfig(BaseModel):
    # frozen: configs are shared by concurrent requests and by the hot-reloaded routes snapshot.
    # hide_input_in_errors: a validation error must never echo the api_key it was given.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True, extra="forbid")

    provider: str = Field(min_length=1, description="Provider id, e.g. 'fal', 'openai', 'azure-openai', 'mock'.")
    model: str = Field(min_length=1, description="The provider's model id, e.g. 'fal-ai/veo3'.")
    # repr=False + exclude=True: the key never shows in repr/str/model_dump/model_dump_json.
    api_key: str | None = Field(default=None, repr=False, exclude=True, description="API key; omit to read the provider's env var.")
    base_url: str | None = Field(default=None, description="Override the provider's base URL.")
    api_version: str | None = Field(default=None, description="API version (required for Azure OpenAI).")
    mock: MockConfig | None = Field(default=None, description="Enable mock generation.")
    provider_config: dict[str, Any] = Field(default_factory=dict, description="Extra provider-specific config.")


class VideoGenerationConfig(_GenerationConfig):
    """Configuration for ``generate_video``. Immutable: derive with ``model_copy(update={...})``."""

    timeout: Seconds = Field(default=600, gt=0, description="Max seconds for one attempt.")
    max_poll_attempts: int = Field(default=120, ge=1)
    poll_interval: Seconds = Field(default=5, ge=0)
    fallback_configs: list[VideoGenerationConfig] | None = None


class ImageGenerationConfig(_GenerationConfig):
    """Configuration for ``generate_image``. Immutable: derive with ``model_copy(update={...})``."""

    timeout: Seconds = Field(default=120, gt=0, description="Max seconds for one attempt.")
    max_poll_attempts: int = Field(default=60, ge=1)
    poll_interval: Seconds = Field(default=2, ge=0)
    fallback_configs: list[ImageGenerationConfig] | None = None


AnyConfig = VideoGenerationConfig | ImageGenerationConfig


def flatten_chain(config: AnyConfig) -> list[AnyConfig]:
    """``[config, *fallbacks]`` depth-first, nested fallbacks included, each without its own fallbacks."""
    head = config.model_copy(update={"fallback_configs": None}) if config.fallback_configs else config
    chain: list[AnyConfig] = [head]
    for fallback in config.fallback_configs or ():
        chain.extend(flatten_chain(fallback))
    return chain
