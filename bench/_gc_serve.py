"""``tarash-router`` with its cyclic-GC pauses recorded: at exit, a JSON summary per generation goes to argv[1].

    python -m bench._gc_serve OUT.json serve --routes ...   (used by bench/scale.py)
``gc.callbacks`` time every collection (start to stop, wall clock on the event-loop thread), so the figures are
the pauses the loop itself sat through; beside them the same collections on the thread's CPU clock (``cpu_``: a
pause far longer in wall time than in CPU time was the thread waiting for a core, not collecting). ``loop_lag``
beside them: every observation of the event-loop lag metric, kept unbucketed (``bench._lag``), for a p99 finer than
the histogram's buckets. With ``BENCH_OBJECTS=PATH``, each ``CENSUS`` signal (``bench._common``) appends one JSON
line to PATH: the GC-tracked objects left after a full collection, by type (``bench.objects``); that collection is
not counted among the pauses.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from bench._common import CENSUS
from bench._lag import LagRecorder
from bench._stalls import StallTracer
import router.gc_tuning
from router.cli import main


def run() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    cpu: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0, 0.0]

    counting = [False]  # a census's own collection is no pause of the daemon's

    def callback(phase: str, info: dict[str, int]) -> None:
        if counting[0]:
            return
        if phase == "start":
            started[:] = time.perf_counter(), time.thread_time()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])
            cpu[info["generation"]].append(time.thread_time() - started[1])

    if thresholds := os.environ.get("BENCH_GC_THRESHOLDS"):  # e.g. "10000,2,50": try other thresholds (both bands)
        fixed = tuple(int(x) for x in thresholds.split(","))
        router.gc_tuning.LIGHT = router.gc_tuning.HEAVY = fixed  # type: ignore[assignment]
    lag = LagRecorder()
    lag.install()
    tracer = StallTracer() if os.environ.get("BENCH_STALLS") == "1" else None
    if tracer is not None:
        tracer.install()

    def dump() -> None:
        summary: dict[str, object] = {
            f"gen{gen}": {"count": len(p), "total_s": round(sum(p), 3), "max_ms": round(max(p, default=0) * 1000, 1),
                          "cpu_total_s": round(sum(cpu[gen]), 3),
                          "cpu_max_ms": round(max(cpu[gen], default=0) * 1000, 1)}
            for gen, p in pauses.items()}
        summary["loop_lag"] = lag.summary()
        if tracer is not None:
            out.with_suffix(".stalls.json").write_text(json.dumps(tracer.summary(), indent=1) + "\n")
        out.write_text(json.dumps(summary) + "\n")

    if census := os.environ.get("BENCH_OBJECTS"):
        def count_objects(signum: int, frame: object) -> None:
            counting[0] = True
            gc.collect()
            counting[0] = False
            types = Counter(type(o).__qualname__ for o in gc.get_objects())
            with open(census, "a") as f:
                f.write(json.dumps({"total": sum(types.values()), "types": dict(types)}) + "\n")

        signal.signal(CENSUS, count_objects)
    gc.callbacks.append(callback)
    atexit.register(dump)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
