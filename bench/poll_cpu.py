"""Benchmark 1c: the provider engine's CPU per fal status poll, this checkout vs another, in interleaved rounds.

A fal emulator (its own process) holds one job; a client process of each checkout submits it through
``FalProvider.submit`` and then calls ``FalProvider.poll`` on it ``--polls`` times, ``--concurrency`` at once,
on one event loop, and reports its own CPU (``time.process_time``) per poll: the engine's share of a running job's
poll (URL, headers, HTTP client, JSON, status mapping), without the daemon's orchestration around it. Each client
runs with its checkout's own venv (``DIR/.venv/bin/python``); rounds alternate the checkouts so drift hits both.

    .venv/bin/python -m bench.poll_cpu --baseline /work/wt/wirebase [--rounds 5] [--polls 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEY = "test-key"


async def client(port: int, polls: int, concurrency: int) -> dict[str, float]:
    """One client's run: submit a job, warm up, then ``polls`` polls of it; CPU and wall µs per poll."""
    from providers.fal import FalProvider  # noqa: PLC0415  # the checkout under test, in its own process
    from router.models import VideoGenerationConfig, VideoGenerationRequest  # noqa: PLC0415
    from router.sync import aclose  # noqa: PLC0415

    provider = FalProvider()
    config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3", base_url=f"http://127.0.0.1:{port}",
                                   api_key=KEY)
    job = await provider.submit("video", config, VideoGenerationRequest(prompt="a fox"))

    async def run(count: int) -> None:
        remaining = iter(range(count))

        async def worker() -> None:
            for _ in remaining:
                await provider.poll("video", config, job)  # type: ignore[arg-type]

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run(min(polls, 2000))
    cpu, wall = time.process_time(), time.perf_counter()
    await run(polls)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await aclose()
    return {"cpu_us_per_poll": cpu / polls * 1e6, "wall_us_per_poll": wall / polls * 1e6}


def run_client(checkout: Path, port: int, polls: int, concurrency: int) -> dict[str, float]:
    python = checkout / ".venv" / "bin" / "python"
    out = subprocess.run([str(python), str(Path(__file__).resolve()), "--client", str(port), str(polls),
                          str(concurrency)], cwd=checkout, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def main(args: argparse.Namespace) -> dict[str, object]:
    # Here, not at the top: a client runs this file as a script under another checkout's venv, without bench/.
    from bench._common import PYTHON, ROOT, free_port, machine, spawn, wait_http  # noqa: PLC0415

    port = free_port()
    # Jobs never complete: every poll is a full IN_PROGRESS answer, as for a running video.
    emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(port), "--key", KEY,
                     "--polls", str(10**9))
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    try:
        await wait_http(f"http://127.0.0.1:{port}/_emulator/stats")
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                runs[name].append(await asyncio.to_thread(run_client, checkout, port, args.polls, args.concurrency))
    finally:
        emulator.terminate()
        emulator.wait()
    result: dict[str, object] = {"machine": machine(), "polls": args.polls, "concurrency": args.concurrency,
                                 "rounds": args.rounds, "checkouts": {k: str(v) for k, v in checkouts.items()}}
    for name, values in runs.items():
        cpu = [v["cpu_us_per_poll"] for v in values]
        result[name] = {"cpu_us_per_poll_median": statistics.median(cpu), "cpu_us_per_poll": cpu,
                        "wall_us_per_poll_median": statistics.median(v["wall_us_per_poll"] for v in values)}
        print(f"{name:9} CPU per poll: median {statistics.median(cpu):6.1f} us  (rounds: "
              f"{', '.join(f'{c:.1f}' for c in cpu)})")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, polls, concurrency = map(int, sys.argv[2:5])
        print(json.dumps(asyncio.run(client(port, polls, concurrency))))
        sys.exit(0)
    parser = argparse.ArgumentParser(prog="python -m bench.poll_cpu")
    parser.add_argument("--baseline", type=Path, help="another checkout with its own .venv (e.g. a worktree of main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--polls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    summary = asyncio.run(main(arguments))
    if arguments.out:
        arguments.out.write_text(json.dumps(summary, indent=2) + "\n")
