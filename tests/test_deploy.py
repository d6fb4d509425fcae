"""The Grafana dashboard imports (valid JSON, Prometheus datasource input, panels on real metric names) and the
alert rules pass promtool when it is installed."""

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
    for topic in ("requests", "latency", "fallbacks", "jobs in flight", "reload", "overhead"):
        assert topic in titles


def test_alert_rules() -> None:
    text = (DEPLOY / "prometheus" / "tarash-router-alerts.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", text)
    assert {"TarashRouteAllAttemptsFailing", "TarashConfigReloadFailing", "TarashFallbackRateHigh"} <= set(alerts)
    assert set(re.findall(r"tarash_router_\w+", text)) <= exported_names()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    result = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "tarash-router-alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
