"""Render deploy/grafana/panel.png: the dashboard's "attempt latency p50/p95/p99 per provider" and
"fallbacks per provider pair" panels, computed the way Grafana does (histogram_quantile over bucket rates)
from a scripted workload through the real orchestrator and metrics. With ``--cost``, render
deploy/grafana/cost_panel.png instead: "spend per route and provider" and "cost per successful generation",
from tarash_router_cost_usd_total and tarash_router_requests_total of a priced workload (each scrape stands for
one minute; vendor-a fails most attempts for six scrapes, so the chain falls back to the dearer vendor-b).

Attempt times are scaled down (a tenth of a second to a few seconds instead of minutes) so the run takes about
a minute; they are real measurements of mock vendors that poll, and they span several histogram buckets, so the
quantiles show what the dashboard shows. vendor-a slows down fourfold for six scrapes.

Needs matplotlib (not a project dependency): pip install --target /tmp/mpl matplotlib, then
PYTHONPATH=/tmp/mpl .venv/bin/python scripts/render_dashboard_panel.py
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

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
COST_OUT = OUT.with_name("cost_panel.png")
#: Cost workload: route -> chain of (vendor, USD per video or image, failure weight, failure weight while SLOW).
PRICED = {"video-prod": [("vendor-a", 1.20, 0.1, 0.9), ("vendor-b", 4.00, 0.0, 0.0)],
          "image-fast": [("vendor-c", 0.04, 0.0, 0.0)]}
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


def priced_chain(route: str, degraded: bool) -> router.VideoGenerationConfig | router.ImageGenerationConfig:
    kind = router.VideoGenerationConfig if route.startswith("video") else router.ImageGenerationConfig
    chain = []
    for name, usd, fail, degraded_fail in PRICED[route]:
        weight = degraded_fail if degraded else fail
        responses = [router.MockResponse(weight=1 - weight)]
        if weight:
            responses.append(router.MockResponse(weight=weight, error={"type": "ProviderUnavailableError"}))
        unit = "per_video" if kind is router.VideoGenerationConfig else "per_image"
        chain.append(kind(provider=name, model="v1", provider_config={"price": {unit: usd}},
                          mock=router.MockConfig(responses=responses)))
    return chain[0].model_copy(update={"fallback_configs": chain[1:] or None})


def cost_sample(metrics: Metrics) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """``sum by (route, provider)`` of the cost counter and ``sum by (route)`` of successful requests."""
    text = metrics.render()[0].decode()
    spend: dict[tuple[str, str], float] = {}
    successes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tarash_router_cost_usd_total":
                key = (s.labels["route"], s.labels["provider"])
                spend[key] = spend.get(key, 0.0) + s.value
            elif s.name == "tarash_router_requests_total" and s.labels["outcome"] == "success":
                successes[s.labels["route"]] = successes.get(s.labels["route"], 0.0) + s.value
    return spend, successes


async def render_cost() -> None:
    random.seed(7)
    for name in ("vendor-a", "vendor-b", "vendor-c"):
        router.register_provider(name, MockProvider())
    metrics = Metrics()
    samples = [cost_sample(metrics)]
    for step in range(SCRAPES):
        runs = [run_chain("video" if route.startswith("video") else "image", priced_chain(route, step in SLOW),
                          (router.VideoGenerationRequest if route.startswith("video") else router.ImageGenerationRequest)(prompt="x"),
                          observers=[metrics.observer(route, "video" if route.startswith("video") else "image")])
                for route, count in (("video-prod", PER_SCRAPE), ("image-fast", 3 * PER_SCRAPE)) for _ in range(count)]
        await asyncio.gather(*runs, return_exceptions=True)
        samples.append(cost_sample(metrics))
    fig, (spend_ax, unit_ax) = plt.subplots(2, 1, figsize=(11, 7))
    _style(fig, (spend_ax, unit_ax))
    steps = range(1, len(samples))
    colors = {("video-prod", "vendor-a"): "#73bf69", ("video-prod", "vendor-b"): "#f2495c",
              ("image-fast", "vendor-c"): "#5794f2"}
    for key, color in colors.items():
        # increase over one scrape (one simulated minute) x 60 = USD per hour
        values = [60 * (samples[i][0].get(key, 0.0) - samples[i - 1][0].get(key, 0.0)) for i in steps]
        spend_ax.plot(list(steps), values, color=color, label=f"{key[0]} / {key[1]}")
    unit_colors = {"video-prod": "#fade2a", "image-fast": "#5794f2"}
    for route, color in unit_colors.items():
        values = []
        for i in steps:
            spent = sum(v - samples[i - 1][0].get(k, 0.0) for k, v in samples[i][0].items() if k[0] == route)
            done = samples[i][1].get(route, 0.0) - samples[i - 1][1].get(route, 0.0)
            values.append(spent / max(done, 1.0))
        unit_ax.plot(list(steps), values, color=color, label=route)
    for ax in (spend_ax, unit_ax):
        ax.axvspan(SLOW.start + 0.5, SLOW.stop + 0.5, color="#f2495c", alpha=0.08)
        ax.legend(fontsize=8, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2f3238")
    spend_ax.set_title("Spend per route and provider (USD/hour)", color="#ccccdc", loc="left")
    unit_ax.set_title("Cost per successful generation (USD)", color="#ccccdc", loc="left")
    unit_ax.set_yscale("log")
    unit_ax.set_xlabel("scrape (one minute each)", color="#ccccdc")
    fig.tight_layout()
    fig.savefig(COST_OUT, dpi=90, facecolor=fig.get_facecolor())
    print(f"wrote {COST_OUT}")


def _style(fig: Any, axes: Any) -> None:
    fig.patch.set_facecolor("#111217")
    for ax in axes:
        ax.set_facecolor("#181b1f")
        ax.tick_params(colors="#ccccdc")
        for spine in ax.spines.values():
            spine.set_color("#2f3238")
        ax.grid(color="#2f3238")


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
    _style(fig, (latency, fall))
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
    asyncio.run(render_cost() if "--cost" in sys.argv[1:] else main())
