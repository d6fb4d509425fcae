"""Prices and costs: the shipped price table, per-attempt estimates before a call and charged costs after."""

from router.pricing.cost import Quote, chain_costs, charged, counted_cost, estimate, failed_cost, price_for
from router.pricing.table import Price, PriceOverride, PriceTable, default_table, load_table

__all__ = ["Price", "PriceOverride", "PriceTable", "Quote", "chain_costs", "charged", "counted_cost", "default_table", "estimate", "failed_cost",
           "load_table", "price_for"]
