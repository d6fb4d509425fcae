"""`tarash-router prices` (the table, and the attempts of a routes file without a price) and the cost line of
`tarash-router generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import cli

ROUTES = """
[routes."video-priced"]
kind = "video"
[[routes."video-priced".attempts]]
provider = "mock"
model = "mock-video"
price = { per_second = 0.05 }
mock = { polling = { status_sequence = ["completed"], delay_between_updates = 0 } }

[routes."video-unpriced"]
kind = "video"
[[routes."video-unpriced".attempts]]
provider = "luma"
model = "ray-2"
[[routes."video-unpriced".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
"""


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES)
    return path


def test_prices_lists_the_table_and_the_attempts_without_a_price(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prices", str(routes)]) == 0
    out = capsys.readouterr().out
    fal = next(line for line in out.splitlines() if line.startswith("fal ") and " fal-ai/veo3/fast " in line)
    assert fal.split()[2:5] == ["second", "0.15", "2026-12-01"] and fal.endswith("https://fal.ai/models/fal-ai/veo3/fast")
    assert "tier audio=false: 0.1" in out
    assert "hardware gpu-l40s" in out and "https://replicate.com/pricing" in out
    assert f"{routes}: 1 attempt without a known price:" in out
    assert 'routes."video-unpriced".attempts[0]: no known price for luma/ray-2' in out
    assert cli.main(["prices", "--json", str(routes)]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {p["model"] for p in table["prices"]} >= {"sora-2", "fal-ai/veo3/fast", "gpt-image-1"}


def test_generate_prints_what_the_generation_cost(routes: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fox.mp4"
    assert cli.main(["generate", "video", "--model", "video-priced", "--prompt", "fox", "--duration", "6",
                     "--routes", str(routes), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # 6 s asked ($0.30 estimated); the mock delivers its 2-second sample and says so: charged for 2 s.
    assert "cost: $0.1000 charged, estimated $0.3000 (price: routes.toml price override)" in printed
