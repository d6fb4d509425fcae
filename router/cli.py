"""The ``tarash-router`` command: serve, check, routes, generate."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import mimetypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    from router import __version__

    parser = argparse.ArgumentParser(prog="tarash-router", description="An open router for generative-media APIs.")
    parser.add_argument("--version", action="version", version=f"tarash-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--routes", type=Path, help="routes file (default: $TARASH_ROUTER_ROUTES or routes.toml)")
    serve.add_argument("--host", help="bind address (default: $TARASH_ROUTER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: $TARASH_ROUTER_PORT or 8787; 0 picks a free one)")
    serve.add_argument("--workers", type=int, metavar="N", help=(
        "worker processes on the one port (default: $TARASH_ROUTER_WORKERS or 1, a single process). N > 1 needs the "
        "PostgreSQL job store (TARASH_ROUTER_JOB_STORE): each worker binds the port with SO_REUSEPORT and is its own "
        "instance (<INSTANCE_ID>-w<k>); this process supervises them: it forwards SIGHUP and SIGTERM, restarts a "
        "worker that dies (giving up with exit 1 if one crashes 5 times in 60 s), speaks sd_notify for all, and "
        "/metrics on any worker sums every worker's"))
    # A worker of a --workers supervisor (router.workers): its slot, and the supervisor to die with.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    check = sub.add_parser("check", help="validate a routes file; exit 1 listing every problem")
    check.add_argument("path", nargs="?", type=Path)
    show = sub.add_parser("routes", help="print the resolved routes as a table")
    show.add_argument("path", nargs="?", type=Path)
    show.add_argument("--json", action="store_true", help="print the routes as JSON (as GET /v1/routes lists them)")
    prices = sub.add_parser("prices", help="the price table, and which attempts of a routes file have no known price")
    prices.add_argument("path", nargs="?", type=Path)
    prices.add_argument("--json", action="store_true", help="print the table as JSON")
    jobs = sub.add_parser("jobs", help="move job history between job stores (JSON lines)")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    export = jobs_sub.add_parser("export", help="every job (with its events) and the spend ledger of the configured "
                                 "store (TARASH_ROUTER_JOB_STORE, else SQLite in DATA_DIR), one JSON object a line")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    load = jobs_sub.add_parser("import", help="add exported lines to the configured store (stop the old daemon first)")
    load.add_argument("path", nargs="?", type=Path, help="file to read (default: standard input)")
    gen = sub.add_parser("generate", help="one generation in-process through the routes file")
    gen.add_argument("kind", choices=["video", "image"])
    gen.add_argument("--model", required=True, help="route name")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--out", type=Path, help="where to save the media (default: ./<request id>.<ext>)")
    gen.add_argument("--routes", type=Path, help="routes file (default: $TARASH_ROUTER_ROUTES or routes.toml)")
    gen.add_argument("--duration", type=int, metavar="SECONDS", help="video length (duration_seconds)")
    gen.add_argument("--aspect-ratio", help="16:9, 9:16, 1:1, 4:3 or 21:9")
    gen.add_argument("--resolution", help="video resolution: 360p, 480p, 720p, 1080p or 4k")
    gen.add_argument("--size", metavar="WxH", help="image size, e.g. 1024x1024 (for a video: the closest aspect "
                     "ratio and resolution, as /v1/videos maps it)")
    gen.add_argument("--negative-prompt")
    gen.add_argument("--seed", type=int)
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from router.settings import Settings

    overrides = {k: v for k, v in {"routes": getattr(args, "routes", None) or getattr(args, "path", None),
                                   "host": getattr(args, "host", None), "port": getattr(args, "port", None),
                                   "workers": getattr(args, "workers", None)}.items()
                 if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            print(f"tarash-router: {_setting_problem(error)}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        if settings.workers > 1 and args.worker_index is None:
            return _supervise(settings)
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            return runner.run(_serve(settings, args.worker_index, args.supervisor_pid))
    if args.command == "jobs":
        return asyncio.run(_jobs(settings, args.jobs_command, getattr(args, "out", None), getattr(args, "path", None)))
    if args.command == "check":
        return _check(settings.routes)
    if args.command == "routes":
        return _routes(settings.routes, as_json=args.json)
    if args.command == "prices":
        return _prices(settings.routes, as_json=args.json)
    fields = {"duration_seconds": args.duration, "aspect_ratio": args.aspect_ratio, "resolution": args.resolution,
              "size": args.size, "negative_prompt": args.negative_prompt, "seed": args.seed}
    return asyncio.run(_generate(settings, args.kind, args.model, args.prompt, args.out,
                                 {k: v for k, v in fields.items() if v is not None}))


def _setting_problem(error: Any) -> str:
    """One line for a bad setting: which variable (or flag), what is wrong, without echoing secrets."""
    from pydantic import SecretStr

    from router.settings import Settings

    field = str(error["loc"][0]) if error["loc"] else "settings"
    info = Settings.model_fields.get(field)
    secret = info is None or info.annotation is SecretStr  # keys, tokens, DSNs with passwords: never echoed
    shown = "" if secret or "input" not in error else f" (got {error['input']!r})"
    return f"invalid setting TARASH_ROUTER_{field.upper()}: {error['msg']}{shown}"


def _loop_factory(choice: str) -> Any:
    """uvloop when asked for (or, with "auto", when installed: ``pip install 'tarash-router[fast]'``)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("EVENT_LOOP=uvloop but uvloop is not installed: pip install 'tarash-router[fast]'") from None
        return None
    return uvloop.new_event_loop


def _load_or_report(path: Path) -> Any:
    from router.routes import RoutesError, load

    try:
        return load(path)
    except RoutesError as exc:
        if not path.exists():
            print(f"{exc.problems[0]}; point --routes (or TARASH_ROUTER_ROUTES) at your routes file "
                  "(examples/ in the repository has some to start from)", file=sys.stderr)
            return None
        if len(exc.problems) == 1 and exc.problems[0].startswith(f"{path}:"):
            print(exc.problems[0], file=sys.stderr)  # a whole-file problem (unreadable, empty, not TOML): one line
            return None
        print(f"{path}: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check(path: Path) -> int:
    snapshot = _load_or_report(path)
    if snapshot is None:
        return EXIT_INVALID
    print(f"{path}: OK, {len(snapshot.routes)} routes (hash {snapshot.config_hash})")
    for warning in snapshot.warnings():
        print(f"  warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _routes(path: Path, as_json: bool = False) -> int:
    snapshot = _load_or_report(path)
    if snapshot is None:
        return EXIT_INVALID
    if as_json:
        import json

        print(json.dumps({"path": str(path), "config_hash": snapshot.config_hash,
                          "routes": [route.describe() for route in snapshot.routes.values()]}, indent=2))
        return EXIT_OK
    rows = [("ROUTE", "KIND", "CHAIN")]
    for route in snapshot.routes.values():
        chain = " -> ".join(f"{c.provider}/{c.model} ({c.timeout:g}s)" for c in route.chain)
        rows.append((route.name, route.kind, chain))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, kind, chain in rows:
        print(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {chain}")
    return EXIT_OK


def _prices(path: Path, as_json: bool = False) -> int:
    """The shipped price table (unit, USD, tiers, date read, source), then the attempts of ``path`` (when it
    exists) whose price is unknown."""
    from router.pricing import default_table

    table = default_table()
    if as_json:
        import dataclasses
        import json

        print(json.dumps({"prices": [dataclasses.asdict(p) for p in table.prices], "hardware": table.hardware},
                         indent=2))
        return EXIT_OK
    rows: list[tuple[tuple[str, ...], list[str]]] = [(("PROVIDER", "MODEL", "UNIT", "USD", "READ", "SOURCE"), [])]
    for price in sorted(table.prices, key=lambda p: (p.provider, p.model)):
        tiers = [_tier_text(tier.conditions, tier.usd) for tier in price.tiers]
        rows.append(((price.provider, price.model + ("*" if price.match == "prefix" else ""), price.unit,
                      f"{price.usd:g}", price.read or "-", price.source), tiers))
    for provider, rates in sorted(table.hardware.items()):
        source, _, read = table.hardware_sources[provider].partition(" (read ")
        for name, usd in sorted(rates.items(), key=lambda item: item[1]):
            rows.append(((provider, f"hardware {name}", "prediction_second", f"{usd:g}", read.rstrip(")"), source), []))
    widths = [max(len(row[i]) for row, _ in rows) for i in range(5)]
    for row, tiers in rows:
        print("  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:5])) + "  " + row[5])
        for tier in tiers:
            print(f"{'':<{widths[0] + 2}}tier {tier}")
    print("(* matches every model starting with it; a request that sets none of a tier's fields pays the base USD)")
    if not path.exists():
        return EXIT_OK
    snapshot = _load_or_report(path)
    if snapshot is None:
        return EXIT_INVALID
    missing = snapshot.warnings()
    print(f"\n{path}: {len(missing) or 'no'} attempt{'s' if len(missing) != 1 else ''} without a known price"
          + (":" if missing else ""))
    for warning in missing:
        print(f"  {warning}")
    return EXIT_OK


def _tier_text(conditions: tuple[tuple[str, tuple[str, ...]], ...], usd: float) -> str:
    return ", ".join(f"{key}={'|'.join(values)}" for key, values in conditions) + f": {usd:g}"


def _cost_line(metadata: Any) -> str:
    """What a generation cost, for the terminal: charged, the estimate, and where the price came from."""
    if metadata is None:
        return "cost: unknown"
    total, estimated = metadata.total_cost_usd, metadata.estimated_cost_usd
    decisive = metadata.attempts[(metadata.successful_attempt or len(metadata.attempts)) - 1]
    charged = f"${total:.4f} charged" if total is not None else "unknown charge"
    guess = f", estimated ${estimated:.4f}" if estimated is not None else ""
    return f"cost: {charged}{guess} (price: {decisive.price_source or 'unknown'})"


def _raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (as Go's runtime does): the soft default (often 1024) is
    below what MAX_CONNECTIONS plus vendor connections may need."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # not allowed here: keep the soft limit


async def _jobs(settings: Any, command: str, out: Path | None, source: Path | None) -> int:
    from router.daemon import open_job_store
    from router.jobs.store import JobStoreError
    from router.jobs.transfer import export_lines, import_lines

    try:
        store = open_job_store(settings)
        await store.open()
    except JobStoreError as exc:
        print(f"tarash-router: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if command == "export":
            target = out.open("w") if out else sys.stdout
            try:
                count = 0
                async for line in export_lines(store):
                    target.write(line + "\n")
                    count += 1
            finally:
                if out:
                    target.close()
            print(f"exported {count} lines", file=sys.stderr)
            return EXIT_OK
        lines = source.read_text().splitlines() if source else sys.stdin.read().splitlines()
        try:
            counts = await import_lines(store, lines)
        except ValueError as exc:
            print(f"tarash-router: {source or 'stdin'}: {exc}", file=sys.stderr)
            return EXIT_INVALID
        print("imported {jobs} jobs ({events} events), {spend} spend entries; {skipped} jobs already there"
              .format(**counts), file=sys.stderr)
        return EXIT_OK
    finally:
        await store.close()


def _preflight(settings: Any, log: Any) -> Any:
    """The checks before a serve binds anything: the routes snapshot, or the exit code."""
    if not settings.client_tokens() and not settings.is_loopback_bind() and not settings.allow_unauthenticated:
        log.error("refusing_to_start", reason=f"bound to {settings.host} with no API_KEYS; set "
                  "TARASH_ROUTER_API_KEYS or TARASH_ROUTER_ALLOW_UNAUTHENTICATED=true")
        return EXIT_USAGE
    snapshot = _load_or_report(settings.routes)
    return EXIT_INVALID if snapshot is None else snapshot


def _cannot_listen(log: Any, settings: Any, exc: OSError) -> int:
    log.error("cannot_listen", address=f"{settings.host}:{settings.port}", reason=exc.strerror or str(exc),
              hint="stop the process using it, or pick another --port (TARASH_ROUTER_PORT; 0 picks a free one)"
              if exc.errno == errno.EADDRINUSE else "check --host / TARASH_ROUTER_HOST")
    return EXIT_INVALID


def _supervise(settings: Any) -> int:
    """``serve --workers N``: check what every worker would refuse once, hold the port, run the supervisor."""
    from router.daemon import open_job_store
    from router.jobs.service import default_instance_id
    from router.jobs.store import JobStoreError
    from router.log_setup import configure, get_logger
    from router.sdnotify import Notifier
    from router.workers import PortError, Supervisor, reserve_port

    configure(settings.log_level, settings.resolved_log_format())
    log = get_logger("router.serve")
    preflight = _preflight(settings, log)
    if isinstance(preflight, int):
        return preflight
    try:
        if not open_job_store(settings).shared:
            print(f"tarash-router: --workers {settings.workers} needs the PostgreSQL job store "
                  "(TARASH_ROUTER_JOB_STORE=postgresql://...): with SQLite each worker would resume the others' "
                  "jobs and pay the vendor twice", file=sys.stderr, flush=True)
            return EXIT_USAGE
    except JobStoreError as exc:
        print(f"tarash-router: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        port, held = reserve_port(settings.host, settings.port)
    except PortError as exc:
        return _cannot_listen(log, settings, exc)
    supervisor_pid = os.getpid()

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "router.cli", "serve", "--routes", str(settings.routes), "--host", settings.host,
                "--port", str(port), "--worker-index", str(index), "--supervisor-pid", str(supervisor_pid)]

    notifier = Notifier()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")}
    if notifier.watchdog_interval is not None:  # workers ping the supervisor on systemd's deadline
        env["WATCHDOG_USEC"] = os.environ["WATCHDOG_USEC"]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    supervisor = Supervisor(settings.workers, command, env, settings.instance_id or default_instance_id(),
                            f"http://{host}:{port}", settings.shutdown_grace_seconds, notifier,
                            announce=settings.resolved_log_format() == "console")
    try:
        return asyncio.run(supervisor.run())
    finally:
        for sock in held:
            sock.close()


async def _serve(settings: Any, worker: int | None = None, supervisor_pid: int | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; ``worker`` is its slot when a ``--workers`` supervisor started it."""
    from aiohttp import web

    import router
    from router.daemon import describe_job_store
    from router.diagnostics import log_tasks, stop_within
    from router.gc_tuning import GcTuning
    from router.workers import STOP_MARGIN_SECONDS
    from router.http.app import create_app
    from router.http.slow_clients import ConnectionLimits, GuardedAppRunner, LogThrottle, accept_error_handler
    from router.log_setup import configure, get_logger
    from router.http.keys import DAEMON
    from router.jobs.store import JobStoreError
    from router.reload import RoutesHolder
    from router.sdnotify import Notifier
    from router.tasks import cancel_and_wait

    if supervisor_pid is not None:
        from router.workers import die_with

        if not die_with(supervisor_pid):
            return EXIT_OK  # the supervisor is already gone
    configure(settings.log_level, settings.resolved_log_format(),
              fields=None if worker is None else {"worker": worker, "pid": os.getpid()})
    log = get_logger("router.serve")
    snapshot = _preflight(settings, log)
    if isinstance(snapshot, int):
        return snapshot
    if settings.allow_private_media_urls:
        from router.netguard import ALLOW_PRIVATE_ENV

        os.environ[ALLOW_PRIVATE_ENV] = "true"
    holder = RoutesHolder(settings.routes, snapshot)
    notifier = Notifier()
    try:
        app = create_app(settings, holder, notifier=notifier)
        # handler_cancellation: a client that disconnects cancels its generation (and the vendor job).
        runner = GuardedAppRunner(app, limits=ConnectionLimits.of(settings), handler_cancellation=True,
                                  shutdown_timeout=settings.shutdown_grace_seconds, access_log=None)
        asyncio.get_running_loop().set_exception_handler(accept_error_handler(LogThrottle()))
        _raise_fd_limit()
        await runner.setup()  # opens the job store
    except JobStoreError as exc:  # one line naming the setting, never a password (see router.jobs.postgres)
        print(f"tarash-router: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except OSError as exc:  # DATA_DIR missing, not a directory, not writable
        log.error("cannot_start", path=str(exc.filename or settings.data_dir), reason=exc.strerror or str(exc),
                  hint="DATA_DIR (TARASH_ROUTER_DATA_DIR) must be a directory the daemon can create and write")
        return EXIT_INVALID
    # A worker joins its siblings on the port the supervisor holds (router.workers says why SO_REUSEPORT).
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=worker is not None)
    try:
        await site.start()
    except OSError as exc:
        code = _cannot_listen(log, settings, exc)
        await runner.cleanup()
        return code
    # Startup's objects (modules, routes, pydantic schemas, the app) live as long as the process: frozen out of
    # the cyclic GC's sight, a full collection walks only what requests and jobs create (#18).
    gc.collect()
    gc.freeze()
    # Thresholds by how many jobs run here (router/gc_tuning.py: high for requests, lower for thousands of jobs).
    gc_tuning = GcTuning(lambda: app[DAEMON].jobs.running)
    gc_tuning.apply()
    # Signals first: a SIGTERM right after the "listening" line must stop the daemon cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def sighup() -> None:
        notifier.reloading()
        try:
            holder.reload()  # never raises; the finally is for systemd, which waits for READY=1 after RELOADING=1
        finally:
            notifier.ready()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, sighup)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks, log)  # what it waits on (router.diagnostics)
    host, port = runner.addresses[0][:2]
    log.info("listening", url=f"http://{host}:{port}", routes=sorted(snapshot.routes), config_hash=snapshot.config_hash,
             job_store=describe_job_store(settings), instance_id=app[DAEMON].jobs.instance_id)
    if settings.resolved_log_format() == "console" and worker is None:  # a person at a terminal (the supervisor
        # prints it once for all workers); JSON streams get the event only
        print(f"tarash-router listening on http://{host}:{port}", file=sys.stderr, flush=True)
    tasks = [
        asyncio.create_task(holder.watch(settings.reload_debounce_ms, stop)),
        asyncio.create_task(notifier.watchdog()),
        asyncio.create_task(gc_tuning.run()),
    ]
    notifier.ready(f"serving {len(snapshot.routes)} routes on {host}:{port}")
    await stop.wait()
    log.info("shutting_down", grace_seconds=settings.shutdown_grace_seconds)
    notifier.stopping()

    async def shut_down() -> None:
        await cancel_and_wait(tasks)
        # Stops accepting, lets in-flight requests finish up to the grace period, runs cleanup hooks.
        await runner.cleanup()
        await router.aclose()

    # Bounded as the supervisor bounds its workers' stops (leases still held lapse by themselves).
    await stop_within(settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS, shut_down, log)
    log.info("stopped")
    return EXIT_OK


async def _generate(settings: Any, kind: str, model: str, prompt: str, out: Path | None,
                    fields: dict[str, Any]) -> int:
    from pydantic import ValidationError

    import router
    from router.errors import TarashError
    from router.models import media_bytes, media_form
    from router.orchestrator import Generation, run_generation

    snapshot = _load_or_report(settings.routes)
    if snapshot is None:
        return EXIT_INVALID
    from router.http.errors import ApiError

    video_only = [flag for flag, key in (("--duration", "duration_seconds"), ("--resolution", "resolution"))
                  if key in fields]
    if kind == "image" and video_only:
        print(f"error: {', '.join(video_only)} only apply to video (an image takes --size and --aspect-ratio)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        route = snapshot.resolve(model, kind)  # type: ignore[arg-type]
        if kind == "video" and "size" in fields:
            from router.http.jobs_api import size_to_request

            fields = {**size_to_request(fields.pop("size")), **fields}  # explicit flags win
        request = route.build_request({"prompt": prompt, **fields})
    except (TarashError, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return EXIT_USAGE

    def progress(update: Any) -> None:
        percent = update.progress_percent if update.progress_percent is not None else 0
        bar = "#" * (percent // 5)
        print(f"\r[{bar:<20}] {percent:3d}% {update.status:<10}", end="", file=sys.stderr, flush=True)

    try:
        response = await run_generation(Generation(route.kind, request, route.chain, on_progress=progress))
    except TarashError as exc:
        print(f"\nfailed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(_cost_line(exc.execution_metadata), file=sys.stderr)
        return EXIT_INVALID
    finally:
        await router.aclose()
    print(file=sys.stderr)
    if kind == "video":
        media, default_ext = response.video, ".mp4"  # type: ignore[union-attr]
    else:
        media, default_ext = response.images[0], ".png"  # type: ignore[union-attr]
    # The extension of what the provider delivered (a JPEG is no .png), the kind's usual one when unknown.
    ext = mimetypes.guess_extension(response.content_type or "") or default_ext
    target = out or Path(f"{response.request_id}{ext}")
    if media_form(media) == "url":
        from router.fetch import RESULT_VIDEO, FetchError, fetch_bytes

        try:
            target.write_bytes((await fetch_bytes(str(media), RESULT_VIDEO))[0])
        except FetchError as exc:
            print(f"cannot download the result: {exc}", file=sys.stderr)
            return EXIT_INVALID
    else:
        target.write_bytes(media_bytes(media)[0])
    metadata = response.execution_metadata
    winner = metadata.attempts[(metadata.successful_attempt or 1) - 1] if metadata else None
    print(f"saved {target} ({target.stat().st_size} bytes) via {winner.provider}/{winner.model}" if winner else f"saved {target}")
    print(_cost_line(metadata))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
