"""Value tiers (高/中/低价值客户): high, medium and low by the customer's share of the buyer base.

A buyer's position is the share of buyers worth at most as much (cumulative distribution, so equal values
share a tier). The top `high_share` of buyers (20%) are high, the next `medium_share` (30%) medium, the rest
low; customers who never bought are prospects. By default the value is net revenue in the window; profit or,
once predictive CLV exists, predicted value can be used instead.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def add_value_tier(
    t: ir.Table,
    *,
    value: str = "monetary",
    high_share: float = 0.20,
    medium_share: float = 0.30,
    buyer: str = "recency_days",
) -> ir.Table:
    if not (high_share > 0 and medium_share >= 0 and high_share + medium_share <= 1):
        raise ValueError(
            f"value tier shares must be positive and add up to at most 1, got {high_share}, {medium_share}"
        )
    t = t.mutate(_buyer=t[buyer].notnull())
    position = ibis.cume_dist().over(group_by=t._buyer, order_by=t[value].fill_null(0))
    t = t.mutate(_position=position)
    # Buyers whose cumulative share is above 1 − high_share are in the top high_share.
    tier = ibis.cases(
        (~t._buyer, "prospect"),
        (t._position > 1 - high_share + 1e-12, "high"),
        (t._position > 1 - high_share - medium_share + 1e-12, "medium"),
        else_="low",
    )
    return t.mutate(value_tier=tier).drop("_buyer", "_position")
