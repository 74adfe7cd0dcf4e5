"""Summaries of a run for people (`tierwise show`, the report, the dashboard): class sizes with revenue and
shares, the top customers, labelled in Chinese or English."""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.i18n import label
from tierwise.money import exact_total


def summarise(snapshot: ir.Table, column: str, language: str) -> list[dict[str, Any]]:
    total = snapshot.aggregate(n=snapshot.count(), revenue=exact_total(snapshot.monetary)).to_pyarrow().to_pylist()[0]
    grouped = snapshot.group_by(column).aggregate(customers=snapshot.count(), revenue=exact_total(snapshot.monetary))
    out = []
    for r in grouped.order_by(grouped.revenue.desc()).to_pyarrow().to_pylist():
        out.append(
            {
                "code": r[column],
                "label": label(column, r[column], language),
                "customers": int(r["customers"]),
                "customer_share": r["customers"] / total["n"] if total["n"] else 0.0,
                "revenue": float(r["revenue"] or 0.0),
                "revenue_share": float(r["revenue"] or 0.0) / float(total["revenue"]) if total["revenue"] else 0.0,
            }
        )
    return out


def top_customers(snapshot: ir.Table, n: int, language: str) -> list[dict[str, Any]]:
    """The first n customers by priority (runs before the composite grade: by revenue)."""
    cols = ["customer_id", "name", "monetary", "frequency", "recency_days", "rfm_segment", "abc_class"]
    cols += [c for c in ("priority_rank", "grade", "composite_score", "lifecycle_stage") if c in snapshot.columns]
    if "priority_rank" in snapshot.columns:
        ranked = snapshot.filter(snapshot.priority_rank.notnull()).order_by(snapshot.priority_rank)
    else:
        ranked = snapshot.order_by([snapshot.monetary.desc(), snapshot.customer_id])
    out = ranked.limit(n).select(*cols).to_pyarrow().to_pylist()
    for r in out:
        for column in ("rfm_segment", "abc_class", "lifecycle_stage", "grade"):
            if column in r:
                r[f"{column}_label"] = label(column, r[column], language)
    return out


def class8_reference(snapshot: ir.Table, basis: str) -> dict[str, float]:
    """The buyers' recency, frequency and monetary `basis` (mean or median): the eight classes' dividing line."""
    buyers = snapshot.filter(snapshot.recency_days.notnull())
    agg = buyers.aggregate(
        r=getattr(buyers.recency_days, basis)(),
        f=getattr(buyers.frequency, basis)(),
        m=getattr(buyers.monetary, basis)(),
    )
    return dict(agg.to_pyarrow().to_pylist()[0])
