"""routes.toml: its schema, its validation (every problem with its TOML path), and the immutable snapshot
of configs the daemon serves from.

Public model names are the keys under ``[routes]``; each route's ``attempts`` become one fallback chain of
``VideoGenerationConfig``/``ImageGenerationConfig`` (attempt 1 is the config, the rest its fallbacks).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import TarashError
from router.models import (
    CONFIG_TYPES,
    REQUEST_TYPES,
    AnyConfig,
    AnyRequest,
    Kind,
    MockConfig,
    utc_now,
)
from router.policy import POLICY_KEYS, AttemptPolicy
from router.pricing import PriceOverride, price_for
from router.pricing.ceiling import lowered
from router.pricing.table import override_problems
from router.registry import get_handler, key_env_names, known_providers

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: Well-known key prefixes (OpenAI/Stability sk-, Replicate r8_, Google AIza, Runway key_, OAuth ya29., webhook secrets whsec_).
_KEY_PREFIXES = ("sk-", "sk_", "r8_", "AIza", "key_", "ya29.", "Bearer ", "whsec_")
#: 20+ letters and digits in one run, mixing both: a token or hex key, not a word of an env var name.
_KEY_RUN = re.compile(r"(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}")


def looks_like_secret(value: Any) -> bool:
    """Whether a string in the routes file is probably a key pasted where a name belongs (never echo it)."""
    return isinstance(value, str) and (value.startswith(_KEY_PREFIXES) or bool(_KEY_RUN.search(value)))


#: Every spec table: unknown keys are refused, and so is a value of the wrong TOML type (``timeout = true``,
#: ``retries = "2"``) or a float that is not a number (``timeout = inf``): lax validation would coerce the first
#: two and let ``inf`` mean "no timeout" without the operator having said so.
SPEC_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class AttemptSpec(BaseModel):
    """One ``[[routes."name".attempts]]`` table."""

    model_config = SPEC_CONFIG

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0)
    # 0 would poll the vendor in a busy loop (the library allows it for tests; a routes file does not).
    poll_interval: float | None = Field(default=None, gt=0)
    max_poll_attempts: int | None = Field(default=None, ge=1)
    api_key_env: str | None = Field(default=None, pattern=ENV_NAME)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_version: str | None = None
    provider_config: dict[str, Any] = Field(default_factory=dict)
    mock: MockConfig | None = None
    # Attempt policy (router/policy.py):
    retries: int | None = Field(default=None, ge=0, le=10)
    retry_backoff: float | None = Field(default=None, gt=0)
    fallback_on: list[int | str] | None = None
    no_fallback_on: list[int | str] | None = None
    on_ambiguous_submit: Literal["stop", "fallback"] | None = None
    #: A known price for this attempt (negotiated, or a model the price table lacks): router/pricing.
    price: dict[str, Any] | None = None
    #: False: never ask this attempt's vendor to push its completion (polling only), even with PUBLIC_URL set.
    webhooks: bool | None = None


class RouteSpec(BaseModel):
    model_config = SPEC_CONFIG

    kind: Literal["video", "image"]
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    #: Synchronous requests running at once on this route; more are shed with 429 (jobs queue instead).
    max_concurrency: int | None = Field(default=None, ge=1)
    #: Most a generation on this route may cost: an attempt estimated above it (or priced unknown) is skipped.
    max_cost_usd: float | None = Field(default=None, gt=0)
    attempts: list[AttemptSpec] = Field(min_length=1)


class ClientSpec(BaseModel):
    """``[clients."<name>"]``: a named client's budgets (names come from ``API_KEYS="name=token"``), USD per UTC
    day and per UTC calendar month; a request whose estimate would cross what is left is refused (402)."""

    model_config = SPEC_CONFIG

    daily_budget_usd: float | None = Field(default=None, gt=0)
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    #: The env var holding this client's own ``whsec_...`` secret: its client webhooks are signed with it
    #: instead of ``TARASH_ROUTER_WEBHOOK_SECRET`` (router/webhooks/outbound.py). A name, never the secret.
    webhook_secret_env: str | None = Field(default=None, pattern=ENV_NAME)


class ProviderSpec(BaseModel):
    """``[providers."<name>"]``: limits shared by every route that uses the provider."""

    model_config = SPEC_CONFIG

    max_concurrency: int | None = Field(default=None, ge=1)
    requests_per_minute: int | None = Field(default=None, ge=1)


@dataclass(frozen=True)
class Route:
    """A public model name and the chain it runs."""

    name: str
    kind: Kind
    description: str
    defaults: dict[str, Any]
    chain: tuple[AnyConfig, ...]
    max_concurrency: int | None = None
    max_cost_usd: float | None = None

    @functools.cached_property
    def policies(self) -> tuple[AttemptPolicy, ...]:
        """Each attempt's ``AttemptPolicy``, worked out once per route (a reload builds new routes)."""
        return tuple(AttemptPolicy.of(self.kind, config) for config in self.chain)

    @property
    def config(self) -> AnyConfig:
        """The chain as one config: attempt 1 with the rest as its ``fallback_configs``."""
        head, *rest = self.chain
        return head.model_copy(update={"fallback_configs": list(rest) or None})

    def describe(self) -> dict[str, Any]:
        """The route as JSON (``tarash-router routes --json``, ``GET /v1/routes``); configs never hold keys."""
        return {
            "name": self.name, "kind": self.kind, "description": self.description, "defaults": self.defaults,
            "max_concurrency": self.max_concurrency, "max_cost_usd": self.max_cost_usd,
            "attempts": [config.model_dump(mode="json", exclude={"fallback_configs"}) for config in self.chain],
        }

    def with_ceiling(self, usd: float | None) -> Route:
        """This route for one request whose ``max_cost_usd`` is ``usd``: lowered where that is lower, never raised."""
        if usd is None or (self.max_cost_usd is not None and usd >= self.max_cost_usd):
            return self
        return replace(self, chain=lowered(self.chain, usd), max_cost_usd=usd)

    def build_request(self, body: dict[str, Any]) -> AnyRequest:
        """The spec request from client fields, with this route's defaults for fields the client left unset."""
        fields = {**self.defaults, **{k: v for k, v in body.items() if v is not None}}
        return REQUEST_TYPES[self.kind].model_validate(fields)


class RouteNotFoundError(TarashError):
    """No route has that public name (HTTP 404)."""

    daemon_status = 404


class RouteKindError(TarashError):
    """The route serves the other kind (HTTP 422)."""

    daemon_status = 422


@dataclass(frozen=True)
class RoutesSnapshot:
    """One loaded, validated routes file. Immutable: a reload builds a new one and swaps it in."""

    routes: dict[str, Route]
    config_hash: str
    loaded_at: datetime = field(default_factory=utc_now)
    path: str = ""
    providers: dict[str, ProviderSpec] = field(default_factory=dict)
    clients: dict[str, ClientSpec] = field(default_factory=dict)

    def resolve(self, model: str, kind: Kind | None = None) -> Route:
        route = self.routes.get(model)
        if route is None:
            names = ", ".join(sorted(self.routes)) or "(none)"
            raise RouteNotFoundError(f"unknown model {model!r}; available: {names}", code="model_not_found")
        if kind is not None and route.kind != kind:
            raise RouteKindError(
                f"route {model!r} serves {route.kind} generation, not {kind}", code="wrong_kind"
            )
        return route

    def warnings(self) -> list[str]:
        """Things that work but deserve a look: attempts whose price is unknown (their cost is reported as
        unknown, and a route ceiling skips them)."""
        out = []
        for route in self.routes.values():
            for i, config in enumerate(route.chain):
                if price_for(config) is None:
                    skipped = " (always skipped: the route has max_cost_usd)" if route.max_cost_usd else ""
                    out.append(f'routes."{route.name}".attempts[{i}]: no known price for {config.provider}/'
                               f"{config.model}; its cost is reported as unknown{skipped}. Set price = "
                               "{ per_second = ... } (or per_image, per_megapixel, per_video, hardware)")
        return out

    def client_webhook_secret_env(self, client: str | None) -> str | None:
        """The env var of ``client``'s own webhook secret, or None when it has none (WEBHOOK_SECRET signs)."""
        spec = self.clients.get(client) if client is not None else None
        return spec.webhook_secret_env if spec is not None else None

    def key_env_names(self) -> set[str]:
        """Every env var an attempt of this file may read its key from, and the clients' webhook secret env
        vars (for log redaction)."""
        return {name for route in self.routes.values() for config in route.chain
                for name in key_env_names(get_handler(config.provider), config)} | \
            {spec.webhook_secret_env for spec in self.clients.values() if spec.webhook_secret_env}


class RoutesError(ValueError):
    """A routes file with problems; ``problems`` lists each as ``<toml path>: <message>``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def toml_path(loc: tuple[Any, ...]) -> str:
    """``("routes", "video-fast", "attempts", 1, "timeout")`` -> ``routes."video-fast".attempts[1].timeout``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 1 and loc[0] in ("routes", "providers", "clients"):
            out += f'."{part}"'  # route names are always quoted, as users write them
        else:
            out += ("." if out else "") + (part if re.fullmatch(r"[A-Za-z0-9_]+", str(part)) else f'"{part}"')
    return out


_KEY_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*')
_INLINE_KEY = re.compile(r'[{,]\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+)\s*=')


def _dotted_key(text: str) -> tuple[str, ...] | None:
    """``routes."video-fast".attempts`` -> ``("routes", "video-fast", "attempts")``; None if not a key."""
    parts, pos = [], 0
    while True:
        match = _KEY_PART.match(text, pos)
        if not match or match.end() == pos:
            return None
        parts.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) where each table and key of a TOML text is written, by its ``toml_path``.

    A light scan, not a parser (tomllib keeps no positions): headers, ``key =`` lines and the first level of
    inline tables; enough to point a user at the line of a problem. Lines inside multi-line strings may be
    misread, which at worst gives a wrong hint, never a wrong verdict.
    """
    lines: dict[str, int] = {}
    arrays: dict[tuple[Any, ...], int] = {}  # array-of-tables path -> how many elements so far
    table: tuple[Any, ...] = ()

    def resolve(key: tuple[str, ...]) -> tuple[Any, ...]:
        out: tuple[Any, ...] = ()
        for part in key:
            out += (part,)
            if out in arrays:
                out += (arrays[out] - 1,)  # a sub-table of an array of tables belongs to its last element
        return out

    def remember(path: tuple[Any, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            lines.setdefault(toml_path(path[:end]), number)

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[["):
            key = _dotted_key(stripped[2:stripped.find("]]")]) if "]]" in stripped else None
            if key is not None:
                base = resolve(key[:-1]) + (key[-1],)
                arrays[base] = arrays.get(base, 0) + 1
                table = base + (arrays[base] - 1,)
                remember(table, number)
        elif stripped.startswith("["):
            key = _dotted_key(stripped[1:stripped.find("]")]) if "]" in stripped else None
            if key is not None:
                table = resolve(key)
                remember(table, number)
        elif "=" in stripped and not stripped.startswith("#"):
            key = _dotted_key(stripped[: stripped.index("=")])
            if key is None:
                continue
            path = table + key
            remember(path, number)
            value = stripped[stripped.index("=") + 1:]
            if value.lstrip().startswith("{"):
                for inner in _INLINE_KEY.finditer(value):
                    remember(path + (inner[1].strip('"'),), number)
    return lines


_LAST_PART = re.compile(r'(\[\d+\]|\."(?:[^"\\]|\\.)*"|\.[^."\[]+|^[^."\[]+)$')


def _with_line(problem: str, lines: dict[str, int]) -> str:
    """``problem`` with `` (line N)`` for the deepest part of its TOML path found in the text."""
    path = problem.split(": ", 1)[0]
    while path:
        if path in lines:
            return f"{problem} (line {lines[path]})"
        trimmed = _LAST_PART.sub("", path)
        if trimmed == path:
            break
        path = trimmed
    return problem


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def parse(text: str, path: str = "routes.toml") -> RoutesSnapshot:
    """Validate routes.toml text; raise ``RoutesError`` listing every problem (all of them, not the first).

    Each problem names its TOML path and, where the key can be found in the text, ends with ``(line N)``.
    """
    if not text.strip():
        raise RoutesError([f"{path}: the file is empty (a truncated or unfinished save?); "
                           'it needs at least one [routes."<name>"] table'])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError([f"{path}: not valid TOML: {exc}"]) from exc
    problems = _problems(data)
    if problems:
        lines = key_lines(text)
        raise RoutesError([_with_line(problem, lines) for problem in problems])
    specs = {name: RouteSpec.model_validate(raw) for name, raw in data["routes"].items()}
    providers = {name: ProviderSpec.model_validate(raw) for name, raw in (data.get("providers") or {}).items()}
    clients = {name: ClientSpec.model_validate(raw) for name, raw in (data.get("clients") or {}).items()}
    routes = {name: _build_route(name, spec) for name, spec in specs.items()}
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RoutesSnapshot(routes=routes, config_hash=digest, path=path, providers=providers, clients=clients)


def _problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a parsed file, each as ``<toml path>: <message>``."""
    problems = [f"{key}: unknown top-level table; only [routes], [providers] and [clients] are allowed"
                for key in data if key not in ("routes", "providers", "clients")]
    raw_clients = data.get("clients") or {}
    if not isinstance(raw_clients, dict):
        problems.append('clients: must be a table of [clients."<name>"] tables')
        raw_clients = {}
    for name, raw in raw_clients.items():
        try:
            ClientSpec.model_validate(raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("clients", name), raw)
    known = set(known_providers())
    for name, raw in (data.get("providers") or {}).items():
        if name not in known:
            problems.append(f'providers."{name}": unknown provider; known: {", ".join(sorted(known))}')
        try:
            ProviderSpec.model_validate(raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("providers", name), raw)
    raw_routes = data.get("routes", {})
    if not isinstance(raw_routes, dict):
        return problems + ["routes: must be a table of routes"]
    if not raw_routes:
        # A file that serves nothing is a mistake (or a save caught half-way), never a config to swap in.
        return problems + ['routes: no routes defined; add at least one [routes."<name>"] table with attempts']
    for name, raw in raw_routes.items():
        # Checks on the raw tables, so a route with a schema error still gets all its other problems reported.
        problems += (_literal_keys(name, raw) + _key_env_problems(name, raw) + _provider_problems(name, raw, known)
                     + _semantic_problems(name, raw))
        try:
            RouteSpec.model_validate(raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("routes", name), raw)
    return problems


def _shown(value: Any) -> str:
    return f" (got {json.dumps(value, default=str)})" if value is not None else ""


def _pydantic_problems(exc: ValidationError, prefix: tuple[Any, ...], raw: Any) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if loc and loc[-1] in ("api_key", "api_key_env"):
            continue  # reported by _literal_keys / _key_env_problems, without echoing the value
        value = _value_at(raw, loc)
        if value is None or err["type"] == "missing":
            shown = ""
        elif looks_like_secret(value):
            shown = " (value not shown: it looks like a key)"
        else:
            shown = f" (got {json.dumps(value, default=str)})"
        problems.append(f"{toml_path(prefix + loc)}: {err['msg']}{shown}")
    return problems


def load(path: Path | str) -> RoutesSnapshot:
    """Read and validate a routes file; every way it can fail (unreadable, not UTF-8, invalid) is a
    ``RoutesError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RoutesError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RoutesError([f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                           "save the file as UTF-8"]) from exc
    return parse(text, str(path))


def _attempt_tables(raw: Any) -> list[tuple[int, dict[str, Any]]]:
    attempts = raw.get("attempts") if isinstance(raw, dict) else None
    return [(i, a) for i, a in enumerate(attempts) if isinstance(a, dict)] if isinstance(attempts, list) else []


def _literal_keys(name: str, raw: Any) -> list[str]:
    """Keys never live in this file: refuse ``api_key = "..."`` in an attempt or its provider_config."""
    problems = []
    for i, attempt in _attempt_tables(raw):
        for where, table in (("", attempt), ("provider_config.", attempt.get("provider_config"))):
            if isinstance(table, dict) and "api_key" in table:
                problems.append(
                    f'routes."{name}".attempts[{i}].{where}api_key: keys never live in routes.toml; '
                    "put the key in an environment variable and name it with api_key_env"
                )
    return problems


def _key_env_problems(name: str, raw: Any) -> list[str]:
    """``api_key_env`` must be a variable's name. The value is never echoed: a common mistake is pasting the
    key itself here, and this message ends up in logs and in ``GET /v1/routes``."""
    problems = []
    for i, attempt in _attempt_tables(raw):
        value = attempt.get("api_key_env")
        where = f'routes."{name}".attempts[{i}].api_key_env'
        if value is None:
            continue
        if looks_like_secret(value):
            problems.append(f"{where}: this looks like an API key, not the name of an environment variable; "
                            "put the key in an environment variable and write its name here, e.g. "
                            'api_key_env = "FAL_KEY" (value not shown)')
        elif not isinstance(value, str) or not re.fullmatch(ENV_NAME, value):
            problems.append(f"{where}: must be the name of an environment variable (letters, digits and _, "
                            'not starting with a digit), e.g. "FAL_KEY" (value not shown)')
    return problems


def _provider_problems(name: str, raw: Any, known: set[str]) -> list[str]:
    """``known``: the provider ids, looked up once per file (an entry-point scan costs ~10 ms)."""
    return [
        f'routes."{name}".attempts[{i}].provider: unknown provider {attempt["provider"]!r}; '
        f"known: {', '.join(sorted(known))}"
        for i, attempt in _attempt_tables(raw)
        if isinstance(attempt.get("provider"), str) and attempt["provider"] not in known
    ]


def _semantic_problems(name: str, raw: Any) -> list[str]:
    """Policy keys hidden in provider_config, and defaults that are not valid request fields for the kind."""
    problems = []
    for i, attempt in _attempt_tables(raw):
        provider_config = attempt.get("provider_config")
        clash = POLICY_KEYS & provider_config.keys() if isinstance(provider_config, dict) else set()
        if clash:
            problems.append(
                f'routes."{name}".attempts[{i}].provider_config: set {", ".join(sorted(clash))} as attempt keys'
            )
        if isinstance(attempt.get("price"), dict):  # a non-table is reported by the schema
            provider = attempt.get("provider") if isinstance(attempt.get("provider"), str) else None
            problems += [f"{toml_path(('routes', name, 'attempts', i, 'price') + loc)}: {message}"
                         f"{_shown(_value_at(attempt['price'], loc))}"
                         for loc, message in override_problems(attempt["price"], provider)]
    kind = raw.get("kind") if isinstance(raw, dict) else None
    defaults = raw.get("defaults", {}) if isinstance(raw, dict) else None
    if kind in REQUEST_TYPES and isinstance(defaults, dict):  # else the schema reports kind/defaults itself
        problems += _unknown_defaults(name, kind, defaults)
        try:
            REQUEST_TYPES[kind].model_validate({"prompt": "validation", **defaults})
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("routes", name, "defaults"), defaults)
    return problems


def _unknown_defaults(name: str, kind: str, defaults: dict[str, Any]) -> list[str]:
    """A default that is not a request field would silently become an ``extra_params`` entry sent to every
    vendor of the chain; a typo (``durashun``) must be caught here instead."""
    fields = sorted(REQUEST_TYPES[kind].model_fields)
    problems = []
    for key in defaults:
        if key in fields:
            continue
        score, close = max((difflib.SequenceMatcher(None, key, f).ratio(), f) for f in fields)
        hint = f"did you mean {close}? " if score >= 0.45 else ""
        problems.append(f'routes."{name}".defaults.{toml_path((key,))}: not a {kind} request field; {hint}'
                        "a parameter for one vendor goes in defaults.extra_params "
                        f"(fields: {', '.join(f for f in fields if f != 'prompt')})")
    return problems


def _build_route(name: str, spec: RouteSpec) -> Route:
    config_type = CONFIG_TYPES[spec.kind]
    chain = []
    for attempt in spec.attempts:
        provider_config = dict(attempt.provider_config)
        for key in ("api_key_env", "webhooks", *sorted(POLICY_KEYS)):
            value = getattr(attempt, key)
            if value is not None:
                provider_config[key] = value
        # Price and ceiling travel in provider_config, so a job's persisted chain keeps them.
        if attempt.price is not None:
            provider_config["price"] = PriceOverride.model_validate(attempt.price).model_dump(exclude_none=True)
        if spec.max_cost_usd is not None:
            provider_config["max_cost_usd"] = spec.max_cost_usd
        fields: dict[str, Any] = {
            "provider": attempt.provider,
            "model": attempt.model,
            "base_url": attempt.base_url,
            "api_version": attempt.api_version,
            "mock": attempt.mock,
            "provider_config": provider_config,
        }
        for key in ("timeout", "poll_interval", "max_poll_attempts"):
            value = getattr(attempt, key)
            if value is not None:
                fields[key] = int(value) if isinstance(value, float) and value.is_integer() else value
        chain.append(config_type(**fields))
    return Route(name=name, kind=spec.kind, description=spec.description, defaults=dict(spec.defaults),
                 chain=tuple(chain), max_concurrency=spec.max_concurrency, max_cost_usd=spec.max_cost_usd)


def diff(old: RoutesSnapshot | None, new: RoutesSnapshot) -> dict[str, list[str]]:
    """Route names added, removed and changed between two snapshots (for the reload log line)."""
    before = old.routes if old else {}
    return {
        "added": sorted(new.routes.keys() - before.keys()),
        "removed": sorted(before.keys() - new.routes.keys()),
        "changed": sorted(n for n in new.routes.keys() & before.keys() if new.routes[n] != before[n]),
    }
