"""Compare two runs: migration between classes, upgrades and downgrades, entries and exits, and why each
moved customer moved (which features changed and which thresholds they crossed, with each run's own
settings and effective cut-offs).

Every class column has an order from best to worst (ORDERS) so that a move can be called an upgrade or a
downgrade; columns without one (clusters, tags) only "change". Customers without a class (prospects have no
grade) rank below every class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.classify.grade import GRADES
from tierwise.classify.rfm import CLASS8, PROSPECTS
from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.history.stability import effective_cutoffs
from tierwise.i18n import label
from tierwise.store.runs import list_runs, run_config, runs_by_date
from tierwise.workspace import Workspace

# Best first. RFM segments: by how valuable and how engaged the R×F cell is.
ORDERS: dict[str, list[str]] = {
    "grade": list(GRADES),
    "rfm_segment": [
        "champions",
        "loyal_customers",
        "potential_loyalists",
        "cant_lose_them",
        "new_customers",
        "promising",
        "need_attention",
        "at_risk",
        "about_to_sleep",
        "hibernating",
        PROSPECTS,
    ],
    "rfm_class8": list(CLASS8.values()),
    "abc_class": ["A", "B", "C"],
    "value_tier": ["high", "medium", "low", "prospect"],
    "lifecycle_stage": ["mature", "active", "new", "at_risk", "churned", "prospect"],
    "loyalty": ["loyal", "potential_loyal", "occasional", "lapsed", "prospect"],
}
COMPARABLE = [*ORDERS, "cluster_name"]


def direction(column: str, old: Any, new: Any) -> str:
    """stayed, upgrade, downgrade or changed (a column without an order)."""
    if old == new:
        return "stayed"
    order = ORDERS.get(column)
    if order is None:
        return "changed"

    def rank(v: Any) -> int:
        return order.index(v) if v in order else len(order)

    return "upgrade" if rank(new) < rank(old) else "downgrade" if rank(new) > rank(old) else "changed"


@dataclass
class RunView:
    meta: dict[str, Any]
    snapshot: ir.Table
    config: Config

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])


def open_run(ws: Workspace, meta: dict[str, Any]) -> RunView:
    return RunView(meta, ws.table(str(meta["snapshot_table"])), run_config(ws, str(meta["run_id"])))


def pick_runs(ws: Workspace, run_a: str | None, run_b: str | None) -> tuple[RunView, RunView]:
    """Run B (default: the latest) and run A (default: the latest run of the as-of date before B's; when all
    runs share one date, the run made before B)."""
    runs: list[dict[str, Any]] = list_runs(ws)
    by_id = {str(r["run_id"]): r for r in runs}
    for given in (run_a, run_b):
        if given is not None and given not in by_id:
            raise UserError(f"no run '{given}'; list them with 'tierwise runs'")
    if len(runs) < 2 and (run_a is None or run_b is None):
        raise UserError("compare needs two runs; make another with 'tierwise run' or 'tierwise backfill'")
    b = by_id[run_b] if run_b else runs[-1]
    if run_a:
        a = by_id[run_a]
    else:
        earlier = [r for r in runs if r["as_of"] < b["as_of"]]
        same_day = [r for r in runs[: runs.index(b)] if r["as_of"] == b["as_of"]]
        if not earlier and not same_day:
            raise UserError(f"no run before {b['run_id']}; name the runs to compare: tierwise compare RUN_A RUN_B")
        a = earlier[-1] if earlier else same_day[-1]
    return open_run(ws, a), open_run(ws, b)


def _check_column(column: str, *runs: RunView) -> None:
    for r in runs:
        if column not in r.snapshot.columns:
            raise UserError(f"--by {column}: run {r.run_id} has no such column; choose one of {', '.join(COMPARABLE)}")


def migration(a: ir.Table, b: ir.Table, column: str) -> list[dict[str, Any]]:
    """(from, to) cells with customers and revenue (monetary in run A and in run B); entries have from_present
    False, exits to_present False."""
    left = a.select(id_a=a.customer_id, cls_a=a[column].cast("string"), revenue_a=a.monetary)
    right = b.select(id_b=b.customer_id, cls_b=b[column].cast("string"), revenue_b=b.monetary)
    j = left.join(right, left.id_a == right.id_b, how="outer")
    grouped = j.group_by(in_a=j.id_a.notnull(), in_b=j.id_b.notnull(), cls_a=j.cls_a, cls_b=j.cls_b).aggregate(
        customers=j.count(), revenue_a=j.revenue_a.sum(), revenue_b=j.revenue_b.sum()
    )
    rows = grouped.to_pyarrow().to_pylist()
    out = []
    for r in rows:
        kind = "entry" if not r["in_a"] else "exit" if not r["in_b"] else direction(column, r["cls_a"], r["cls_b"])
        out.append(
            {
                "from": r["cls_a"] if r["in_a"] else None,
                "to": r["cls_b"] if r["in_b"] else None,
                "kind": kind,
                "customers": int(r["customers"]),
                "revenue_from": float(r["revenue_a"] or 0.0),
                "revenue_to": float(r["revenue_b"] or 0.0),
            }
        )
    order = ORDERS.get(column, [])

    def key(c: dict[str, Any]) -> tuple[int, int, str, int, str]:
        def pos(v: Any) -> int:
            return order.index(v) if v in order else len(order)

        return (c["kind"] == "entry", pos(c["from"]), str(c["from"]), pos(c["to"]), str(c["to"]))

    return sorted(out, key=key)


# ---------------------------------------------------------------- reasons


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"
    return str(v)


def _change(row_a: dict[str, Any], row_b: dict[str, Any], feature: str) -> str:
    return f"{feature} {_fmt(row_a.get(feature))} → {_fmt(row_b.get(feature))}"


def context(view: RunView, column: str) -> dict[str, Any]:
    """The thresholds of one run that a column's classes depend on (configured, or effective in that run)."""
    s, cfg = view.snapshot, view.config
    ctx: dict[str, Any] = {}
    if column == "grade" and "composite_score" in s.columns:
        graded = "grade_raw" if "grade_raw" in s.columns else "grade"
        cuts = effective_cutoffs(s, cfg.grade.method, cfg.grade.cutoffs, grade=graded)
        row = s.select(**{g: c for g, c in zip(GRADES, cuts, strict=False)}).limit(1).to_pyarrow().to_pylist()
        ctx["cutoffs"] = row[0] if row else {}
        ctx["method"] = cfg.grade.method
        ctx["indicators"] = [(i.name, i.label or i.name) for i in cfg.grade.indicators]
    if column == "rfm_segment":
        m = "monetary" if cfg.rfm.monetary == "total" else "avg_order_value"
        for score, feature in (("r_score", "recency_days"), ("f_score", "frequency"), ("m_score", m)):
            g = s.filter(s[score].notnull()).group_by(score).aggregate(lo=s[feature].min(), hi=s[feature].max())
            ctx[score] = {r[score]: (r["lo"], r["hi"]) for r in g.to_pyarrow().to_pylist()}
    if column == "rfm_class8":
        buyers = s.filter(s.recency_days.notnull())
        basis = cfg.rfm.class8_basis
        agg = buyers.aggregate(
            recency_days=getattr(buyers.recency_days, basis)(),
            frequency=getattr(buyers.frequency, basis)(),
            monetary=getattr(buyers.monetary, basis)(),
        )
        ctx["basis"], ctx["averages"] = basis, agg.to_pyarrow().to_pylist()[0]
    if column == "abc_class":
        ctx["a"], ctx["b"], ctx["by"] = cfg.abc.a_cutoff, cfg.abc.b_cutoff, cfg.abc.by
    if column == "value_tier":
        by = cfg.value.by
        g = s.group_by("value_tier").aggregate(lo=s[by].min())
        ctx["by"], ctx["lowest"] = by, {r["value_tier"]: r["lo"] for r in g.to_pyarrow().to_pylist()}
    if column in ("lifecycle_stage", "loyalty"):
        ctx["lifecycle"], ctx["loyalty"] = cfg.lifecycle, cfg.loyalty
    if column == "cluster_name":
        ctx["features"] = [f for f in cfg.cluster.features if f in s.columns]
    return ctx


def _grade_reasons(a: dict[str, Any], b: dict[str, Any], ca: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    old, new = a.get("composite_score"), b.get("composite_score")
    if new is None:
        return ["no purchase in the window any more: not graded"]
    out = []
    ga, gb = a.get("grade"), b.get("grade")
    cuts_a, cuts_b = ca.get("cutoffs", {}), cb.get("cutoffs", {})
    where = "effective (quota) " if cb.get("method") == "quotas" else ""
    if ga is None:
        out.append(f"composite_score {_fmt(new)}: graded for the first time")
    elif gb in GRADES and ga in GRADES:
        i, j = GRADES.index(ga), GRADES.index(gb)
        boundary = GRADES[j] if j < i else GRADES[j - 1]  # the cut-off reached (up) or lost (down)
        cut = cuts_b.get(boundary)
        verb = "rose above" if j < i else "fell below"
        text = f"composite_score {_fmt(old)} → {_fmt(new)}"
        if cut is not None:
            text += f" {verb} the {where}{boundary} cut-off {_fmt(cut)}"
            before = cuts_a.get(boundary)
            if before is not None and abs(before - cut) >= 0.05:
                text += f" (it was {_fmt(before)} in the earlier run)"
        out.append(text)
    if b.get("grade_held"):
        out.append(f"kept at {gb} by [stability]: the score alone says {b.get('grade_raw')}")
    moves = []
    for name, shown in cb.get("indicators", []):
        pa_, pb_ = a.get(f"contrib_{name}"), b.get(f"contrib_{name}")
        if pa_ is None or pb_ is None:
            continue
        sa, sb = a.get(f"score_{name}"), b.get(f"score_{name}")
        moves.append((abs(pb_ - pa_), f"{shown} score {_fmt(sa)} → {_fmt(sb)} ({pb_ - pa_:+.1f} points)"))
    out += [text for delta, text in sorted(moves, reverse=True)[:3] if delta >= 0.05]
    return out


def _score_reason(score: str, feature: str, unit: str, a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any]) -> str:
    text = f"{score} {_fmt(a.get(score))} → {_fmt(b.get(score))}: {feature} {_fmt(a.get(feature))} → " + _fmt(
        b.get(feature)
    )
    band = cb.get(score, {}).get(b.get(score))
    if band:
        text += f"{unit} ({score} {b.get(score)} covers {_fmt(band[0])}–{_fmt(band[1])}{unit} in this run)"
    return text


def _rfm_reasons(a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any], monetary: str) -> list[str]:
    if b.get("r_score") is None:
        return ["no purchase in the window any more: no RFM scores"]
    if a.get("r_score") is None:
        return [f"first purchase in the window: r_score {b['r_score']}, f_score {b['f_score']}"]
    out = []
    for score, feature, unit in (("r_score", "recency_days", " days"), ("f_score", "frequency", "")):
        if a.get(score) != b.get(score):
            out.append(_score_reason(score, feature, unit, a, b, cb))
    return out or [_change(a, b, "recency_days"), _change(a, b, "frequency")]


def _class8_reasons(a: dict[str, Any], b: dict[str, Any], ca: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    out = []
    sides = {"recency_days": ("recent", "not recent"), "frequency": ("high", "low"), "monetary": ("high", "low")}
    for feature, (yes, no) in sides.items():
        va, vb = a.get(feature), b.get(feature)
        ma, mb = ca.get("averages", {}).get(feature), cb.get("averages", {}).get(feature)
        if None in (va, vb, ma, mb):
            continue
        above = feature != "recency_days"
        side_a = (va > ma) if above else (va < ma)
        side_b = (vb > mb) if above else (vb < mb)
        if side_a != side_b:
            out.append(
                f"{feature} {_fmt(va)} → {_fmt(vb)} against the buyers' {cb['basis']} {_fmt(ma)} → {_fmt(mb)}: "
                f"now {yes if side_b else no}"
            )
    return out


def _abc_reasons(a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    sa, sb = a.get("abc_cum_share"), b.get("abc_cum_share")
    if sa is None or sb is None:
        return [_change(a, b, cb["by"])]
    cut, name = (cb["a"], "A") if (sa <= cb["a"]) != (sb <= cb["a"]) else (cb["b"], "B")
    return [
        f"cumulative {cb['by']} share {sa:.1%} → {sb:.1%} crossed the {name} cut-off {cut:.0%} "
        f"({cb['by']} {_fmt(a.get(cb['by']))} → {_fmt(b.get(cb['by']))})"
    ]


def _value_reasons(a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    by, tier = cb["by"], b.get("value_tier")
    lowest = cb["lowest"]
    text = f"{by} {_fmt(a.get(by))} → {_fmt(b.get(by))}"
    for t in ("high", "medium"):
        if lowest.get(t) is not None:
            text += f"; lowest {t} {_fmt(lowest[t])}"
    return [text + f" in this run → {tier}"]


def _lifecycle_reasons(a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    lc = cb["lifecycle"]
    if b.get("recency_days") is None:
        return ["no purchase any more in the window"]
    gap = b.get("expected_gap_days") or lc.default_gap_days
    stage = b.get("lifecycle_stage")
    recency = f"recency_days {_fmt(a.get('recency_days'))} → {_fmt(b.get('recency_days'))}"

    def line(multiple: float) -> str:
        return f"{multiple:g} × usual gap {gap:.1f} = {multiple * gap:.0f} days"

    if stage == "churned":
        return [f"{recency} beyond the churn line {line(lc.churned_multiple)}"]
    if stage == "at_risk":
        return [f"{recency} beyond the at-risk line {line(lc.at_risk_multiple)}"]
    out = [f"{recency} within the at-risk line {line(lc.at_risk_multiple)}"]
    if stage == "mature":
        out.append(
            f"{_change(a, b, 'tenure_days')} (mature from {lc.mature_days}), {_change(a, b, 'frequency')} "
            f"(mature from {lc.mature_min_frequency})"
        )
    elif stage == "new":
        out.append(f"{_change(a, b, 'tenure_days')} (new up to {lc.new_days})")
    else:
        out.append(f"{_change(a, b, 'tenure_days')}, {_change(a, b, 'frequency')}")
    return out


def _loyalty_reasons(a: dict[str, Any], b: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    ly = cb["loyalty"]
    out = []
    if a.get("lifecycle_stage") != b.get("lifecycle_stage"):
        out.append(_change(a, b, "lifecycle_stage"))
    out.append(f"{_change(a, b, 'purchases')} (loyal from {ly.loyal_min_purchases})")
    out.append(f"{_change(a, b, 'tenure_days')} (loyal from {ly.loyal_min_tenure_days})")
    if a.get("satisfaction_level") != b.get("satisfaction_level"):
        out.append(_change(a, b, "satisfaction_level"))
    return out


def _generic_reasons(a: dict[str, Any], b: dict[str, Any], features: list[str]) -> list[str]:
    moves = []
    for f in features:
        va, vb = a.get(f), b.get(f)
        if isinstance(va, int | float) and isinstance(vb, int | float) and va != vb:
            moves.append((abs(vb - va) / max(abs(va), abs(vb), 1e-9), _change(a, b, f)))
    return [text for _, text in sorted(moves, reverse=True)[:3]]


REASON_COLUMNS = [
    "customer_id", "name", "monetary", "frequency", "recency_days", "avg_order_value", "tenure_days", "purchases",
    "composite_score", "grade", "grade_raw", "grade_held", "r_score", "f_score", "m_score", "abc_cum_share",
    "profit", "clv_predicted", "expected_gap_days", "lifecycle_stage", "satisfaction_level", "satisfaction",
]  # fmt: skip


def reasons(column: str, a: dict[str, Any], b: dict[str, Any], ca: dict[str, Any], cb: dict[str, Any]) -> list[str]:
    """Why a customer's `column` went from a[column] to b[column]: features that changed, thresholds crossed."""
    if column == "grade":
        return _grade_reasons(a, b, ca, cb)
    if column == "rfm_segment":
        return _rfm_reasons(a, b, cb, "monetary")
    if column == "rfm_class8":
        return _class8_reasons(a, b, ca, cb)
    if column == "abc_class":
        return _abc_reasons(a, b, cb)
    if column == "value_tier":
        return _value_reasons(a, b, cb)
    if column == "lifecycle_stage":
        return _lifecycle_reasons(a, b, cb)
    if column == "loyalty":
        return _loyalty_reasons(a, b, cb)
    return _generic_reasons(a, b, cb.get("features") or ["recency_days", "frequency", "monetary"])


def _rows(view: RunView, ids: list[str], column: str) -> dict[str, dict[str, Any]]:
    s = view.snapshot
    cols = [c for c in dict.fromkeys([*REASON_COLUMNS, column]) if c in s.columns]
    cols += [c for c in s.columns if c.startswith(("score_", "contrib_")) and c not in cols]
    cols += [f for f in view.config.cluster.features if f in s.columns and f not in cols]
    if not ids:
        return {}
    rows = s.filter(s.customer_id.isin(ids)).select(*cols).to_pyarrow().to_pylist()
    return {r["customer_id"]: r for r in rows}


def new_in_class(a: ir.Table, b: ir.Table, column: str, code: str) -> int:
    """Customers in class `code` in run B who were not in it in run A (new customers included)."""
    before = a.filter(a[column] == code).select("customer_id")
    now = b.filter(b[column] == code)
    return int(now.filter(~now.customer_id.isin(before.customer_id)).count().execute())


def compare(
    ws: Workspace,
    run_a: str | None = None,
    run_b: str | None = None,
    column: str = "grade",
    language: str = "zh",
    top: int = 20,
) -> dict[str, Any]:
    """Migration of `column` from run A to run B, with the reasons for the `top` moved customers by revenue."""
    a, b = pick_runs(ws, run_a, run_b)
    _check_column(column, a, b)
    cells = migration(a.snapshot, b.snapshot, column)
    for c in cells:
        c["from_label"] = None if c["kind"] == "entry" else label(column, c["from"], language)
        c["to_label"] = None if c["kind"] == "exit" else label(column, c["to"], language)
    totals: dict[str, Any] = {k: 0 for k in ("stayed", "upgrade", "downgrade", "changed", "entry", "exit")}
    for c in cells:
        totals[c["kind"]] += c["customers"]
    in_both = totals["stayed"] + totals["upgrade"] + totals["downgrade"] + totals["changed"]

    # the moved customers with the most revenue now (or before, for the ones who left a class by leaving)
    sa = a.snapshot.select("customer_id", cls_a=a.snapshot[column].cast("string"))
    sb = b.snapshot.select("customer_id", "monetary", cls_b=b.snapshot[column].cast("string"))
    j = sa.join(sb, "customer_id")
    moved = j.filter((j.cls_a.isnull() != j.cls_b.isnull()) | (j.cls_a != j.cls_b).fill_null(False))
    picked = (
        moved.order_by([ibis.desc(moved.monetary), moved.customer_id]).limit(top).to_pyarrow().to_pylist()
        if top
        else []
    )
    ids = [r["customer_id"] for r in picked]
    rows_a, rows_b = _rows(a, ids, column), _rows(b, ids, column)
    ctx_a, ctx_b = context(a, column), context(b, column)
    customers = []
    for cid in ids:
        ra, rb = rows_a[cid], rows_b[cid]
        customers.append(
            {
                "customer_id": cid,
                "name": rb.get("name"),
                "from": ra.get(column),
                "to": rb.get(column),
                "from_label": label(column, ra.get(column), language),
                "to_label": label(column, rb.get(column), language),
                "kind": direction(column, ra.get(column), rb.get(column)),
                "monetary": rb.get("monetary"),
                "reasons": reasons(column, ra, rb, ctx_a, ctx_b),
            }
        )
    data: dict[str, Any] = {
        "column": column,
        "order": ORDERS.get(column),
        "run_a": {"run_id": a.run_id, "as_of": str(a.meta["as_of"]), "customers": int(a.meta["customers"])},
        "run_b": {"run_id": b.run_id, "as_of": str(b.meta["as_of"]), "customers": int(b.meta["customers"])},
        "in_both": in_both,
        "totals": totals,
        "matrix": cells,
        "moved_customers": customers,
    }
    order = ORDERS.get(column)
    if order:
        best = order[0]
        this = new_in_class(a.snapshot, b.snapshot, column, best)
        before = _run_before(ws, a.meta)
        last = None
        if before is not None:
            pa_ = open_run(ws, before)
            if column in pa_.snapshot.columns:
                last = new_in_class(pa_.snapshot, a.snapshot, column, best)
        data["new_in_top"] = {
            "class": best,
            "label": label(column, best, language),
            "this_run": this,
            "previous_run": last,
            "previous_pair": None if before is None else [str(before["run_id"]), a.run_id],
        }
    data["stability"] = _stability(b)
    return data


def _run_before(ws: Workspace, meta: dict[str, Any]) -> dict[str, Any] | None:
    earlier = [r for r in runs_by_date(ws) if r["as_of"] < meta["as_of"]]
    return earlier[-1] if earlier else None


def _stability(view: RunView) -> dict[str, Any] | None:
    models = json.loads(str(view.meta.get("models") or "{}"))
    found = models.get("stability")
    return found if isinstance(found, dict) else None
