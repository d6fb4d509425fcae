"""Benchmark 2: sustained requests/s through the daemon with the mock provider (no vendor latency at all),
so what is measured is the router's own per-request cost. One daemon process; this process generates load.

    .venv/bin/python bench/throughput.py [--requests 6000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import aiohttp

from bench._common import SCRIPT, drive, free_port, machine, spawn, wait_http

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"throughput-{args.loop}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.requests, args.concurrency, out, args.loop))
