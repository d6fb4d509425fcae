"""tarash-router: one endpoint for generative-media vendors, with ordered fallback.

Library use::

    import router
    config = router.VideoGenerationConfig(provider="mock", model="mock-video")
    response = router.generate_video(config, router.VideoGenerationRequest(prompt="a red fox"))
"""

from router.api import generate_image, generate_image_async, generate_video, generate_video_async
from router.errors import (
    AllAttemptsFailedError,
    AmbiguousSubmitError,
    AttemptSkippedError,
    AuthenticationError,
    BadProviderResponseError,
    CircuitOpenError,
    ConfigurationError,
    ContentPolicyError,
    CostCeilingError,
    GenerationCancelledError,
    GenerationFailedError,
    InvalidRequestError,
    MissingCredentialsError,
    ProviderBusyError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    TarashError,
    UnknownProviderError,
    UnsupportedCapabilityError,
)
from router.handler import PollStatus, ProviderHandler, ProviderJob
from router.models import (
    AspectRatio,
    AttemptMetadata,
    ExecutionMetadata,
    ImageGenerationConfig,
    ImageGenerationRequest,
    ImageGenerationResponse,
    ImageGenerationUpdate,
    ImageType,
    MediaContent,
    MediaType,
    MockConfig,
    MockError,
    MockPollingConfig,
    MockResponse,
    Resolution,
    VideoGenerationConfig,
    VideoGenerationRequest,
    VideoGenerationResponse,
    VideoGenerationUpdate,
)
from router.observers import ChainObserver
from router.registry import known_providers, register_provider, unregister_provider
from router.sync import aclose

__version__ = "0.1.0"

__all__ = [
    "AllAttemptsFailedError", "AmbiguousSubmitError", "AspectRatio", "AttemptMetadata", "AttemptSkippedError",
    "AuthenticationError", "BadProviderResponseError", "ChainObserver", "CircuitOpenError", "ConfigurationError",
    "ContentPolicyError", "CostCeilingError", "ExecutionMetadata", "GenerationCancelledError",
    "GenerationFailedError", "ImageGenerationConfig", "ImageGenerationRequest", "ImageGenerationResponse",
    "ImageGenerationUpdate", "ImageType", "InvalidRequestError", "MediaContent", "MediaType",
    "MissingCredentialsError", "MockConfig", "MockError", "MockPollingConfig", "MockResponse", "PollStatus",
    "ProviderBusyError", "ProviderHandler", "ProviderJob", "ProviderTimeoutError", "ProviderUnavailableError",
    "RateLimitError", "Resolution", "TarashError", "UnknownProviderError", "UnsupportedCapabilityError",
    "VideoGenerationConfig", "VideoGenerationRequest", "VideoGenerationResponse", "VideoGenerationUpdate", "aclose",
    "generate_image", "generate_image_async", "generate_video", "generate_video_async", "known_providers",
    "register_provider", "unregister_provider",
]
