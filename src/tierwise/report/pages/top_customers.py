"""The report's list of the customers to look after first (by priority rank; by revenue for runs made before
the composite grade)."""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.report.language import ReportLanguage

TOP_CUSTOMERS = 20
COLUMNS = [
    "customer_id",
    "name",
    "province",
    "monetary",
    "frequency",
    "recency_days",
    "rfm_segment",
    "abc_class",
    "lifecycle_stage",
]
# shown when the run has them (runs made by older versions lack some)
OPTIONAL_COLUMNS = ("priority_rank", "grade", "composite_score", "clv_historical")


def top_customers_table(snap: ir.Table, cols: set[str], lang: ReportLanguage) -> dict[str, Any]:
    """{head, rows (cells as text), numeric (indexes of the right-aligned columns), caption}."""
    if "priority_rank" in cols:
        ranked = snap.filter(snap.priority_rank.notnull())
        rows_expr = ranked.order_by([ranked.priority_rank, ranked.customer_id])
    else:
        rows_expr = snap.order_by([snap.monetary.desc(), snap.customer_id])
    wanted = COLUMNS + [c for c in OPTIONAL_COLUMNS if c in cols]
    rows = rows_expr.limit(TOP_CUSTOMERS).select(*wanted).to_pyarrow().to_pylist()
    head = _head(cols, lang)
    body = [_cells(i, r, cols, lang) for i, r in enumerate(rows, start=1)]
    numeric = {0, 4, 5, 6}
    if "composite_score" in cols:
        numeric.add(8)
    if "clv_historical" in cols:
        numeric.add(len(head) - 1)
    caption = lang.pick(
        "The customers to look after first, by priority rank."
        if "priority_rank" in cols
        else "The customers who bought the most in the window.",
        "最需要优先维护的客户（按优先级排名）。" if "priority_rank" in cols else "统计期内购买金额最高的客户。",
    )
    return {"head": head, "rows": body, "numeric": sorted(numeric), "caption": caption}


def _head(cols: set[str], lang: ReportLanguage) -> list[str]:
    cur = f" ({lang.currency})" if lang.currency else ""
    head = [
        lang.t("rank"),
        lang.t("customer_id"),
        lang.t("name"),
        lang.t("province"),
        lang.t("revenue") + cur,
        lang.t("frequency"),
        lang.t("recency_days"),
    ]
    head.append(lang.t("grade") if "grade" in cols else lang.t("abc_class"))
    if "composite_score" in cols:
        head.append(lang.t("score"))
    head += [lang.t("rfm_segment"), lang.t("lifecycle_stage")]
    if "clv_historical" in cols:
        head.append(lang.pick("CLV", "历史CLV") + cur)
    return head


def _cells(i: int, r: dict[str, Any], cols: set[str], lang: ReportLanguage) -> list[str]:
    """The i-th customer's row (i: the rank shown when the run has no priority rank)."""
    cells: list[str] = [
        str(r.get("priority_rank") or i),
        str(r["customer_id"]),
        str(r["name"] or ""),
        str(r["province"] or ""),
        f"{r['monetary'] or 0:,.0f}",
        f"{r['frequency'] or 0:,}",
        "" if r["recency_days"] is None else f"{r['recency_days']:,}",
        lang.label("grade", r["grade"]) if "grade" in cols else lang.label("abc_class", r["abc_class"]),
    ]
    if "composite_score" in cols:
        cells.append("" if r["composite_score"] is None else f"{r['composite_score']:.1f}")
    cells += [lang.label("rfm_segment", r["rfm_segment"]), lang.label("lifecycle_stage", r["lifecycle_stage"])]
    if "clv_historical" in cols:
        cells.append("" if r["clv_historical"] is None else f"{r['clv_historical']:,.0f}")
    return cells
