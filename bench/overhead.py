"""Benchmark 1: what the router adds to a request's path.

An image route whose provider is an emulator that answers at once, driven at fixed concurrency:
(a) straight to the emulator, (b) through a bare aiohttp pass-through proxy (the floor for any Python proxy),
(c) through tarash-router. Reports p50/p99 latency, the added latency, the ratio (c)/(b), and each server process's own CPU µs per request
(from /proc, so it holds on a loaded machine where wall-clock latency does not).

    .venv/bin/python -m bench.overhead [--requests 2000] [--concurrency 1 32 256] [--rounds 3] [--floor]
                                       [--baseline DIR]
Each server is its own process (as in production); the load generator is this process. ``--loop uvloop`` runs
the bare proxy and the router on uvloop (the emulator and the load generator stay on asyncio); the default runs
both on asyncio, whatever is installed, so the two are always compared on the same event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench._common import (PYTHON, SCRIPT, cpu_seconds, drive, free_port, image_routes, machine, router_env,
                           spawn, wait_http)

BODY = {"model": "img", "prompt": "a red fox", "response_format": "url"}


def proxy_app(upstream: str) -> web.Application:
    """(b): forward the body as is and return the upstream answer; nothing else."""
    session: dict[str, aiohttp.ClientSession] = {}

    async def startup(app: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))

    async def cleanup(app: web.Application) -> None:
        await session["s"].close()

    async def forward(request: web.Request) -> web.Response:
        async with session["s"].post(upstream, data=await request.read(),
                                     headers={"Authorization": "Bearer test-key", "Content-Type": "application/json"}) as r:
            return web.Response(body=await r.read(), status=r.status, content_type="application/json")

    app = web.Application()
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/images/generations", forward)
    return app


def proxy_command(upstream: str, port: int, loop: str, server: str = "bench.overhead:run_proxy") -> tuple[str, ...]:
    """(b), or another ``module:function(upstream, port)`` server such as the floor (b2), as a process of its
    own, on ``loop`` (asyncio or uvloop)."""
    run = "__import__('uvloop').run" if loop == "uvloop" else "asyncio.run"
    module, function = server.split(":")
    return PYTHON, "-c", f"import asyncio, {module} as o; {run}(o.{function}({upstream!r}, {port}))"


async def run_proxy(upstream: str, port: int) -> None:
    runner = web.AppRunner(proxy_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


@asynccontextmanager
async def servers(out: Path, router_command: tuple[str, ...] = (str(SCRIPT),), baseline: Path | None = None,
                  loop: str = "asyncio", floor: bool = False) -> AsyncIterator[dict[str, tuple[str, int]]]:
    """Start the emulator, the bare proxy and the router; yield ``{target: (url, server pid)}``. With
    ``baseline`` (another checkout of the repo), a second router from that source runs beside it, as
    ``c0_router_baseline``: a before/after comparison in one run, under the same load. With ``floor``, the
    contract's floor (``bench.floor``) runs beside them as ``b2_contract_floor``. The proxies and the routers
    run on ``loop``."""
    out = out.resolve()  # the baseline runs in its own checkout: a relative --out would name another file there
    emu_port, proxy_port, router_port, baseline_port = free_port(), free_port(), free_port(), free_port()
    floor_port = free_port()
    emulator = spawn(PYTHON, "-m", "tests.emulators", "openai", "--port", str(emu_port))
    upstream = f"http://127.0.0.1:{emu_port}/v1/images/generations"
    proxy = spawn(*proxy_command(upstream, proxy_port, loop))
    proxies = [proxy, *([spawn(*proxy_command(upstream, floor_port, loop, "bench.floor:run_floor"))] if floor else [])]
    routes = out.parent / "overhead-routes.toml"
    routes.write_text(image_routes(emu_port))
    env = router_env(loop)
    daemon = spawn(*router_command, "serve", "--routes", str(routes), "--port", str(router_port),
                   env={**env, "TARASH_ROUTER_DATA_DIR": str(out.parent / "overhead-data")})
    daemons = [daemon]
    if baseline is not None:
        daemons.append(spawn(PYTHON, "-m", "router.cli", "serve", "--routes", str(routes), "--port",
                             str(baseline_port), cwd=baseline,
                             env={**env, "PYTHONPATH": str(baseline),
                                  "TARASH_ROUTER_DATA_DIR": str(out.parent / "overhead-data-baseline")}))
    try:
        await wait_http(f"http://127.0.0.1:{emu_port}/_media/x.png")
        await wait_http(f"http://127.0.0.1:{proxy_port}/")
        await wait_http(f"http://127.0.0.1:{router_port}/healthz")
        extra = {}
        if floor:
            await wait_http(f"http://127.0.0.1:{floor_port}/")
            extra["b2_contract_floor"] = (f"http://127.0.0.1:{floor_port}/v1/images/generations", proxies[1].pid)
        if baseline is not None:
            await wait_http(f"http://127.0.0.1:{baseline_port}/healthz")
            extra["c0_router_baseline"] = (f"http://127.0.0.1:{baseline_port}/v1/images/generations", daemons[1].pid)
        yield {
            "a_direct": (f"http://127.0.0.1:{emu_port}/v1/images/generations", emulator.pid),
            "b_bare_proxy": (f"http://127.0.0.1:{proxy_port}/v1/images/generations", proxy.pid),
            **extra,
            "c_tarash_router": (f"http://127.0.0.1:{router_port}/v1/images/generations", daemon.pid),
        }
    finally:
        for process in (*daemons, *proxies, emulator):
            process.terminate()
            process.wait()


def round_order(targets: dict[str, tuple[str, int]], index: int) -> list[tuple[str, tuple[str, int]]]:
    """The targets in the order round ``index`` measures them: reversed every other round (A B C, C B A...), so
    neither drift across a round nor coming first or last favours one. Two routers of the same code measured in
    one fixed order differed by 0.85x in one run and 1.05x in the next (2026-12-02)."""
    items = list(targets.items())
    return items if index % 2 == 0 else items[::-1]


def sender(name: str, url: str) -> Callable[[aiohttp.ClientSession], Awaitable[int]]:
    """One image request to ``url`` (the emulator itself wants the vendor key)."""
    headers = {"Authorization": "Bearer test-key"} if name == "a_direct" else {}

    async def send(session: aiohttp.ClientSession) -> int:
        async with session.post(url, json=BODY, headers=headers) as response:
            await response.read()
            return response.status
    return send


async def measure(name: str, url: str, pid: int, *, requests: int, concurrency: int) -> dict[str, Any]:
    """Warm up, then drive ``requests``; latency plus the target server's own CPU µs per request."""
    send = sender(name, url)
    await drive(send, requests=min(200, requests), concurrency=concurrency)  # warm-up
    cpu_before, loop_before = cpu_seconds(pid), cpu_seconds(pid, pid)
    result = await drive(send, requests=requests, concurrency=concurrency)
    result["cpu_us_per_request"] = (cpu_seconds(pid) - cpu_before) / requests * 1e6
    result["loop_thread_cpu_us_per_request"] = (cpu_seconds(pid, pid) - loop_before) / requests * 1e6
    return {"target": name, **result}


async def main(requests: int, levels: list[int], rounds: int, out: Path, loop: str, floor: bool = False,
               baseline: Path | None = None) -> None:
    async with servers(out, loop=loop, floor=floor, baseline=baseline) as targets:
        results: list[dict[str, Any]] = []
        # Interleaved: every round runs every level through every target, so drift on a shared machine (other
        # processes' load) hits all targets alike; the summary takes each figure's median over the rounds.
        for index in range(rounds):
            for level in levels:
                for name, (url, pid) in round_order(targets, index):
                    result = await measure(name, url, pid, requests=requests, concurrency=level)
                    results.append({**result, "round": index + 1})
                    print(f"round {index + 1} c={level:<4} {name:<16} p50 {result['p50_ms']:7.2f} ms  "
                          f"p99 {result['p99_ms']:7.2f} ms  {result['rps']:8.0f} req/s  "
                          f"cpu {result['cpu_us_per_request']:6.0f} us/req  errors {result['errors']}", flush=True)
        summary = [summarize(results, level) for level in levels]
        print(f"\nmedians over {rounds} rounds x {requests} requests (load average {os.getloadavg()[0]:.1f}):")
        for row in summary:
            print(f"c={row['concurrency']:<4} " + "  ".join(
                f"{name} p50 {row['targets'][name]['p50_ms']:.2f} p99 {row['targets'][name]['p99_ms']:.2f} ms "
                f"cpu {row['targets'][name]['cpu_us_per_request']:.0f} us" for name in targets))
            print(f"c={row['concurrency']:<4} router adds p50 {row['added_p50_ms']:.2f} ms, p99 {row['added_p99_ms']:.2f} ms; "
                  f"(c)/(b) p50 {row['ratio_c_over_b_p50']:.2f}, p99 {row['ratio_c_over_b_p99']:.2f}, "
                  f"cpu {row['ratio_c_over_b_cpu']:.2f}")
            for name, what in (("floor", "the contract's floor"), ("baseline", "the baseline router")):
                if f"ratio_{name}_over_b_cpu" in row:
                    print(f"c={row['concurrency']:<4} {what} over (b): p50 {row[f'ratio_{name}_over_b_p50']:.2f}, "
                          f"p99 {row[f'ratio_{name}_over_b_p99']:.2f}, cpu {row[f'ratio_{name}_over_b_cpu']:.2f}")
        out.write_text(json.dumps({"machine": machine(), "load_average": os.getloadavg(), "loop": loop,
                                   "requests": requests,
                                   "rounds": rounds, "results": results, "summary": summary}, indent=2) + "\n")


def summarize(results: list[dict[str, Any]], level: int) -> dict[str, Any]:
    """Per target the median of p50, p99 and CPU per request over the rounds at ``level``; the ratios from them."""
    figures: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["target"] for r in results):
        mine = [r for r in results if r["target"] == name and r["concurrency"] == level]
        figures[name] = {key: statistics.median(r[key] for r in mine)
                         for key in ("p50_ms", "p99_ms", "rps", "cpu_us_per_request")}
    a, b, c = figures["a_direct"], figures["b_bare_proxy"], figures["c_tarash_router"]
    row = {
        "concurrency": level, "targets": figures,
        "added_p50_ms": c["p50_ms"] - a["p50_ms"], "added_p99_ms": c["p99_ms"] - a["p99_ms"],
        **_ratios("c", c, b),
    }
    if (floor := figures.get("b2_contract_floor")) is not None:
        row.update(_ratios("floor", floor, b))
    if (before := figures.get("c0_router_baseline")) is not None:
        row.update(_ratios("baseline", before, b))
    return row


def _ratios(name: str, target: dict[str, float], bare: dict[str, float]) -> dict[str, float]:
    return {f"ratio_{name}_over_b_p50": target["p50_ms"] / bare["p50_ms"],
            f"ratio_{name}_over_b_p99": target["p99_ms"] / bare["p99_ms"],
            f"ratio_{name}_over_b_cpu": target["cpu_us_per_request"] / bare["cpu_us_per_request"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are their medians")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="event loop of the bare proxy and the router alike")
    parser.add_argument("--floor", action="store_true",
                        help="also measure the contract's floor (bench.floor) in the same rounds, as b2_contract_floor")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. a git worktree of main): its router "
                        "runs beside this one in the same rounds, as c0_router_baseline (a before/after in one run)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "overhead.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.requests, args.concurrency, args.rounds, args.out, args.loop, args.floor, args.baseline))
