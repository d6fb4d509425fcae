"""Dashboard queries evaluated by Prometheus' own engine (promtool): the failure share is 0 %, not "No data",
before the first failure, and the route variable never offers the "unknown" label of unrouted requests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "tarash-router.json"
SERIES = """
  - series: 'tarash_router_requests_total{route="video-fast",kind="video",outcome="success"}'
    values: '0+10x20'
  - series: 'tarash_router_requests_total{route="unknown",kind="video",outcome="rejected"}'
    values: '0+1x20'
"""


def _promql_test(tmp_path: Path, expr: str, samples: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    (tmp_path / "none.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(f"""rule_files: [none.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:{SERIES}
  promql_expr_test:
  - expr: {json.dumps(expr)}
    eval_time: 15m
    exp_samples:
{samples}
""")
    return subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def _dashboard() -> dict:  # type: ignore[type-arg]
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_failed_share_is_zero_before_any_failure(tmp_path: Path) -> None:
    panel = next(p for p in _dashboard()["panels"] if p["title"] == "Failed (share)")
    expr = panel["targets"][0]["expr"].replace("$route", ".*")
    result = _promql_test(tmp_path, expr, "    - labels: '{}'\n      value: 0\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_route_variable_leaves_out_unknown(tmp_path: Path) -> None:
    variable = next(v for v in _dashboard()["templating"]["list"] if v["name"] == "route")
    selector = re.fullmatch(r"label_values\((.+), route\)", variable["query"])[1]  # type: ignore[index]
    result = _promql_test(tmp_path, f"count by (route) ({selector})",
                          "    - labels: '{route=\"video-fast\"}'\n      value: 1\n")
    assert result.returncode == 0, result.stdout + result.stderr
