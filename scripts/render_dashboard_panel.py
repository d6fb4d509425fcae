"""Render deploy/grafana/panel.png: the dashboard's "attempt latency p50/p95/p99 per provider" and
"fallbacks per provider pair" panels, computed the way Grafana does (histogram_quantile over bucket rates)
from a scripted workload through the real orchestrator and metrics.

Attempt times are scaled down (a tenth of a second to a few seconds instead of minutes) so the run takes about
a minute; they are real measurements of mock vendors that poll, and they span several histogram buckets, so the
quantiles show what the dashboard shows. vendor-a slows down fourfold for six scrapes.

Needs matplotlib (not a project dependency): pip install --target /tmp/mpl matplotlib, then
PYTHONPATH=/tmp/mpl .venv/bin/python scripts/render_dashboard_panel.py
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import router  # noqa: E402
from providers.mock import MockProvider  # noqa: E402
from router.metrics import Metrics  # noqa: E402
from router.orchestrator import run_chain  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "panel.png"
#: provider alias -> (typical seconds per attempt as simulated polls, failure weight)
PROVIDERS = {"vendor-a": (0.35, 0.3), "vendor-b": (0.2, 0.35), "vendor-c": (0.12, 0.0)}
SCRAPES, PER_SCRAPE, SLOW = 24, 20, range(8, 14)


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


def fallback_pairs(metrics: Metrics) -> dict[str, float]:
    """``sum by (from_provider, to_provider)`` of the fallback counter."""
    text = metrics.render()[0].decode()
    return {f"{s.labels['from_provider']} → {s.labels['to_provider']}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "tarash_router_fallbacks_total"}


def chain_config(slow: bool) -> router.VideoGenerationConfig:
    chain = []
    for name, (delay, fail) in PROVIDERS.items():
        seconds = delay * random.uniform(0.5, 2.0) * (4 if slow and name == "vendor-a" else 1)
        responses = [router.MockResponse(weight=1 - fail)]
        if fail:
            responses.append(router.MockResponse(weight=fail, error={"type": "ProviderUnavailableError"}))
        chain.append(router.VideoGenerationConfig(provider=name, model="v1", mock=router.MockConfig(
            responses=responses, polling=router.MockPollingConfig(
                status_sequence=["queued", "completed"], delay_between_updates=seconds))))
    return chain[0].model_copy(update={"fallback_configs": chain[1:]})


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
    fallbacks = [fallback_pairs(metrics)]
    for step in range(SCRAPES):
        # A batch of concurrent generations between two scrapes, as a daemon would have in flight.
        await asyncio.gather(*(run_chain("video", chain_config(step in SLOW), router.VideoGenerationRequest(prompt="x"),
                                         observers=[metrics.observer("video-prod", "video")])
                               for _ in range(PER_SCRAPE)))
        scrapes.append(bucket_counts(metrics))
        fallbacks.append(fallback_pairs(metrics))
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
    # Scrape i covers batch i - 1: shade the scrapes that saw vendor-a slow.
    latency.axvspan(SLOW.start + 0.5, SLOW.stop + 0.5, color="#f2495c", alpha=0.08)
    latency.set_title("Attempt latency p50 / p95 / p99 per provider (s)", color="#ccccdc", loc="left")
    latency.legend(ncol=3, fontsize=8, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2f3238")
    bottom = [0.0] * len(steps)
    for pair, color in (("vendor-a → vendor-b", "#fade2a"), ("vendor-b → vendor-c", "#ff9830")):
        increments = [fallbacks[i].get(pair, 0.0) - fallbacks[i - 1].get(pair, 0.0) for i in steps]
        fall.bar(list(steps), increments, bottom=bottom, color=color, label=pair)
        bottom = [b + inc for b, inc in zip(bottom, increments)]
    fall.set_title(f"Fallbacks per provider pair, per scrape ({PER_SCRAPE} generations each)", color="#ccccdc",
                   loc="left")
    fall.legend(fontsize=8, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2f3238")
    fall.yaxis.set_major_locator(MaxNLocator(integer=True))
    fall.set_xlabel("scrape", color="#ccccdc")
    fig.tight_layout()
    fig.savefig(OUT, dpi=90, facecolor=fig.get_facecolor())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
