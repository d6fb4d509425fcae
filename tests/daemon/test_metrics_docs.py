"""docs/metrics.md lists every metric the running daemon exposes, with its type and labels, and nothing more.
When this fails after adding a metric, document it in docs/metrics.md."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.conftest import Daemon
from tests.test_docs import table_rows

METRICS_MD = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


async def test_every_exposed_metric_is_documented_with_type_and_labels(daemon: Daemon) -> None:
    # One generation, one fallback chain and one job, so the labelled series exist and show their labels.
    await daemon.request("POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "fox"})
    await daemon.request("POST", "/v1/video/generations", json={"model": "video-down", "prompt": "fox"})
    status, text, _ = await daemon.request("GET", "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    # prometheus-client exposes each counter's and histogram's creation time as a companion "_created" gauge.
    companions = {f.name + "_created" for f in families if f.type in ("counter", "histogram")}
    exposed: dict[str, tuple[str, set[str]]] = {}
    for family in families:
        if family.name in companions:
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for sample in family.samples for label in sample.labels if label not in ("le", "quantile")}
        exposed[name] = (family.type, labels)
    rows = {name: cells for name, cells in table_rows(METRICS_MD.read_text()).items()
            if name.startswith("tarash_router_")}
    missing = sorted(set(exposed) - set(rows))
    stale = sorted(set(rows) - set(exposed))
    assert not missing, f"docs/metrics.md lacks {missing}"
    assert not stale, f"docs/metrics.md documents metrics the daemon does not expose: {stale}"
    for name, (kind, labels) in exposed.items():
        doc_type, doc_labels = rows[name][0], rows[name][1]
        assert doc_type == kind, f"{name}: docs say {doc_type}, the daemon exposes a {kind}"
        documented = {part.strip(" `") for part in doc_labels.split(",")} - {"—"}
        assert labels <= documented, f"{name}: labels {sorted(labels - documented)} are not documented"
