"""The Grafana dashboard imports (valid JSON, Prometheus datasource input, a clean grid, panels on real metric
names) and the alert rules pass promtool's syntax check and unit tests when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from router.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def exported_names() -> set[str]:
    text = Metrics().render()[0].decode()
    names = set(re.findall(r"^# TYPE (\w+)", text, re.MULTILINE))
    return names | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}


def test_dashboard_is_importable_and_uses_real_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "tarash-router.json").read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS" and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    names = exported_names()
    used = {m for panel in dashboard["panels"] for t in panel["targets"]
            for m in re.findall(r"tarash_router_\w+", t["expr"])}
    assert used and used <= names, used - names
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("requests", "latency", "fallbacks", "jobs in flight", "reload", "overhead", "spend per route and provider",
                  "cost per successful generation"):
        assert topic in titles


def test_dashboard_panels_are_well_formed() -> None:
    """What Grafana needs to lay out and draw each panel: a grid cell inside the 24 columns, no overlaps, the
    templated datasource on every query, explicit thresholds on stats (the default turns them red above 80)."""
    dashboard = json.loads((DEPLOY / "grafana" / "tarash-router.json").read_text())
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "xywh") and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        for target in panel["targets"]:
            assert target["refId"] and target["datasource"]["uid"] == "${DS_PROMETHEUS}"
        if panel["type"] == "stat":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None and all(isinstance(step["value"], (int, float)) for step in steps[1:])


def test_alert_rules() -> None:
    text = (DEPLOY / "prometheus" / "tarash-router-alerts.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", text)
    assert {"TarashRouteAllAttemptsFailing", "TarashConfigReloadFailing", "TarashFallbackRateHigh",
            "TarashSpendRateHigh"} <= set(alerts)
    assert set(re.findall(r"tarash_router_\w+", text)) <= exported_names()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    for command in (["check", "rules", "tarash-router-alerts.yml"], ["test", "rules", "tarash-router-alerts.test.yml"]):
        # The unit tests feed series to each rule: the broken-since-restart route fires, client errors do not.
        result = subprocess.run([promtool, *command], cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
