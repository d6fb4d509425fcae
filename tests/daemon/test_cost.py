"""Cost through the running daemon: the response carries it, /metrics counts it with bounded labels, the
attempt_finished log line carries it, and a request may lower (never raise) a route's ceiling."""

from __future__ import annotations

import json

import pytest

from router.log_setup import configure
from tests.daemon.conftest import StartDaemon
from tests.daemon.test_metrics_http import HOSTILE, labels, scrape
from tests.providers.vendors import make_emulator


def routes(fal_url: str, openai_url: str) -> str:
    return f"""
[routes."video-prod"]
kind = "video"
max_cost_usd = 2.0
defaults = {{ duration_seconds = 8 }}
[[routes."video-prod".attempts]]
provider = "openai"
model = "sora-2-pro"
base_url = "{openai_url}/v1"
poll_interval = 0.01
[[routes."video-prod".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
base_url = "{fal_url}"
poll_interval = 0.01

[routes."video-negotiated"]
kind = "video"
[[routes."video-negotiated".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
base_url = "{fal_url}"
poll_interval = 0.01
price = {{ per_second = 0.05 }}
"""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


async def test_cost_in_the_response_the_metrics_and_the_log(start_daemon: StartDaemon, keys: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    async with make_emulator("fal") as fal, make_emulator("openai") as openai:
        daemon = await start_daemon(routes(fal.url, openai.url))
        capsys.readouterr()
        # sora-2-pro: 8 s x $0.30 = $2.40 > $2: skipped before any call; fal: 8 s x $0.15 = $1.20.
        status, body, _ = await daemon.request("POST", "/v1/video/generations",
                                               json={"model": "video-prod", "prompt": "fox"})
        assert status == 200 and openai.calls["submit"] == 0
        meta = body["execution_metadata"]
        assert [(a["status"], a["estimated_cost_usd"], a["cost_usd"]) for a in meta["attempts"]] == [
            ("skipped", 2.4, 0.0), ("success", 1.2, 1.2)]
        assert meta["total_cost_usd"] == 1.2 and meta["estimated_cost_usd"] == 1.2
        # The override wins over the table: 8 billable seconds at the negotiated $0.05.
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
            "model": "video-negotiated", "prompt": "fox", "duration_seconds": 8})
        assert status == 200 and body["execution_metadata"]["attempts"][0]["cost_usd"] == 0.4
        assert body["execution_metadata"]["attempts"][0]["price_source"] == "routes.toml price override"
        # A hostile model name never becomes a label.
        await daemon.request("POST", "/v1/video/generations", json={"model": HOSTILE, "prompt": "fox"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        _, series = await scrape(daemon)
    cost = series["tarash_router_cost_usd_total"]
    assert cost == {
        labels(route="video-prod", provider="fal", model="fal-ai/veo3/fast", basis="charged"): pytest.approx(1.2),
        labels(route="video-negotiated", provider="fal", model="fal-ai/veo3/fast", basis="charged"): pytest.approx(0.4),
    }
    finished = [line for line in lines if line["event"] == "attempt_finished"]
    assert [(f["route"], f["status"], f["estimated_cost_usd"], f["cost_usd"]) for f in finished] == [
        ("video-prod", "skipped", 2.4, 0.0), ("video-prod", "success", 1.2, 1.2), ("video-negotiated", "success", 0.4, 0.4)]
    assert finished[1]["price_source"] == "https://fal.ai/models/fal-ai/veo3/fast"


async def test_a_request_lowers_the_ceiling_but_never_raises_it(start_daemon: StartDaemon, keys: None) -> None:
    async with make_emulator("fal") as fal, make_emulator("openai") as openai:
        daemon = await start_daemon(routes(fal.url, openai.url))
        # Lowered to $1: fal's $1.20 is over it too, so nothing runs and nothing is called.
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
            "model": "video-prod", "prompt": "fox", "max_cost_usd": 1})
        assert status == 422 and body["error"]["code"] == "cost_ceiling"
        assert [a["status"] for a in body["execution_metadata"]["attempts"]] == ["skipped", "skipped"]
        # Raised to $100: the route's $2 still holds, sora-2-pro stays skipped.
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
            "model": "video-prod", "prompt": "fox", "max_cost_usd": 100})
        assert status == 200 and body["execution_metadata"]["attempts"][0]["status"] == "skipped"
        # A job keeps the ceiling it was accepted with.
        status, body, _ = await daemon.request("POST", "/v1/jobs", json={
            "model": "video-prod", "prompt": "fox", "max_cost_usd": 1})
        assert status == 202
        assert all(c["provider_config"]["max_cost_usd"] == 1.0
                   for c in (await daemon.state.jobs.get(body["id"])).chain)  # type: ignore[union-attr]
        assert fal.calls["submit"] == 1 and openai.calls["submit"] == 0
        for bad in ("cheap", -1, 0, True):
            status, body, _ = await daemon.request("POST", "/v1/video/generations", json={
                "model": "video-prod", "prompt": "fox", "max_cost_usd": bad})
            assert status == 400 and body["error"]["param"] == "max_cost_usd", bad
