"""Render deploy/grafana/panel.png: the dashboard's "attempt latency p50/p95/p99 per provider" and
"fallbacks per provider pair" panels, computed the way Grafana does (histogram_quantile over bucket rates)
from a scripted workload through the real orchestrator and metrics.

Needs matplotlib (not a project dependency): python3 -m venv /tmp/plot && /tmp/plot/bin/pip install matplotlib
-e . && /tmp/plot/bin/python scripts/render_dashboard_panel.py
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import router  # noqa: E402
from providers.mock import MockProvider  # noqa: E402
from router.metrics import Metrics  # noqa: E402
from router.orchestrator import run_chain  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "panel.png"
#: provider alias -> (typical seconds per attempt as simulated polls, failure weight)
PROVIDERS = {"vendor-a": (0.04, 0.25), "vendor-b": (0.02, 0.1), "vendor-c": (0.01, 0.0)}


def bucket_counts(metrics: Metrics) -> dict[str, list[tuple[float, float]]]:
    """``sum by (le, provider)`` of the attempt-duration buckets."""
    text = metrics.render()[0].decode()
    sums: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tarash_router_attempt_duration_seconds_bucket":
                per = sums.setdefault(s.labels["provider"], {})
                le = float(s.labels["le"])
                per[le] = per.get(le, 0.0) + s.value
    return {provider: sorted(per.items()) for provider, per in sums.items()}


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """histogram_quantile over the increase between two scrapes (Prometheus' linear interpolation)."""
    prev = dict(before)
    rows = sorted((le, count - prev.get(le, 0.0)) for le, count in after)
    total = rows[-1][1] if rows else 0.0
    if total <= 0:
        return float("nan")
    rank, lower_le, lower_count = q * total, 0.0, 0.0
    for le, count in rows:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            return lower_le + (le - lower_le) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_le, lower_count = le, count
    return float("nan")


async def main() -> None:
    random.seed(7)
    for name in PROVIDERS:
        router.register_provider(name, MockProvider())
    metrics = Metrics()
    scrapes = [bucket_counts(metrics)]
    fallbacks: list[float] = []
    for step in range(24):
        for _ in range(15):
            chain = []
            for name, (delay, fail) in PROVIDERS.items():
                jitter = delay * random.uniform(0.5, 2.5) * (3 if 8 <= step < 14 and name == "vendor-a" else 1)
                responses = [router.MockResponse(weight=1 - fail)]
                if fail:
                    responses.append(router.MockResponse(weight=fail, error={"type": "ProviderUnavailableError"}))
                chain.append(router.VideoGenerationConfig(provider=name, model="v1", mock=router.MockConfig(
                    responses=responses, polling=router.MockPollingConfig(
                        status_sequence=["queued", "completed"], delay_between_updates=jitter))))
            config = chain[0].model_copy(update={"fallback_configs": chain[1:]})
            await run_chain("video", config, router.VideoGenerationRequest(prompt="x"),
                            observers=[metrics.observer("video-prod", "video")])
        scrapes.append(bucket_counts(metrics))
        fallbacks.append(sum(s.value for f in text_string_to_metric_families(metrics.render()[0].decode())
                             for s in f.samples if s.name == "tarash_router_fallbacks_total"))
    fig, (latency, fall) = plt.subplots(2, 1, figsize=(11, 7), gridspec_kw={"height_ratios": [2, 1]})
    fig.patch.set_facecolor("#111217")
    for ax in (latency, fall):
        ax.set_facecolor("#181b1f")
        ax.tick_params(colors="#ccccdc")
        for spine in ax.spines.values():
            spine.set_color("#2f3238")
        ax.grid(color="#2f3238")
    colors = {"vendor-a": "#f2495c", "vendor-b": "#5794f2", "vendor-c": "#73bf69"}
    steps = range(1, len(scrapes))
    for provider in PROVIDERS:
        for q, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
            values = [quantile(q, scrapes[i - 1].get(provider, []), scrapes[i].get(provider, [])) for i in steps]
            latency.plot(list(steps), values, style, color=colors[provider], label=f"{provider} p{int(q * 100)}")
    latency.set_title("Attempt latency p50 / p95 / p99 per provider (s)", color="#ccccdc", loc="left")
    latency.legend(ncol=3, fontsize=8, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2f3238")
    increments = [b - a for a, b in zip([0.0, *fallbacks], fallbacks)]
    fall.bar(list(steps), increments, color="#fade2a")
    fall.set_title("Fallbacks per scrape (vendor-a → vendor-b → vendor-c)", color="#ccccdc", loc="left")
    fall.set_xlabel("scrape", color="#ccccdc")
    fig.tight_layout()
    fig.savefig(OUT, dpi=90, facecolor=fig.get_facecolor())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
