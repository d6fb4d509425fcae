"""Smoke tests against the real vendors. Skipped unless TARASH_LIVE=1 and the vendor's key is set:

    TARASH_LIVE=1 FAL_KEY=... .venv/bin/python -m pytest -m live tests/providers/test_live.py
They cost money (one small generation each); CI never runs them.
"""

from __future__ import annotations

import os

import pytest

import router

LIVE = [
    ("fal", "FAL_KEY", "image", "fal-ai/flux/schnell"),
    ("openai", "OPENAI_API_KEY", "image", "dall-e-2"),
    ("replicate", "REPLICATE_API_TOKEN", "image", "black-forest-labs/flux-schnell"),
    ("azure-openai", "AZURE_OPENAI_API_KEY", "image", os.environ.get("AZURE_OPENAI_IMAGE_DEPLOYMENT", "dall-e-3")),
    ("runway", "RUNWAYML_API_SECRET", "image", "gen4_image"),
    ("luma", "LUMAAI_API_KEY", "image", "photon-flash-1"),
    ("stability", "STABILITY_API_KEY", "image", "core"),
    ("google", "GEMINI_API_KEY", "image", "imagen-4.0-generate-001"),
]


@pytest.mark.live
@pytest.mark.parametrize("provider,env,kind,model", LIVE)
async def test_live_image(provider: str, env: str, kind: str, model: str) -> None:
    if os.environ.get("TARASH_LIVE") != "1" or not os.environ.get(env):
        pytest.skip(f"set TARASH_LIVE=1 and {env} to run against the real {provider} API")
    extra = {}
    if provider == "azure-openai":
        extra = {"base_url": os.environ.get("AZURE_OPENAI_ENDPOINT"), "api_version": "2024-02-01"}
    config = router.ImageGenerationConfig(provider=provider, model=model, timeout=120, **extra)
    response = await router.generate_image_async(config, router.ImageGenerationRequest(prompt="a small red square", size="256x256" if provider == "openai" else None))
    assert response.images and response.execution_metadata.successful_attempt == 1  # type: ignore[union-attr]
    await router.aclose()
