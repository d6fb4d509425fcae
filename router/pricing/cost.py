"""What an attempt is expected to cost before it is sent, and what it was charged after it ended.

The estimate comes from the request (duration, resolution, count, size). The charged figure uses what the
vendor reports where it reports units (``provider_metadata["billable_units"]``: fal's ``x-fal-billable-units``;
``provider_metadata["predict_time"]``: Replicate's ``metrics.predict_time`` for hardware-priced models), else the
price applied to what was delivered (the video's real duration, the number of images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from router.errors import ConfigurationError
from router.models import (
    AnyConfig,
    AnyRequest,
    AnyResponse,
    AttemptMetadata,
    ImageGenerationRequest,
    VideoGenerationRequest,
)
from router.pricing.table import Price, PriceOverride, PriceTable, default_table

#: fal bills megapixels of 2^20 pixels, rounded up; an image request without a size is taken as 1024x1024.
PIXELS_PER_MEGAPIXEL = 1024 * 1024
DEFAULT_IMAGE_PIXELS = 1024 * 1024
UNKNOWN = "unknown"


class Quote(NamedTuple):
    """An attempt's price and estimate. ``usd`` is None when the price or the units are unknown; ``unit_usd`` is
    the price's unit price for the request's facts (its tier), worked out once for the estimate and the charge. A
    tuple: one is made for every attempt."""

    price: Price | None
    usd: float | None
    facts: dict[str, str]
    unit_usd: float = 0.0

    @property
    def source(self) -> str:
        return self.price.source if self.price is not None else UNKNOWN


def price_for(config: AnyConfig, table: PriceTable | None = None) -> Price | None:
    """The attempt's price: its routes.toml override, else the table's entry, else None (unknown)."""
    table = table or default_table()
    raw = config.provider_config.get("price")
    if raw is not None:
        try:
            return PriceOverride.model_validate(raw).price(config.provider, table)
        except ValueError as exc:  # routes.toml validates overrides; a library config may not have
            raise ConfigurationError(f"provider_config price is invalid: {exc}") from exc
    return table.lookup(config.provider, config.model)


def request_facts(request: AnyRequest) -> dict[str, str]:
    """The request fields tiers may depend on, as lower-case strings (unset fields are absent)."""
    fields = request.__dict__  # pydantic keeps field values here; a getattr of a field the kind lacks would raise
    values: dict[str, Any] = {
        "resolution": fields.get("resolution"),
        "audio": fields.get("generate_audio"),
        "quality": fields.get("quality"),
        "size": fields.get("size"),
        "aspect_ratio": request.aspect_ratio,
    }
    return {key: str(value).lower() for key, value in values.items() if value is not None}


def estimate(config: AnyConfig, request: AnyRequest, table: PriceTable | None = None) -> Quote:
    """The attempt's expected cost from the request alone (before any call)."""
    price = price_for(config, table)
    facts = request_facts(request)
    if price is None:
        return Quote(None, None, facts)
    units = _requested_units(price, request)
    unit_usd = price.unit_usd(facts)
    usd = None if units is None else _round(units * unit_usd)
    return Quote(price, usd, facts, unit_usd)


def charged(quote: Quote, request: AnyRequest, response: AnyResponse) -> float | None:
    """What a successful attempt cost: vendor-reported units first, else the price applied to what was
    delivered. None when the price (or, for compute-priced models, the vendor's compute time) is unknown."""
    price = quote.price
    if price is None:
        return None
    unit_usd = quote.unit_usd
    meta = response.provider_metadata
    billable = _number(meta.get("billable_units"))
    if billable is not None:
        return _round(billable * unit_usd)
    if price.unit == "prediction_second":
        seconds = _number(meta.get("predict_time"))
        return None if seconds is None else _round(seconds * unit_usd)
    units = _delivered_units(price, request, response)
    return None if units is None else _round(units * unit_usd)


def failed_cost(provider: str, sent: bool, error_raw: dict[str, Any] | None, quote: Quote | None,
                table: PriceTable | None = None) -> float | None:
    """What a failed attempt cost: 0 when it was never sent or the vendor documents failures as free; a
    compute-priced model's reported compute time when the failure reports one; else unknown (None)."""
    if not sent:
        return 0.0
    table = table or default_table()
    if table.failure_billing(provider) is not None:
        return 0.0
    if quote is not None and quote.price is not None and quote.price.unit == "prediction_second" and error_raw:
        seconds = _number((error_raw.get("metrics") or {}).get("predict_time"))
        if seconds is not None:
            return _round(seconds * quote.unit_usd)
    return None


def counted_cost(attempt: AttemptMetadata) -> tuple[float | None, str]:
    """What an attempt counts as having cost (metrics, budgets): ``(usd, basis)``, the charged cost
    (``charged``), else the estimate of a success whose charge is unknown (``estimated``), else nothing."""
    if attempt.cost_usd is not None:
        return attempt.cost_usd, "charged"
    if attempt.status == "success":
        return attempt.estimated_cost_usd, "estimated"
    return None, "charged"


def chain_costs(attempts: Sequence[AttemptMetadata], successful: int | None) -> tuple[float | None, float | None]:
    """A chain's ``(estimated_cost_usd, total_cost_usd)``: the estimate of the attempt that produced the result
    (of the last attempt sent when none did), and the known charged costs summed (None when none is known)."""
    costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
    sent = [a for a in attempts if a.status != "skipped"]
    decisive = attempts[successful - 1] if successful else (sent[-1] if sent else None)
    return (decisive.estimated_cost_usd if decisive else None), (_round(sum(costs)) if costs else None)


def _requested_units(price: Price, request: AnyRequest) -> float | None:
    if isinstance(request, VideoGenerationRequest):
        count = request.number_of_videos
        if price.unit == "second":
            seconds = request.duration_seconds or price.default_seconds
            return None if seconds is None else float(seconds * count)
        if price.unit == "video":
            return float(count)
        if price.unit == "prediction_second":
            return None if price.default_seconds is None else float(price.default_seconds)
        return None
    assert isinstance(request, ImageGenerationRequest)
    count = request.n or 1
    if price.unit in ("image", "video"):
        return float(count)
    if price.unit == "megapixel":
        return float(_megapixels(request.size) * count)
    if price.unit == "prediction_second":
        return None if price.default_seconds is None else float(price.default_seconds)
    return None


def _delivered_units(price: Price, request: AnyRequest, response: AnyResponse) -> float | None:
    if isinstance(request, VideoGenerationRequest):
        count = request.number_of_videos
        duration = getattr(response, "duration", None)
        if price.unit == "second" and duration:
            return float(duration) * count
        return _requested_units(price, request)
    images = len(getattr(response, "images", []) or [])
    if price.unit in ("image", "video"):
        return float(images)
    if price.unit == "megapixel":
        return float(_megapixels(getattr(request, "size", None)) * images)
    return _requested_units(price, request)


def _megapixels(size: str | None) -> int:
    pixels = DEFAULT_IMAGE_PIXELS
    if size and "x" in size:
        width, height = size.split("x")
        pixels = int(width) * int(height)
    return max(1, math.ceil(pixels / PIXELS_PER_MEGAPIXEL))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _round(usd: float) -> float:
    return round(usd, 6)
