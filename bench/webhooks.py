"""Benchmark 7: the same long video jobs with vendor webhooks off (pure polling) and on, in one run.

A fal emulator finishes every job ``--lifetime`` seconds after its submit (on the wall clock) and, when the
submit asked for it, POSTs the signed webhook then. Pass "off": no PUBLIC_URL, the route polls every
``--poll-interval`` seconds. Pass "on": PUBLIC_URL is the daemon itself, so the attempt polls only every
WEBHOOK_POLL_INTERVAL (60 s) and the push ends the wait. Per pass: vendor status calls per job, the result's
latency after the vendor finished (the job's ``updated_at`` minus the emulator's finish time: p50/p99), the
daemon's event-loop lag p99 (its own metric: over the whole pass, and over the completions alone, from the last
scrape before the first job ends until the last one ended; the harness's reads of the results afterwards are in
neither) and CPU seconds (utime + stime of the process).

    .venv/bin/python -m bench.webhooks --jobs 10000 --lifetime 60 --poll-interval 5

``--profile PATH`` (cProfile of the loop thread from ``--lifetime`` on, the completions) and ``--stalls PATH``
(GC pauses and loop stalls, ``bench._gc_serve``) show where a pass's time goes; the figures of such a run are
not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import (PROFILE_START, PROFILE_STOP, PYTHON, SCRIPT, cpu_seconds, fal_job_env, fal_video_routes,
                           free_port, loop_lag_p99, machine, percentile, spawn, wait_http)


LAG = "tarash_router_event_loop_lag_seconds"


def since(before: str, after: str) -> str:
    """The loop-lag histogram lines of ``after`` less ``before``'s counts: the samples taken between two scrapes."""
    first = {line.split()[0]: float(line.split()[-1]) for line in before.splitlines() if line.startswith(f"{LAG}_")}
    return "\n".join(f"{line.split()[0]} {float(line.split()[-1]) - first.get(line.split()[0], 0.0)}"
                     for line in after.splitlines() if line.startswith(f"{LAG}_"))


async def run_pass(args: argparse.Namespace, webhooks: bool, workdir: Path) -> dict[str, Any]:
    emu_port, port = free_port(), free_port()
    emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(emu_port), "--polls", "1000000",
                     "--finish-after", str(args.lifetime))
    routes = workdir / "webhooks-routes.toml"
    jwks = f'provider_config = {{ webhook_jwks_url = "http://127.0.0.1:{emu_port}/.well-known/jwks.json" }}\n'
    routes.write_text(fal_video_routes(emu_port, args.poll_interval, max_poll_attempts=100000, extra=jwks))
    data = workdir / f"webhooks-data-{'on' if webhooks else 'off'}"
    shutil.rmtree(data, ignore_errors=True)
    env = fal_job_env(args.jobs, DATA_DIR=str(data))
    if webhooks:
        env["TARASH_ROUTER_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    serve = ("serve", "--routes", str(routes), "--port", str(port))
    name = "on" if webhooks else "off"
    profile = args.profile.with_suffix(f".{name}.prof") if args.profile else None
    if profile:
        daemon = spawn(PYTHON, "-m", "bench._profiled_serve", str(profile), *serve, env=env)
    elif args.stalls:  # GC pauses per generation, and (BENCH_STALLS=1) what the loop ran when it stalled
        daemon = spawn(PYTHON, "-m", "bench._gc_serve", str(args.stalls.with_suffix(f".{name}.gc.json")), *serve,
                       env={**env, "BENCH_STALLS": "1"})
    else:
        daemon = spawn(str(SCRIPT), *serve, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"http://127.0.0.1:{emu_port}/_emulator/stats")
        await wait_http(base + "/healthz")
        cpu_before, emulator_cpu_before = cpu_seconds(daemon.pid), cpu_seconds(emulator.pid)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            sem = asyncio.Semaphore(100)
            started = time.perf_counter()

            async def create(i: int) -> str:
                async with sem, session.post(base + "/v1/jobs", json={"model": "video", "prompt": f"fox {i}"}) as r:
                    assert r.status == 202, await r.text()
                    return (await r.json())["id"]  # type: ignore[no-any-return]

            ids = await asyncio.gather(*(create(i) for i in range(args.jobs)))
            print(f"[{'on' if webhooks else 'off'}] {len(ids)} jobs accepted in {time.perf_counter() - started:.1f} s",
                  flush=True)
            profiling = False
            before_completions = ""  # the last scrape before the first job ends
            while True:
                await asyncio.sleep(2.0)
                if profile and not profiling and time.perf_counter() - started > args.lifetime:
                    daemon.send_signal(PROFILE_START)  # the completions (the pushes) from here on
                    profiling = True
                async with session.get(base + "/metrics") as r:
                    metrics = await r.text()
                if time.perf_counter() - started <= args.lifetime:
                    before_completions = metrics
                running = next((float(line.split()[-1]) for line in metrics.splitlines()
                                if line.startswith('tarash_router_jobs_in_flight{kind="video"}')), 0.0)
                print(f"[{'on' if webhooks else 'off'}] t={time.perf_counter() - started:6.1f}s in flight "
                      f"{running:.0f}", flush=True)
                if running == 0 and time.perf_counter() - started > args.lifetime:
                    break
            cpu = cpu_seconds(daemon.pid) - cpu_before
            # Loop lag until the last job ended: the scrapes of the 10,000 jobs below are the harness's, not load.
            lag, lag_completions = loop_lag_p99(metrics), loop_lag_p99(since(before_completions, metrics), "_completions")
            if profile:
                daemon.send_signal(PROFILE_STOP)
            emulator_cpu = cpu_seconds(emulator.pid) - emulator_cpu_before

            async def status(job_id: str) -> dict[str, Any]:
                async with sem, session.get(f"{base}/v1/jobs/{job_id}") as r:
                    return await r.json()  # type: ignore[no-any-return]

            jobs = await asyncio.gather(*(status(i) for i in ids))
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                emu = await r.json()
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/finished") as r:
                finished = await r.json()
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/webhooks") as r:
                deliveries = await r.json()
            async with session.get(base + "/metrics") as r:
                metrics = await r.text()
        # The first delivery the daemon answered, per vendor job: when the push reached the router.
        answered: dict[str, float] = {}
        for d in deliveries:
            if d["answered_at"] is not None and d["status"] == 200:
                answered[d["job_id"]] = min(answered.get(d["job_id"], d["answered_at"]), d["answered_at"])
        answer_times = [d["answered_at"] - d["sent_at"] for d in deliveries if d["answered_at"] is not None]
        latencies, after_answer = [], []
        for job in jobs:
            if job["status"] != "completed":
                continue
            vendor_id = job["execution_metadata"]["attempts"][0]["request_id"]
            done = datetime.fromisoformat(job["updated_at"]).timestamp()
            latencies.append(done - finished[vendor_id])
            if vendor_id in answered:
                after_answer.append(done - answered[vendor_id])
        received: dict[str, float] = {}
        for line in metrics.splitlines():
            if line.startswith("tarash_router_webhooks_received_total{"):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                received[result] = received.get(result, 0.0) + float(line.split()[-1])
        return {
            "webhooks": webhooks, "completed": len(latencies), "not_completed": args.jobs - len(latencies),
            "vendor_submits": emu["calls"].get("submit", 0),
            "status_calls_per_job": emu["calls"].get("status", 0) / args.jobs,
            "vendor_calls_per_job": sum(emu["calls"].values()) / args.jobs,
            "webhooks_received": received,
            "result_latency_after_vendor_p50_s": percentile(latencies, 50) if latencies else None,
            "result_latency_after_vendor_p99_s": percentile(latencies, 99) if latencies else None,
            # Where the time goes: the push's own trip (sent until the daemon answered; the vendor retries an
            # answer slower than 15 s), then the router's status check and save after it answered.
            "webhook_deliveries": len(deliveries),
            "webhook_unanswered": sum(d["answered_at"] is None for d in deliveries),
            "webhook_answer_p50_s": percentile(answer_times, 50) if answer_times else None,
            "webhook_answer_p99_s": percentile(answer_times, 99) if answer_times else None,
            "result_after_webhook_answer_p50_s": percentile(after_answer, 50) if after_answer else None,
            "result_after_webhook_answer_p99_s": percentile(after_answer, 99) if after_answer else None,
            # Until the last job ended (accepting included), and over the completions alone (``_completions``).
            **lag, **lag_completions,
            "daemon_cpu_seconds": cpu,
            # The vendor side shares the same 2 cores: when both are busy, every answer waits.
            "emulator_cpu_seconds": emulator_cpu,
        }
    finally:
        daemon.terminate()
        daemon.wait()
        emulator.terminate()
        emulator.wait()


async def main(args: argparse.Namespace) -> None:
    workdir = args.out.parent
    result = {"machine": machine(), "jobs": args.jobs, "lifetime_s": args.lifetime,
              "poll_interval_s": args.poll_interval, "webhook_poll_interval_s": 60.0,
              **{name: await run_pass(args, name == "on", workdir) for name in args.passes}}
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("webhooks-data-on", "webhooks-data-off", "webhooks-routes.toml"):
        shutil.rmtree(workdir / name, ignore_errors=True) if name.startswith("webhooks-data") \
            else (workdir / name).unlink(missing_ok=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--lifetime", type=float, default=60.0)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--passes", nargs="+", choices=("off", "on"), default=["off", "on"],
                        help="which passes to run, in order (default both: off, then on)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="cProfile the daemon (event-loop thread CPU) from --lifetime on: PATH.on.prof / .off.prof")
    parser.add_argument("--stalls", type=Path, default=None,
                        help="run the daemon under bench._gc_serve with BENCH_STALLS=1: its GC pauses in "
                             "PATH.on.gc.json and its loop stalls (with the stacks sampled in them) in "
                             "PATH.on.gc.stalls.json (.off. for the other pass)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "webhooks.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args))
