"""Daemon settings: environment variables with prefix ``TARASH_ROUTER_`` (and an optional ``.env`` file);
command-line flags override them."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import sys
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict



_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ClientToken(NamedTuple):
    """Who a client token belongs to: its name (or the token's fingerprint when unnamed) and its scopes."""

    name: str
    scopes: frozenset[str]


def client_fingerprint(token: str) -> str:
    """A stable, non-secret identity for an unnamed token (jobs record their owner by it)."""
    return "client-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def parse_api_keys(text: str) -> dict[str, ClientToken]:
    """``API_KEYS`` as token -> its client. Items are comma-separated; ``tok`` is a client known by the token's
    fingerprint, ``alice=tok`` names the client (budgets and usage go by name, never by token; several tokens may
    share a name); ``:admin`` after either gives the admin scope (/v1/routes, every client's jobs and usage;
    scopes joined with ``+``). Empty items are skipped; an item with an empty token (``:admin``) is refused with
    ``ValueError``, which never quotes a token."""
    tokens: dict[str, ClientToken] = {}
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        entry, _, scopes = item.partition(":")
        entry = entry.strip()
        if not entry:
            raise ValueError(f"API_KEYS item {position} has an empty token (only scopes); write token:scopes")
        name, eq, token = entry.partition("=")
        # "alice=tok" names the client; a plain token may itself end in "=" padding ("dG9r=", "dG9rZQ==").
        if not (eq and token and not token.startswith("=") and _CLIENT_NAME.fullmatch(name)):
            name, token = "", entry
        tokens[token] = ClientToken(name or client_fingerprint(token), frozenset(s for s in scopes.split("+") if s))
    return tokens


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TARASH_ROUTER_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    #: ``serve`` processes on the one port (router.workers); more than 1 needs the PostgreSQL job store.
    workers: int = Field(default=1, ge=1, le=256)
    routes: Path = Path("routes.toml")
    data_dir: Path = Path(".tarash-router")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: None picks by the terminal: console on a TTY, JSON lines otherwise.
    log_format: Literal["json", "console"] | None = None
    #: Comma-separated client bearer tokens; ``token:admin`` gives the admin scope. Empty = no client auth.
    api_keys: SecretStr = SecretStr("")
    #: Without API keys the daemon refuses a non-loopback bind unless this is set.
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    #: Longest prompt (and negative prompt) accepted, in characters. OpenAI's image models take up to 32,000;
    #: most video vendors far less (they answer 400 themselves).
    max_prompt_chars: int = Field(default=32_000, ge=1)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    #: "auto" uses uvloop when it is installed (the [fast] extra), "asyncio" never, "uvloop" always.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: A new connection must deliver a complete request head this fast (slow-header clients are cut).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    #: A request body must arrive this fast after its head (slow-body clients get 408 and are cut).
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    #: Open client connections at most; more are answered 503 and closed (keep it under the fd limit).
    max_connections: int = Field(default=1000, ge=1)
    #: Serve plain synchronous generation requests without aiohttp's request objects (router.http.fast_path);
    #: the same answers, about a sixth less CPU a request. false: every request goes through aiohttp.
    fast_path: bool = True
    #: Job creates (POST /v1/jobs, /v1/videos) worked on at once; a keep-alive connection past it is read again
    #: when one ends (router.http.create_gate), so a batch cannot stall the API's other requests. 0: no bound.
    max_creates_in_progress: int = Field(default=24, ge=0)
    #: Debounce for routes.toml saves that come in bursts (editors write, rename, chmod...).
    reload_debounce_ms: int = Field(default=50, ge=1)
    circuit_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_seconds: float = Field(default=30.0, gt=0)
    #: Let input media be fetched from private/loopback addresses (closed networks, tests). Off: SSRF guard.
    allow_private_media_urls: bool = False
    # Jobs
    max_running_jobs: int = Field(default=64, ge=1)
    job_retention_days: float = Field(default=7.0, gt=0)
    keep_media_copy: bool = False
    # Webhooks (router/webhooks)
    #: The router's externally reachable base URL; vendors push completions to {public_url}/v1/webhooks/...
    #: Unset: no vendor webhooks, every job is polled.
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    #: Poll interval of an attempt whose vendor was asked to push its completion (the safety net when a push
    #: never comes); the attempt's own poll_interval if that is longer.
    webhook_poll_interval: float = Field(default=60.0, gt=0)
    #: Largest vendor webhook body accepted (413 above).
    webhook_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    #: ``whsec_`` + base64: signs client webhooks (webhook_url on POST /v1/jobs and /v1/videos). Unset: refused.
    webhook_secret: SecretStr = SecretStr("")
    #: Let client webhook URLs point at private/loopback addresses (closed networks, tests). Off: SSRF guard.
    allow_private_webhook_urls: bool = False
    #: How long an undelivered client webhook is retried, and the first retry's delay (doubling, capped at 1 h).
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    #: Where KEEP_MEDIA_COPY puts videos (default DATA_DIR/media). Several instances: shared storage.
    media_dir: Path | None = None
    #: Empty: SQLite in DATA_DIR. ``postgresql://user:pass@host:port/db``: PostgreSQL, shared by every
    #: instance pointed at it. A secret (it may hold a password): never logged or shown.
    job_store: SecretStr = SecretStr("")
    #: PostgreSQL only: where the LISTEN connection goes instead of ``job_store``, for a ``job_store`` behind a
    #: transaction-mode pooler (PgBouncer), which gives LISTEN no session. Empty: ``job_store``. A secret too.
    job_store_listen: SecretStr = SecretStr("")
    #: This instance's name on the job leases it holds. Unset: host-pid-random.
    instance_id: str | None = None
    #: A job's lease: renewed every third of it; an instance silent this long loses its jobs to others.
    job_lease_seconds: float = Field(default=30.0, gt=0)
    #: How long a job waits for the store to save its new vendor job id (full disk, database down) before it
    #: cancels that vendor job and stops: an unrecorded vendor job would be submitted again after a restart.
    vendor_job_save_grace_seconds: float = Field(default=10.0, gt=0)
    # Client limits
    client_requests_per_minute: int = Field(default=0, ge=0, description="per client token; 0 = unlimited")

    def resolved_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"

    @field_validator("log_level", "log_format", "event_loop", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        # LOG_LEVEL=INFO is how most tools spell it (Python's logging, systemd units): the same setting as info.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_keys")
    @classmethod
    def _api_keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())  # refuse a bad list at start, not at the first request
        return value

    def client_tokens(self) -> dict[str, ClientToken]:
        """Token -> its client (see ``parse_api_keys``)."""
        return parse_api_keys(self.api_keys.get_secret_value())

    def is_loopback_bind(self) -> bool:
        if self.host in ("localhost", ""):
            return self.host == "localhost"
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
