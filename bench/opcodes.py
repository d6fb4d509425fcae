"""Benchmark 1e: Python bytecodes per request, by function and by package: where the router's own Python work
is, counted exactly.

``bench.instructions`` counts machine instructions, but inside CPython's interpreter they cannot be told apart by
Python function; cProfile can, but its cost per call inflates small functions several-fold. This counts every
bytecode each function executes (``sys.settrace`` with opcode events) in the router's event-loop thread for
exactly ``--requests`` requests after a warm-up, on the image route of the OpenAI emulator, and prints the
functions with the most (their own bytecodes, not their callees') and the total per package. A bytecode is not a
fixed cost (a CALL of ``json.dumps`` is one), so read it beside ``bench.instructions``: it ranks Python work.

    .venv/bin/python -m bench.opcodes [--requests 300] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from bench._common import PROFILE_START, PROFILE_STOP, PYTHON, ROOT, drive
from bench.overhead import sender, servers


def package(where: str) -> str:
    """The package a code location belongs to: router/…, providers, a site-package, or the stdlib module."""
    path = where.rsplit(":", 2)[0]
    if "site-packages/" in path:  # before the checkout's own: the venv may live in it
        return path.split("site-packages/")[1].split("/")[0]
    if path.startswith(str(ROOT)):
        parts = Path(path).relative_to(ROOT).parts
        return "/".join(parts[:2]) if parts[0] == "router" and len(parts) > 2 else parts[0]
    if "python3." in path:
        return "stdlib:" + path.split("/python3.")[1].split("/", 1)[1].split("/")[0].removesuffix(".py")
    return path


async def count(requests: int, concurrency: int, out: Path) -> dict[str, int]:
    dump = out.parent / "opcodes-raw.json"
    dump.unlink(missing_ok=True)
    async with servers(out, (PYTHON, "-m", "bench._opcode_serve", str(dump))) as targets:
        url, pid = targets["c_tarash_router"]
        send = sender("c_tarash_router", url)
        await drive(send, requests=200, concurrency=concurrency)  # warm-up: pools, caches, lazy imports
        os.kill(pid, PROFILE_START)
        result = await drive(send, requests=requests, concurrency=concurrency)
        os.kill(pid, PROFILE_STOP)
        if result["errors"]:
            raise SystemExit(f"{result['errors']} errors while counting")
        for _ in range(300):
            await asyncio.sleep(0.1)
            if dump.exists() and dump.stat().st_size:
                await asyncio.sleep(0.5)
                break
    counts: dict[str, int] = json.loads(dump.read_text())
    dump.unlink()
    return counts


def short(where: str) -> str:
    path, line, name = where.rsplit(":", 2)
    if "site-packages/" in path:
        path = path.split("site-packages/")[1]
    elif path.startswith(str(ROOT)):
        path = str(Path(path).relative_to(ROOT))
    elif "/python3." in path:
        path = path.split("/python3.")[1].split("/", 1)[1]
    return f"{path}:{line} {name}"


def main(requests: int, concurrency: int, top: int, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-opcodes-") as work:
        counts = asyncio.run(count(requests, concurrency, Path(work) / "x.json"))
    per_request = {where: n / requests for where, n in counts.items()}
    total = sum(per_request.values())
    packages: Counter[str] = Counter()
    for where, n in per_request.items():
        packages[package(where)] += n
    print(f"{total:,.0f} bytecodes a request in the event-loop thread ({requests} requests, c={concurrency})\n")
    print("by package:")
    for name, n in packages.most_common():
        if n >= total / 1000:
            print(f"  {n:8,.0f}  {n / total:6.1%}  {name}")
    print(f"\nthe {top} functions with the most of their own:")
    for where, n in sorted(per_request.items(), key=lambda item: -item[1])[:top]:
        print(f"  {n:8,.1f}  {n / total:6.1%}  {short(where)}")
    out.write_text(json.dumps({"requests": requests, "concurrency": concurrency, "bytecodes_per_request": total,
                               "by_package": dict(packages.most_common()),
                               "by_function": dict(sorted(per_request.items(), key=lambda item: -item[1]))},
                              indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "opcodes.json")
    args = parser.parse_args()
    main(args.requests, args.concurrency, args.top, args.out)
