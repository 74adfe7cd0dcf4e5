"""Summaries of a run for people: class sizes, revenue and shares, labelled in Chinese or English."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import ibis.expr.types as ir

from tierwise.classify import abc, grade, lifecycle, loyalty, rfm, value
from tierwise.errors import UserError
from tierwise.money import exact_total
from tierwise.rules import compile_expression
from tierwise.store.runs import run_clusters

# column → {code: (English, Chinese)}
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "rfm_segment": rfm.SEGMENT_LABELS,
    "abc_class": abc.LABELS,
    "lifecycle_stage": lifecycle.LABELS,
    "value_tier": value.LABELS,
    "rfm_class8": {zh: (en, zh) for zh, en in rfm.CLASS8_EN.items()},
    "grade": grade.LABELS,
    "loyalty": loyalty.LABELS,
    "satisfaction_level": loyalty.SATISFACTION_LABELS,
}
TITLES: dict[str, tuple[str, str]] = {
    "grade": ("Grades (weighted score)", "客户等级（综合加权评分）"),
    "rfm_segment": ("RFM segments", "RFM分群"),
    "rfm_class8": ("RFM eight classes", "RFM八类"),
    "abc_class": ("ABC classes", "ABC分类"),
    "value_tier": ("Value tiers", "价值分层"),
    "lifecycle_stage": ("Lifecycle stages", "生命周期阶段"),
    "loyalty": ("Loyalty", "忠诚度"),
    "cluster_name": ("Clusters (k-means)", "聚类（k均值）"),
}
SUMMARIES = [
    "grade",
    "rfm_segment",
    "rfm_class8",
    "abc_class",
    "value_tier",
    "lifecycle_stage",
    "loyalty",
    "cluster_name",
]


# What an empty class means, per column (prospects are not graded, and so on).
EMPTY_LABELS: dict[str, tuple[str, str]] = {
    "grade": ("Not graded (no purchase)", "未评级（无购买）"),
    "rfm_class8": ("No purchase", "无购买"),
    "satisfaction_level": ("No score", "无评分"),
    "cluster_name": ("Not clustered (no purchase)", "未聚类（无购买）"),
}


def label(column: str, code: object, language: str) -> str:
    if code is None:
        en, zh = EMPTY_LABELS.get(column, ("—", "—"))
        return zh if language == "zh" else en
    en, zh = LABELS.get(column, {}).get(str(code), (str(code), str(code)))
    return zh if language == "zh" else en


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


def explain_customer(
    snapshot: ir.Table,
    meta: dict[str, Any],
    customer_id: str,
    config: Any,
    language: str,
    *,
    row: dict[str, Any] | None = None,
    reference: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Every score of one customer and the thresholds that placed it (config as of that run). `row`: the
    customer's snapshot row when the caller has it; `reference`: gives class8_reference (callers that explain
    many customers of one run keep it)."""
    if row is None:
        rows = snapshot.filter(snapshot.customer_id == customer_id).to_pyarrow().to_pylist()
        row = rows[0] if rows else None
    if row is None:
        raise UserError(f"no customer '{customer_id}' in run {meta['run_id']}; check the id with 'tierwise show'")
    c = row
    reasons: list[str] = []
    if c["r_score"] is None:
        reasons.append("never bought: a prospect, no RFM scores")
    else:
        reasons.append(
            f"R {c['r_score']} (last purchase {c['recency_days']} days ago), F {c['f_score']} ({c['frequency']} "
            f"purchases in the window), M {c['m_score']} (net revenue {c['monetary']:,.2f}) → grid cell "
            f"R{c['r_score']}×F{c['f_score']} = {label('rfm_segment', c['rfm_segment'], language)}"
        )
        basis = config.rfm.class8_basis
        agg = reference() if reference is not None else class8_reference(snapshot, basis)
        reasons.append(
            f"eight classes against the buyers' {basis}: recency {c['recency_days']} vs {agg['r']:.1f} days "
            f"({'recent' if c['recency_days'] < agg['r'] else 'not recent'}), frequency {c['frequency']} vs "
            f"{agg['f']:.2f} ({'high' if c['frequency'] > agg['f'] else 'low'}), monetary {c['monetary']:,.2f} vs "
            f"{agg['m']:,.2f} ({'high' if c['monetary'] > agg['m'] else 'low'}) → {c['rfm_class8']}"
        )
    share = c.get("abc_cum_share")
    reasons.append(
        f"ABC: cumulative share {share:.1%} vs cut-offs {config.abc.a_cutoff:.0%}/{config.abc.b_cutoff:.0%} → "
        f"{label('abc_class', c['abc_class'], language)}"
        if share is not None
        else f"ABC: no positive {config.abc.by} → {label('abc_class', c['abc_class'], language)}"
    )
    if c["recency_days"] is not None:
        gap = c["expected_gap_days"]
        lc = config.lifecycle
        reasons.append(
            f"lifecycle: {c['recency_days']} days since the last purchase against a usual gap of {gap:.1f} days "
            f"(at risk beyond {lc.at_risk_multiple * gap:.0f}, churned beyond {lc.churned_multiple * gap:.0f}); "
            f"first purchase {c['tenure_days']} days ago → {label('lifecycle_stage', c['lifecycle_stage'], language)}"
        )
    if c.get("composite_score") is not None:
        reasons.append(_grade_reason(c, config, language))
    cluster = _cluster_reason(c, meta, language)
    if cluster:
        reasons.append(cluster)
    if c.get("loyalty") is not None:
        reasons.append(
            f"loyalty: {c['purchases']} purchases, first {c['tenure_days']} days ago, lifecycle "
            f"{c['lifecycle_stage']}, satisfaction {c['satisfaction'] if c['satisfaction'] is not None else 'unknown'}"
            f" → {label('loyalty', c['loyalty'], language)}"
        )
    return {"run_id": meta["run_id"], "as_of": str(meta["as_of"]), "customer": c, "reasons": reasons}


def _cluster_reason(c: dict[str, Any], meta: dict[str, Any], language: str) -> str | None:
    """Which cluster, and what sets its members apart from the base (standardised differences)."""
    clusters = run_clusters(meta)
    if c.get("cluster") is None or clusters is None:
        return None
    profile = next((p for p in clusters["profiles"] if p["cluster"] == c["cluster"]), None)
    if profile is None:
        return None
    name = profile["name_zh" if language == "zh" else "name_en"]
    apart = ", ".join(f"{feature} {diff:+.2f} sd" for feature, diff in profile["top_features"])
    return (
        f"cluster {c['cluster']} of {clusters['k']} '{name}' ({profile['size']:,} customers, "
        f"{profile['revenue_share']:.1%} of revenue): its members differ from the base in {apart or 'nothing'}"
    )


def _grade_reason(c: dict[str, Any], config: Any, language: str) -> str:
    """Why this grade: each indicator's 0–100 score and the points it contributed to the composite."""
    parts = []
    for i in config.grade.indicators:
        score, points = c.get(f"score_{i.name}"), c.get(f"contrib_{i.name}")
        if score is None:
            parts.append(f"{i.label or i.name} missing (weight moved to the others)")
        else:
            parts.append(f"{i.label or i.name} {score:.0f}/100 × weight {i.weight:g} → {points:.1f} points")
    return (
        f"composite score {c['composite_score']:.1f} = " + "; ".join(parts) + f" → grade "
        f"{label('grade', c['grade'], language)}, priority #{c['priority_rank']}"
    )


def select_customers(snapshot: ir.Table, *, where: str | None = None, columns: list[str] | None = None) -> ir.Table:
    """The snapshot rows matching `where` (the rule language) with `columns` (default: all), customer_id first."""
    if where:
        snapshot = snapshot.filter(compile_expression(where, snapshot.schema(), what="--where")(snapshot))
    wanted = columns or list(snapshot.columns)
    unknown = [c for c in wanted if c not in snapshot.columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], snapshot.columns, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'tierwise export --list-columns'"
        raise UserError(f"--columns: no column '{unknown[0]}' in this run; {hint}")
    ordered = ["customer_id", *[c for c in wanted if c != "customer_id"]]
    return snapshot.select(*ordered).order_by("customer_id")
