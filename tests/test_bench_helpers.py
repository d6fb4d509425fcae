"""The benchmarks' helpers: loop-lag figures finer than the metric's buckets (bench/_common.py, bench/_lag.py), the
event loop each target runs on, and the signal hooks of the daemons they profile."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import pstats
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench._common import (CENSUS, PROFILE_START, PROFILE_STOP, ROOT, daemon_event_loop, free_port, histogram_quantile,
                           loop_lag_p99, wait_http)
from bench._lag import LagRecorder, quantile
from bench.overhead import proxy_command
from router.metrics import OVERHEAD_BUCKETS, Metrics


def exposition(values: list[float]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram("tarash_router_event_loop_lag_seconds", "lag", buckets=OVERHEAD_BUCKETS, registry=registry)
    for value in values:
        histogram.observe(value)
    return generate_latest(registry).decode()


def test_the_p99_is_interpolated_inside_its_bucket_as_promql_does() -> None:
    # 90 fast iterations, 10 between 25 and 50 ms: rank 99 is the 9th of the 10 in (0.025, 0.05].
    text = exposition([0.001] * 90 + [0.03] * 10)
    assert histogram_quantile(text, "tarash_router_event_loop_lag_seconds", 0.99) == (0.05, 0.025 + 0.025 * 9 / 10)
    assert loop_lag_p99(text) == {"loop_lag_p99_s": 0.05, "loop_lag_p99_interpolated_s": 0.0475}
    assert loop_lag_p99(text, "_after_restart") == {"loop_lag_p99_s_after_restart": 0.05,
                                                     "loop_lag_p99_interpolated_s_after_restart": 0.0475}


def test_a_p99_past_the_last_bound_is_that_bound_and_no_observations_is_nan() -> None:
    text = exposition([0.001] * 98 + [5.0] * 2)
    assert histogram_quantile(text, "tarash_router_event_loop_lag_seconds", 0.99) == (1.0, 1.0)
    assert all(math.isnan(x) for x in histogram_quantile(exposition([]), "tarash_router_event_loop_lag_seconds", 0.99))


def test_exact_quantiles_interpolate_between_closest_ranks() -> None:
    assert quantile([0.0, 0.01, 0.02, 0.03, 0.04], 0.5) == 0.02
    assert math.isclose(quantile([float(i) for i in range(101)], 0.99), 99.0)
    assert math.isclose(quantile([0.0, 1.0], 0.25), 0.25)
    assert math.isnan(quantile([], 0.99))


async def test_the_recorder_keeps_every_lag_the_metric_observes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Metrics, "watch_loop", Metrics.watch_loop)  # restored after the test
    recorder = LagRecorder()
    recorder.install()
    metrics = Metrics()
    watching = asyncio.create_task(metrics.watch_loop(interval=0.001))
    while len(recorder.lags) < 3:
        await asyncio.sleep(0.001)
    watching.cancel()
    text = generate_latest(metrics.registry).decode()
    count = next(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("tarash_router_event_loop_lag_seconds_count"))
    assert count == len(recorder.lags) and recorder.summary()["n"] == len(recorder.lags)


def test_the_two_instance_accept_bound_with_and_without_a_cpu_cap() -> None:
    from bench.instances import accept_bound

    def run(rate: float, instance_ms: list[float]) -> dict[str, object]:
        return {"accepted_per_s": rate, "accept_cpu_ms_per_job": instance_ms, "accept_postgres_cpu_ms_per_job": 1.0,
                "accept_client_and_emulator_cpu_ms_per_job": 0.5}

    one, two = run(500, [2.0]), run(700, [2.0, 2.0])
    uncapped = accept_bound(one, two)  # one instance: its loop's core; two: the machine's 2 cores for L + O
    assert uncapped["measured_ratio"] == 1.4 and uncapped["bound_ratio"] == round(2 * 2.0 / 3.5, 2)
    # Capped at 0.5 cores each: one instance is held at its cap, two need 2 x 0.5 + the rest: the cap binds.
    capped = accept_bound(run(250, [2.0]), run(480, [2.0, 2.0]), cap=0.5)
    assert capped["measured_ratio"] == 1.92 and capped["bound_ratio"] == 2.0
    assert capped["bound_ratio_with_two_instances_figures"] == 2.0  # min(2 x 0.5 / 2 ms, 2 / 3.5 ms) / 250 per s


def test_the_daemon_event_loop_is_the_setting_or_what_auto_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARASH_ROUTER_EVENT_LOOP", raising=False)
    assert daemon_event_loop({"TARASH_ROUTER_EVENT_LOOP": "asyncio"}) == "asyncio"
    assert daemon_event_loop() == ("uvloop" if importlib.util.find_spec("uvloop") else "asyncio")
    monkeypatch.setenv("TARASH_ROUTER_EVENT_LOOP", "uvloop")
    assert daemon_event_loop() == "uvloop"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_bare_proxy_runs_on_the_loop_it_is_given(loop: str) -> None:
    *_, code = proxy_command("http://127.0.0.1:1/v1/images/generations", 2, loop)
    compile(code, "<proxy>", "exec")
    assert ("uvloop" in code) == (loop == "uvloop")
    assert "run_proxy('http://127.0.0.1:1/v1/images/generations', 2)" in code


async def test_the_benchmarks_signal_hooks_survive_the_daemons_own_handlers(tmp_path: Path) -> None:
    # The daemon claims SIGUSR1 once it serves (its tasks line): hooks on it were silently replaced and every
    # profile of bench.cpu_per_request came out empty. A profile of one request names the router's handlers, and
    # a census counts objects.
    profile, census, opcodes = tmp_path / "window.prof", tmp_path / "census.jsonl", tmp_path / "opcodes.json"
    env = {**os.environ, "TARASH_ROUTER_DATA_DIR": str(tmp_path / "data"), "BENCH_OBJECTS": str(census)}
    env.pop("NOTIFY_SOCKET", None)
    hooks = [(["bench._profiled_serve", str(profile)], [PROFILE_START, PROFILE_STOP], profile),
             (["bench._gc_serve", str(tmp_path / "gc.json")], [CENSUS], census),
             (["bench._opcode_serve", str(opcodes)], [PROFILE_START, PROFILE_STOP], opcodes)]
    for module, signals, written in hooks:
        port = free_port()
        daemon = subprocess.Popen([sys.executable, "-m", *module, "serve", "--routes", str(ROOT / "routes.toml"),
                                   "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            async with aiohttp.ClientSession() as session:
                daemon.send_signal(signals[0])
                async with session.get(f"http://127.0.0.1:{port}/v1/models") as response:
                    assert response.status == 200
                for signum in signals[1:]:
                    daemon.send_signal(signum)
            for _ in range(1000):
                if written.exists() and written.stat().st_size:
                    break
                await asyncio.sleep(0.01)
            assert daemon.poll() is None, "the hook's signal ended the daemon"
        finally:
            daemon.terminate()
            daemon.wait(30)
    await asyncio.sleep(0.1)  # the profile's dump is one write, done before its file has a size
    functions = {name for _, _, name in pstats.Stats(str(profile)).stats}  # type: ignore[attr-defined]
    assert "list_models" in functions
    assert json.loads(census.read_text().splitlines()[0])["total"] > 0
    assert any(where.endswith(":list_models") and count > 0 for where, count in json.loads(opcodes.read_text()).items())


def test_bytecodes_are_counted_by_the_package_that_runs_them() -> None:
    from bench.opcodes import package

    assert package(f"{ROOT}/router/orchestrator.py:357:_run_attempt") == "router"
    assert package(f"{ROOT}/router/http/bodies.py:27:read_json") == "router/http"
    assert package(f"{ROOT}/providers/_engine/wire.py:438:_fields") == "providers"
    assert package(f"{ROOT}/.venv/lib/python3.11/site-packages/aiohttp/web_protocol.py:610:start") == "aiohttp"
    assert package("/usr/lib/python3.11/asyncio/events.py:31:Handle.__init__") == "stdlib:asyncio"


def test_rounds_measure_the_targets_in_alternating_order() -> None:
    from bench.overhead import round_order

    targets = {name: ("http://127.0.0.1:1/", 1) for name in ("a", "b", "c")}
    assert [[name for name, _ in round_order(targets, index)] for index in range(3)] == [
        ["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]


def test_the_overhead_summary_gives_each_router_its_ratio_to_the_bare_proxy() -> None:
    from bench.overhead import summarize

    def result(target: str, round_: int, p50: float) -> dict[str, float | int | str]:
        return {"target": target, "concurrency": 32, "round": round_, "p50_ms": p50, "p99_ms": 2 * p50,
                "rps": 1000 / p50, "cpu_us_per_request": 100 * p50}

    results = [result(target, index, p50 + index) for index in (0, 1, 2)
               for target, p50 in (("a_direct", 1.0), ("b_bare_proxy", 2.0), ("c_tarash_router", 3.0),
                                   ("c0_router_baseline", 4.0))]
    row = summarize(results, 32)
    assert row["ratio_c_over_b_p50"] == 4.0 / 3.0  # medians over the rounds: 4 / 3
    assert row["ratio_baseline_over_b_p50"] == 5.0 / 3.0
    assert row["ratio_baseline_over_b_cpu"] == 5.0 / 3.0
    assert "ratio_floor_over_b_p50" not in row
