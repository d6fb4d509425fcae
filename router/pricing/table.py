"""The price table: vendor list prices shipped as data (``prices.toml``), and per-attempt overrides from
routes.toml (``price = { per_second = 0.35 }``). An unknown price is ``None``, never 0."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Unit = Literal["second", "video", "image", "megapixel", "prediction_second"]
#: Request facts a tier may depend on.
TIER_KEYS = ("resolution", "audio", "quality", "size", "aspect_ratio")
OVERRIDE_SOURCE = "routes.toml price override"


class _TierSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: float = Field(ge=0)
    resolution: str | list[str] | None = None
    audio: bool | None = None
    quality: str | list[str] | None = None
    size: str | list[str] | None = None
    aspect_ratio: str | list[str] | None = None


class _PriceSpec(BaseModel):
    """One ``[[price]]`` table of prices.toml."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str
    match: Literal["exact", "prefix"] = "exact"
    unit: Unit
    usd: float = Field(ge=0)
    tiers: list[_TierSpec] = Field(default_factory=list)
    default_seconds: int | None = Field(default=None, gt=0)
    source: str
    read: str
    via: str | None = None
    note: str | None = None


class _ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failed: Literal["free"] | None = None
    failed_source: str | None = None


class _TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    providers: dict[str, _ProviderSpec] = Field(default_factory=dict)
    price: list[_PriceSpec] = Field(default_factory=list)
    hardware: dict[str, dict[str, float | str]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Tier:
    conditions: tuple[tuple[str, tuple[str, ...]], ...]
    usd: float

    def matches(self, facts: dict[str, str]) -> bool:
        # Plain loops, no generators: three price lookups an attempt walk every tier.
        for key, values in self.conditions:
            if facts.get(key) not in values:
                return False
        return True


@dataclass(frozen=True)
class Price:
    """What one unit of an attempt's output costs, where that figure comes from, and when it was read."""

    unit: Unit
    usd: float
    source: str
    tiers: tuple[Tier, ...] = ()
    default_seconds: int | None = None
    read: str | None = None
    via: str | None = None
    note: str | None = None
    provider: str = ""
    model: str = ""
    match: str = "exact"

    def unit_usd(self, facts: dict[str, str]) -> float:
        """The unit price for a request with these facts (the first matching tier, else the base price)."""
        for tier in self.tiers:
            if tier.matches(facts):
                return tier.usd
        return self.usd

    def covers(self, model: str) -> bool:
        if self.match == "prefix":
            return model.startswith(self.model)
        return model == self.model or model.startswith((self.model + "/", self.model + ":"))


@dataclass(frozen=True)
class PriceTable:
    prices: tuple[Price, ...]
    #: provider -> whether it documents failed generations as free ("free"), with its source.
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: provider -> hardware name -> USD per prediction second.
    hardware: dict[str, dict[str, float]] = field(default_factory=dict)
    hardware_sources: dict[str, str] = field(default_factory=dict)
    #: ``prices`` per provider, in table order: a lookup (two per attempt) scans one vendor's rows, not all.
    _by_provider: dict[str, tuple[Price, ...]] = field(init=False, repr=False, compare=False)
    #: Answers of ``lookup`` so far: the table never changes, and attempts ask for the same few models.
    _found: dict[tuple[str, str], Price | None] = field(init=False, repr=False, compare=False)

    #: How many provider/model answers ``lookup`` remembers (configs name a few dozen; library callers any).
    MAX_REMEMBERED: ClassVar[int] = 4096

    def __post_init__(self) -> None:
        by_provider: dict[str, list[Price]] = {}
        for price in self.prices:
            by_provider.setdefault(price.provider, []).append(price)
        object.__setattr__(self, "_by_provider", {name: tuple(rows) for name, rows in by_provider.items()})
        object.__setattr__(self, "_found", {})

    def lookup(self, provider: str, model: str) -> Price | None:
        """The entry for ``provider``/``model``: an exact model first, else the longest covering prefix."""
        key = (provider, model)
        if key in self._found:
            return self._found[key]
        found = self._search(provider, model)
        if len(self._found) < self.MAX_REMEMBERED:
            self._found[key] = found
        return found

    def _search(self, provider: str, model: str) -> Price | None:
        candidates = [p for p in self._by_provider.get(provider, ()) if p.covers(model)]
        if provider == "azure-openai":  # deployments are usually named after the model they serve
            candidates += [p for p in self._by_provider.get("openai", ()) if p.covers(model)]
        return max(candidates, key=lambda p: (p.model == model, len(p.model)), default=None)

    def failure_billing(self, provider: str) -> tuple[str, str] | None:
        return self.failed.get(provider)


def _tier(spec: _TierSpec) -> Tier:
    conditions = []
    for key in TIER_KEYS:
        value = getattr(spec, key)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        conditions.append((key, tuple(str(v).lower() for v in values)))
    return Tier(tuple(conditions), spec.usd)


def parse_table(text: str) -> PriceTable:
    """Validate prices.toml text (raises ``pydantic.ValidationError`` or ``tomllib.TOMLDecodeError``)."""
    spec = _TableSpec.model_validate(tomllib.loads(text))
    prices = tuple(
        Price(unit=p.unit, usd=p.usd, source=p.source, tiers=tuple(_tier(t) for t in p.tiers),
              default_seconds=p.default_seconds, read=p.read, via=p.via, note=p.note, provider=p.provider,
              model=p.model, match=p.match)
        for p in spec.price
    )
    hardware: dict[str, dict[str, float]] = {}
    sources: dict[str, str] = {}
    for provider, table in spec.hardware.items():
        sources[provider] = f"{table.get('source')} (read {table.get('read')})"
        hardware[provider] = {k: float(v) for k, v in table.items() if k not in ("source", "read")}
    failed = {name: (p.failed, p.failed_source or "") for name, p in spec.providers.items() if p.failed}
    return PriceTable(prices=prices, failed=failed, hardware=hardware, hardware_sources=sources)


@functools.cache
def default_table() -> PriceTable:
    """The table shipped with the package (read once)."""
    return parse_table(resources.files("router.pricing").joinpath("prices.toml").read_text())


def load_table(path: Path | str | None = None) -> PriceTable:
    return default_table() if path is None else parse_table(Path(path).read_text())


class PriceOverride(BaseModel):
    """``price = {...}`` on a routes.toml attempt: a negotiated or otherwise known price. Exactly one of the
    ``per_*`` keys, or ``hardware`` (a Replicate hardware name, billed per prediction second)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float | None = Field(default=None, ge=0, description="USD per second of delivered video")
    per_video: float | None = Field(default=None, ge=0, description="USD per video")
    per_image: float | None = Field(default=None, ge=0, description="USD per image")
    per_megapixel: float | None = Field(default=None, ge=0, description="USD per megapixel (rounded up) of each image")
    per_prediction_second: float | None = Field(default=None, ge=0, description="USD per second of vendor compute")
    hardware: str | None = Field(default=None, min_length=1, description="Replicate hardware, e.g. gpu-l40s")
    #: For prediction-second prices: how long a run usually takes, so an estimate exists before the run.
    typical_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> PriceOverride:
        given = [name for name in _OVERRIDE_UNITS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_OVERRIDE_UNITS)} (got {', '.join(given) or 'none'})")
        if self.typical_seconds is not None and given[0] not in ("per_prediction_second", "hardware"):
            raise ValueError("typical_seconds only goes with per_prediction_second or hardware")
        return self

    def price(self, provider: str, table: PriceTable) -> Price:
        """As a ``Price``; a hardware name is looked up in the table (ValueError when it is unknown)."""
        if self.hardware is not None:
            rates = table.hardware.get(provider, {})
            if self.hardware not in rates:
                raise ValueError(f"unknown {provider} hardware {self.hardware!r}; known: {', '.join(sorted(rates)) or '(none)'}")
            return Price(unit="prediction_second", usd=rates[self.hardware], source=(
                f"{OVERRIDE_SOURCE}: {provider} hardware {self.hardware} at {table.hardware_sources[provider]}"),
                default_seconds=_seconds(self.typical_seconds))
        name = next(n for n in _OVERRIDE_UNITS if getattr(self, n) is not None)
        return Price(unit=_OVERRIDE_UNITS[name], usd=getattr(self, name), source=OVERRIDE_SOURCE,
                     default_seconds=_seconds(self.typical_seconds))


def _seconds(value: float | None) -> int | None:
    import math

    return math.ceil(value) if value else None


_OVERRIDE_UNITS: dict[str, Unit] = {
    "per_second": "second", "per_video": "video", "per_image": "image", "per_megapixel": "megapixel",
    "per_prediction_second": "prediction_second", "hardware": "prediction_second",
}


def override_problems(raw: Any, provider: str | None, table: PriceTable | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """Problems of a raw ``price`` table as ``(location inside it, message)``; [] when it is valid."""
    from pydantic import ValidationError

    try:
        override = PriceOverride.model_validate(raw)
    except ValidationError as exc:
        return [(tuple(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in exc.errors()]
    if override.hardware is not None:
        try:
            override.price(provider or "", table or default_table())
        except ValueError as exc:
            return [(("hardware",), str(exc))]
    return []
