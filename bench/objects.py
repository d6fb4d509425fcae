"""GC-tracked objects per running job: what each job waiting for its next status poll keeps alive in the daemon.

Starts a fal emulator and the daemon (``bench._gc_serve`` with ``BENCH_OBJECTS``), counts the tracked objects left
after a full collection (``gc.get_objects()``), creates ``--jobs`` video jobs whose polls are ``--poll-interval``
apart (long enough that every job sits between two polls), waits until each has been submitted and polled once,
counts again, and prints the difference per job, by type (the types that grew most). Every cyclic collection walks
the young objects, and the middle and full ones walk these: fewer per job, shorter pauses and less GC CPU.

    .venv/bin/python -m bench.objects --jobs 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench._common import CENSUS, PYTHON, fal_job_env, fal_video_routes, free_port, machine, spawn, wait_http


async def census(pid: int, path: Path, count: int) -> dict[str, int]:
    """Ask the daemon for a census (``CENSUS``) and return it: objects by type, ``total`` among them."""
    os.kill(pid, CENSUS)
    while not path.exists() or len(path.read_text().splitlines()) < count:
        await asyncio.sleep(0.05)
    line = json.loads(path.read_text().splitlines()[count - 1])
    return {"total": line["total"], **line["types"]}


async def main(args: argparse.Namespace) -> dict[str, object]:
    emu_port, port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-objects-"))
    routes = tmp / "routes.toml"
    routes.write_text(fal_video_routes(emu_port, args.poll_interval))
    counts = tmp / "objects.jsonl"
    emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(emu_port), "--polls", "1000")
    env = {**fal_job_env(args.jobs, DATA_DIR=str(tmp)), "BENCH_OBJECTS": str(counts)}
    daemon = spawn(PYTHON, "-m", "bench._gc_serve", str(tmp / "gc.json"), "serve", "--routes", str(routes),
                   "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"http://127.0.0.1:{emu_port}/_emulator/stats")
        await wait_http(base + "/healthz")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            # One job through first, so what every job's first run imports and caches is in both counts.
            async with session.post(base + "/v1/jobs", json={"model": "video", "prompt": "warm-up"}) as r:
                assert r.status == 202, await r.text()
            await asyncio.sleep(1.0)
            before = await census(daemon.pid, counts, 1)

            async def create(i: int) -> None:
                async with session.post(base + "/v1/jobs", json={"model": "video", "prompt": f"fox {i}"}) as r:
                    assert r.status == 202, await r.text()

            await asyncio.gather(*(create(i) for i in range(args.jobs)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # every job submitted and polled once: waiting for its next poll
                async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                    calls = (await r.json())["calls"]
                if calls.get("submit", 0) >= args.jobs + 1 and calls.get("status", 0) >= args.jobs + 1:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            after = await census(daemon.pid, counts, 2)
    finally:
        daemon.terminate()
        daemon.wait()
        emulator.terminate()
        emulator.wait()
    grown = {name: (after.get(name, 0) - before.get(name, 0)) / args.jobs for name in after.keys() | before.keys()}
    top = dict(sorted(((n, round(v, 2)) for n, v in grown.items() if n != "total" and abs(v) >= 0.01),
                      key=lambda item: -item[1])[: args.top])
    result: dict[str, object] = {
        "machine": machine(), "jobs": args.jobs, "poll_interval_s": args.poll_interval,
        "tracked_before": before["total"], "tracked_after": after["total"],
        "tracked_per_job": round(grown["total"], 1), "per_job_by_type": top,
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--poll-interval", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
