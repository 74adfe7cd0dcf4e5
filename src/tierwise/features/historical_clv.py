"""Historical CLV (历史客户终身价值): the margin a customer has already brought, discounted by its age."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir


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
