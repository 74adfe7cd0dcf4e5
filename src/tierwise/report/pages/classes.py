"""The report's class sections: the distribution of each class column, the R×F heatmap, the Pareto curve with
the ABC classes, regions and industries by revenue, and historical CLV."""

from __future__ import annotations

import ibis.expr.types as ir

from tierwise.config import Config
from tierwise.report.charts import (
    breakdown,
    breakdown_caption,
    clv_chart,
    dist_caption,
    dist_chart,
    distribution,
    heatmap,
    heatmap_caption,
    pareto_points,
    value_at,
)
from tierwise.report.language import ReportLanguage, pct
from tierwise.report.pages import Section
from tierwise.workspace import Workspace


def distribution_section(snap: ir.Table, column: str, lang: ReportLanguage) -> Section:
    rows = distribution(snap, column, lang)
    return Section(column, dist_caption(rows, lang), dist_chart(rows, lang), extra={"table": rows})


def heatmap_section(snap: ir.Table, lang: ReportLanguage) -> Section:
    heat = heatmap(snap, lang)
    return Section("rf_heatmap", heatmap_caption(heat, lang), heat)


def pareto_section(ws: Workspace, snap: ir.Table, snapshot_table: str, config: Config, lang: ReportLanguage) -> Section:
    curve = pareto_points(ws, snap, snapshot_table, config.abc.by)
    value_name = lang.t("revenue" if config.abc.by == "monetary" else "profit")
    abc_rows = distribution(snap, "abc_class", lang)
    top20 = value_at(curve, 0.2)
    a = next((r for r in abc_rows if r["code"] == "A"), None)
    caption = lang.pick(
        f"The top 20% of customers bring {pct(top20)} of {value_name.lower()}"
        + (
            f"; the {a['customers']:,} key (A) customers ({pct(a['customer_share'])}) bring "
            f"{pct(a['revenue_share'])} of revenue."
            if a
            else "."
        ),
        f"前 20% 的客户贡献了 {pct(top20)} 的{value_name}"
        + (
            f"；{a['customers']:,} 位关键客户（A类，占 {pct(a['customer_share'])}）贡献了 "
            f"{pct(a['revenue_share'])} 的收入。"
            if a
            else "。"
        ),
    )
    chart = {
        "kind": "pareto",
        "x": [p["customer_share"] for p in curve],
        "y": [p["value_share"] for p in curve],
        "cutoffs": [config.abc.a_cutoff, config.abc.b_cutoff],
        "cutoff_names": ["A", "B"],
        "x_axis": lang.t("cum_customers"),
        "y_axis": lang.t("cum_value", value=value_name),
    }
    return Section("pareto", caption, chart, group=lang.t("abc_class"), extra={"table": abc_rows})


def breakdown_section(key: str, snap: ir.Table, column: str, group: str, lang: ReportLanguage) -> Section:
    rows = breakdown(snap, column, lang)
    return Section(key, breakdown_caption(rows, lang), dist_chart(rows, lang), group=group, extra={"table": rows})


def clv_section(snap: ir.Table, lang: ReportLanguage) -> Section | None:
    clv = clv_chart(snap, lang)
    if clv is None:
        return None
    caption = lang.pick(
        f"Customers by historical lifetime value: half of the {clv['n']:,} customers with a positive "
        f"value are below {clv['median']:,.0f}; the last bar gathers the top 1% (≥ {clv['p99']:,.0f}).",
        f"按历史终身价值统计客户数：{clv['n']:,} 位价值为正的客户中，一半低于 {clv['median']:,.0f}；"
        f"最后一栏合并了最高的 1%（≥ {clv['p99']:,.0f}）。",
    )
    return Section("clv", caption, clv)
