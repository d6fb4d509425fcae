"""Benchmark 5: in-process orchestrator overhead, tarash-router vs tarash-gateway 0.1.0, same Python.

A 3-deep chain of mock providers where attempts 1 and 2 fail with a retryable error and attempt 3 succeeds,
called N times through each library's ``generate_video_async``. tarash-gateway needs Python >= 3.12, so run
this in a 3.12 venv holding both:

    python3.12 -m venv /tmp/tg && /tmp/tg/bin/pip install "tarash-gateway[all]==0.1.0" -e .
    /tmp/tg/bin/python bench/library_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, percentile  # noqa: E402


def ours() -> Callable[[], Awaitable[Any]]:
    import router

    def failing(name: str) -> router.VideoGenerationConfig:
        return router.VideoGenerationConfig(provider="mock", model=name, mock=router.MockConfig(
            responses=[router.MockResponse(error={"type": "GenerationFailedError", "message": "boom"})]))

    config = failing("m1").model_copy(update={"fallback_configs": [
        failing("m2"), router.VideoGenerationConfig(provider="mock", model="m3")]})
    request = router.VideoGenerationRequest(prompt="a fox")
    return lambda: router.generate_video_async(config, request)


def theirs() -> Callable[[], Awaitable[Any]]:
    from tarash.tarash_gateway import generate_video_async
    from tarash.tarash_gateway.exceptions import GenerationFailedError
    from tarash.tarash_gateway.mock import MockConfig, MockResponse
    from tarash.tarash_gateway.models import VideoGenerationConfig, VideoGenerationRequest

    def config(name: str, fail: bool) -> VideoGenerationConfig:
        responses = [MockResponse(error=GenerationFailedError("boom", provider="fal"))] if fail else None
        return VideoGenerationConfig(provider="fal", model=name, api_key="k",
                                     mock=MockConfig(enabled=True, responses=responses))

    chain = config("m1", True).model_copy(update={"fallback_configs": [config("m2", True), config("m3", False)]})
    request = VideoGenerationRequest(prompt="a fox")
    return lambda: generate_video_async(chain, request)


async def measure(call: Callable[[], Awaitable[Any]], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = await call()
        times.append(time.perf_counter() - started)
        assert response.execution_metadata.successful_attempt == 3
    return times


async def main(calls: int, out: Path, rounds: int = 10) -> None:
    import logging

    logging.disable(logging.WARNING)  # both libraries log each failed attempt; measure the orchestrators
    libraries = {"tarash-router": ours(), "tarash-gateway 0.1.0": theirs()}
    times: dict[str, list[float]] = {name: [] for name in libraries}
    for call in libraries.values():
        await measure(call, 200)  # warm-up
    # Interleaved rounds, so drift in machine load hits both libraries alike.
    for _ in range(rounds):
        for name, call in libraries.items():
            times[name] += await measure(call, calls // rounds)
    results = {name: {"median_us": statistics.median(t) * 1e6, "p99_us": percentile(t, 99) * 1e6}
               for name, t in times.items()}
    for name, r in results.items():
        print(f"{name:<22} median {r['median_us']:8.1f} us  p99 {r['p99_us']:8.1f} us per call")
    ratio = results["tarash-router"]["median_us"] / results["tarash-gateway 0.1.0"]["median_us"]
    print(f"ratio router/gateway (median): {ratio:.2f}")
    out.write_text(json.dumps({"machine": machine(), "calls": calls, "rounds": rounds, "results": results,
                               "ratio_median": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "library_overhead.json")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.out))
