"""One table of the vendors under test: how to point a config at each emulator, per kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.models import ImageGenerationConfig, ImageGenerationRequest, VideoGenerationConfig, VideoGenerationRequest
from tests.emulators import EMULATORS
from tests.emulators._base import Emulator

CANARY = "sk-canary-never-leak-0123456789abcdef"


@dataclass(frozen=True)
class Vendor:
    provider: str
    video_model: str | None
    image_model: str | None
    path: str = ""  # appended to the emulator URL to make base_url
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether the vendor has a cancel call (Google's Veo operations have none the SDK uses).
    cancels: bool = True

    def config(self, emu: Emulator, kind: str, **kw: Any) -> Any:
        cls = VideoGenerationConfig if kind == "video" else ImageGenerationConfig
        model = self.video_model if kind == "video" else self.image_model
        fields = {"provider": self.provider, "model": model, "api_key": emu.api_key, "base_url": emu.url + self.path,
                  "poll_interval": 0.01, "timeout": 5, **self.extra, **kw}
        return cls(**fields)


VENDORS = {
    "fal": Vendor("fal", "fal-ai/veo3/fast", "fal-ai/flux/dev"),
    "openai": Vendor("openai", "sora-2", "dall-e-3", "/v1"),
    "azure-openai": Vendor("azure-openai", "sora-2", "my-dalle-deployment", extra={"api_version": "2024-02-01"}),
    "replicate": Vendor("replicate", "google/veo-3", "black-forest-labs/flux-dev", "/v1"),
    "runway": Vendor("runway", "gen4.5", "gen4_image", "/v1"),
    "luma": Vendor("luma", "ray-2", "photon-1", "/dream-machine/v1"),
    "stability": Vendor("stability", None, "sd3.5-large"),
    "google": Vendor("google", "veo-3.0-generate-001", "imagen-4.0-generate-001", "/v1beta", cancels=False),
}
#: (vendor, kind) pairs each vendor offers.
CASES = [(v, k) for v, spec in VENDORS.items() for k in ("video", "image")
         if (spec.video_model if k == "video" else spec.image_model)]


def request_for(kind: str, prompt: str = "a red fox in the snow", **kw: Any) -> Any:
    return (VideoGenerationRequest if kind == "video" else ImageGenerationRequest)(prompt=prompt, **kw)


def make_emulator(vendor: str, **kw: Any) -> Emulator:
    return EMULATORS[vendor](**kw)  # type: ignore[no-any-return]


def recorded(emu: Emulator, step: str) -> Any:
    """The first request the emulator recorded at ``step``."""
    return next(r for r in emu.requests if r.step == step)
