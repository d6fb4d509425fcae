"""Benchmark 3: many long video jobs in flight at once through the daemon, against a fal emulator.

Each emulator job needs ``--polls`` status polls before it completes and the route polls every
``--poll-interval`` seconds, so a job lives about polls x interval seconds. Reports the daemon's peak RSS,
event-loop lag (p99 from its own metric: the bucket bound and the estimate interpolated in it; and exactly, every
lateness of the same 100-ms timer kept by ``bench._lag``), job-store write rate, and whether every job completed with the
right result and exactly one vendor submit. Also: accept rate (jobs/s), ``GET /v1/jobs/{id}`` latency p50/p99
from a side client in a process of its own (``bench._side_client``; ``..._in_load_generator``: the same GETs made
inside this process, as earlier runs measured them), throughout (during the accept burst and while the jobs run), the
daemon's CPU seconds (utime + stime) and its cyclic-GC pauses per generation (``bench._gc_serve``), and the
vendor calls (submits, status polls) the emulator saw during the accept burst.
``--kill-at-midpoint`` kill -9s the daemon halfway and restarts it on the same job store.

    .venv/bin/python bench/scale.py --jobs 10000 --polls 12 --poll-interval 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import _side_client
from bench._common import (PYTHON, cpu_seconds, daemon_event_loop, fal_job_env, fal_video_routes, free_port,
                           loop_lag_p99, machine, percentile, spawn, wait_http)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _accept_cpu(daemon: int, emulator: int) -> dict[str, float]:
    """CPU seconds so far of everything sharing the cores during the accept burst: the daemon (and its event-loop
    thread), the fal emulator its jobs submit to, and this load generator (``time.process_time``: all its threads)."""
    return {"daemon": cpu_seconds(daemon), "daemon_loop_thread": cpu_seconds(daemon, daemon),
            "emulator": cpu_seconds(emulator), "load_generator": time.process_time()}


async def side_client(url: str, ids: list[str], latencies: list[float]) -> None:
    """GET a random known job every 50 ms on a connection of its own, inside this process: the figure earlier runs
    reported. It also times this process's own loop (the burst's POSTs, the GC of 10,000 tasks); the side client
    of record runs in a process of its own (``bench._side_client``)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while True:
            if ids:
                t0 = time.perf_counter()
                async with session.get(f"{url}/v1/jobs/{random.choice(ids)}") as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)


def ms(values: list[float], p: float) -> float | None:
    return round(percentile(values, p) * 1000, 1) if values else None


async def main(args: argparse.Namespace) -> None:
    emu_port, port = free_port(), free_port()
    out: Path = args.out
    emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(emu_port), "--polls", str(args.polls))
    routes = out.parent / "scale-routes.toml"
    routes.write_text(fal_video_routes(emu_port, args.poll_interval))
    data = out.parent / "scale-data"
    env = fal_job_env(args.jobs, log_level=args.log_level, DATA_DIR=str(data))
    gc_out = out.with_suffix(".gc.json")
    command = [PYTHON, "-m", "bench._gc_serve", str(gc_out), "serve", "--routes", str(routes), "--port", str(port)]
    daemon = spawn(*command, env=env)
    base = f"http://127.0.0.1:{port}"
    rss = cpu = loop_cpu = 0.0
    ids: list[str] = []
    side: dict[str, list[float]] = {"accepting": [], "running": []}
    sider = asyncio.create_task(side_client(base, ids, side["accepting"]))
    side_out = out.with_suffix(".side.json")
    watcher = _side_client.start(base, side_out)
    phases = {"accepting": time.monotonic()}
    try:
        await wait_http(f"http://127.0.0.1:{emu_port}/_emulator/stats")
        await wait_http(base + "/healthz")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            accept_cpu = _accept_cpu(daemon.pid, emulator.pid)
            started = time.perf_counter()
            sem = asyncio.Semaphore(100)

            post_latencies: list[float] = []

            async def create(i: int) -> str:
                async with sem:
                    t0 = time.perf_counter()
                    async with session.post(base + "/v1/jobs", json={"model": "video", "prompt": f"fox {i}"}) as r:
                        assert r.status == 202, await r.text()
                        job_id: str = (await r.json())["id"]
                    post_latencies.append(time.perf_counter() - t0)
                ids.append(job_id)
                _side_client.tell(watcher, job_id)
                return job_id

            ids[:] = await asyncio.gather(*(create(i) for i in range(args.jobs)))
            created_s = time.perf_counter() - started
            phases["running"] = time.monotonic()
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                calls_accepting = (await r.json())["calls"]  # the polls and submits that shared the burst
            accept_cpu = {name: round((now - accept_cpu[name]) * 1e6 / args.jobs)
                          for name, now in _accept_cpu(daemon.pid, emulator.pid).items()}
            print(f"{len(ids)} jobs accepted in {created_s:.1f} s ({len(ids) / created_s:.0f} jobs/s); CPU µs per "
                  f"accepted job: {accept_cpu}; POST latency p50 {ms(post_latencies, 50)} ms, p99 "
                  f"{ms(post_latencies, 99)} ms; vendor calls meanwhile {calls_accepting}", flush=True)
            sider.cancel()
            sider = asyncio.create_task(side_client(base, ids, side["running"]))
            lifetime = args.polls * args.poll_interval
            if args.kill_at_midpoint:
                await asyncio.sleep(lifetime / 2)
                rss = max(rss, peak_rss_mb(daemon.pid))
                cpu += cpu_seconds(daemon.pid)
                loop_cpu += cpu_seconds(daemon.pid, daemon.pid)
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                print("daemon killed (-9) at the midpoint; restarting", flush=True)
                daemon = spawn(*command, env=env)
                await wait_http(base + "/healthz", timeout=300)

            async def status(job_id: str) -> dict[str, Any]:
                async with sem, session.get(f"{base}/v1/jobs/{job_id}") as r:
                    return await r.json()  # type: ignore[no-any-return]

            while True:
                await asyncio.sleep(max(2.0, args.poll_interval))
                rss = max(rss, peak_rss_mb(daemon.pid))
                async with session.get(base + "/metrics") as r:
                    metrics = await r.text()
                running = next((float(line.split()[-1]) for line in metrics.splitlines()
                                if line.startswith('tarash_router_jobs_in_flight{kind="video"}')), 0.0)
                print(f"t={time.perf_counter() - started:6.1f}s in flight {running:.0f} rss {rss:.0f} MiB", flush=True)
                if running == 0 and time.perf_counter() - started > lifetime:
                    break
            elapsed = time.perf_counter() - started
            sider.cancel()
            phases["end"] = time.monotonic()
            seen = _side_client.finish(watcher, side_out)
            apart = {phase: _side_client.between(seen["samples"], phases[phase], end)  # type: ignore[arg-type]
                     for phase, end in (("accepting", phases["running"]), ("running", phases["end"]))}
            cpu += cpu_seconds(daemon.pid)
            loop_cpu += cpu_seconds(daemon.pid, daemon.pid)
            jobs = await asyncio.gather(*(status(i) for i in ids))
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                emu = await r.json()
            writes = next((float(line.split()[-1]) for line in metrics.splitlines()
                           if line.startswith("tarash_router_job_store_rows_written")), 0.0)
        completed = sum(1 for j in jobs if j["status"] == "completed" and j["result"]["video"].startswith("http"))
        statuses: dict[str, int] = {}
        for j in jobs:
            key = j["status"] if j["status"] == "completed" else f"{j['status']}: {(j.get('error') or {}).get('message', '')[:90]}"
            statuses[key] = statuses.get(key, 0) + 1
        result = {
            "machine": machine(), "event_loop": daemon_event_loop(env),
            "jobs": args.jobs, "polls_per_job": args.polls, "poll_interval_s": args.poll_interval,
            "kill_at_midpoint": args.kill_at_midpoint, "log_level": args.log_level, "accept_seconds": created_s,
            "accept_jobs_per_s": round(args.jobs / created_s), "accept_cpu_us_per_job": accept_cpu,
            "post_ms": {"p50": ms(post_latencies, 50), "p99": ms(post_latencies, 99)},
            "vendor_calls_while_accepting": calls_accepting,
            "total_seconds": elapsed,
            "completed_with_result": completed, "not_completed": args.jobs - completed, "statuses": statuses,
            "vendor_submits": emu["calls"].get("submit", 0), "vendor_jobs": emu["jobs"],
            "peak_rss_mib": rss, **loop_lag_p99(metrics, "_after_restart" if args.kill_at_midpoint else ""),
            "job_store_rows_written": writes, "job_store_write_rate_per_s": writes / elapsed,
            **{f"get_job_ms_while_{phase}": {"p50": ms(apart[phase], 50), "p99": ms(apart[phase], 99),
                                             "n": len(apart[phase])} for phase in ("accepting", "running")},
            "get_job_errors": seen["errors"],
            **{f"get_job_ms_while_{phase}_in_load_generator": {
                "p50": ms(side[phase], 50), "p99": ms(side[phase], 99), "n": len(side[phase])}
               for phase in ("accepting", "running")},
            "daemon_cpu_s": round(cpu, 1), "daemon_loop_thread_cpu_s": round(loop_cpu, 1), "load_average": Path("/proc/loadavg").read_text().split()[:3],
        }
        print(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        sider.cancel()
        if watcher.poll() is None:
            watcher.kill()
        daemon.terminate()
        daemon.wait()
        emulator.terminate()
        emulator.wait()
    if gc_out.exists():  # the daemon's GC pauses and exact loop lag (written as it exits; after the restart with -9)
        result["gc_pauses"] = json.loads(gc_out.read_text())
        result["loop_lag_exact"] = result["gc_pauses"].pop("loop_lag", None)
        print("gc pauses:", json.dumps(result["gc_pauses"]))
        print("loop lag (every 100-ms timer, unbucketed):", json.dumps(result["loop_lag_exact"]))
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--polls", type=int, default=12)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--kill-at-midpoint", action="store_true")
    # The committed runs log warnings only (the JSON lines go to /dev/null); "info", the daemon's default, adds
    # the per-request and per-attempt lines' formatting to what is measured.
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    default = "scale_kill9.json" if args.kill_at_midpoint else "scale.json"
    args.out = args.out or Path(__file__).parent / "results" / default
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(args.out.parent / "scale-data", ignore_errors=True)
    asyncio.run(main(args))
