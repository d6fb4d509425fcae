"""structlog set-up: JSON lines in production, pretty console on a TTY, one request id bound per request,
and a redaction processor that is the last line of defence for secrets."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

import structlog

from router.json_text import encoder

#: Event keys whose values are always secrets.
SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-api-key", "api-key", "token", "password",
                         "secret", "x-goog-api-key", "proxy-authorization"})
REDACTED = "[REDACTED]"
#: Value types a log line carries that can hold no secret text (checked by identity before ``isinstance``).
_SCALARS = frozenset({int, float, bool})
#: The value types of a flat line: JSON's own, nothing to walk.
_FLAT = frozenset({str, int, float, bool, type(None)})


class Redactor:
    """A structlog processor removing secret keys and known secret values from every event.

    Known values: the client bearer tokens (added by the auth middleware) and the keys held by every env var a
    loaded routes file can read (``api_key_env`` and the handlers' own names, added by ``router.reload``).
    """

    #: How many distinct event keys ``_clean`` remembers as not secret (event keys come from code: a few dozen).
    MAX_SAFE_KEYS = 4096

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._safe_keys: set[str] = set()
        #: Whether every secret reads the same inside a JSON line (printable ASCII, no quote or backslash): then
        #: a line's text holds a secret wherever one of its values does (``render_clean``).
        self._json_safe = True

    def add_values(self, values: Iterable[str]) -> None:
        self._values |= {v for v in values if v and len(v) >= 6}
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))
            if self._values else None
        )
        self._json_safe = all(v.isascii() and v.isprintable() and '"' not in v and "\\" not in v
                              for v in self._values)

    def add_env(self, names: Iterable[str]) -> None:
        self.add_values(os.environ.get(name, "") for name in names)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value) if self._pattern else value
        if isinstance(value, dict):
            return {k: REDACTED if str(k).lower() in SECRET_KEYS else self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        return value

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        return event if self._clean(event) else self.scrub(event)  # type: ignore[no-any-return]

    def render_clean(self, event: dict[str, Any]) -> str | None:
        """``event`` as its JSON line when it needs no scrub, else None (then the processors decide): its keys
        known as not secret, its values flat (str, int, float, bool, None), and no secret in the encoded text.
        The same answer as ``_clean``, from three C-level passes instead of a Python loop over the values."""
        if not self._json_safe or not self._safe_keys_only(event) or not _FLAT.issuperset(map(type, event.values())):
            return None
        text = _line_text(event)
        for value in self._values:
            if value in text:  # maybe a false alarm (a key, or across two values): the processors scrub per value
                return None
        return text

    def _safe_keys_only(self, event: dict[str, Any]) -> bool:
        """No key of ``event`` names a secret (``SECRET_KEYS``); the keys seen are remembered."""
        if not self._safe_keys.issuperset(event):  # one set operation for the keys of nearly every line
            for key in event:
                if key not in self._safe_keys:
                    if not isinstance(key, str) or key.lower() in SECRET_KEYS:
                        return False
                    if len(self._safe_keys) < self.MAX_SAFE_KEYS:
                        self._safe_keys.add(key)
        return True

    def _clean(self, event: dict[str, Any]) -> bool:
        """True when a flat event has no secret key and no known secret value: nearly every line, checked with
        one regex search over its strings instead of one per value (and no copy). Anything nested, or a
        possible match, takes the full ``scrub``."""
        if not self._safe_keys_only(event):
            return False
        texts = []
        for value in event.values():
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif value is None or kind in _SCALARS:
                continue
            elif isinstance(value, str):  # a str subclass
                texts.append(value)
            elif not isinstance(value, (int, float)):
                return False
        # A secret found across two joined values is a false alarm only: scrub then decides per value. One
        # substring search per secret: the alternation regex tried every secret at every position of the line.
        joined = "\n".join(texts)
        return not any(value in joined for value in self._values)


redactor = Redactor()


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test capture swaps it; a cached stream would go stale)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _stdlib_logger_name(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Stdlib records carry their logger's name under the same key as ours (``logger_name``)."""
    record = event.get("_record")
    if record is not None:
        event["logger_name"] = record.name
    return event


def _fallback(value: Any) -> Any:
    """What structlog's JSON renderer makes of a value JSON has no type for: its ``__structlog__()``, else repr."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


#: A log line's JSON: ``json.dumps(event, default=_fallback)``, from an encoder built once.
_line_text = encoder(_fallback)


def _json_line(event: dict[str, Any], **_: Any) -> str:
    """The JSON renderer's serializer (it passes its own ``default``: ``_fallback`` does what structlog's would)."""
    return _line_text(event)


class _UtcTimestamp:
    """``TimeStamper(fmt="iso", utc=True)``'s ``timestamp``, to the character (``2026-12-03T13:40:01.123456Z``, no
    fraction at a whole second, as ``isoformat`` writes it), with the date and time of day worked out once a
    second instead of per line: a third of what a line cost before rendering."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        second, micros = divmod(time.time_ns() // 1000, 1_000_000)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{micros:06d}Z" if micros else f"{self._prefix}Z"
        return event


class _JsonChain:
    """``configure``'s JSON processors in one function, for a router ``Logger``'s line: the same text, key for key
    and byte for byte, as the processors write it, without a call per processor (a fifth of a line's cost)."""

    __slots__ = ("processors", "_fields", "_timestamp")

    def __init__(self, processors: list[Any], fields: dict[str, Any] | None, timestamp: _UtcTimestamp) -> None:
        #: The chain this stands for: while structlog's list still equals it (``capture_logs`` edits it in place).
        self.processors = list(processors)
        self._fields = fields
        self._timestamp = timestamp

    def render(self, method: str, line: dict[str, Any]) -> str | None:
        """The text of ``line``, or None when the processors themselves must run on it (an exception to format,
        or what the redactor must look at): each step here leaves the line as the processor would, so running
        them after it writes the same line."""
        if self._fields:
            line.update(self._fields)  # _adding
        for var, value in contextvars.copy_context().items():  # merge_contextvars, one lookup per variable
            if value is not Ellipsis and var.name.startswith("structlog_"):
                line.setdefault(var.name[10:], value)
        line["level"] = method  # add_log_level: a Logger's methods are level names
        self._timestamp(None, method, line)
        return None if "exc_info" in line else redactor.render_clean(line)


#: Bumped by every ``configure``: a ``Logger`` assembled under an older configuration assembles itself again.
_generation = 0
#: The level ``configure`` set: below it a ``Logger``'s methods return at once (as structlog's filtering logger).
#: Before any ``configure`` (the library in someone else's program), every level reaches structlog, which decides.
_min_level = logging.NOTSET
#: ``configure``'s JSON chain fused (None for the console format): see ``_JsonChain``.
_json_chain: _JsonChain | None = None
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error",
                logging.CRITICAL: "critical"}


class Logger:
    """A structlog logger named ``logger_name``: its lines go through the configured processors to its output,
    exactly as structlog's filtering bound logger sends them (the same keys in the same order).

    structlog's lazy proxy with caching off assembled a bound logger, its context and its output on every call,
    and a line's fields were copied into a new dict at each of its four layers: a line of the attempt's 15 fields
    was 50,000 instructions before its processors ran (``bench.instructions``). This assembles once per
    ``configure`` and builds the event once. What it does not define itself (``bind``, ``exception``...) is
    structlog's own bound logger's. Once ``configure`` ran (the daemon, the CLI), a ``structlog.configure`` outside
    it reaches these loggers only through the processor list it changes in place (as
    ``structlog.testing.capture_logs`` does); before (the library in another program), every call is structlog's
    own, with whatever configuration that program set, as before.
    """

    __slots__ = ("_name", "_bound", "_built", "_processors", "_output")

    def __init__(self, logger_name: str) -> None:
        self._name = logger_name
        self._bound: Any = None
        self._built = -1
        self._processors: list[Any] = []
        self._output: Any = None

    def _assemble(self) -> None:
        config = structlog.get_config()
        self._bound = structlog.wrap_logger(None, logger_name=self._name).bind()
        self._processors, self._output = config["processors"], config["logger_factory"]()
        self._built = _generation

    def _structlog(self) -> Any:
        """structlog's own logger: the one assembled at this ``configure``; before the first (the library in a
        program that configures structlog itself, maybe later), a lazy proxy that reads structlog's configuration
        at every call, as it always did."""
        if not _generation:
            return structlog.get_logger(logger_name=self._name)
        if self._built != _generation:
            self._assemble()
        return self._bound

    def __getattr__(self, name: str) -> Any:  # bind, exception, new...: structlog's bound logger
        return getattr(self._structlog(), name)

    def is_enabled_for(self, level: int) -> bool:
        return level >= _min_level if _generation else bool(self._structlog().is_enabled_for(level))

    def log(self, level: int, event: str, *args: Any, **fields: Any) -> None:
        if level >= _min_level:
            self._emit(_LEVEL_NAMES.get(level, "notset"), event, args, fields)

    def debug(self, event: str, *args: Any, **fields: Any) -> None:
        if logging.DEBUG >= _min_level:
            self._emit("debug", event, args, fields)

    def info(self, event: str, *args: Any, **fields: Any) -> None:
        if logging.INFO >= _min_level:
            self._emit("info", event, args, fields)

    def warning(self, event: str, *args: Any, **fields: Any) -> None:
        if logging.WARNING >= _min_level:
            self._emit("warning", event, args, fields)

    def error(self, event: str, *args: Any, **fields: Any) -> None:
        if logging.ERROR >= _min_level:
            self._emit("error", event, args, fields)

    def _emit(self, method: str, event: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        if not _generation:  # not configured here: structlog's own path and configuration (see ``_structlog``)
            getattr(self._structlog(), method)(event, *args, **fields)
            return
        if self._built != _generation:
            self._assemble()
        line: Any = {"logger_name": self._name, **fields, "event": event % args if args else event}
        chain = _json_chain
        if chain is not None and self._processors == chain.processors:
            text = chain.render(method, line)
            if text is not None:
                self._output.msg(text)
                return
        try:
            for processor in self._processors:
                line = processor(self._output, method, line)
        except structlog.DropEvent:
            return
        self._output.msg(line)


def get_logger(logger_name: str) -> Any:
    """The router's structlog logger for ``logger_name`` (``Logger``)."""
    return Logger(logger_name)


def _adding(fields: dict[str, Any]) -> Any:
    def add(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        event.update(fields)
        return event

    return add


def configure(level: str = "info", fmt: str = "json", fields: dict[str, Any] | None = None) -> None:
    """One processor chain for our structlog events and for stdlib records (aiohttp, library modules).

    Our own events skip the stdlib bridge: a filtering bound logger drops events below the level at the
    call, and the rest are rendered and written straight to stderr (the hot path: one access line and one
    line per attempt for every request). ``fields`` are added to every line (a ``--workers`` worker's slot and
    pid: its lines share the supervisor's stream).
    """
    global _generation, _min_level, _json_chain
    _generation += 1
    _min_level = logging.getLevelName(level.upper())  # also the filtering logger's and the stdlib root's
    timestamp = _UtcTimestamp()
    shared: list[Any] = [
        *([_adding(fields)] if fields else []),
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamp,
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line) if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors = [*shared, renderer]
    _json_chain = _JsonChain(processors, fields, timestamp) if fmt == "json" else None
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_min_level),
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        # No caching by structlog's proxies: configure() may run again and must take effect (``Logger`` caches).
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_stdlib_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_min_level)
    # aiohttp's access log is replaced by our own per-request line (with route, request id, latency).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
