"""What the event loop was running when it stalled: a watchdog thread samples the loop thread's stack.

Used by ``bench._gc_serve`` when ``BENCH_STALLS=1``. A heartbeat on the loop stamps the time every 10 ms; a
watchdog thread looks every 5 ms, and while the last stamp is older than ``STALL_SECONDS`` it records the loop
thread's stack. Per stall (one late heartbeat): its length and how much of it was cyclic GC (``gc.callbacks``).
The summary (stall count and lengths, GC share, the most sampled functions) is what a profile of the whole run
cannot show: which work makes the *long* pauses. The watchdog needs the GIL to sample, so a stall that is one
long C call (a GC pass) shows as GC time, not as a stack.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

_ROOT = f"{Path(__file__).resolve().parents[1]}/"
STALL_SECONDS = 0.04
BEAT_SECONDS = 0.01
#: Frames from these files are the machinery every stack shares; the first frame outside them names the work.
_MACHINERY = ("asyncio/", "threading.py", "bench/_stalls.py", "selectors.py")


class StallTracer:
    def __init__(self) -> None:
        self.beat = time.monotonic()
        self.started = time.monotonic()
        #: (when, length, GC seconds in it, the loop thread's CPU seconds in it: the rest it waited for a core or
        #: for the GIL held by another thread)
        self.stalls: list[tuple[float, float, float, float]] = []
        self.leaf: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.by_window: dict[int, collections.Counter[str]] = {}  # the project's own frames, per 10 s
        self.samples = 0
        self._gc_total = 0.0
        self._gc_started = 0.0
        self._loop_thread = 0
        self._cpu_at_beat = 0.0

    def install(self) -> None:
        """Heartbeat on every event loop asyncio creates from now on (the daemon's), GC timing, the watchdog."""
        tracer = self
        base = type(asyncio.get_event_loop_policy())

        class Policy(base):  # type: ignore[misc, valid-type]
            def new_event_loop(self) -> asyncio.AbstractEventLoop:
                loop = super().new_event_loop()
                loop.call_soon(tracer._start, loop)
                return loop

        asyncio.set_event_loop_policy(Policy())
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_total += time.perf_counter() - self._gc_started

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_thread = threading.get_ident()

        clock = time.pthread_getcpuclockid(self._loop_thread)

        def tick() -> None:
            self.beat = time.monotonic()
            self._cpu_at_beat = time.clock_gettime(clock)
            loop.call_later(BEAT_SECONDS, tick)

        tick()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        in_stall, gc_at_start, cpu_at_start = False, 0.0, 0.0
        stall_beat = 0.0
        while True:
            time.sleep(0.005)
            late = time.monotonic() - self.beat
            if late > STALL_SECONDS:
                if not in_stall:
                    in_stall, gc_at_start, stall_beat = True, self._gc_total, self.beat
                    cpu_at_start = self._cpu_at_beat  # the stall began at the last beat
                self._sample()
            elif in_stall:
                in_stall = False
                self.stalls.append((stall_beat - self.started, self.beat - stall_beat - BEAT_SECONDS,
                                    self._gc_total - gc_at_start, self._cpu_at_beat - cpu_at_start))

    def _sample(self) -> None:
        frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001 - a sampling profiler's way in
        names: list[str] = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_filename.split('site-packages/')[-1].removeprefix(_ROOT)}:{code.co_name}")
            frame = frame.f_back
        if not names:
            return
        self.samples += 1
        work = next((n for n in names if not any(m in n for m in _MACHINERY)), names[0])
        self.leaf[f"{names[0]} <- {work}"] += 1
        window = self.by_window.setdefault(int((time.monotonic() - self.started) // 10) * 10, collections.Counter())
        for name in set(names):
            self.inclusive[name] += 1
            if name.startswith(("router/", "providers/")):
                window[name] += 1

    def summary(self) -> dict[str, Any]:
        lengths = sorted(length for _, length, _, _ in self.stalls)
        windows: dict[int, list[float]] = {}
        for when, length, in_gc, cpu in self.stalls:
            window = windows.setdefault(int(when // 10) * 10, [0, 0.0, 0.0, 0.0, 0])
            window[0] += 1
            window[1] += length
            window[2] += in_gc
            window[3] += cpu
            window[4] += length > 0.1
        return {
            "stalls_over_ms": STALL_SECONDS * 1000,
            "count": len(lengths),
            "total_s": round(sum(lengths), 3),
            "gc_s_in_stalls": round(sum(g for _, _, g, _ in self.stalls), 3),
            "loop_cpu_s_in_stalls": round(sum(c for _, _, _, c in self.stalls), 3),
            "per_10s_since_start": {f"{t}s": f"{int(n)} stalls, {total:.2f} s, {gc_s:.2f} s GC, {cpu:.2f} s loop CPU, "
                                    f"{int(long)} > 100 ms" for t, (n, total, gc_s, cpu, long) in sorted(windows.items())},
            "longest_ms": [round(x * 1000) for x in lengths[-10:]],
            "over_100ms": sum(1 for x in lengths if x > 0.1),
            "samples": self.samples,
            "top_leaf": self.leaf.most_common(25),
            "top_inclusive": self.inclusive.most_common(60),
            "top_by_window": {f"{t}s": counter.most_common(20) for t, counter in sorted(self.by_window.items())},
        }
