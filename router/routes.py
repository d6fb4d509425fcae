"""routes.toml: its schema, its validation (every problem with its TOML path), and the immutable snapshot
of configs the daemon serves from.

Public model names are the keys under ``[routes]``; each route's ``attempts`` become one fallback chain of
``VideoGenerationConfig``/``ImageGenerationConfig`` (attempt 1 is the config, the rest its fallbacks).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import TarashError
from router.models import (
    AnyConfig,
    AnyRequest,
    ImageGenerationConfig,
    ImageGenerationRequest,
    Kind,
    MockConfig,
    VideoGenerationConfig,
    VideoGenerationRequest,
    utc_now,
)
from router.policy import POLICY_KEYS
from router.pricing import PriceOverride, price_for
from router.pricing.table import override_problems
from router.registry import get_handler, key_env_names, known_providers

CONFIG_TYPES: dict[str, type[VideoGenerationConfig] | type[ImageGenerationConfig]] = {
    "video": VideoGenerationConfig,
    "image": ImageGenerationConfig,
}
REQUEST_TYPES: dict[str, type[VideoGenerationRequest] | type[ImageGenerationRequest]] = {
    "video": VideoGenerationRequest,
    "image": ImageGenerationRequest,
}


class AttemptSpec(BaseModel):
    """One ``[[routes."name".attempts]]`` table."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0)
    poll_interval: float | None = Field(default=None, ge=0)
    max_poll_attempts: int | None = Field(default=None, ge=1)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
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


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["video", "image"]
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    #: Synchronous requests running at once on this route; more are shed with 429 (jobs queue instead).
    max_concurrency: int | None = Field(default=None, ge=1)
    #: Most a generation on this route may cost: an attempt estimated above it (or priced unknown) is skipped.
    max_cost_usd: float | None = Field(default=None, gt=0)
    attempts: list[AttemptSpec] = Field(min_length=1)


class ProviderSpec(BaseModel):
    """``[providers."<name>"]``: limits shared by every route that uses the provider."""

    model_config = ConfigDict(extra="forbid")

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

    @property
    def config(self) -> AnyConfig:
        """The chain as one config: attempt 1 with the rest as its ``fallback_configs``."""
        head, *rest = self.chain
        return head.model_copy(update={"fallback_configs": list(rest) or None})

    def build_request(self, body: dict[str, Any]) -> AnyRequest:
        """The spec request from client fields, with this route's defaults for fields the client left unset."""
        fields = {**self.defaults, **{k: v for k, v in body.items() if v is not None}}
        return REQUEST_TYPES[self.kind].model_validate(fields)


class RouteNotFoundError(TarashError):
    """No route has that public name (HTTP 404)."""


class RouteKindError(TarashError):
    """The route serves the other kind (HTTP 422)."""


@dataclass(frozen=True)
class RoutesSnapshot:
    """One loaded, validated routes file. Immutable: a reload builds a new one and swaps it in."""

    routes: dict[str, Route]
    config_hash: str
    loaded_at: datetime = field(default_factory=utc_now)
    path: str = ""
    providers: dict[str, ProviderSpec] = field(default_factory=dict)

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

    def key_env_names(self) -> set[str]:
        """Every env var an attempt of this file may read its key from (for log redaction)."""
        return {name for route in self.routes.values() for config in route.chain
                for name in key_env_names(get_handler(config.provider), config)}


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
        elif i == 1 and loc[0] in ("routes", "providers"):
            out += f'."{part}"'  # route names are always quoted, as users write them
        else:
            out += ("." if out else "") + (part if re.fullmatch(r"[A-Za-z0-9_]+", str(part)) else f'"{part}"')
    return out


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def parse(text: str, path: str = "routes.toml") -> RoutesSnapshot:
    """Validate routes.toml text; raise ``RoutesError`` listing every problem (all of them, not the first)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError([f"{path}: not valid TOML: {exc}"]) from exc
    problems = [f"{key}: unknown top-level table; only [routes] and [providers] are allowed"
                for key in data if key not in ("routes", "providers")]
    providers: dict[str, ProviderSpec] = {}
    known = set(known_providers())
    for name, raw in (data.get("providers") or {}).items():
        if name not in known:
            problems.append(f'providers."{name}": unknown provider; known: {", ".join(sorted(known))}')
        try:
            providers[name] = ProviderSpec.model_validate(raw)
        except ValidationError as exc:
            problems += [p.replace(f'routes."{name}"', f'providers."{name}"', 1)
                         for p in _pydantic_problems(exc, ("providers", name), raw)]
    raw_routes = data.get("routes", {})
    if not isinstance(raw_routes, dict):
        raise RoutesError(problems + ["routes: must be a table of routes"])
    specs: dict[str, RouteSpec] = {}
    for name, raw in raw_routes.items():
        # Checks on the raw tables, so a route with a schema error still gets all its other problems reported.
        problems += _literal_keys(name, raw) + _provider_problems(name, raw) + _semantic_problems(name, raw)
        try:
            specs[name] = RouteSpec.model_validate(raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("routes", name), raw)
    if problems:
        raise RoutesError(problems)
    routes = {name: _build_route(name, spec) for name, spec in specs.items()}
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RoutesSnapshot(routes=routes, config_hash=digest, path=path, providers=providers)


def _shown(value: Any) -> str:
    return f" (got {json.dumps(value, default=str)})" if value is not None else ""


def _pydantic_problems(exc: ValidationError, prefix: tuple[Any, ...], raw: Any) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if loc and loc[-1] == "api_key":
            continue  # reported by _literal_keys with a better message
        value = _value_at(raw, loc)
        shown = f" (got {json.dumps(value, default=str)})" if value is not None and err["type"] != "missing" else ""
        problems.append(f"{toml_path(prefix + loc)}: {err['msg']}{shown}")
    return problems


def load(path: Path | str) -> RoutesSnapshot:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutesError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
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


def _provider_problems(name: str, raw: Any) -> list[str]:
    known = set(known_providers())
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
        try:
            REQUEST_TYPES[kind].model_validate({"prompt": "validation", **defaults})
        except ValidationError as exc:
            problems += _pydantic_problems(exc, ("routes", name, "defaults"), defaults)
    return problems


def _build_route(name: str, spec: RouteSpec) -> Route:
    config_type = CONFIG_TYPES[spec.kind]
    chain = []
    for attempt in spec.attempts:
        provider_config = dict(attempt.provider_config)
        for key in ("api_key_env", *sorted(POLICY_KEYS)):
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
