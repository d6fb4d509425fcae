"""The side client of ``bench.scale`` in a process of its own: a user watching one job from another program.

    python -m bench._side_client URL OUT.json     (job ids on stdin, one a line; SIGTERM ends it and writes OUT)

Every 50 ms it GETs a random job it was told of, on one connection, and keeps ``(start, seconds)`` per answer
(``time.monotonic``: one clock for every process on the machine, so the parent splits them by its own phase marks).
Inside the load generator's process the same GETs also timed that process's own loop, which is busy with the
burst's 100 POSTs in flight and the GC of its 10,000 tasks: not the daemon's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp

from bench._common import PYTHON, spawn

EVERY_SECONDS = 0.05


def start(url: str, out: Path) -> subprocess.Popen[bytes]:
    """The side client, watching the daemon at ``url``; tell it job ids with ``tell``."""
    return spawn(PYTHON, "-m", "bench._side_client", url, str(out), stdin=subprocess.PIPE)


def tell(side: subprocess.Popen[bytes], job_id: str) -> None:
    assert side.stdin is not None
    side.stdin.write(f"{job_id}\n".encode())


def finish(side: subprocess.Popen[bytes], out: Path) -> dict[str, object]:
    """Stop it; what it saw: ``samples`` (start, seconds) and ``errors`` (GETs that got no 200)."""
    side.send_signal(signal.SIGTERM)
    side.wait(timeout=30)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def between(samples: list[list[float]], start: float, end: float) -> list[float]:
    """The latencies of the GETs that started in ``[start, end)``."""
    return [seconds for t0, seconds in samples if start <= t0 < end]


async def watch(url: str, out: Path) -> None:
    ids: list[str] = []

    def read_ids() -> None:  # a thread: the parent writes an id as each POST is answered
        for line in sys.stdin:
            ids.append(line.strip())

    threading.Thread(target=read_ids, daemon=True).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    samples: list[tuple[float, float]] = []
    errors = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while not stop.is_set():
            if ids:
                t0 = time.monotonic()
                try:
                    async with session.get(f"{url}/v1/jobs/{random.choice(ids)}") as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:  # the daemon killed and restarting (--kill-at-midpoint)
                    ok = False
                if ok:
                    samples.append((t0, time.monotonic() - t0))
                else:
                    errors += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), EVERY_SECONDS)
    out.write_text(json.dumps({"samples": samples, "errors": errors}))


if __name__ == "__main__":
    asyncio.run(watch(sys.argv[1], Path(sys.argv[2])))
