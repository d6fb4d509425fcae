"""Benchmark 7: long video jobs on the PostgreSQL job store with one instance, with two, and with ``kill -9``
of one of two at the midpoint; SQLite (one instance) in the same run for comparison.

A real PostgreSQL 15 (Debian's, started like the tests do: tests/postgres_server.py) and a fal emulator whose
jobs need ``--polls`` status polls each; the route polls every ``--poll-interval`` s. Reports per scenario:
jobs accepted per second; completed, ended ``ambiguous_submit`` (a submit out but unanswered at a kill), lost
(accepted but not ended, or missing); vendor submits, and double submits counted exactly: router jobs the emulator
saw submitted more than once (each job's prompt is unique, and the emulator counts submits per request body);
takeover time after the kill, peak RSS per instance, job-store write rate, loop lag p99, and
``GET /v1/jobs/{id}`` p50/p99 from a side client. Over the accept window: the CPU each process spent per accepted
job (each instance, PostgreSQL's server processes, the emulator, this load generator; from /proc), commits per job,
the cores other processes took, and what that CPU allows two instances to accept over one (``accept_bound``)
beside the measured ratio.

    .venv/bin/python -m bench.instances --jobs 10000 --polls 12 --poll-interval 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import (PROFILE_START, PROFILE_STOP, PYTHON, SCRIPT, cpu_seconds, fal_job_env, fal_video_routes,
                           free_port, loop_lag_p99, machine, percentile, spawn, wait_http)
from bench._cpucap import CpuCap
from bench.scale import peak_rss_mb

SCENARIOS = {"sqlite-1": ("sqlite", 1, False), "postgres-1": ("postgres", 1, False),
             "postgres-2": ("postgres", 2, False), "postgres-2-kill": ("postgres", 2, True),
             # JOB_STORE through PgBouncer in transaction mode, LISTEN to the server (JOB_STORE_LISTEN): opt-in.
             "pgbouncer-1": ("pgbouncer", 1, False), "pgbouncer-2": ("pgbouncer", 2, False)}
DEFAULT_SCENARIOS = ["sqlite-1", "postgres-1", "postgres-2", "postgres-2-kill"]


def postgres_cpu_seconds(pg: Any) -> float:
    """The PostgreSQL server's CPU: the postmaster with every backend, live or exited."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                total += cpu_seconds(int(stat.parent.name))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat: a window's busy fraction is
    the ratio of two readings' differences (every process of every user counts, other agents' too)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = values[3] + values[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, sum(values) / ticks


def jobs_held(url: str, worker: str) -> int:
    """Unfinished jobs whose lease names ``worker``: 0 once every job of a killed instance was taken over."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM tarash_router_jobs WHERE worker = %s AND status IN "
                                "('queued', 'running')", (worker,)).fetchone()[0])


def postgres_commits(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return int(conn.execute("SELECT sum(xact_commit) FROM pg_stat_database").fetchone()[0])


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name) and " " in line
               and not line.startswith("#"))


def prompt_of(scenario_name: str, i: int) -> str:
    """Job ``i``'s prompt: unique across every scenario of a run, so the emulator's per-body submit counts name
    the job."""
    return f"{scenario_name} fox {i}"


async def scenario(name: str, args: argparse.Namespace, pg: Any, emu_port: int, round_: int = 1,
                   bouncer: Any = None) -> dict[str, Any]:
    store, count, kill = SCENARIOS[name]
    work = args.out.parent / (f"instances-{name}" if round_ == 1 else f"instances-{name}-r{round_}")  # fresh data dirs
    work.mkdir(parents=True, exist_ok=True)
    routes = work / "routes.toml"
    routes.write_text(fal_video_routes(emu_port, args.poll_interval))
    # ``url`` is what the instances are given, ``direct`` the database itself (what the harness reads and measures).
    direct = pg.new_database() if store in ("postgres", "pgbouncer") else ""
    url = bouncer.url(direct.rsplit("/", 1)[1]) if store == "pgbouncer" else direct
    listen = {"JOB_STORE_LISTEN": direct} if store == "pgbouncer" else {}
    ports = [free_port() for _ in range(count)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]

    def start(i: int) -> Any:
        env = fal_job_env(args.jobs, JOB_STORE=url, DATA_DIR=str(work / f"data-{i}"), INSTANCE_ID=f"i{i}",
                          JOB_LEASE_SECONDS=str(args.lease), **listen)
        command = ([PYTHON, "-m", "bench._profiled_serve", str(work / f"accept-{i}.prof")] if args.profile
                   else [str(SCRIPT)])
        daemon = spawn(*command, "serve", "--routes", str(routes), "--port", str(ports[i]), env=env)
        if args.instance_cpu:
            caps.append(CpuCap(daemon.pid, args.instance_cpu, f"{name}-{i}"))
        return daemon

    caps: list[CpuCap] = []
    daemons = [start(i) for i in range(count)]
    rss = [0.0] * count
    side: list[float] = []
    try:
        for base in bases:
            await wait_http(base + "/readyz", timeout=60)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                submits_before = (await r.json())["calls"].get("submit", 0)
            sem = asyncio.Semaphore(100)
            cpu_before = [cpu_seconds(daemon.pid) for daemon in daemons]
            pg_cpu_before = postgres_cpu_seconds(pg) if direct else 0.0
            bouncer_cpu_before = cpu_seconds(bouncer.pid) if store == "pgbouncer" else 0.0
            commits_before = await asyncio.to_thread(postgres_commits, direct) if direct else 0
            client_before, emulator_before = cpu_seconds(os.getpid()), cpu_seconds(args.emulator_pid)
            busy_before, total_before = machine_busy()
            throttled_before = [cap.throttled_seconds() for cap in caps]
            if args.profile:
                for daemon in daemons:
                    daemon.send_signal(PROFILE_START)
            started = time.perf_counter()

            async def create(i: int) -> tuple[int, str]:
                base = bases[i % count]
                async with sem, session.post(base + "/v1/jobs", json={"model": "video", "prompt": prompt_of(name, i)}) as r:
                    assert r.status == 202, await r.text()
                    return i % count, (await r.json())["id"]

            created = await asyncio.gather(*(create(i) for i in range(args.jobs)))
            accept_s = time.perf_counter() - started
            busy_after, total_after = machine_busy()
            # The share of the window the quota held each instance back: near 0 means the cap did not bind.
            throttled = [round((cap.throttled_seconds() - before) / accept_s, 2)
                         for cap, before in zip(caps, throttled_before)]
            client_cpu = cpu_seconds(os.getpid()) - client_before
            emulator_cpu = cpu_seconds(args.emulator_pid) - emulator_before
            side_cpu = client_cpu + emulator_cpu
            if args.profile:
                for daemon in daemons:
                    daemon.send_signal(PROFILE_STOP)  # the accept window's profile: instances-*/accept-N.prof
            daemon_cpu = [cpu_seconds(daemon.pid) - before for daemon, before in zip(daemons, cpu_before)]
            accept_cpu = [cpu / (args.jobs / count) * 1000 for cpu in daemon_cpu]
            pg_cpu = postgres_cpu_seconds(pg) - pg_cpu_before if direct else 0.0
            accept_pg_cpu = pg_cpu / args.jobs * 1000 if direct else None
            bouncer_cpu = cpu_seconds(bouncer.pid) - bouncer_cpu_before if store == "pgbouncer" else 0.0
            accept_bouncer_cpu = bouncer_cpu / args.jobs * 1000 if store == "pgbouncer" else None
            # Cores the rest of the machine (other users' processes) took during the window: less room for ours.
            others = ((busy_after - busy_before) - sum(daemon_cpu) - pg_cpu - bouncer_cpu - side_cpu) / accept_s
            commits = (((await asyncio.to_thread(postgres_commits, direct)) - commits_before) / args.jobs
                       if direct else None)
            ids = [job_id for _, job_id in created]
            print(f"[{name}] {len(ids)} jobs accepted in {accept_s:.1f} s ({args.jobs / accept_s:.1f}/s); CPU ms per "
                  f"job accepted: {[round(c, 2) for c in accept_cpu]} per instance, PostgreSQL {accept_pg_cpu and round(accept_pg_cpu, 2)}"
                  + (f", PgBouncer {accept_bouncer_cpu:.2f}" if accept_bouncer_cpu is not None else "") + "; "
                  f"commits per job {commits and round(commits, 2)}; load generator {client_cpu / args.jobs * 1000:.2f}, "
                  f"emulator {emulator_cpu / args.jobs * 1000:.2f}; machine busy "
                  f"{(busy_after - busy_before) / (total_after - total_before):.0%} of {os.cpu_count()} cores, other "
                  f"processes {max(others, 0.0):.2f} cores; load {os.getloadavg()[0]:.2f}"
                  + (f"; capped at {args.instance_cpu} cores, throttled {throttled} of the window" if caps else ""),
                  flush=True)
            accept = {"accepted_per_s": round(args.jobs / accept_s, 1),
                      "accept_client_and_emulator_cpu_ms_per_job": round(side_cpu / args.jobs * 1000, 2),
                      "accept_client_cpu_ms_per_job": round(client_cpu / args.jobs * 1000, 3),
                      "accept_emulator_cpu_ms_per_job": round(emulator_cpu / args.jobs * 1000, 3),
                      "accept_other_processes_cores": round(max(others, 0.0), 2),
                      "accept_machine_busy": round((busy_after - busy_before) / (total_after - total_before), 3),
                      "accept_load_average": round(os.getloadavg()[0], 2),
                      "accept_cpu_ms_per_job": [round(c, 2) for c in accept_cpu],
                      "accept_postgres_cpu_ms_per_job": accept_pg_cpu and round(accept_pg_cpu, 2),
                      "accept_pgbouncer_cpu_ms_per_job": accept_bouncer_cpu and round(accept_bouncer_cpu, 3),
                      "accept_commits_per_job": commits and round(commits, 2),
                      "instance_cpu_cores": args.instance_cpu, "accept_throttled_share": throttled}
            if args.accept_only:
                return {"scenario": name, "jobs": args.jobs, **accept}
            alive = list(range(count))

            async def side_client() -> None:
                while True:
                    base = bases[random.choice(alive)]
                    t0 = time.perf_counter()
                    try:
                        async with session.get(f"{base}/v1/jobs/{random.choice(ids)}") as r:
                            await r.read()
                            if r.status == 200:
                                side.append(time.perf_counter() - t0)
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)

            sider = asyncio.create_task(side_client())
            lifetime = args.polls * args.poll_interval
            takeover_s = None
            if kill:
                await asyncio.sleep(lifetime / 2)
                victim_jobs = sum(1 for owner, _ in created if owner == 0)
                rss[0] = peak_rss_mb(daemons[0].pid)
                daemons[0].send_signal(signal.SIGKILL)
                daemons[0].wait()
                killed_at = time.perf_counter()
                alive = [1]
                print(f"[{name}] instance 0 killed (-9) holding ~{victim_jobs} jobs", flush=True)
                # Taken over once no unfinished job is leased to it (the takeover metric counts only jobs that had
                # started: one still waiting for a connection at the kill is stored queued).
                while await asyncio.to_thread(jobs_held, direct, "i0"):
                    await asyncio.sleep(0.2)
                takeover_s = time.perf_counter() - killed_at
                print(f"[{name}] all of its jobs taken over in {takeover_s:.1f} s", flush=True)
            texts: dict[int, str] = {}
            while True:
                await asyncio.sleep(max(2.0, args.poll_interval))
                in_flight = 0.0
                for i in alive:
                    rss[i] = max(rss[i], peak_rss_mb(daemons[i].pid))
                    async with session.get(bases[i] + "/metrics") as r:
                        texts[i] = await r.text()
                    in_flight += metric(texts[i], 'tarash_router_jobs_in_flight{kind="video"}')
                print(f"[{name}] t={time.perf_counter() - started:6.1f}s in flight {in_flight:.0f}", flush=True)
                if in_flight == 0 and time.perf_counter() - started > lifetime:
                    break
            elapsed = time.perf_counter() - started
            sider.cancel()

            async def status(job_id: str) -> dict[str, Any]:
                async with sem, session.get(f"{bases[alive[-1]]}/v1/jobs/{job_id}") as r:
                    return dict(await r.json()) if r.status == 200 else {"status": f"HTTP {r.status}"}

            jobs = await asyncio.gather(*(status(job_id) for job_id in ids))
            statuses = [str(job.get("status")) for job in jobs]
            ambiguous = sum(1 for job in jobs if (job.get("error") or {}).get("code") == "ambiguous_submit")
            for job in [job for job in jobs if job.get("status") != "completed"][:3]:  # why, when some did not
                print(f"[{name}] not completed: {json.dumps(job)[:600]}", flush=True)
            async with session.get(f"http://127.0.0.1:{emu_port}/_emulator/stats") as r:
                stats = await r.json()
            submits = stats["calls"].get("submit", 0) - submits_before
            # Exact: this scenario's jobs (their prompts) whose body the emulator saw more than once.
            prompts = {prompt_of(name, i) for i in range(args.jobs)}
            repeated = [count for body, count in stats["repeated_submits"].items()
                        if json.loads(body).get("prompt") in prompts]
        writes = sum(metric(text, "tarash_router_job_store_rows_written") for text in texts.values())
        return {
            "scenario": name, "store": store, "instances": count, "kill_at_midpoint": kill, "jobs": args.jobs,
            **accept, "total_s": round(elapsed, 1),
            "completed": statuses.count("completed"), "ambiguous_submit": ambiguous,
            "failed_other": statuses.count("failed") + statuses.count("cancelled") - ambiguous,
            "lost": args.jobs - sum(statuses.count(s) for s in ("completed", "failed", "cancelled")),
            "vendor_submits": submits, "double_submits": len(repeated), "extra_submits": sum(repeated) - len(repeated),
            "takeover_s": round(takeover_s, 1) if takeover_s is not None else None,
            "peak_rss_mib": [round(value) for value in rss],
            "job_store_write_rate_per_s": round(writes / elapsed, 1),
            **max((loop_lag_p99(text) for text in texts.values()), key=lambda lag: lag["loop_lag_p99_interpolated_s"]),
            "get_job_p50_ms": round(percentile(side, 50) * 1000, 1) if side else None,
            "get_job_p99_ms": round(percentile(side, 99) * 1000, 1) if side else None,
        }
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait()
        for cap in caps:
            cap.remove()


def accept_bound(one: dict[str, Any], two: dict[str, Any], cap: float | None = None) -> dict[str, Any]:
    """What two instances' accept rate can reach over one's on this machine, from the CPU each process spent per
    accepted job. With one instance, its event loop (one core) is the limit: L ms of its CPU per job, O ms of
    everything else's (PostgreSQL, emulator, load generator) per job. Two instances on C cores are at best
    limited by all of it: C / (L + O) jobs per ms, so the ratio is at most C·L / (L + O) (= 2L/(L+O) on 2
    cores; 1.7x needs O <= 0.18·L). ``with_two_instances_figures`` uses the per-job CPU measured with two (it
    grows when the processes share the cores) and one instance's measured rate. With each instance capped at
    ``cap`` cores (``--instance-cpu``), one instance is limited by its cap instead of a core: the bound is then
    min(2, C·L / (cap·(L + O)))."""
    cores = os.cpu_count() or 1

    def other(r: dict[str, Any]) -> float:
        return (float(r["accept_postgres_cpu_ms_per_job"] or 0) + float(r.get("accept_pgbouncer_cpu_ms_per_job") or 0)
                + float(r["accept_client_and_emulator_cpu_ms_per_job"]))

    l1, o1 = one["accept_cpu_ms_per_job"][0], other(one)
    l2 = sum(two["accept_cpu_ms_per_job"]) / len(two["accept_cpu_ms_per_job"])
    return {"measured_ratio": round(two["accepted_per_s"] / one["accepted_per_s"], 2),
            "bound_ratio": round(min(2.0, cores * l1 / (cap * (l1 + o1))) if cap else cores * l1 / (l1 + o1), 2),
            "bound_ratio_with_two_instances_figures": round(
                min(2 * (cap or 1.0) / l2, cores / (l2 + other(two))) * 1000 / one["accepted_per_s"], 2),
            "instance_ms_per_job": [l1, round(l2, 2)], "other_ms_per_job": [round(o1, 2), round(other(two), 2)],
            "cores": cores}


def median_bound(bounds: list[dict[str, Any]]) -> dict[str, Any]:
    """``accept_bound``'s figures, each the median over rounds (element by element for the per-job lists)."""
    def median(key: str, i: int | None = None) -> float:
        return round(statistics.median(b[key] if i is None else b[key][i] for b in bounds), 2)

    return {key: [median(key, i) for i in range(len(value))] if isinstance(value, list) else median(key)
            for key, value in bounds[0].items()}


async def main(args: argparse.Namespace) -> None:
    from tests.pgbouncer_server import running_pgbouncer
    from tests.postgres_server import running_server

    results = []
    with running_server() as pg, contextlib.ExitStack() as stack:
        bouncer = (stack.enter_context(running_pgbouncer(pg))
                   if any(SCENARIOS[name][0] == "pgbouncer" for name in args.scenarios) else None)
        for round_, name in ((r, n) for r in range(1, args.rounds + 1) for n in args.scenarios):
            # A fresh emulator per scenario: it keeps every job it saw, so each scenario starts on an empty one
            # rather than on the earlier scenarios' 10,000s of jobs.
            emu_port = free_port()
            emulator = spawn(PYTHON, "-m", "tests.emulators", "fal", "--port", str(emu_port), "--polls", str(args.polls))
            args.emulator_pid = emulator.pid
            try:
                await wait_http(f"http://127.0.0.1:{emu_port}/_emulator/stats")
                results.append({**await scenario(name, args, pg, emu_port, round_, bouncer), "round": round_})
                print(json.dumps(results[-1]), flush=True)
            finally:
                emulator.terminate()
                emulator.wait()
    # Each round's ratio from its own two runs (other processes' load drifts; interleaved rounds share it fairly).
    rounds = [{r["scenario"]: r for r in results if r["round"] == n} for n in range(1, args.rounds + 1)]
    bounds = [accept_bound(by["postgres-1"], by["postgres-2"], args.instance_cpu) for by in rounds
              if {"postgres-1", "postgres-2"} <= by.keys()]
    bound = median_bound(bounds) if bounds else None
    report = {"machine": machine(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "polls_per_job": args.polls, "poll_interval_s": args.poll_interval, "lease_s": args.lease,
              "instance_cpu_cores": args.instance_cpu,
              "accept_ratio": bound, "accept_ratio_per_round": bounds, "results": results}
    for b in bounds:
        print(f"accepted/s, 2 instances over 1: measured {b['measured_ratio']}x; CPU bound {b['bound_ratio']}x "
              f"(= {b['cores']}L/(L+O), L = {b['instance_ms_per_job'][0]} ms of the instance per job, O = "
              f"{b['other_ms_per_job'][0]} ms of PostgreSQL + emulator + load generator); with the per-job CPU "
              f"measured with two instances ({b['instance_ms_per_job'][1]} + {b['other_ms_per_job'][1]} ms): "
              f"{b['bound_ratio_with_two_instances_figures']}x", flush=True)
    if len(bounds) > 1 and bound is not None:
        print(f"medians of {len(bounds)} rounds: measured {bound['measured_ratio']}x, CPU bound {bound['bound_ratio']}x, "
              f"with two instances' figures {bound['bound_ratio_with_two_instances_figures']}x", flush=True)
    if args.accept_only:
        args.out.with_name(args.out.stem + "-accept.json").write_text(json.dumps(report, indent=2) + "\n")
        return
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lines = ["scenario           accept/s  done  ambiguous  lost  submits  double  takeover  peak RSS MiB  writes/s  "
             "lag p99  GET p50/p99 ms"]
    for r in results:
        lines.append(f"{r['scenario']:<18} {r['accepted_per_s']:>8} {r['completed']:>5} {r['ambiguous_submit']:>10} "
                     f"{r['lost']:>5} {r['vendor_submits']:>8} {r['double_submits']:>7} "
                     f"{str(r['takeover_s']):>9} {str(r['peak_rss_mib']):>13} "
                     f"{r['job_store_write_rate_per_s']:>9} {r['loop_lag_p99_s']:>8} "
                     f"{r['get_job_p50_ms']}/{r['get_job_p99_ms']}")
    lines.append("CPU ms per accepted job:")
    lines += [f"  {r['scenario']:<16} instance(s) {r['accept_cpu_ms_per_job']}, PostgreSQL "
              f"{r['accept_postgres_cpu_ms_per_job']}"
              + (f", PgBouncer {r['accept_pgbouncer_cpu_ms_per_job']}"
                 if r.get("accept_pgbouncer_cpu_ms_per_job") else "")
              + f", emulator {r['accept_emulator_cpu_ms_per_job']}, load generator "
              f"{r['accept_client_cpu_ms_per_job']}; commits {r['accept_commits_per_job']}; other processes "
              f"{r['accept_other_processes_cores']} cores" for r in results]
    if len(bounds) > 1:
        lines.append("accept ratio 2 instances / 1 per round (measured / CPU bound): " + ", ".join(
            f"{b['measured_ratio']}x / {b['bound_ratio']}x" for b in bounds) + "; medians below")
    if bound is not None:
        lines.append(f"accept ratio 2 instances / 1: measured {bound['measured_ratio']}x, CPU bound 2L/(L+O) "
                     f"{bound['bound_ratio']}x (L {bound['instance_ms_per_job'][0]} ms, O {bound['other_ms_per_job'][0]} "
                     f"ms), with two instances' per-job CPU {bound['bound_ratio_with_two_instances_figures']}x")
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--polls", type=int, default=12)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--accept-only", action="store_true",
                        help="stop each scenario once its jobs are accepted (profiling the accept path)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each instance over the accept window (instances-<scenario>/accept-N.prof)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the scenarios this many times, interleaved; ratios are medians over the rounds")
    parser.add_argument("--instance-cpu", type=float, default=None, metavar="CORES",
                        help="cap each instance at CORES of CPU (a cgroup quota, bench/_cpucap.py: each instance as "
                             "on a small box of its own, the rest of the machine left for PostgreSQL, the emulator "
                             "and the load generator); needs root")
    parser.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS, choices=list(SCENARIOS),
                        help="pgbouncer-1/-2: JOB_STORE through PgBouncer in transaction mode, LISTEN to the server")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "instances.json")
    asyncio.run(main(parser.parse_args()))
