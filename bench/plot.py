"""Plot the committed benchmark results into bench/results/*.png (needs matplotlib, not a project dependency):

    /tmp/plot/bin/python bench/plot.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def overhead() -> None:
    data = json.loads((RESULTS / "overhead.json").read_text())
    fig, axes = plt.subplots(1, len(data["summary"]), figsize=(12, 4), squeeze=False)
    for ax, row in zip(axes[0], data["summary"], strict=True):  # medians over the interleaved rounds
        level, targets = row["concurrency"], row["targets"]
        names = [name.split("_", 1)[1].replace("_", " ") for name in targets]
        x = range(len(targets))
        ax.bar([i - 0.2 for i in x], [t["p50_ms"] for t in targets.values()], 0.4, label="p50")
        ax.bar([i + 0.2 for i in x], [t["p99_ms"] for t in targets.values()], 0.4, label="p99")
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_title(f"concurrency {level}")
        ax.set_ylabel("latency (ms)")
    axes[0][0].legend()
    fig.suptitle("Benchmark 1: direct vs bare aiohttp proxy vs tarash-router (image route, instant emulator)")
    fig.tight_layout()
    fig.savefig(RESULTS / "overhead.png", dpi=90)


def scale(name: str, title: str) -> None:
    text = (RESULTS / f"{name}.txt").read_text()
    points = [(float(t), float(n)) for t, n in re.findall(r"t=\s*([\d.]+)s in flight (\d+)", text)]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
    ax.set_xlabel("seconds since the first job was posted")
    ax.set_ylabel("jobs in flight")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=90)


if __name__ == "__main__":
    overhead()
    scale("scale", "Benchmark 3: 10,000 sixty-second vendor jobs")
    scale("scale_kill9", "Benchmark 3b: the same, kill -9 at the midpoint, restart")
    print("wrote", ", ".join(p.name for p in RESULTS.glob("*.png")))
