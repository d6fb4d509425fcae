"""The status page's reads against a job store of 10,000 jobs: what one refresh of the page costs the daemon.

Fills a SQLite job store with finished jobs on four routes (the records are what the daemon writes: request,
chain, result with execution metadata), starts ``tarash-router serve`` on it, and times each request the page
makes, one at a time: ``/v1/routes``, ``/v1/status`` and one page (25) of ``/v1/jobs`` with the filters the page
offers, first pages and a page deep in the list, including filters that match nothing.

    .venv/bin/python -m bench.status_page --jobs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import ROOT, SCRIPT, free_port, percentile, spawn, wait_http
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import JobRecord
from router.models import utc_now

ROUTES = ["video-a", "video-b", "image-c", "video-d"]
STATUSES = ["completed"] * 16 + ["failed"] * 3 + ["cancelled"]


def routes_file() -> str:
    return "".join(f"""
[routes."{name}"]
kind = "{'image' if name.startswith('image') else 'video'}"
[[routes."{name}".attempts]]
provider = "mock"
model = "mock-{name}"
""" for name in ROUTES)


async def fill(path: Path, jobs: int) -> None:
    store = SQLiteJobStore(path)
    await store.open()
    start = utc_now() - timedelta(hours=6)
    for i in range(jobs):
        route = ROUTES[i % len(ROUTES)]
        status = STATUSES[i % len(STATUSES)]
        attempt = {"provider": "mock", "model": f"mock-{route}", "attempt_number": 1, "status": "success",
                   "started_at": start.isoformat(), "ended_at": start.isoformat()}
        job = JobRecord(
            id=f"job_{i:032x}", kind="image" if route.startswith("image") else "video", route=route,
            request={"prompt": f"a red fox in the snow, take {i}", "duration_seconds": 8},
            chain=[{"provider": "mock", "model": f"mock-{route}", "timeout": 60}], status=status,  # type: ignore[arg-type]
            progress_percent=100 if status == "completed" else None, created_at=start + timedelta(seconds=i),
            result={"request_id": f"job_{i:032x}", "video": "https://vendor.example/v.mp4",
                    "execution_metadata": {"attempts": [attempt]}} if status == "completed" else None,
            error={"message": "vendor 503", "type": "provider_unavailable_error"} if status == "failed" else None,
            execution_metadata={"total_attempts": 1, "attempts": [attempt]},
        )
        await store.insert(job)
    await store.close()


async def measure(base: str, paths: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession() as session:
        for name, path in paths.items():
            times: list[float] = []
            for _ in range(repeats):
                started = time.perf_counter()
                async with session.get(base + path) as response:
                    assert response.status == 200, (path, response.status, await response.text())
                    await response.read()
                times.append((time.perf_counter() - started) * 1000)
            results[name] = {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2)}
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        await fill(data / "jobs.sqlite3", args.jobs)
        fill_seconds = time.perf_counter() - started
        (Path(tmp) / "routes.toml").write_text(routes_file())
        port = free_port()
        proc = spawn(str(SCRIPT), "serve", "--routes", str(Path(tmp) / "routes.toml"), "--port", str(port),
                     env={"TARASH_ROUTER_DATA_DIR": str(data), "TARASH_ROUTER_LOG_LEVEL": "warning"})
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_http(base + "/readyz")
            middle = f"job_{args.jobs // 2:032x}"
            paths = {
                "routes": "/v1/routes",
                "status": "/v1/status",
                "jobs, first page": "/v1/jobs?limit=25",
                "jobs, status=failed": "/v1/jobs?limit=25&status=failed",
                "jobs, model=video-b": "/v1/jobs?limit=25&model=video-b",
                "jobs, status+model": "/v1/jobs?limit=25&status=cancelled&model=video-d",
                "jobs, page in the middle": f"/v1/jobs?limit=25&after={middle}",
                "jobs, middle, status=failed": f"/v1/jobs?limit=25&status=failed&after={middle}",
                "jobs, status matching none": "/v1/jobs?limit=25&status=queued",
                "jobs, model matching none": "/v1/jobs?limit=25&model=image-none",
            }
            results = await measure(base, paths, args.repeats)
        finally:
            proc.terminate()
            proc.wait()
    report: dict[str, Any] = {"jobs": args.jobs, "repeats": args.repeats, "fill_seconds": round(fill_seconds, 1),
                              "requests": results}
    lines = [f"status page reads, {args.jobs} jobs in the store, {args.repeats} requests each, one at a time",
             f"{'request':<32} {'p50 ms':>8} {'p99 ms':>8}"]
    lines += [f"{name:<32} {r['p50_ms']:>8} {r['p99_ms']:>8}" for name, r in results.items()]
    print("\n".join(lines))
    out = ROOT / "bench" / "results"
    (out / "status_page.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "status_page.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
