"""Main industry (主营行业) of each customer: the industry bringing the largest share of its revenue.

B2B customers often buy for several lines of business; order lines carry an industry code when the source
system records it. The main industry is the one with the largest net sales revenue in the window; equal
shares are settled by the configured priority list (`features.industry_priority`, earlier wins), then by
code. Customers whose orders carry no industry take it from their customer record; when that lists several
codes (separated by , ; 、 / |), the priority list chooses, else the first one listed.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

_SEPARATORS = r"\s*[,;，；、/|]\s*"


def _priority(code: ir.StringValue, priority: list[str]) -> ir.IntegerValue:
    """Position in the priority list; codes not in it come after every listed one."""
    if not priority:
        return ibis.literal(0)
    position = ibis.literal(priority, type="array<string>").index(code)
    return ibis.ifelse(position < 0, len(priority), position)


def main_industry(
    customers: ir.Table,
    orders: ir.Table,
    as_of: dt.date,
    window_days: int = 365,
    priority: list[str] | None = None,
) -> ir.Table:
    """customer_id, main_industry, main_industry_share (NULL when taken from the customer record), for the
    customers that have an industry (the measures join it to every customer; a row for each of millions of
    customers without one made that join cost more than the rest of the measures' joins)."""
    priority = list(priority or [])
    as_of_lit = ibis.date(as_of.isoformat())
    start_lit = ibis.date((as_of - dt.timedelta(days=window_days)).isoformat())
    o = orders.filter(
        orders.industry_code.notnull()
        & ~orders.is_return.fill_null(False)
        & (orders.order_date.date() < as_of_lit)
        & (orders.order_date.date() >= start_lit)
    )
    per = o.group_by(["customer_id", "industry_code"]).aggregate(_rev=o.amount.sum())
    per = per.mutate(_total=per._rev.sum().over(group_by="customer_id"), _prio=_priority(per.industry_code, priority))
    per = per.mutate(
        _rank=ibis.row_number().over(
            group_by="customer_id", order_by=[ibis.desc(per._rev), per._prio, per.industry_code]
        )
    )
    from_orders = per.filter(per._rank == 0).select(
        "customer_id",
        _order_industry="industry_code",
        main_industry_share=ibis.ifelse(per._total > 0, per._rev / per._total, ibis.null("float64")),
    )

    listed = customers.filter(customers.industry_code.notnull()).select(
        "customer_id", _codes=customers.industry_code.strip().re_split(_SEPARATORS)
    )
    listed = listed.select("customer_id", "_codes", _code=listed._codes.unnest())
    listed = listed.filter(listed._code != "")
    listed = listed.mutate(
        _rank=ibis.row_number().over(
            group_by="customer_id", order_by=[_priority(listed._code, priority), listed._codes.index(listed._code)]
        )
    )
    from_record = listed.filter(listed._rank == 0).select("customer_id", _record_industry="_code")

    t = from_orders.outer_join(from_record, "customer_id")
    t = t.mutate(customer_id=t.customer_id.coalesce(t.customer_id_right)).drop("customer_id_right")
    return t.select(
        "customer_id",
        main_industry=t._order_industry.coalesce(t._record_industry),
        main_industry_share=t.main_industry_share,
    )
