"""The public models of ``models.md``, re-exported in one place."""

from router.models.config import (
    AnyConfig,
    ImageGenerationConfig,
    VideoGenerationConfig,
    flatten_chain,
)
from router.models.media import (
    AspectRatio,
    Base64,
    ImageRole,
    ImageType,
    Kind,
    MediaContent,
    MediaType,
    Resolution,
    StatusType,
    media_bytes,
    media_data_uri,
    media_form,
)
from router.models.metadata import AttemptMetadata, AttemptStatus, ExecutionMetadata, utc_now
from router.models.mock import MockConfig, MockError, MockPollingConfig, MockResponse
from router.models.requests import ImageGenerationRequest, VideoGenerationRequest
from router.models.responses import (
    AnyResponse,
    AnyUpdate,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    VideoGenerationResponse,
    VideoGenerationUpdate,
)

AnyRequest = VideoGenerationRequest | ImageGenerationRequest

__all__ = [
    "AnyConfig", "AnyRequest", "AnyResponse", "AnyUpdate", "AspectRatio", "AttemptMetadata", "AttemptStatus",
    "Base64", "ExecutionMetadata", "ImageGenerationConfig", "ImageGenerationRequest", "ImageGenerationResponse",
    "ImageGenerationUpdate", "ImageRole", "ImageType", "Kind", "MediaContent", "MediaType", "MockConfig",
    "MockError", "MockPollingConfig", "MockResponse", "Resolution", "StatusType", "VideoGenerationConfig",
    "VideoGenerationRequest", "VideoGenerationResponse", "VideoGenerationUpdate", "flatten_chain",
    "media_bytes", "media_data_uri", "media_form", "utc_now",
]
