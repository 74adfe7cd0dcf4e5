"""Summaries of a run for people: class sizes, revenue and shares, labelled in Chinese or English."""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.classify import abc, lifecycle, rfm, value
from tierwise.errors import UserError
from tierwise.workspace import Workspace

# column → {code: (English, Chinese)}
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "rfm_segment": rfm.SEGMENT_LABELS,
    "abc_class": abc.LABELS,
    "lifecycle_stage": lifecycle.LABELS,
    "value_tier": value.LABELS,
    "rfm_class8": {zh: (en, zh) for zh, en in rfm.CLASS8_EN.items()},
}
SUMMARIES = ["rfm_segment", "rfm_class8", "abc_class", "value_tier", "lifecycle_stage"]


def label(column: str, code: object, language: str) -> str:
    if code is None:
        return "—"
    en, zh = LABELS.get(column, {}).get(str(code), (str(code), str(code)))
    return zh if language == "zh" else en


def latest_snapshot(ws: Workspace, run_id: str | None = None) -> tuple[dict[str, Any], ir.Table]:
    runs = ws.table("runs")
    if run_id:
        runs = runs.filter(runs.run_id == run_id)
    rows = runs.order_by(runs.created_at.desc()).limit(1).drop("config").to_pyarrow().to_pylist()
    if not rows:
        if run_id:
            raise UserError(f"no run '{run_id}'; list them with 'tierwise runs'")
        raise UserError("no run yet; run the main job first with 'tierwise run'")
    return rows[0], ws.table(str(rows[0]["snapshot_table"]))


def summarise(snapshot: ir.Table, column: str, language: str) -> list[dict[str, Any]]:
    total = snapshot.aggregate(n=snapshot.count(), revenue=snapshot.monetary.sum()).to_pyarrow().to_pylist()[0]
    grouped = snapshot.group_by(column).aggregate(customers=snapshot.count(), revenue=snapshot.monetary.sum())
    out = []
    for r in grouped.order_by(grouped.revenue.desc()).to_pyarrow().to_pylist():
        out.append(
            {
                "code": r[column],
                "label": label(column, r[column], language),
                "customers": int(r["customers"]),
                "customer_share": r["customers"] / total["n"] if total["n"] else 0.0,
                "revenue": float(r["revenue"] or 0.0),
                "revenue_share": float(r["revenue"] or 0.0) / total["revenue"] if total["revenue"] else 0.0,
            }
        )
    return out


def top_customers(snapshot: ir.Table, n: int, language: str) -> list[dict[str, Any]]:
    cols = [
        "customer_id",
        "name",
        "monetary",
        "frequency",
        "recency_days",
        "rfm_segment",
        "abc_class",
        "lifecycle_stage",
    ]
    rows = snapshot.order_by([snapshot.monetary.desc(), snapshot.customer_id]).limit(n).select(*cols)
    out = rows.to_pyarrow().to_pylist()
    for r in out:
        for column in ("rfm_segment", "abc_class", "lifecycle_stage"):
            r[f"{column}_label"] = label(column, r[column], language)
    return out
