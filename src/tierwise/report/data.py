"""The report's numbers, read from the workspace and aggregated by the engine (Ibis); no labels, no language.

The report's charts and pages (report/charts.py, report/pages/) turn these into captions and chart data.
Everything here returns plain Python numbers, lists and dicts, and never more rows than a chart has bars.
"""

from __future__ import annotations

import json
from typing import Any

import ibis.expr.types as ir

from tierwise.money import exact_total
from tierwise.workspace import Workspace

PREDICTIVE_COLUMNS = ("p_alive", "expected_purchases", "expected_spend", "clv_predicted")
P_ALIVE_BINS = 20
VALUE_BINS = 30


def _number(table: ir.Table, column: str) -> ir.BooleanValue:
    """The column holds a number: not NULL, and not NaN (which a float column may hold besides NULL)."""
    v = table[column]
    return v.notnull() & ~v.isnan() if v.type().is_floating() else v.notnull()


def histogram(table: ir.Table, column: str, bins: int, lo: float, hi: float) -> list[int]:
    """Customers per bin floor((value − lo) × bins / (hi − lo)) of the non-null values of `column`: `bins` equal
    bins over [lo, hi], values below or above (and hi itself) counted in the first or last bin."""
    present = table.filter(_number(table, column))
    scale = bins / (hi - lo)
    bucket = ((present[column] - lo) * scale).floor().cast("int64").clip(0, bins - 1)
    g = present.group_by(bin=bucket).aggregate(customers=present.count())
    found = {int(r["bin"]): int(r["customers"]) for r in g.to_pyarrow().to_pylist()}
    return [found.get(i, 0) for i in range(bins)]


def skewed_histogram(table: ir.Table, column: str, bins: int = VALUE_BINS) -> dict[str, Any] | None:
    """Customers with a positive `column` in `bins` bins up to its 99th percentile, the top 1% in the last bin.

    Lifetime values are heavily skewed: equal bins up to the maximum would put nearly everyone in the first.
    None when no customer has a positive value.
    """
    c = table.filter(_number(table, column) & (table[column] > 0))
    v = c[column]
    s = c.aggregate(n=c.count(), hi=v.quantile(0.99), mx=v.max(), median=v.quantile(0.5)).to_pyarrow().to_pylist()[0]
    if not s["n"]:
        return None
    hi, mx = float(s["hi"] or s["mx"]), float(s["mx"])
    if hi <= 0:
        hi = mx
    return {
        "n": int(s["n"]),
        "width": hi / bins,
        "customers": histogram(c, column, bins, 0.0, hi),
        "median": float(s["median"] or 0.0),
        "p99": hi,
        "max": mx,
    }


def predictive_totals(snap: ir.Table) -> dict[str, Any] | None:
    """Sums and means of the predictive-CLV columns over the buyers the run scored; None when it scored none."""
    if not set(PREDICTIVE_COLUMNS) <= set(snap.columns):
        return None
    s = snap
    scored = s.p_alive.notnull() | s.clv_predicted.notnull()
    a = (
        s.aggregate(
            scored=s.count(where=scored),
            clv=s.clv_predicted.sum(),
            purchases=s.expected_purchases.sum(),
            spend=s.expected_spend.mean(),
            p_alive=s.p_alive.mean(),
            likely_alive=s.count(where=s.p_alive >= 0.5),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    if not a["scored"]:
        return None
    return {
        "scored": int(a["scored"]),
        "clv": float(a["clv"] or 0.0),
        "purchases": float(a["purchases"] or 0.0),
        "spend": float(a["spend"] or 0.0),
        "p_alive": float(a["p_alive"] or 0.0),
        "likely_alive": int(a["likely_alive"] or 0),
    }


def p_alive_counts(snap: ir.Table, bins: int = P_ALIVE_BINS) -> list[int]:
    """Buyers per P(alive) bin floor(p_alive × bins) over [0, 1] (P(alive) = 1 is in the last bin)."""
    return histogram(snap, "p_alive", bins, 0.0, 1.0)


def latest_backtest(ws: Workspace) -> dict[str, Any] | None:
    """The result of the newest `tierwise backtest` (by created_at), or None: none made, or a workspace from before
    backtests were kept (no `backtests` table)."""
    if "backtests" not in ws.con.list_tables():
        return None
    t = ws.table("backtests")
    rows = t.order_by([t.created_at.desc(), t.backtest_id.desc()]).limit(1).to_pyarrow().to_pylist()
    if not rows:
        return None
    try:
        result = json.loads(rows[0]["result"])
    except (TypeError, ValueError):
        return None
    if not isinstance(result, dict) or not result.get("buckets"):
        return None
    result.setdefault("backtest_id", rows[0]["backtest_id"])
    result.setdefault("created_at", str(rows[0]["created_at"]))
    return result


def cluster_counts(snap: ir.Table) -> dict[int, dict[str, float]]:
    """Customers and revenue per cluster of the snapshot (customers not clustered left out); empty when the
    snapshot has no `cluster` column."""
    if "cluster" not in snap.columns:
        return {}
    s = snap.filter(snap.cluster.notnull())
    g = s.group_by(code=s.cluster).aggregate(customers=s.count(), revenue=exact_total(s.monetary))
    return {
        int(r["code"]): {"customers": int(r["customers"]), "revenue": float(r["revenue"] or 0.0)}
        for r in g.to_pyarrow().to_pylist()
    }


def learned_counts(ws: Workspace, snap: ir.Table, table: str | None) -> list[dict[str, Any]]:
    """Customers and revenue per learned class, from the snapshot's `learned_class` column when the run has one,
    else from the model's predictions table joined to the snapshot; empty when neither is there."""
    if "learned_class" in snap.columns:
        source = snap
    elif table and table in ws.con.list_tables():
        predictions = ws.table(table)
        if not {"customer_id", "learned_class"} <= set(predictions.columns):
            return []
        p = predictions.select("customer_id", "learned_class")
        source = snap.select("customer_id", "monetary").inner_join(p, "customer_id")
    else:
        return []
    s = source.filter(source.learned_class.notnull())
    g = s.group_by(code=s.learned_class).aggregate(customers=s.count(), revenue=exact_total(s.monetary))
    rows = g.order_by([g.customers.desc(), g.code]).to_pyarrow().to_pylist()
    return [
        {"code": str(r["code"]), "customers": int(r["customers"]), "revenue": float(r["revenue"] or 0.0)} for r in rows
    ]
