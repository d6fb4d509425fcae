"""The daemon's logs: one JSON line per request and per attempt, all carrying the request id; secrets redacted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import structlog

from router.jobs.postgres import PostgresJobStore
from router.log_setup import _UtcTimestamp, configure, get_logger
from tests.daemon.conftest import MOCK_ROUTES, StartDaemon

CANARY = "sk-canary-logs-91c2d7e4a0b3"
LATER_CANARY = "sk-canary-after-reload-5e8f"
CLIENT_TOKEN = "client-token-4b7d19e2"
WEBHOOK_CANARY = "whsec_Y2FuYXJ5LXdlYmhvb2stc2VjcmV0"
REPLICATE_CANARY = "whsec_cmVwbGljYXRlLWNhbmFyeQ=="
DB_PASSWORD_CANARY = "pg-canary-pw-5c88"


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_every_line_of_a_request_carries_its_id(start_daemon: StartDaemon,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    daemon = await start_daemon()
    capsys.readouterr()
    status, _, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "video-down", "prompt": "x"},
                                        headers={"X-Request-ID": "log-req-1"})
    assert status == 429
    lines = _lines(capsys.readouterr().err)
    assert lines and all(line["request_id"] == "log-req-1" for line in lines)
    attempts = [line for line in lines if line["event"] == "attempt_finished"]
    assert [(a["attempt"], a["provider"], a["model"], a["status"], a["error_type"]) for a in attempts] == [
        (1, "mock", "mock-down-1", "failed", "ProviderUnavailableError"),
        (2, "mock", "mock-down-2", "failed", "RateLimitError")]
    assert all(a["route"] == "video-down" and a["latency_ms"] >= 0 for a in attempts)
    assert any(line["event"] == "fallback" for line in lines)
    access = [line for line in lines if line["event"] == "http_request"]
    assert len(access) == 1 and access[0]["route"] == "video-down" and access[0]["status"] == 429
    assert access[0]["latency_ms"] >= 0 and access[0]["path"] == "/v1/video/generations"
    assert access[0]["level"] == "info" and access[0]["timestamp"].endswith("Z")

    # An insane incoming id is replaced, not echoed into logs and headers.
    _, _, headers = await daemon.request("GET", "/healthz", headers={"X-Request-ID": "bad id\u00e9" * 30})
    (access_line,) = _lines(capsys.readouterr().err)
    assert access_line["request_id"] == headers["X-Request-ID"] and len(headers["X-Request-ID"]) == 32


async def test_redaction_is_a_safety_net_for_every_known_secret(
    start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Secrets we know of are removed even from a line that should never have had them."""
    configure("info", "json")
    monkeypatch.setenv("LOGS_TEST_KEY", CANARY)  # named by a route
    monkeypatch.setenv("FAL_KEY", CANARY[::-1])  # the fal handler's own env var, read by a fal route
    named = """
[routes."keyed"]
kind = "video"
[[routes."keyed".attempts]]
provider = "fal"
model = "fal-ai/veo3"
api_key_env = "LOGS_TEST_KEY"
"""
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", REPLICATE_CANARY)
    daemon = await start_daemon(MOCK_ROUTES + named, api_keys=CLIENT_TOKEN, webhook_secret=WEBHOOK_CANARY)
    PostgresJobStore(f"postgresql://router:{DB_PASSWORD_CANARY}@127.0.0.1/jobs")  # opened nowhere: its URL is read
    log = structlog.get_logger("test")
    log.info("careless_webhooks", note=f"{WEBHOOK_CANARY} {REPLICATE_CANARY[6:]} dsn password {DB_PASSWORD_CANARY}")
    log.info("careless", note=f"sent {CANARY} and {CANARY[::-1]}", client=f"Bearer {CLIENT_TOKEN}",
             headers={"Authorization": "Bearer anything", "X-Api-Key": "k", "api-key": "k", "accept": "*/*"})
    logging.getLogger("aiohttp.server").error("stdlib line with %s", CANARY)

    # A reload that names a new env var: its value is redacted from then on.
    monkeypatch.setenv("LOGS_TEST_KEY_2", LATER_CANARY)
    daemon.routes_path.write_text(MOCK_ROUTES + named.replace('"LOGS_TEST_KEY"', '"LOGS_TEST_KEY_2"'))
    assert daemon.state.routes.reload()
    log.info("careless_again", note=LATER_CANARY)

    err = capsys.readouterr().err
    for secret in (CANARY, CANARY[::-1], CLIENT_TOKEN, LATER_CANARY, WEBHOOK_CANARY, REPLICATE_CANARY[6:],
                   DB_PASSWORD_CANARY):
        assert secret not in err
    assert next(line for line in _lines(err) if line["event"] == "careless_webhooks")["note"] == (
        "[REDACTED] [REDACTED] dsn password [REDACTED]")
    careless = next(line for line in _lines(err) if line["event"] == "careless")
    assert careless["note"] == "sent [REDACTED] and [REDACTED]" and careless["client"] == "Bearer [REDACTED]"
    assert careless["headers"] == {"Authorization": "[REDACTED]", "X-Api-Key": "[REDACTED]",
                                   "api-key": "[REDACTED]", "accept": "*/*"}
    assert "stdlib line with [REDACTED]" in err


@pytest.mark.parametrize("nanoseconds", [1_764_768_001_123_456_789, 1_764_768_001_000_000_000,
                                         1_764_768_001_000_001_999, 1_767_225_599_999_999_999])
def test_the_timestamp_is_the_one_isoformat_wrote(monkeypatch: pytest.MonkeyPatch, nanoseconds: int) -> None:
    """The router's stamper caches the second's prefix: to the character what TimeStamper(fmt="iso", utc=True)
    wrote, also at a whole second (no fraction) and across a day and a year."""
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)
    stamp = _UtcTimestamp()
    for _ in range(2):  # the prefix computed, then reused
        micros = nanoseconds // 1000
        expected = datetime.fromtimestamp(micros // 1_000_000, timezone.utc).replace(
            microsecond=micros % 1_000_000).isoformat().replace("+00:00", "Z")
        assert stamp(None, "info", {})["timestamp"] == expected


def test_a_logger_follows_each_configure(capsys: pytest.CaptureFixture[str]) -> None:
    """Loggers are assembled once and reused, yet a later configure() (another level, fields) reaches them."""
    log = get_logger("router.test")
    configure("warning", "json")
    log.info("hidden")
    log.warning("shown", n=1)
    configure("info", "json", fields={"worker": 3})
    log.info("now_shown")
    lines = _lines(capsys.readouterr().err)
    assert [(line["event"], line.get("worker")) for line in lines] == [("shown", None), ("now_shown", 3)]
    assert lines[0]["logger_name"] == "router.test" and lines[0]["n"] == 1
    configure("info", "json")


def test_a_router_logger_writes_what_structlog_wrote(capsys: pytest.CaptureFixture[str]) -> None:
    """``Logger`` sends its lines through the processors itself: the same lines as structlog's own bound logger,
    key for key, in both formats, with a worker's fields, interpolation, a numeric level and an exception."""
    structlog.contextvars.bind_contextvars(request_id="r1")
    try:
        for fmt in ("json", "console"):
            configure("info", fmt, fields={"worker": 2})
            for log in (get_logger("router.same"), structlog.get_logger(logger_name="router.same")):
                log.info("event", a=1, b="two", c=None, d=1.5)
                log.log(30, "warned %s", "x", e=[1, {"f": 2}])
                log.debug("hidden")
                log.error("failed", exc_info=ValueError("boom"))
            lines = [line.split(" ", 1)[1] if fmt == "console" else json.dumps(
                {k: v for k, v in json.loads(line).items() if k != "timestamp"})
                for line in capsys.readouterr().err.splitlines() if line]
            half = len(lines) // 2
            assert lines[:half] == lines[half:] and half >= 3, lines
    finally:
        structlog.contextvars.clear_contextvars()
        configure("info", "json")


def test_as_a_library_the_programs_own_structlog_configuration_holds() -> None:
    """Before the daemon's configure() (a program using the library), every line is structlog's own, with the
    configuration the program sets, also after the first line was logged."""
    program = (
        "import structlog\n"
        "from router.log_setup import get_logger\n"
        "log = get_logger('router.lib')\n"
        "log.info('before', n=1)\n"
        "structlog.configure(processors=[lambda _l, m, e: f'CUSTOM {m} {e[\"event\"]} {e[\"n\"]}'],\n"
        "                    logger_factory=structlog.PrintLoggerFactory())\n"
        "log.info('after', n=2)\n"
        "log.debug('debug too', n=3)\n"
        "assert log.is_enabled_for(10)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "before" in lines[0] and lines[1:] == ["CUSTOM info after 2", "CUSTOM debug debug too 3"], lines
