"""ABC classification (ABC分类法, Pareto / 二八法则) by revenue or by profit, and the Pareto curve.

Customers are sorted by value, largest first; a customer's cumulative share is the value of every customer
worth at least as much, over the total. Cumulative share ≤ a_cutoff (80%) → A 关键客户, ≤ b_cutoff (95%) →
B 主要客户, the rest C 普通客户. Customers worth the same share one cumulative figure (the one including all of
them), so ties always land in the same class, whatever the row order. Customers with no positive value
(prospects, net returns) are C and do not count towards the total.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def add_abc(t: ir.Table, *, value: str = "monetary", a_cutoff: float = 0.80, b_cutoff: float = 0.95) -> ir.Table:
    """Add abc_cum_share (0–1, NULL for non-positive values) and abc_class (A/B/C)."""
    if not 0 < a_cutoff < b_cutoff <= 1:
        raise ValueError(f"ABC cut-offs must satisfy 0 < A < B ≤ 1, got A={a_cutoff}, B={b_cutoff}")
    positive = t[value] > 0
    counted = ibis.ifelse(positive, t[value], ibis.null("float64"))
    # A RANGE frame includes every peer of the current row: customers worth the same share one figure.
    at_least_as_much = ibis.window(order_by=ibis.desc(t[value]), range=(None, 0))
    share = ibis.ifelse(positive, counted.sum().over(at_least_as_much) / counted.sum().over(), ibis.null("float64"))
    t = t.mutate(abc_cum_share=share)
    share = t.abc_cum_share
    return t.mutate(
        abc_class=ibis.cases(
            (share.isnull(), "C"),
            (share <= a_cutoff + 1e-12, "A"),
            (share <= b_cutoff + 1e-12, "B"),
            else_="C",
        )
    )


def pareto_curve(t: ir.Table, *, value: str = "monetary", points: int = 20) -> list[dict[str, float]]:
    """Share of value held by the top k/points of customers, k = 0..points (the data of the Pareto chart)."""
    n = int(t.count().execute())
    ranked = t.mutate(_x=t[value].fill_null(0).clip(lower=0))
    ranked = ranked.mutate(_rank=ibis.row_number().over(order_by=[ibis.desc(ranked._x)]) + 1)
    total = float(ranked._x.sum().execute() or 0.0)
    cum = ranked.mutate(_cum=ranked._x.cumsum(order_by=ranked._rank)).select("_rank", "_cum")
    wanted = [round(n * k / points) for k in range(points + 1)]
    rows = {
        r["_rank"]: r["_cum"] for r in cum.filter(cum._rank.isin([w for w in wanted if w > 0])).to_pyarrow().to_pylist()
    }
    return [
        {"customer_share": k / points, "value_share": (rows.get(w, 0.0) / total) if total and w else 0.0}
        for k, w in enumerate(wanted)
    ]
