"""Shared helpers for the benchmarks: subprocesses on loopback, a load generator, percentiles."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SCRIPT = Path(PYTHON).parent / "tarash-router"
# The benchmarks' own hooks in the daemons they start (bench._profiled_serve, bench._gc_serve). Real-time signals,
# because the daemon claims SIGUSR1 (its tasks line, router.diagnostics) once it serves, which silently replaced a
# hook on SIGUSR1 and left every profile empty.
PROFILE_START = signal.SIGRTMIN + 1
PROFILE_STOP = signal.SIGRTMIN + 2
CENSUS = signal.SIGRTMIN + 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fal_video_routes(emu_port: int, poll_interval: float, *, max_poll_attempts: int = 1000, extra: str = "") -> str:
    """The routes file the job benchmarks serve: one video route on the fal emulator at ``emu_port``."""
    return f"""
[routes."video"]
kind = "video"
[[routes."video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "http://127.0.0.1:{emu_port}"
api_key_env = "BENCH_FAL_KEY"
poll_interval = {poll_interval}
max_poll_attempts = {max_poll_attempts}
timeout = 3600
{extra}"""


def fal_job_env(jobs: int, *, log_level: str = "warning", **settings: str) -> dict[str, str]:
    """The daemon's environment for ``fal_video_routes``: the emulator's key, room for ``jobs`` running jobs, and
    ``settings`` as ``TARASH_ROUTER_`` variables (``DATA_DIR=...``, ``JOB_STORE=...``)."""
    return {"BENCH_FAL_KEY": "test-key", "TARASH_ROUTER_LOG_LEVEL": log_level,
            "TARASH_ROUTER_MAX_RUNNING_JOBS": str(jobs + 10),
            **{f"TARASH_ROUTER_{name}": value for name, value in settings.items()}}


def image_routes(emu_port: int) -> str:
    """The routes file the request-path benchmarks serve: one image route on the OpenAI emulator at ``emu_port``."""
    return f"""
[routes."img"]
kind = "image"
[[routes."img".attempts]]
provider = "openai"
model = "dall-e-2"
base_url = "http://127.0.0.1:{emu_port}/v1"
api_key_env = "BENCH_OPENAI_KEY"
"""


def router_env(loop: str) -> dict[str, str]:
    """The router's environment for ``image_routes``: the emulator's key, JSON logs, ``loop``."""
    return {"BENCH_OPENAI_KEY": "test-key", "TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_EVENT_LOOP": loop}


def spawn(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
          stdin: int | None = None) -> subprocess.Popen[bytes]:
    """``args`` as a process of its own, quiet (``stdin=subprocess.PIPE``: unbuffered, written to by the caller)."""
    return subprocess.Popen(list(args), cwd=cwd, env={**os.environ, **(env or {})}, stdin=stdin, bufsize=0,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} never answered")


def cpu_seconds(pid: int, thread: int | None = None, *, children: bool = False) -> float:
    """User + system CPU of a process (all its threads) so far, or of one of its threads (``thread=pid``: the
    main thread, the daemon's event loop), with its reaped children's when asked (``children``), from /proc:
    unlike wall time, other processes' load hardly moves it."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15 if children else 13])  # utime, stime (cutime, cstime)
    return ticks / os.sysconf("SC_CLK_TCK")


def histogram_quantile(text: str, name: str, q: float) -> tuple[float, float]:
    """The ``q``-quantile (0..1) of the unlabelled Prometheus histogram ``name`` in exposition ``text``: the upper
    bound of the bucket it falls in, and the value interpolated linearly inside that bucket as PromQL's
    ``histogram_quantile`` does (an estimate: it assumes the bucket's observations spread evenly). In the +Inf bucket
    both are the highest finite bound; (nan, nan) with no observations."""
    buckets = [(float(line.split('le="')[1].split('"')[0].replace("+Inf", "inf")), float(line.split()[-1]))
               for line in text.splitlines() if line.startswith(f"{name}_bucket")]
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return float("nan"), float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower, lower
            return bound, lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower, lower


def loop_lag_p99(text: str, suffix: str = "") -> dict[str, float]:
    """``tarash_router_event_loop_lag_seconds`` at p99 from a ``/metrics`` text, as result fields: the bucket bound
    (``loop_lag_p99_s``, what the metric can show: 0.05 means 25-50 ms) and the estimate interpolated inside it
    (``loop_lag_p99_interpolated_s``); ``suffix`` ends both names."""
    bucket, interpolated = histogram_quantile(text, "tarash_router_event_loop_lag_seconds", 0.99)
    return {f"loop_lag_p99_s{suffix}": bucket, f"loop_lag_p99_interpolated_s{suffix}": round(interpolated, 4)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def drive(send: Callable[[aiohttp.ClientSession], Awaitable[int]], *, requests: int, concurrency: int
                ) -> dict[str, Any]:
    """Send ``requests`` calls with ``concurrency`` in flight; latency distribution and throughput."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                status = await send(session)
                latencies.append(time.perf_counter() - started)
                errors += status >= 400

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": requests, "concurrency": concurrency, "errors": errors, "rps": requests / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000}


def daemon_event_loop(env: dict[str, str] | None = None) -> str:
    """The event loop a daemon started with ``env`` (over this process's environment) runs on."""
    choice = {**os.environ, **(env or {})}.get("TARASH_ROUTER_EVENT_LOOP", "auto")
    if choice != "auto":
        return choice
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown cpu")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
