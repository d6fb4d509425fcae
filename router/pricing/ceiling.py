"""Cost ceilings: ``max_cost_usd`` per generation, from the route and lowered (never raised) by a request.

The ceiling travels in each attempt config's ``provider_config["max_cost_usd"]``, so a job's persisted chain
keeps the ceiling it was accepted with; the orchestrator asks ``ceiling_reason`` before any call.
"""

from __future__ import annotations

from collections.abc import Sequence

from router.models import AnyConfig
from router.pricing.cost import Quote

KEY = "max_cost_usd"


def ceiling_of(config: AnyConfig) -> float | None:
    value = config.provider_config.get(KEY)
    return float(value) if value is not None else None


def lowered(chain: Sequence[AnyConfig], usd: float | None) -> tuple[AnyConfig, ...]:
    """The chain with its ceiling lowered to ``usd`` where that is lower (a request never raises it)."""
    if usd is None:
        return tuple(chain)
    out = []
    for config in chain:
        current = ceiling_of(config)
        if current is not None and current <= usd:
            out.append(config)
        else:
            out.append(config.model_copy(update={"provider_config": {**config.provider_config, KEY: usd}}))
    return tuple(out)


def ceiling_reason(config: AnyConfig, quote: Quote) -> str | None:
    """Why this attempt must be skipped under its ceiling, or None when it may run."""
    ceiling = ceiling_of(config)
    if ceiling is None:
        return None
    if quote.usd is None:
        what = "price" if quote.price is None else "estimate (the request lacks what its price needs)"
        return (f"{config.provider}/{config.model} has no known {what}; skipped under max_cost_usd={ceiling:g} "
                "(set price = {...} on the attempt)")
    if quote.usd > ceiling:
        return f"estimated ${quote.usd:g} exceeds max_cost_usd=${ceiling:g}; skipped before any call"
    return None
