"""Benchmark 9: the SQLite job store's cost per operation to the event loop, as 10,000 running jobs load it.

    .venv/bin/python -m bench.store_ops [--jobs 2000] [--rounds 3]

Per round: ``--jobs`` inserts with 100 in flight (the accept burst of bench.scale), a save of every job at once
(a poll wave), and 500 gets. Reports per operation the event-loop thread's CPU (``time.thread_time``, robust on
a loaded machine) and the wall time (throughput). To compare with another checkout, run it there with
``PYTHONPATH=<that checkout>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench._common import machine
from router.jobs.sqlite import SQLiteJobStore
from router.jobs.store import JobRecord
from router.models import utc_now


def job(i: int) -> JobRecord:
    record = JobRecord(id=f"job_{i:08d}", kind="video", route="video", request={"model": "video", "prompt": f"fox {i}"},
                       chain=[{"provider": "fal", "model": "fal-ai/veo3", "poll_interval": 5.0}], worker="bench")
    record.created_at = record.updated_at = utc_now()
    return record


async def main(args: argparse.Namespace) -> list[dict[str, float]]:
    store = SQLiteJobStore(Path(tempfile.mkdtemp()) / "jobs.sqlite3")
    await store.open()
    rounds = []
    try:
        for r in range(args.rounds):
            jobs = [job(r * 1_000_000 + i) for i in range(args.jobs)]
            sem = asyncio.Semaphore(100)

            async def insert(record: JobRecord) -> None:
                async with sem:
                    await store.insert(record, lease_seconds=30)

            marks = [(time.thread_time(), time.perf_counter())]
            await asyncio.gather(*(insert(j) for j in jobs))
            marks.append((time.thread_time(), time.perf_counter()))
            await asyncio.gather(*(store.save(j) for j in jobs))
            marks.append((time.thread_time(), time.perf_counter()))
            await asyncio.gather(*(store.get(j.id) for j in jobs[:500]))
            marks.append((time.thread_time(), time.perf_counter()))
            row = {}
            for name, (a, b), n in zip(("insert", "save", "get"), zip(marks, marks[1:]), (args.jobs, args.jobs, 500)):
                row[f"{name}_loop_cpu_us"] = round((b[0] - a[0]) / n * 1e6, 1)
                row[f"{name}_wall_us"] = round((b[1] - a[1]) / n * 1e6, 1)
            print(row, flush=True)
            rounds.append(row)
    finally:
        await store.close()
    return rounds


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "store_ops.json")
    args = parser.parse_args()
    result = {"machine": machine(), "jobs": args.jobs, "rounds": asyncio.run(main(args)),
              "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
