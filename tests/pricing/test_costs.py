"""Cost per attempt against the vendor emulators: charged from vendor-reported units (fal's
x-fal-billable-units, Replicate's metrics.predict_time), else from what was delivered; each attempt of a chain
and the total; a ceiling that skips the expensive attempt before any call."""

from __future__ import annotations

import pytest

from router.errors import AllAttemptsFailedError
from router.orchestrator import run_chain
from tests.providers.vendors import VENDORS, make_emulator, recorded, request_for

FAL_VEO_FAST = "https://fal.ai/models/fal-ai/veo3/fast"


async def test_fal_charged_cost_follows_the_billable_units_of_the_result() -> None:
    async with make_emulator("fal") as emu:
        # 5 s asked; Veo renders 4/6/8 s, so 6 s is sent and fal bills 6 units at $0.15 (audio on).
        response = await run_chain("video", VENDORS["fal"].config(emu, "video"), request_for("video", duration_seconds=5))
        assert recorded(emu, "submit").body["duration"] == "6s"
    assert response.provider_metadata["billable_units"] == 6
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.estimated_cost_usd == pytest.approx(0.75)  # what the request alone said: 5 s
    assert attempt.cost_usd == pytest.approx(0.90) and attempt.price_source == FAL_VEO_FAST
    assert response.execution_metadata.total_cost_usd == pytest.approx(0.90)  # type: ignore[union-attr]


async def test_fal_images_are_billed_per_megapixel_rounded_up() -> None:
    async with make_emulator("fal") as emu:
        config = VENDORS["fal"].config(emu, "image")  # fal-ai/flux/dev, $0.025/MP
        response = await run_chain("image", config, request_for("image", size="1536x1024", n=2))
    assert response.provider_metadata["billable_units"] == 4  # 1.5 MP -> 2, twice
    assert response.execution_metadata.attempts[0].cost_usd == pytest.approx(0.10)  # type: ignore[union-attr]


async def test_replicate_hardware_priced_model_costs_its_predict_time() -> None:
    async with make_emulator("replicate", polls_to_complete=4) as emu:
        config = VENDORS["replicate"].config(emu, "video", provider_config={"price": {"hardware": "gpu-a100-large"}})
        response = await run_chain("video", config, request_for("video", duration_seconds=5))
    predict_time = response.raw_response["metrics"]["predict_time"]
    assert predict_time > 0 and response.provider_metadata["predict_time"] == predict_time
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.cost_usd == pytest.approx(predict_time * 0.0014, abs=1e-6)
    assert attempt.estimated_cost_usd is None  # no typical_seconds given: compute time is unknown before the run
    assert "gpu-a100-large" in (attempt.price_source or "") and "replicate.com/pricing" in (attempt.price_source or "")


async def test_a_video_delivered_longer_than_asked_is_charged_for_what_was_delivered() -> None:
    async with make_emulator("openai") as emu:
        # Sora renders 4, 8 or 12 s: asked for 5, it delivers 8 (the video object says seconds "8").
        response = await run_chain("video", VENDORS["openai"].config(emu, "video"), request_for("video", duration_seconds=5))
    assert response.duration == 8
    attempt = response.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.estimated_cost_usd == pytest.approx(0.50)
    assert attempt.cost_usd == pytest.approx(0.80)


async def test_a_fallback_chain_records_cost_on_each_attempt_and_the_total() -> None:
    async with make_emulator("fal") as fal, make_emulator("luma") as luma, make_emulator("openai") as openai:
        fal.inject("server_error", "submit")
        luma.inject("unavailable", "submit")
        chain = [VENDORS["fal"].config(fal, "video"), VENDORS["luma"].config(luma, "video"),
                 VENDORS["openai"].config(openai, "video")]
        response = await run_chain("video", chain[0], request_for("video", duration_seconds=8), chain=chain)
    metadata = response.execution_metadata
    assert metadata is not None
    first, second, third = metadata.attempts
    assert (first.status, first.estimated_cost_usd, first.cost_usd) == ("failed", pytest.approx(1.2), 0.0)  # fal: failures free
    # Luma has no known price (and documents no failure billing): unknown, never 0.
    assert (second.price_source, second.estimated_cost_usd, second.cost_usd) == ("unknown", None, None)
    assert (third.status, third.cost_usd, third.price_source) == ("success", pytest.approx(0.8), "https://openai.com/api/pricing/")
    assert metadata.total_cost_usd == pytest.approx(0.8)
    assert metadata.estimated_cost_usd == pytest.approx(0.8)


async def test_a_route_ceiling_skips_the_expensive_attempt_before_any_call_and_moves_on() -> None:
    async with make_emulator("openai") as openai, make_emulator("fal") as fal:
        ceiling = {"max_cost_usd": 1.0}
        pro = VENDORS["openai"].config(openai, "video", model="sora-2-pro", provider_config=ceiling)  # 8 s x $0.30
        unknown = VENDORS["luma"].config(fal, "video", provider_config=ceiling)  # no price: skipped under a ceiling
        cheap = VENDORS["fal"].config(fal, "video", provider_config=ceiling)  # 8 s x $0.10 without audio
        request = request_for("video", duration_seconds=8, generate_audio=False)
        response = await run_chain("video", pro, request, chain=[pro, unknown, cheap])
        assert openai.calls["submit"] == 0  # the skipped attempt never reached its vendor
    skipped_pro, skipped_unknown, ran = response.execution_metadata.attempts  # type: ignore[union-attr]
    assert skipped_pro.status == "skipped" and skipped_pro.error_type == "CostCeilingError"
    assert "estimated $2.4 exceeds max_cost_usd=$1" in (skipped_pro.error_message or "")
    assert skipped_pro.cost_usd == 0.0 and skipped_pro.estimated_cost_usd == pytest.approx(2.4)
    assert skipped_unknown.status == "skipped" and "no known price" in (skipped_unknown.error_message or "")
    assert ran.status == "success" and ran.cost_usd == pytest.approx(0.8)


async def test_a_chain_entirely_over_its_ceiling_fails_without_calling_anyone() -> None:
    async with make_emulator("openai") as openai:
        config = VENDORS["openai"].config(openai, "video", model="sora-2-pro", provider_config={"max_cost_usd": 0.5})
        with pytest.raises(AllAttemptsFailedError) as caught:
            await run_chain("video", config, request_for("video", duration_seconds=4))
        assert openai.calls["submit"] == 0
    assert caught.value.last_error.code == "cost_ceiling"
    assert caught.value.execution_metadata.total_cost_usd == 0.0  # type: ignore[union-attr]


async def test_a_failed_replicate_hardware_prediction_costs_the_compute_it_reported() -> None:
    async with make_emulator("replicate", polls_to_complete=3) as emu:
        config = VENDORS["replicate"].config(emu, "video", provider_config={"price": {"hardware": "gpu-l40s"}})
        with pytest.raises(AllAttemptsFailedError) as caught:
            await run_chain("video", config, request_for("video", prompt="fox [[fault:job_failed]]"))
        predict_time = emu.jobs[next(iter(emu.jobs))].polls * 0.5  # the emulator's metrics.predict_time
    attempt = caught.value.execution_metadata.attempts[0]  # type: ignore[union-attr]
    assert attempt.status == "failed" and predict_time > 0
    assert attempt.cost_usd == pytest.approx(predict_time * 0.000975, abs=1e-6)  # costs are kept to 1e-6 USD
