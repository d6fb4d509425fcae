"""Benchmark 4: routes.toml rewritten 100 times (valid and invalid edits alternating) while clients send a
steady 500 requests/s. Measures save-to-live time for valid edits (until GET /v1/routes shows the new hash)
and counts failed requests (target: none).

    .venv/bin/python bench/reload_under_load.py [--rate 500] [--edits 100]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path

import aiohttp

from bench._common import SCRIPT, free_port, machine, percentile, spawn, wait_http

ROUTES = """
[routes."img"]
kind = "image"
description = "edit {n}"
[[routes."img".attempts]]
provider = "mock"
model = "mock-image"
"""
INVALID = ROUTES + '\n[routes."broken"]\nkind = "audio"\n'


async def main(rate: int, edits: int, out: Path) -> None:
    port = free_port()
    routes = out.parent / "reload-routes.toml"
    routes.write_text(ROUTES.format(n=0))
    daemon = spawn(str(SCRIPT), "serve", "--routes", str(routes), "--port", str(port),
                   env={"TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_DATA_DIR": str(out.parent / "rl-data")})
    base = f"http://127.0.0.1:{port}"
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    try:
        await wait_http(base + "/healthz")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            async def one() -> None:
                try:
                    async with session.post(base + "/v1/image/generations",
                                            json={"model": "img", "prompt": "x", "size": "8x8"}) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                except aiohttp.ClientError:
                    statuses[0] = statuses.get(0, 0) + 1

            async def load() -> None:
                tasks = set()
                interval = 1 / rate
                next_at = time.perf_counter()
                while not stop.is_set():  # open loop: a steady rate whatever the latency
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                await asyncio.gather(*tasks)

            async def current_hash() -> str:
                async with session.get(base + "/v1/routes") as response:
                    return (await response.json())["config_hash"]  # type: ignore[no-any-return]

            loader = asyncio.create_task(load())
            live_ms: list[float] = []
            started = time.perf_counter()
            for n in range(1, edits + 1):
                valid = n % 2 == 1
                text = ROUTES.format(n=n) if valid else INVALID.format(n=n)
                saved = time.perf_counter()
                routes.write_text(text)
                if valid:
                    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
                    while await current_hash() != expected:
                        await asyncio.sleep(0.005)
                    live_ms.append((time.perf_counter() - saved) * 1000)
                else:
                    await asyncio.sleep(0.1)
            stop.set()
            await loader
            elapsed = time.perf_counter() - started
        sent = sum(statuses.values())
        failed = sent - statuses.get(200, 0)
        result = {"machine": machine(), "edits": edits, "valid_edits": len(live_ms), "rate_target": rate,
                  "rate_achieved": sent / elapsed, "requests": sent, "failed_requests": failed, "statuses": statuses,
                  "save_to_live_p50_ms": percentile(live_ms, 50), "save_to_live_p99_ms": percentile(live_ms, 99)}
        print(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        daemon.terminate()
        daemon.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "reload_under_load.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.rate, args.edits, args.out))
