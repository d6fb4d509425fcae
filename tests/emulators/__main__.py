"""Run one emulator in the foreground: ``python -m tests.emulators fal --port 9000 --key test-key``."""

from __future__ import annotations

import argparse
import asyncio

from tests.emulators import EMULATORS


async def serve(vendor: str, port: int, key: str, polls: int, finish_after: float | None = None) -> None:
    emulator = EMULATORS[vendor](api_key=key, polls_to_complete=polls)
    emulator.finish_after = finish_after
    url = await emulator.start(port)
    print(f"{vendor} emulator on {url} (key {key!r}, {polls} polls per job)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators")
    parser.add_argument("vendor", choices=EMULATORS.names())
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--polls", type=int, default=2)
    parser.add_argument("--finish-after", type=float, default=None,
                        help="every job finishes this many seconds after its submit (and sends its webhook)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.vendor, args.port, args.key, args.polls, args.finish_after))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
