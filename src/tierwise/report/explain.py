"""Why a customer is where it is (`tierwise show customer ID`, the dashboard's customer page): every score of
one customer and the thresholds of the run's settings that placed it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.i18n import label
from tierwise.report.summaries import class8_reference
from tierwise.store.runs import run_clusters


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
