"""Benchmark 2: sustained requests/s through the daemon with the mock provider (no vendor latency at all),
so what is measured is the router's own per-request cost. One daemon process; this process generates load.

    .venv/bin/python -m bench.throughput [--requests 6000] [--concurrency 64]

``--workers 1,2`` compares ``serve --workers N`` side by side in one run instead: one daemon per N, all on one
PostgreSQL job store (Debian's PostgreSQL 15, started as the tests do; N > 1 needs it), driven in interleaved
rounds so the machine's drift hits every N alike. Per N: the median round's req/s and latency, the daemon's CPU
per request (supervisor and workers, from /proc) and how busy the machine's cores were (/proc/stat), which says
whether a second worker had a core to run on.

    .venv/bin/python -m bench.throughput --workers 1,2 [--rounds 5] [--requests 3000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import SCRIPT, cpu_seconds, drive, free_port, machine, spawn, wait_http

ROUTES = """
[routes."img"]
kind = "image"
[[routes."img".attempts]]
provider = "mock"
model = "mock-image"
"""


async def main(requests: int, concurrency: int, out: Path, loop: str) -> None:
    port = free_port()
    routes = out.parent / "throughput-routes.toml"
    routes.write_text(ROUTES)
    daemon = spawn(str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port),
                   env={"TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_DATA_DIR": str(out.parent / "tp-data"),
                        "TARASH_ROUTER_EVENT_LOOP": loop})
    url = f"http://127.0.0.1:{port}/v1/image/generations"
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")

        async def send(session: aiohttp.ClientSession) -> int:
            async with session.post(url, json={"model": "img", "prompt": "x", "size": "8x8"}) as response:
                await response.read()
                return response.status

        await drive(send, requests=500, concurrency=concurrency)
        result = await drive(send, requests=requests, concurrency=concurrency)
        print(f"[{loop}] {result['rps']:.0f} req/s at concurrency {concurrency}; p50 {result['p50_ms']:.1f} ms, "
              f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}")
        out.write_text(json.dumps({"machine": machine(), "event_loop": loop, **result}, indent=2) + "\n")
    finally:
        daemon.terminate()
        daemon.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (a ``--workers`` supervisor and its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def cores_busy() -> tuple[float, float]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


async def compare_workers(counts: list[int], rounds: int, requests: int, concurrency: int, out: Path) -> None:
    from tests.postgres_server import running_server

    routes = out.parent / "throughput-routes.toml"
    routes.write_text(ROUTES)
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    load = os.getloadavg()
    with running_server() as pg:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        daemons: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for n in counts:
                port = free_port()
                daemons[n] = (spawn(str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port),
                                    "--workers", str(n), env={
                                        "TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_JOB_STORE": pg.new_database(),
                                        "TARASH_ROUTER_DATA_DIR": str(out.parent / f"tp-data-{n}"),
                                        "TARASH_ROUTER_EVENT_LOOP": "asyncio"}), f"http://127.0.0.1:{port}")
            for n, (_, url) in daemons.items():
                await wait_http(url + "/readyz")
            for round_ in range(rounds + 1):  # round 0 warms every daemon up and is not counted
                for n, (process, url) in daemons.items():
                    async def send(session: aiohttp.ClientSession, url: str = url) -> int:
                        async with session.post(url + "/v1/image/generations",
                                                json={"model": "img", "prompt": "x", "size": "8x8"}) as response:
                            await response.read()
                            return response.status

                    cpu, busy, client = tree_cpu_seconds(process.pid), cores_busy(), sum(os.times()[:2])
                    db = tree_cpu_seconds(postmaster)
                    result = await drive(send, requests=requests if round_ else 500, concurrency=concurrency)
                    after = cores_busy()
                    result["cpu_us_per_request"] = (tree_cpu_seconds(process.pid) - cpu) / result["requests"] * 1e6
                    result["client_cpu_us_per_request"] = (sum(os.times()[:2]) - client) / result["requests"] * 1e6
                    # Backends that ended during the round are not counted: a lower bound.
                    result["postgres_cpu_us_per_request"] = (tree_cpu_seconds(postmaster) - db) / result["requests"] * 1e6
                    result["cores_busy_pct"] = 100 * (after[0] - busy[0]) / max(1, after[1] - busy[1])
                    if round_:
                        rows[n].append(result)
                        print(f"round {round_} workers={n}: {result['rps']:.0f} req/s, "
                              f"{result['cpu_us_per_request']:.0f} µs CPU/request, cores {result['cores_busy_pct']:.0f}% busy",
                              flush=True)
        finally:
            for process, _ in daemons.values():
                process.terminate()
                process.wait()
    summary = {}
    for n, results in rows.items():
        median = sorted(results, key=lambda r: r["rps"])[len(results) // 2]
        summary[n] = {"rps_median": median["rps"], "rps_rounds": [round(r["rps"]) for r in results],
                      "p50_ms": median["p50_ms"], "p99_ms": median["p99_ms"],
                      "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in results),
                      "client_cpu_us_per_request": statistics.median(r["client_cpu_us_per_request"] for r in results),
                      "postgres_cpu_us_per_request": statistics.median(r["postgres_cpu_us_per_request"] for r in results),
                      "cores_busy_pct": statistics.median(r["cores_busy_pct"] for r in results),
                      "errors": sum(r["errors"] for r in results)}
    lines = [f"{machine()}; load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
             f"{rounds} rounds x {requests} requests, concurrency {concurrency}, image route, mock provider, "
             "PostgreSQL job store",
             "CPU µs per request: the daemon (supervisor + workers), PostgreSQL, the load generator (this process)",
             "workers  req/s (median)  rounds                     p50 ms  p99 ms  daemon  postgres  client  "
             "cores busy  errors"]
    for n, row in summary.items():
        lines.append(f"{n:>7}  {row['rps_median']:>14.0f}  {str(row['rps_rounds']):<25}  {row['p50_ms']:>6.1f}  "
                     f"{row['p99_ms']:>6.1f}  {row['cpu_us_per_request']:>6.0f}  {row['postgres_cpu_us_per_request']:>8.0f}  "
                     f"{row['client_cpu_us_per_request']:>6.0f}  {row['cores_busy_pct']:>9.0f}%  {row['errors']:>6}")
    if len(summary) > 1:
        first, last = summary[counts[0]], summary[counts[-1]]
        lines.append(f"ratio workers={counts[-1]} / workers={counts[0]}: {last['rps_median'] / first['rps_median']:.2f}x")
    text = "\n".join(lines)
    print(text)
    out.write_text(json.dumps({"machine": machine(), "loadavg": load, "rounds": rounds, "requests": requests,
                               "concurrency": concurrency, "workers": summary}, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--workers", help="compare serve --workers N for each N of a comma-separated list (e.g. 1,2)")
    parser.add_argument("--rounds", type=int, default=5, help="with --workers: interleaved rounds per N")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.workers:
        out = args.out or Path(__file__).parent / "results" / "throughput-workers.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(compare_workers([int(n) for n in args.workers.split(",")], args.rounds, args.requests,
                                    args.concurrency, out))
    else:
        out = args.out or Path(__file__).parent / "results" / f"throughput-{args.loop}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(args.requests, args.concurrency, out, args.loop))
