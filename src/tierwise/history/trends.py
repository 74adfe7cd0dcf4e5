"""Trends over all runs: class sizes per run, customers new to the best class per run, and one customer's
timeline of classes (current and previous class, and since when — as Klaviyo shows RFM groups).

A history is made of one run per as-of date: when a date has several runs (re-run after a settings change),
the latest made counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.history.compare import COMPARABLE, ORDERS, new_in_class
from tierwise.i18n import label
from tierwise.store.compat import with_columns
from tierwise.store.runs import runs_by_date
from tierwise.workspace import Workspace

TIMELINE_COLUMNS = ["grade", "rfm_segment", "rfm_class8", "abc_class", "value_tier", "lifecycle_stage", "loyalty"]


def trends(ws: Workspace, column: str = "grade", language: str = "zh") -> dict[str, Any]:
    """Per run (one per as-of date, oldest first): customers and revenue per class of `column`, and how many
    customers entered the best class since the run before."""
    runs = runs_by_date(ws)
    if not runs:
        raise UserError("no run yet; run the main job first with 'tierwise run' (or 'tierwise backfill')")
    out_runs: list[dict[str, Any]] = []
    classes: set[str | None] = set()
    previous = None
    order = ORDERS.get(column)
    for r in runs:
        snap = ws.table(str(r["snapshot_table"]))
        if column not in snap.columns:
            raise UserError(
                f"--by {column}: run {r['run_id']} has no such column; choose one of {', '.join(COMPARABLE)}"
            )
        g = snap.group_by(code=snap[column].cast("string")).aggregate(
            customers=snap.count(), revenue=snap.monetary.sum()
        )
        sizes = {row["code"]: row for row in g.to_pyarrow().to_pylist()}
        classes.update(sizes)
        entry: dict[str, Any] = {
            "run_id": r["run_id"],
            "as_of": str(r["as_of"]),
            "customers": int(r["customers"]),
            "sizes": {str(k): int(v["customers"]) for k, v in sizes.items()},
            "revenue": {str(k): float(v["revenue"] or 0.0) for k, v in sizes.items()},
        }
        if order:
            entry["new_in_top"] = None if previous is None else new_in_class(previous, snap, column, order[0])
        out_runs.append(entry)
        previous = snap
    rank = {c: i for i, c in enumerate(order or [])}
    ordered = sorted(classes, key=lambda c: (rank.get(c, len(rank)) if c is not None else len(rank) + 1, str(c)))
    return {
        "column": column,
        "classes": [{"code": c, "label": label(column, c, language)} for c in ordered],
        "top_class": order[0] if order else None,
        "runs": out_runs,
    }


def timeline_query(ws: Workspace, runs: list[dict[str, Any]], customer_id: ir.Value) -> ir.Table:
    """One row per run (of `runs`) that has the customer: the run, its as-of date and the timeline's classes."""
    parts = []
    for r in runs:
        snap = with_columns(ws.table(str(r["snapshot_table"])), *TIMELINE_COLUMNS, "composite_score", "priority_rank")
        cols = {c: snap[c].cast("string") for c in TIMELINE_COLUMNS}
        parts.append(
            snap.filter(snap.customer_id == customer_id).select(
                run_id=ibis.literal(str(r["run_id"])),
                as_of=ibis.literal(str(r["as_of"])),
                composite_score=snap.composite_score.cast("float64"),
                priority_rank=snap.priority_rank.cast("int64"),
                monetary=snap.monetary.cast("float64"),
                **cols,
            )
        )
    return ibis.union(*parts).order_by("as_of") if len(parts) > 1 else parts[0]


def timeline(
    ws: Workspace,
    customer_id: str,
    language: str = "zh",
    *,
    runs: list[dict[str, Any]] | None = None,
    fetch: Callable[[Callable[[ir.Value], ir.Table]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The customer's classes in every run (one per as-of date), and per class column: current, previous
    (the last different class) and the as-of date from which the current class has held. `runs`: the runs
    (runs_by_date) when the caller keeps them; `fetch`: runs a query built from the customer id and returns
    its rows (the dashboard prepares it once)."""
    runs = runs_by_date(ws) if runs is None else runs
    if not runs:
        raise UserError("no run yet; run the main job first with 'tierwise run' (or 'tierwise backfill')")

    def build(key: ir.Value) -> ir.Table:
        return timeline_query(ws, runs, key)

    rows = fetch(build) if fetch is not None else build(ibis.literal(customer_id)).to_pyarrow().to_pylist()
    if not rows:
        raise UserError(f"no customer '{customer_id}' in any run; check the id with 'tierwise show'")
    present = {row["as_of"] for row in rows}
    history = []
    for r in runs:  # runs where the customer was missing appear as gaps
        if str(r["as_of"]) not in present:
            history.append({"run_id": r["run_id"], "as_of": str(r["as_of"]), "present": False})
    history += [{**row, "present": True} for row in rows]
    history.sort(key=lambda h: h["as_of"])
    current: dict[str, Any] = {}
    for column in TIMELINE_COLUMNS:
        seen = [h for h in history if h["present"]]
        now = seen[-1][column]
        since = seen[-1]["as_of"]
        before = None
        changed = False
        for h in reversed(seen[:-1]):
            if h[column] != now:
                before, changed = h[column], True
                break
            since = h["as_of"]
        current[column] = {
            "current": now,
            "current_label": label(column, now, language),
            "previous": before,
            "previous_label": label(column, before, language) if changed else None,
            "since": since,
            "changed": changed,
        }
    return {"customer_id": customer_id, "runs": history, "classes": current}
