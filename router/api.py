"""The library's public generate functions: thin, typed doors into ``orchestrator.run_chain``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from router.models import (
    ImageGenerationConfig,
    ImageGenerationRequest,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
    VideoGenerationUpdate,
)
from router.orchestrator import run_chain
from router.sync import run_sync

VideoProgress = Callable[[VideoGenerationUpdate], Awaitable[None] | None]
ImageProgress = Callable[[ImageGenerationUpdate], Awaitable[None] | None]


async def generate_video_async(
    config: VideoGenerationConfig,
    request: VideoGenerationRequest,
    on_progress: VideoProgress | None = None,
) -> VideoGenerationResponse:
    """Generate a video, falling back through ``config.fallback_configs`` on retryable errors.

    ``on_progress`` (a function or coroutine function) gets a ``VideoGenerationUpdate`` on every poll and a
    last one with ``result`` (or ``error``). Raises a ``TarashError`` carrying ``execution_metadata``.
    """
    return await run_chain("video", config, request, on_progress)  # type: ignore[return-value]


def generate_video(
    config: VideoGenerationConfig,
    request: VideoGenerationRequest,
    on_progress: VideoProgress | None = None,
) -> VideoGenerationResponse:
    """Blocking ``generate_video_async``; works inside and outside a running event loop's thread."""
    return run_sync(generate_video_async(config, request, on_progress))


async def generate_image_async(
    config: ImageGenerationConfig,
    request: ImageGenerationRequest,
    on_progress: ImageProgress | None = None,
) -> ImageGenerationResponse:
    """Generate images, falling back through ``config.fallback_configs`` on retryable errors."""
    return await run_chain("image", config, request, on_progress)  # type: ignore[return-value]


def generate_image(
    config: ImageGenerationConfig,
    request: ImageGenerationRequest,
    on_progress: ImageProgress | None = None,
) -> ImageGenerationResponse:
    """Blocking ``generate_image_async``; works inside and outside a running event loop's thread."""
    return run_sync(generate_image_async(config, request, on_progress))
