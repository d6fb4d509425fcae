"""Benchmark 1d: instructions per request, counted by valgrind's callgrind: the one measure of #18's cuts this
host's drifting speed does not move.

CPU time per request (``bench.cpu_per_request``) drifts with the host: two routers of the same code measured
0.85-1.09x each other, so a cut below ~10 % needs many runs to show. Instructions do not drift: each server runs
under ``valgrind --tool=callgrind --instr-atstart=no``, is warmed up natively fast enough, then counted for
exactly ``--requests`` requests (``callgrind_control -i on/off``, then a dump), every thread of it included. The
same code measured twice differs by < 0.1 %. Instructions are not time (a cache miss costs more than an add), so
this ranks cuts; the wall-clock benchmarks say what a user sees.

    .venv/bin/python -m bench.instructions [--requests 1000] [--baseline DIR] [--floor] [--env NAME=VALUE ...]
                                           [--keep DIR]

Targets: the bare pass-through (b), the contract's floor (b2, ``--floor``), the router of this checkout (c) and,
with ``--baseline DIR``, the router of another checkout (c0), all on the image route of the OpenAI emulator
(which runs natively). ``--env`` is given to the routers only (a setting to compare, e.g. LOG_LEVEL=warning).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench._common import PYTHON, ROOT, drive, free_port, image_routes, machine, router_env, spawn, wait_http
from bench.overhead import proxy_command, sender

_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.M)


def callgrind(out: Path, *command: str) -> tuple[str, ...]:
    """``command`` under callgrind, counting nothing until told (``callgrind_control -i on``)."""
    return ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *command)


async def count(name: str, url: str, pid: int, out: Path, requests: int, concurrency: int) -> int:
    """Instructions the process ``pid`` executes for ``requests`` requests to ``url`` after a warm-up."""
    send = sender(name, url)
    await drive(send, requests=200, concurrency=concurrency)  # warm-up: pools, caches, lazy imports
    for step in (["-i", "on"], None, ["-i", "off"], ["-d"]):
        if step is None:
            result = await drive(send, requests=requests, concurrency=concurrency)
            if result["errors"]:
                raise SystemExit(f"{name}: {result['errors']} errors while counting")
        else:
            subprocess.run(["callgrind_control", *step, str(pid)], check=True, capture_output=True)
    for _ in range(600):  # the dump is written by the process itself, a moment later
        dumps = [p for p in out.parent.glob(f"{out.name}.*") if p.stat().st_size]
        if dumps and (found := _TOTALS.search(dumps[0].read_bytes())):
            return int(found[1])
        await asyncio.sleep(0.1)
    raise SystemExit(f"{name}: callgrind wrote no dump")


async def main(requests: int, concurrency: int, baseline: Path | None, floor: bool, env: dict[str, str],
               out: Path, keep: Path | None = None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    emu_port = free_port()
    emulator = spawn(PYTHON, "-m", "tests.emulators", "openai", "--port", str(emu_port))
    upstream = f"http://127.0.0.1:{emu_port}/v1/images/generations"
    (work / "routes.toml").write_text(image_routes(emu_port))
    routers = {**router_env("asyncio"), **env}
    serve = (PYTHON, "-m", "router.cli", "serve", "--routes", str(work / "routes.toml"), "--port")
    # name -> (the command for a port, its environment, its working directory, the URL path that says it is up)
    targets: dict[str, tuple[Callable[[int], tuple[str, ...]], dict[str, str], Path, str]] = {
        "b_bare_proxy": (lambda port: proxy_command(upstream, port, "asyncio"), {}, ROOT, "/"),
        "c_tarash_router": (lambda port: (*serve, str(port)), routers, ROOT, "/healthz"),
    }
    if floor:
        targets["b2_contract_floor"] = (
            lambda port: proxy_command(upstream, port, "asyncio", "bench.floor:run_floor"), {}, ROOT, "/")
    if baseline:
        targets["c0_router_baseline"] = (lambda port: (*serve, str(port)),
                                         {**routers, "PYTHONPATH": str(baseline)}, baseline, "/healthz")
    figures: dict[str, float] = {}
    try:
        await wait_http(f"http://127.0.0.1:{emu_port}/_media/x.png")
        for name, (command, extra, cwd, probe) in targets.items():
            port = free_port()
            dump = work / f"{name}.callgrind"
            process = spawn(*callgrind(dump, *command(port)),
                            env={**extra, "TARASH_ROUTER_DATA_DIR": str(work / f"{name}-data")}, cwd=cwd)
            try:
                await wait_http(f"http://127.0.0.1:{port}{probe}", timeout=300)
                total = await count(name, f"http://127.0.0.1:{port}/v1/images/generations", process.pid, dump,
                                    requests, concurrency)
            finally:
                process.terminate()
                process.wait()
            figures[name] = total / requests
            if keep is not None:  # for callgrind_annotate: where, by C function, the instructions went
                keep.mkdir(parents=True, exist_ok=True)
                for part in work.glob(f"{dump.name}.*"):
                    shutil.copy(part, keep / part.name)
            print(f"{name:<20} {figures[name] / 1e6:8.3f} M instructions per request", flush=True)
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)
    bare = figures["b_bare_proxy"]
    ratios = {f"{name}_over_bare": value / bare for name, value in figures.items() if name != "b_bare_proxy"}
    if "c0_router_baseline" in figures:
        ratios["router_over_baseline"] = figures["c_tarash_router"] / figures["c0_router_baseline"]
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.3f}")
    out.write_text(json.dumps({"machine": machine(), "requests": requests, "concurrency": concurrency,
                               "router_env": env, "instructions_per_request": figures, "ratios": ratios},
                              indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. a git worktree of main) whose "
                        "router is counted too, as c0_router_baseline")
    parser.add_argument("--floor", action="store_true", help="also count the contract's floor (bench.floor)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the routers (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "instructions.json")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each target's callgrind dump in DIR (read them with callgrind_annotate)")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.baseline, args.floor,
                     dict(item.split("=", 1) for item in args.env), args.out, args.keep))
