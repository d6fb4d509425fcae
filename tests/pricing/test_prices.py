"""The shipped price table, the estimator, routes.toml price overrides and what `check` says about them."""

from __future__ import annotations

import re

import pytest

from router import cli
from router.models import ImageGenerationConfig, ImageGenerationRequest, VideoGenerationConfig, VideoGenerationRequest
from router.pricing import default_table, estimate, price_for
from router.routes import parse


def video(provider: str, model: str, **config: object) -> VideoGenerationConfig:
    return VideoGenerationConfig(provider=provider, model=model, **config)  # type: ignore[arg-type]


def test_every_price_names_its_source_and_date_and_is_never_a_silent_zero() -> None:
    table = default_table()
    assert len(table.prices) > 25
    for price in table.prices:
        assert price.source.startswith("https://") or price.provider == "mock", price
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.read or ""), price
        assert price.usd > 0 or price.provider == "mock", price
    assert table.hardware["replicate"]["gpu-l40s"] == 0.000975


@pytest.mark.parametrize(("provider", "model", "fields", "usd"), [
    ("fal", "fal-ai/veo3/fast", {"duration_seconds": 5}, 0.75),                  # audio on by default: $0.15/s
    ("fal", "fal-ai/veo3/fast", {"duration_seconds": 5, "generate_audio": False}, 0.5),
    ("fal", "fal-ai/veo3/fast/image-to-video", {}, 1.2),                         # sub-endpoint, default 8 s
    ("fal", "fal-ai/veo3.1", {"duration_seconds": 8, "resolution": "4k"}, 4.8),
    ("openai", "sora-2", {"duration_seconds": 8}, 0.8),
    ("openai", "sora-2-pro", {"duration_seconds": 4, "resolution": "1080p"}, 2.0),
    ("azure-openai", "sora-2", {"duration_seconds": 4}, 0.4),                    # deployment named after the model
    ("google", "veo-3.0-fast-generate-001", {"number_of_videos": 2}, 2.4),
    ("mock", "mock-video", {}, 0.0),
])
def test_video_estimates_follow_duration_tier_and_count(provider: str, model: str, fields: dict, usd: float) -> None:
    quote = estimate(video(provider, model), VideoGenerationRequest(prompt="fox", **fields))
    assert quote.usd == pytest.approx(usd)
    assert quote.source == price_for(video(provider, model)).source  # type: ignore[union-attr]


@pytest.mark.parametrize(("provider", "model", "fields", "usd"), [
    ("openai", "gpt-image-1", {"quality": "low", "size": "1536x1024", "n": 2}, 0.032),
    ("openai", "gpt-image-1", {}, 0.167),
    ("openai", "dall-e-3", {"aspect_ratio": "16:9"}, 0.08),
    ("fal", "fal-ai/flux/dev", {"size": "1536x1024"}, 0.05),                    # 1.5 MP billed as 2
    ("fal", "fal-ai/flux/dev", {"size": "1024x1024", "n": 3}, 0.075),
    ("stability", "stable-image-ultra", {}, 0.08),
])
def test_image_estimates_follow_quality_size_and_count(provider: str, model: str, fields: dict, usd: float) -> None:
    config = ImageGenerationConfig(provider=provider, model=model)
    assert estimate(config, ImageGenerationRequest(prompt="fox", **fields)).usd == pytest.approx(usd)


def test_an_unknown_price_is_unknown_not_zero() -> None:
    quote = estimate(video("luma", "ray-2"), VideoGenerationRequest(prompt="fox"))
    assert quote.price is None and quote.usd is None and quote.source == "unknown"
    # A near name is not a match: gpt-image-1-mini is not priced like gpt-image-1.
    assert price_for(ImageGenerationConfig(provider="openai", model="gpt-image-1-mini")) is None


ROUTES = """
[routes."v"]
kind = "video"
[[routes."v".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
price = { per_second = 0.09 }
[[routes."v".attempts]]
provider = "replicate"
model = "someone/video-model"
price = { hardware = "gpu-l40s", typical_seconds = 40 }
[[routes."v".attempts]]
provider = "luma"
model = "ray-2"
"""


def test_a_price_override_in_routes_toml_wins_over_the_table() -> None:
    chain = parse(ROUTES).routes["v"].chain
    request = VideoGenerationRequest(prompt="fox", duration_seconds=5)
    negotiated = estimate(chain[0], request)
    assert negotiated.usd == pytest.approx(0.45) and negotiated.source == "routes.toml price override"
    hardware = estimate(chain[1], request)
    assert hardware.price.unit == "prediction_second"  # type: ignore[union-attr]
    assert hardware.usd == pytest.approx(40 * 0.000975)
    assert "gpu-l40s" in hardware.source and "replicate.com/pricing" in hardware.source


def test_check_warns_about_attempts_without_a_price(tmp_path, capsys) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES)
    assert cli.main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert 'warning: routes."v".attempts[2]: no known price for luma/ray-2' in err
    assert "attempts[0]" not in err and "attempts[1]" not in err


@pytest.mark.parametrize(("price", "problem"), [
    ("{ per_second = 0.35, per_image = 0.04 }", 'routes."v".attempts[0].price: give exactly one of'),
    ("{ per_second = -1 }", 'routes."v".attempts[0].price.per_second: Input should be greater than or equal to 0 (got -1)'),
    ("{ per_sekond = 0.3 }", 'routes."v".attempts[0].price.per_sekond: Extra inputs are not permitted (got 0.3)'),
    ("{ hardware = \"gpu-z9\" }", "routes.\"v\".attempts[0].price.hardware: unknown replicate hardware 'gpu-z9'"),
    ("{ per_image = 0.04, typical_seconds = 3 }", 'routes."v".attempts[0].price: typical_seconds only goes with'),
    ("0.35", 'routes."v".attempts[0].price: Input should be a valid dictionary'),
])
def test_a_malformed_price_is_a_check_error_with_its_toml_path(tmp_path, capsys, price: str, problem: str) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(f'[routes."v"]\nkind = "video"\n[[routes."v".attempts]]\nprovider = "replicate"\n'
                    f'model = "a/b"\nprice = {price}\n')
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert problem in err
    assert err.count("attempts[0].price") == 1  # reported once
