"""The public models (reference: docs/models.md), re-exported in one place, and the kind -> class maps."""

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

# Kind -> model class, in one place (routes, the job store, the orchestrator and the poll loop read these).
CONFIG_TYPES: dict[Kind, type[VideoGenerationConfig] | type[ImageGenerationConfig]] = {
    "video": VideoGenerationConfig, "image": ImageGenerationConfig}
REQUEST_TYPES: dict[Kind, type[VideoGenerationRequest] | type[ImageGenerationRequest]] = {
    "video": VideoGenerationRequest, "image": ImageGenerationRequest}
RESPONSE_TYPES: dict[Kind, type[VideoGenerationResponse] | type[ImageGenerationResponse]] = {
    "video": VideoGenerationResponse, "image": ImageGenerationResponse}
UPDATE_TYPES: dict[Kind, type[VideoGenerationUpdate] | type[ImageGenerationUpdate]] = {
    "video": VideoGenerationUpdate, "image": ImageGenerationUpdate}

__all__ = [
    "CONFIG_TYPES", "REQUEST_TYPES", "RESPONSE_TYPES", "UPDATE_TYPES",
    "AnyConfig", "AnyRequest", "AnyResponse", "AnyUpdate", "AspectRatio", "AttemptMetadata", "AttemptStatus",
    "Base64", "ExecutionMetadata", "ImageGenerationConfig", "ImageGenerationRequest", "ImageGenerationResponse",
    "ImageGenerationUpdate", "ImageRole", "ImageType", "Kind", "MediaContent", "MediaType", "MockConfig",
    "MockError", "MockPollingConfig", "MockResponse", "Resolution", "StatusType", "VideoGenerationConfig",
    "VideoGenerationRequest", "VideoGenerationResponse", "VideoGenerationUpdate", "flatten_chain",
    "media_bytes", "media_data_uri", "media_form", "utc_now",
]
