"""structlog set-up: JSON lines in production, pretty console on a TTY, one request id bound per request,
and a redaction processor that is the last line of defence for secrets."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

#: Event keys whose values are always secrets.
SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-api-key", "api-key", "token", "password",
                         "secret", "x-goog-api-key", "proxy-authorization"})
REDACTED = "[REDACTED]"
#: Env vars that hold provider keys (plus whatever routes name with api_key_env, see ``add_secret_env``).
KNOWN_KEY_ENV = ("FAL_KEY", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "REPLICATE_API_TOKEN", "RUNWAYML_API_SECRET",
                 "GEMINI_API_KEY", "GOOGLE_API_KEY", "STABILITY_API_KEY", "LUMAAI_API_KEY")


class Redactor:
    """A structlog processor removing secret keys and known secret values from every event."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add_values(self, values: Iterable[str]) -> None:
        self._values |= {v for v in values if v and len(v) >= 6}
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))
            if self._values else None
        )

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
        return self.scrub(event)  # type: ignore[no-any-return]


redactor = Redactor()


def configure(level: str = "info", fmt: str = "json") -> None:
    """Route structlog and stdlib logging (aiohttp, our library modules) through one processor chain."""
    redactor.add_env(KNOWN_KEY_ENV)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is replaced by our own per-request line (with route, request id, latency).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
