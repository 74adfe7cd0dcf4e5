"""The report's class charts as data: distributions and breakdowns of a class column, the R×F heatmap, the
Pareto curve and the CLV histogram, with their captions. The dashboard draws the same data (web/services/overview.py)
with the same chart code (web/static/charts.js), so the two always agree."""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.classify import abc
from tierwise.i18n import LABELS
from tierwise.money import exact_total
from tierwise.report import data as report_data
from tierwise.report.language import ReportLanguage, pct, share
from tierwise.report.summaries import summarise
from tierwise.workspace import Workspace

TOP_GROUPS = 15  # regions and industries shown by name; the rest are one "other" row
CLV_BINS = 30
PARETO_POINTS = 100

# Order of classes whose codes have no labels in store.snapshots.LABELS (otherwise the order of their labels there).
ORDERS: dict[str, list[str]] = {
    "grade": ["A", "B", "C", "D"],
    "loyalty": ["loyal", "potential_loyal", "occasional", "lapsed", "prospect"],
}


def distribution(snap: ir.Table, column: str, lang: ReportLanguage) -> list[dict[str, Any]]:
    """The classes of `column` in their usual order (A before B …), with customers, revenue and their shares."""
    rows = summarise(snap, column, lang.language)
    order = list(LABELS.get(column, {})) or ORDERS.get(column, [])
    rank = {code: i for i, code in enumerate(order)}
    rows.sort(key=lambda r: (rank.get(r["code"], len(rank)), str(r["code"])))
    for r in rows:
        r["label"] = lang.label(column, r["code"])
    return rows


def breakdown(snap: ir.Table, column: str, lang: ReportLanguage, top: int = TOP_GROUPS) -> list[dict[str, Any]]:
    """The `top` groups by revenue, then one row for all the others."""
    g = snap.group_by(code=snap[column]).aggregate(customers=snap.count(), revenue=exact_total(snap.monetary))
    rows = g.order_by([g.revenue.desc(), g.customers.desc(), g.code]).limit(top).to_pyarrow().to_pylist()
    total = snap.aggregate(customers=snap.count(), revenue=exact_total(snap.monetary)).to_pyarrow().to_pylist()[0]
    n, revenue = int(total["customers"]), float(total["revenue"] or 0.0)
    rest_n = n - sum(int(r["customers"]) for r in rows)
    if rest_n > 0:
        rest_revenue = revenue - sum(float(r["revenue"] or 0.0) for r in rows)
        rows.append({"code": "__other__", "customers": rest_n, "revenue": rest_revenue})
    out = []
    for r in rows:
        other = r["code"] == "__other__"
        out.append(
            {
                "code": None if other else r["code"],
                "label": lang.t("other") if other else lang.label(column, r["code"]),
                "customers": int(r["customers"]),
                "revenue": float(r["revenue"] or 0.0),
                "customer_share": share(r["customers"], n),
                "revenue_share": share(r["revenue"], revenue),
            }
        )
    return out


def dist_chart(rows: list[dict[str, Any]], lang: ReportLanguage) -> dict[str, Any]:
    return {
        "kind": "bars",
        "labels": [r["label"] for r in rows],
        "series": [
            {
                "name": lang.t("customer_share"),
                "values": [r["customer_share"] for r in rows],
                "counts": [r["customers"] for r in rows],
            },
            {
                "name": lang.t("revenue_share"),
                "values": [r["revenue_share"] for r in rows],
                "counts": [r["revenue"] for r in rows],
            },
        ],
        "count_names": [lang.t("customers"), lang.t("revenue")],
    }


def dist_caption(rows: list[dict[str, Any]], lang: ReportLanguage) -> str:
    if not rows:
        return ""
    big = max(rows, key=lambda r: r["customers"])
    rich = max(rows, key=lambda r: r["revenue_share"])
    if big is rich:
        return lang.pick(
            f"Largest group and most revenue: {big['label']} ({pct(big['customer_share'])} of customers, "
            f"{pct(big['revenue_share'])} of revenue).",
            f"{big['label']}人数最多（占 {pct(big['customer_share'])}），贡献的收入也最多"
            f"（{pct(big['revenue_share'])}）。",
        )
    return lang.pick(
        f"Largest group: {big['label']} ({pct(big['customer_share'])} of customers); most revenue: "
        f"{rich['label']} ({pct(rich['revenue_share'])} of revenue).",
        f"{big['label']}人数最多（占 {pct(big['customer_share'])}），{rich['label']}贡献的收入最多"
        f"（{pct(rich['revenue_share'])}）。",
    )


def breakdown_caption(rows: list[dict[str, Any]], lang: ReportLanguage) -> str:
    named = [r for r in rows if r["code"] is not None]
    if not named:
        return ""
    top3 = named[:3]
    revenue = pct(sum(r["revenue_share"] for r in top3))
    customers = pct(sum(r["customer_share"] for r in top3))
    en_names, zh_names = ", ".join(r["label"] for r in top3), "、".join(r["label"] for r in top3)
    return lang.pick(
        f"{en_names} bring {revenue} of revenue between them, with {customers} of customers.",
        f"{zh_names}合计贡献 {revenue} 的收入，客户数占 {customers}。",
    )


def heatmap(snap: ir.Table, lang: ReportLanguage) -> dict[str, Any]:
    b = snap.filter(snap.r_score.notnull() & snap.f_score.notnull())
    cells = b.group_by("r_score", "f_score").aggregate(customers=b.count(), revenue=exact_total(b.monetary))
    r_scores, f_scores = [5, 4, 3, 2, 1], [1, 2, 3, 4, 5]
    counts = [[0] * 5 for _ in r_scores]
    revenue = [[0.0] * 5 for _ in r_scores]
    for c in cells.to_pyarrow().to_pylist():
        if c["r_score"] in r_scores and c["f_score"] in f_scores:
            i, j = r_scores.index(c["r_score"]), f_scores.index(c["f_score"])
            counts[i][j] = int(c["customers"])
            revenue[i][j] = float(c["revenue"] or 0.0)
    return {
        "kind": "heatmap",
        "r": r_scores,
        "f": f_scores,
        "customers": counts,
        "revenue": revenue,
        "revenue_text": [[lang.money(v) for v in row] for row in revenue],
        "titles": [lang.t("customers"), lang.t("revenue")],
        "r_axis": lang.t("r_axis"),
        "f_axis": lang.t("f_axis"),
    }


def heatmap_caption(chart: dict[str, Any], lang: ReportLanguage) -> str:
    total = sum(map(sum, chart["revenue"])) or 0.0
    top_right = chart["revenue"][0][4] + chart["revenue"][0][3] + chart["revenue"][1][4] + chart["revenue"][1][3]
    n = chart["customers"][0][4] + chart["customers"][0][3] + chart["customers"][1][4] + chart["customers"][1][3]
    return lang.pick(
        f"Each cell counts buyers by how recently (rows) and how often (columns) they buy; the {n:,} recent, "
        f"frequent buyers in the top-right four cells bring {pct(share(top_right, total))} of revenue.",
        f"按最近购买（行）和购买频次（列）统计客户；右上角四格中近期且频繁购买的 {n:,} 位客户贡献了 "
        f"{pct(share(top_right, total))} 的收入。",
    )


def pareto_points(ws: Workspace, snap: ir.Table, snapshot_table: str, by: str) -> list[dict[str, float]]:
    stored = "pareto_" + snapshot_table.removeprefix("snapshot_")
    if stored in ws.con.list_tables():
        t = ws.table(stored)
        rows = t.order_by("customer_share").select("customer_share", "value_share").to_pyarrow().to_pylist()
        if rows:
            return [
                {"customer_share": float(r["customer_share"]), "value_share": float(r["value_share"])} for r in rows
            ]
    return abc.pareto_curve(snap, value=by, points=PARETO_POINTS)


def value_at(curve: list[dict[str, float]], customer_share: float) -> float:
    """The curve's value share at a customer share, interpolated between its points."""
    if not curve:
        return 0.0
    prev = curve[0]
    for p in curve:
        if p["customer_share"] >= customer_share:
            span = p["customer_share"] - prev["customer_share"]
            if span <= 0:
                return p["value_share"]
            w = (customer_share - prev["customer_share"]) / span
            return prev["value_share"] + w * (p["value_share"] - prev["value_share"])
        prev = p
    return curve[-1]["value_share"]


def value_histogram(h: dict[str, Any], axis: str, lang: ReportLanguage) -> dict[str, Any]:
    """Chart of report_data.skewed_histogram: bins up to the 99th percentile, the top 1% in the last one."""
    width, last = h["width"], len(h["customers"]) - 1
    labels = [f"{i * width:,.0f} – {(i + 1) * width:,.0f}" for i in range(last + 1)]
    if h["max"] > h["p99"]:
        labels[last] = f"≥ {last * width:,.0f}"
    return {
        "kind": "histogram",
        "x": [(i + 0.5) * width for i in range(last + 1)],
        "width": width,
        "customers": h["customers"],
        "labels": labels,
        "x_axis": axis + (f" ({lang.currency})" if lang.currency else ""),
        "y_axis": lang.t("customers"),
        "tickformat": "~s",
        "n": h["n"],
        "median": h["median"],
        "p99": h["p99"],
    }


def clv_chart(snap: ir.Table, lang: ReportLanguage) -> dict[str, Any] | None:
    h = report_data.skewed_histogram(snap, "clv_historical", CLV_BINS)
    return None if h is None else value_histogram(h, lang.t("clv_axis"), lang)
