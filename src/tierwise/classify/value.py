"""Value tiers (高/中/低价值客户): high, medium and low by the customer's share of the buyer base.

A buyer's position is the share of buyers worth at most as much (cumulative distribution, so equal values
share a tier). The top `high_share` of buyers (20%) are high, the next `medium_share` (30%) medium, the rest
low; customers who never bought are prospects. By default the value is net revenue in the window; profit or,
once predictive CLV exists, predicted value can be used instead.
"""

from __future__ import annotations

import datetime as dt

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


def historical_clv(
    orders: ir.Table,
    as_of: dt.date,
    *,
    discount_rate: float = 0.10,
    period_days: int = 365,
    missing_cost_margin: float = 1.0,
) -> ir.Table:
    """customer_id, clv_historical: CLV = Σ_t (R_t − C_t) / (1 + d)^t over the customer's whole history.

    Period t counts back from the as-of date: t = 0 is the `period_days` ending the day before it, t = 1 the
    period before, and so on, so margin earned long ago counts for less. R_t is net revenue (returns
    subtracted), C_t cost; an order line without cost counts `missing_cost_margin` × its revenue as margin.
    """
    if discount_rate <= -1 or period_days < 1 or not 0 <= missing_cost_margin <= 1:
        raise ValueError("CLV needs discount_rate > -1, period_days ≥ 1 and 0 ≤ missing_cost_margin ≤ 1")
    as_of_lit = ibis.date(as_of.isoformat())
    day = orders.order_date.date()
    o = orders.filter(day < as_of_lit)
    age = as_of_lit.delta(o.order_date.date(), unit="day") - 1
    period = (age // period_days).cast("int64")
    margin = o.amount - o.cost.coalesce(o.amount * (1 - missing_cost_margin))
    o = o.mutate(_period=period, _margin=margin)
    # Each period's margin summed in decimal where the costs are known (tierwise.money), then a float to discount.
    per_period = o.group_by(["customer_id", "_period"]).aggregate(_m=o._margin.sum().cast("float64"))
    discounted = per_period._m / (1 + discount_rate) ** per_period._period
    return per_period.group_by("customer_id").aggregate(clv_historical=discounted.sum())
