"""``tarash-router`` under cProfile for a window: ``PROFILE_START`` starts profiling, ``PROFILE_STOP`` stops and
dumps to argv[1] (signals, ``bench._common``).

    python -m bench._profiled_serve OUT.prof serve --routes ...   (used by bench/cpu_per_request.py)
Profiling only the measured window keeps startup and warm-up out of the per-request figures. The timer is the
main (event-loop) thread's CPU clock.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time

from bench._common import PROFILE_START, PROFILE_STOP
from router.cli import main


def run() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    # CPU time of the event-loop thread, not wall time: on a loaded machine wall time counts preemption and
    # the idle wait in epoll as if they were work.
    profiler = cProfile.Profile(time.thread_time)

    def stop(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(PROFILE_START, lambda *_: profiler.enable())
    signal.signal(PROFILE_STOP, stop)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
