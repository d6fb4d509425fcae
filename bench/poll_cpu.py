"""Benchmark 1c: the provider engine's CPU per fal status poll, this checkout vs another, in interleaved rounds.

A fal emulator (its own process) holds one job; a client process of each checkout submits it through
``FalProvider.submit`` and then calls ``FalProvider.poll`` on it ``--polls`` times, ``--concurrency`` at once,
on one event loop, and reports its own CPU (``time.process_time``) per poll: the engine's share of a running job's
poll (URL, headers, HTTP client, JSON, status mapping), without the daemon's orchestration around it. Each client
runs with its checkout's own venv (``DIR/.venv/bin/python``); rounds alternate the checkouts so drift hits both.

Then, once per checkout, the GC-tracked objects one poll in flight keeps alive: ``--inflight`` polls are sent to a
server (its own process) that reads them and never answers, and a census after a full collection (``gc.get_objects``)
counts what they hold beyond what the client held before them (each on a connection of its own, as under load).

    .venv/bin/python -m bench.poll_cpu --baseline /work/wt/wirebase [--rounds 5] [--polls 20000] [--concurrency 32]
        [--inflight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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


async def inflight(port: int, silent_port: int, count: int) -> dict[str, float]:
    """GC-tracked objects per poll in flight: ``count`` polls to ``silent_port``, which never answers."""
    from providers.fal import FalProvider  # noqa: PLC0415
    from router.models import VideoGenerationConfig, VideoGenerationRequest  # noqa: PLC0415
    from router.sync import aclose  # noqa: PLC0415

    provider = FalProvider()
    config = VideoGenerationConfig(provider="fal", model="fal-ai/veo3", base_url=f"http://127.0.0.1:{port}",
                                   api_key=KEY, provider_config={"request_timeout": 600})
    job = await provider.submit("video", config, VideoGenerationRequest(prompt="a fox"))
    await provider.poll("video", config, job)
    job.data = {**job.data, "status_url": job.data["status_url"].replace(f":{port}/", f":{silent_port}/")}
    silent = config.model_copy(update={"base_url": f"http://127.0.0.1:{silent_port}"})
    gc.collect()
    before = len(gc.get_objects())
    tasks = [asyncio.create_task(provider.poll("video", silent, job)) for _ in range(count)]  # type: ignore[arg-type]
    await asyncio.sleep(2.0)  # every one connected and sent (a loopback connect takes well under a millisecond)
    gc.collect()
    held = len(gc.get_objects()) - before - count  # less the tasks themselves, which the caller holds
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await aclose()
    return {"tracked_objects_per_inflight_poll": held / count}


#: A server that reads whatever comes and never answers (its own process: its objects are not counted).
SILENT_SERVER = """
import asyncio, sys
async def main():
    async def hold(reader, writer):
        while await reader.read(65536):
            pass
    server = await asyncio.start_server(hold, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
"""


def run_client(checkout: Path, *args: object) -> dict[str, float]:
    python = checkout / ".venv" / "bin" / "python"
    out = subprocess.run([str(python), str(Path(__file__).resolve()), *map(str, args)], cwd=checkout, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def main(args: argparse.Namespace) -> dict[str, object]:
    # Here, not at the top: a client runs this file as a script under another checkout's venv, without bench/.
    from bench._common import PYTHON, ROOT, free_port, machine, spawn, wait_http  # noqa: PLC0415

    port, silent_port = free_port(), free_port()
    # Jobs never complete: every poll is a full IN_PROGRESS answer, as for a running video.
    emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(port), "--key", KEY,
                     "--polls", str(10**9))
    silent = spawn(PYTHON, "-c", SILENT_SERVER, str(silent_port))
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    try:
        await wait_http(f"http://127.0.0.1:{port}/_emulator/stats")
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                runs[name].append(await asyncio.to_thread(run_client, checkout, "--client", port, args.polls,
                                                          args.concurrency))
        objects = {name: await asyncio.to_thread(run_client, checkout, "--inflight", port, silent_port, args.inflight)
                   for name, checkout in checkouts.items()}
    finally:
        for process in (emulator, silent):
            process.terminate()
            process.wait()
    result: dict[str, object] = {"machine": machine(), "polls": args.polls, "concurrency": args.concurrency,
                                 "rounds": args.rounds, "checkouts": {k: str(v) for k, v in checkouts.items()}}
    for name, values in runs.items():
        cpu = [v["cpu_us_per_poll"] for v in values]
        result[name] = {"cpu_us_per_poll_median": statistics.median(cpu), "cpu_us_per_poll": cpu,
                        "wall_us_per_poll_median": statistics.median(v["wall_us_per_poll"] for v in values),
                        **objects[name]}
        print(f"{name:9} CPU per poll: median {statistics.median(cpu):6.1f} us  (rounds: "
              f"{', '.join(f'{c:.1f}' for c in cpu)});  tracked objects per poll in flight "
              f"({args.inflight} at once): {objects[name]['tracked_objects_per_inflight_poll']:.1f}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] in (["--client"], ["--inflight"]):
        numbers = [int(arg) for arg in sys.argv[2:5]]
        print(json.dumps(asyncio.run((client if sys.argv[1] == "--client" else inflight)(*numbers))))
        sys.exit(0)
    parser = argparse.ArgumentParser(prog="python -m bench.poll_cpu")
    parser.add_argument("--baseline", type=Path, help="another checkout with its own .venv (e.g. a worktree of main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--polls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--inflight", type=int, default=200, help="polls in flight for the object census")
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    summary = asyncio.run(main(arguments))
    if arguments.out:
        arguments.out.write_text(json.dumps(summary, indent=2) + "\n")
