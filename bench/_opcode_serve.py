"""``tarash-router`` counting the bytecodes each Python function executes, for a window: ``PROFILE_START`` starts
counting, ``PROFILE_STOP`` stops and writes the counts to argv[1] as JSON (signals, ``bench._common``).

    python -m bench._opcode_serve OUT.json serve --routes ...   (used by bench/opcodes.py)
Counts are exact and the same from run to run for the same requests; the tracing makes the process ~50x slower,
which changes what they count only where timing decides (a batch that fills in a shorter window).
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from types import CodeType, FrameType
from typing import Any

from bench._common import PROFILE_START, PROFILE_STOP
from router.cli import main


def run() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    counts: Counter[CodeType] = Counter()

    def opcode(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts[frame.f_code] += 1
        return opcode

    def call(frame: FrameType, event: str, arg: Any) -> Any:  # every call, and every resumption of a coroutine
        frame.f_trace_opcodes = True
        return opcode

    def stop(*_: object) -> None:
        sys.settrace(None)
        rows: Counter[str] = Counter()
        for code, n in counts.items():  # generated code (a dataclass's __init__) shares one name: summed
            rows[f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"] += n
        with open(out, "w") as file:
            json.dump(rows, file)

    # A signal handler runs in the main thread: the event loop's, where the requests are handled.
    signal.signal(PROFILE_START, lambda *_: sys.settrace(call))
    signal.signal(PROFILE_STOP, stop)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
