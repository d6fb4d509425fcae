"""routes.toml -> RoutesSnapshot: every problem at once with its TOML path and value; the chain it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.models import VideoGenerationRequest
from router.routes import RouteKindError, RouteNotFoundError, RoutesError, load, parse

BAD = """
[routes."video-fast"]
kind = "vidoe"
colour = "red"
[[routes."video-fast".attempts]]
provider = "mock"
model = "m"
[[routes."video-fast".attempts]]
provider = "nope"
model = "m"
timeout = 0
api_key = "sk-literal-key-123456"

[routes."empty"]
kind = "image"
attempts = []

[routes."img"]
kind = "image"
defaults = { size = "big" }
[[routes."img".attempts]]
provider = "mock"
model = "m"
timeout = -1.5
provider_config = { api_key = "sk-literal-key-654321" }

[routes."none"]
kind = "image"

[extras]
x = 1
"""


def test_every_problem_is_reported_with_its_path_and_value() -> None:
    with pytest.raises(RoutesError) as info:
        parse(BAD)
    problems = info.value.problems
    expected = [
        'routes."video-fast".kind: Input should be \'video\' or \'image\' (got "vidoe")',
        'routes."video-fast".colour: Extra inputs are not permitted (got "red")',
        'routes."video-fast".attempts[1].provider: unknown provider \'nope\'',
        'routes."video-fast".attempts[1].timeout: Input should be greater than 0 (got 0)',
        'routes."video-fast".attempts[1].api_key: keys never live in routes.toml',
        'routes."empty".attempts: List should have at least 1 item',
        'routes."img".defaults.size: String should match pattern',
        'routes."img".attempts[0].timeout: Input should be greater than 0 (got -1.5)',
        'routes."img".attempts[0].provider_config.api_key: keys never live in routes.toml',
        'routes."none".attempts: Field required',
        "extras: unknown top-level table",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)
    assert "sk-literal-key" not in "\n".join(problems)  # a key written by mistake is not echoed back


def test_toml_syntax_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RoutesError) as info:
        parse('[routes."x"\nkind = ', "r.toml")
    assert info.value.problems[0].startswith("r.toml: not valid TOML")
    with pytest.raises(RoutesError) as info:
        load(tmp_path / "missing.toml")
    assert "cannot read" in info.value.problems[0]


def test_the_snapshot_holds_each_route_as_one_chain() -> None:
    snapshot = parse("""
[routes."v"]
kind = "video"
description = "two attempts"
defaults = { aspect_ratio = "9:16", duration_seconds = 4 }
[[routes."v".attempts]]
provider = "fal"
model = "fal-ai/veo3"
timeout = 300
poll_interval = 0.5
api_key_env = "MY_FAL_KEY"
retries = 1
[[routes."v".attempts]]
provider = "mock"
model = "mock-video"
""")
    route = snapshot.resolve("v", "video")
    assert (route.name, route.kind, route.description) == ("v", "video", "two attempts")
    first, second = route.chain
    assert (first.provider, first.model, first.timeout, first.poll_interval) == ("fal", "fal-ai/veo3", 300, 0.5)
    assert first.provider_config == {"api_key_env": "MY_FAL_KEY", "retries": 1} and first.api_key is None
    assert second.provider == "mock" and second.timeout == 600  # models.md default
    assert route.config.fallback_configs == [second]
    assert snapshot.key_env_names() == {"MY_FAL_KEY", "FAL_KEY"}
    assert len(snapshot.config_hash) == 16 and snapshot.loaded_at.tzinfo is not None

    request = route.build_request({"prompt": "x", "duration_seconds": None, "seed": 3, "vendor_knob": 1})
    assert isinstance(request, VideoGenerationRequest)
    assert (request.aspect_ratio, request.duration_seconds, request.seed) == ("9:16", 4, 3)  # None = unset
    assert request.extra_params == {"vendor_knob": 1}

    with pytest.raises(RouteNotFoundError):
        snapshot.resolve("nope", "video")
    with pytest.raises(RouteKindError, match="serves video generation, not image"):
        snapshot.resolve("v", "image")


def test_the_repo_example_serves_without_keys() -> None:
    snapshot = load(Path(__file__).parents[2] / "routes.toml")
    assert {"video", "image"} == {route.kind for route in snapshot.routes.values()}
    assert all(config.provider == "mock" for route in snapshot.routes.values() for config in route.chain)
    assert any(len(route.chain) > 1 for route in snapshot.routes.values())  # a fallback to see


WRONG_TYPES = """
[routes."v"]
kind = "video"
max_cost_usd = nan
max_concurrency = 2.0
[[routes."v".attempts]]
provider = "mock"
model = "m"
timeout = true
retries = "2"
webhooks = 1
[[routes."v".attempts]]
provider = "mock"
model = "m"
timeout = inf
poll_interval = "0.5"

[clients."app"]
daily_budget_usd = "5"

[providers."mock"]
max_concurrency = true
"""


def test_a_value_of_the_wrong_toml_type_is_refused_not_coerced() -> None:
    # Lax validation read `timeout = true` as 1 s, `"2"` as 2 retries and `inf` as no timeout at all.
    with pytest.raises(RoutesError) as info:
        parse(WRONG_TYPES)
    problems = info.value.problems
    expected = [
        'routes."v".max_cost_usd: Input should be a finite number',
        'routes."v".max_concurrency: Input should be a valid integer',
        'routes."v".attempts[0].timeout: Input should be a valid number',
        'routes."v".attempts[0].retries: Input should be a valid integer',
        'routes."v".attempts[0].webhooks: Input should be a valid boolean',
        'routes."v".attempts[1].timeout: Input should be a finite number',
        'routes."v".attempts[1].poll_interval: Input should be a valid number',
        'clients."app".daily_budget_usd: Input should be a valid number',
        'providers."mock".max_concurrency: Input should be a valid integer',
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems
