"""The one set of headline figures of a run, aggregated by the engine in one query.

The report's key-figure cards (report/pages/key_figures.py) and the dashboard's KPI cards with their change since
the previous run (web/services/overview.py) both read these, so the two always show the same numbers.
"""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.money import exact_total

# Figures that count customers (ints); the others are amounts, means or rates (floats).
COUNTS = frozenset({"customers", "buyers", "grade_a", "abc_a", "active", "at_risk", "churned", "overdue_customers"})
ACTIVE_STAGES = ("new", "active", "mature")


def headline_figures(snap: ir.Table) -> dict[str, int | float | None]:
    """The figures the snapshot has columns for (runs made by older versions lack some); None: no value (a mean
    over no customer, a total of no values).

    customers, buyers (have bought); revenue, profit; grade_a (grade A); abc_a, abc_a_revenue (ABC class A and
    their revenue); avg_score (mean composite score); active (new, active or mature), at_risk, churned (lifecycle
    stages); clv_historical, clv_predicted (totals); overdue (total), overdue_customers (with an overdue amount);
    on_time_rate, satisfaction (means over customers)."""
    row = snap.aggregate(**_aggregates(snap)).to_pyarrow().to_pylist()[0]
    out: dict[str, int | float | None] = {}
    for key, value in row.items():
        if value is None:
            out[key] = None
        elif key in COUNTS:
            out[key] = int(value)
        else:
            out[key] = float(value)
    return out


def _aggregates(s: ir.Table) -> dict[str, Any]:
    cols = set(s.columns)
    aggs: dict[str, Any] = {
        "customers": s.count(),
        "buyers": s.count(where=s.recency_days.notnull()),
        # Totals people compare with their books: added up exactly (tierwise.money).
        "revenue": exact_total(s.monetary),
    }
    if "profit" in cols:
        aggs["profit"] = exact_total(s.profit)
    if "grade" in cols:
        aggs["grade_a"] = s.count(where=s.grade == "A")
    if "abc_class" in cols:
        aggs["abc_a"] = s.count(where=s.abc_class == "A")
        aggs["abc_a_revenue"] = exact_total(s.monetary, where=s.abc_class == "A")
    if "composite_score" in cols:
        aggs["avg_score"] = s.composite_score.mean()
    if "lifecycle_stage" in cols:
        aggs["active"] = s.count(where=s.lifecycle_stage.isin(ACTIVE_STAGES))
        aggs["at_risk"] = s.count(where=s.lifecycle_stage == "at_risk")
        aggs["churned"] = s.count(where=s.lifecycle_stage == "churned")
    if "clv_historical" in cols:
        aggs["clv_historical"] = s.clv_historical.sum()
    if "clv_predicted" in cols:
        aggs["clv_predicted"] = s.clv_predicted.sum()
    if "overdue_amount" in cols:
        aggs["overdue"] = exact_total(s.overdue_amount)
        aggs["overdue_customers"] = s.count(where=s.overdue_amount > 0)
    if "on_time_rate" in cols:
        aggs["on_time_rate"] = s.on_time_rate.mean()
    if "satisfaction" in cols:
        aggs["satisfaction"] = s.satisfaction.mean()
    return aggs
