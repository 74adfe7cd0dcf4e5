"""The overview page: key figures with the change since the previous run, and the report's charts as data.

The key figures are the report's headline figures (tierwise.report.figures); the distributions, breakdowns, R×F
heatmap and Pareto curve are the report's charts (tierwise.report.charts), so the dashboard, its JSON twin and
`tierwise report` show the same numbers. A run's overview never changes once the
run is stored: callers may cache it by (run_id, language).
"""

from __future__ import annotations

import copy
from typing import Any

from tierwise.i18n import TITLES
from tierwise.report.charts import breakdown, clv_chart, distribution, heatmap, pareto_points, value_at
from tierwise.report.data import predictive_totals
from tierwise.report.figures import headline_figures
from tierwise.report.language import ReportLanguage
from tierwise.store.runs import previous_runs
from tierwise.web.cache import cache_for
from tierwise.web.services._common import jsonable, language_of
from tierwise.workspace import Workspace

DISTRIBUTIONS = ("grade", "rfm_segment", "rfm_class8", "abc_class", "value_tier", "lifecycle_stage", "loyalty")

# key of report.figures.headline_figures → (English, Chinese, format); format: count, money, score or share
KPIS: dict[str, tuple[str, str, str]] = {
    "customers": ("Customers", "客户总数", "count"),
    "buyers": ("Buyers", "有购买客户", "count"),
    "revenue": ("Revenue", "收入", "money"),
    "profit": ("Profit", "毛利", "money"),
    "grade_a": ("Grade A customers", "A级客户", "count"),
    "abc_a": ("Key (ABC class A) customers", "关键客户（A类）", "count"),
    "avg_score": ("Mean composite score", "平均综合得分", "score"),
    "active": ("Active customers (new, active, mature)", "活跃客户（新、活跃、成熟）", "count"),
    "at_risk": ("At-risk customers", "流失风险客户", "count"),
    "churned": ("Churned customers", "已流失客户", "count"),
    "clv_historical": ("Historical CLV, total", "历史CLV合计", "money"),
    "clv_predicted": ("Predicted CLV, total", "预测CLV合计", "money"),
    "overdue": ("Overdue amount", "逾期金额", "money"),
}


def kpis(current: dict[str, Any], previous: dict[str, Any] | None, language: str) -> list[dict[str, Any]]:
    """[{key, label, format, value, previous, change, change_share}] in the order of KPIS."""
    out = []
    for key, (en, zh, fmt) in KPIS.items():
        if key not in current:
            continue
        value = current[key]
        before = None if previous is None else previous.get(key)
        change = None if value is None or before is None else value - before
        out.append(
            {
                "key": key,
                "label": zh if language == "zh" else en,
                "format": fmt,
                "value": value,
                "previous": before,
                "change": change,
                "change_share": None if change is None or not before else change / abs(before),
            }
        )
    return out


def _chart(key: str, lang: ReportLanguage, **data: Any) -> dict[str, Any]:
    return {"id": key, "title": lang.t(key), **data}


def overview(ws: Workspace, run_id: str | None = None, language: str | None = None) -> dict[str, Any]:
    """Everything the overview page shows, aggregated by the engine.

    {run: {run_id, as_of, customers, previous_run: {run_id, as_of} | None}, currency,
     kpis: [{key, label, format, value, previous, change, change_share}],
     distributions: {column: {id, title, rows: [{code, label, customers, customer_share, revenue, revenue_share}]}},
     heatmap: {r, f, customers[r][f], revenue[r][f], ...} (rows R 5..1, columns F 1..5),
     pareto: {x, y, cutoffs, value, top20_share, abc: rows},
     regions / industries: {id, title, rows} (the 15 largest by revenue, then "other"),
     clv: histogram of historical CLV or None, predicted: totals of the predictive columns or None}."""
    lang_code = language_of(ws, language)
    cache = cache_for(ws)
    meta = cache.meta(ws, run_id)
    currency = ws.config.workspace.currency
    key = ("overview", str(meta["run_id"]), lang_code, currency)
    # A stored run's overview never changes: made once per language and currency, copied for each caller.
    return copy.deepcopy(cache.value(key, lambda: _overview(ws, meta, lang_code, currency)))


def _overview(ws: Workspace, meta: dict[str, Any], lang_code: str, currency: str) -> dict[str, Any]:
    snap = ws.table(str(meta["snapshot_table"]))
    run = str(meta["run_id"])
    config = cache_for(ws).config(ws, run)
    lang = ReportLanguage(lang_code, currency)
    cols = set(snap.columns)

    before = previous_runs(ws, meta["as_of"], 1)
    previous = None
    previous_values = None
    if before:
        previous = {"run_id": before[0]["run_id"], "as_of": before[0]["as_of"]}
        previous_values = headline_figures(ws.table(str(before[0]["snapshot_table"])))

    distributions = {
        c: {"id": c, "title": TITLES[c][1 if lang.zh else 0], "rows": distribution(snap, c, lang)}
        for c in DISTRIBUTIONS
        if c in cols
    }
    curve = pareto_points(ws, snap, str(meta["snapshot_table"]), config.abc.by)
    industry = "main_industry" if "main_industry" in cols else "industry_code"
    data: dict[str, Any] = {
        "run": {"run_id": run, "as_of": meta["as_of"], "customers": int(meta["customers"]), "previous_run": previous},
        "language": lang_code,
        "currency": currency,
        "kpis": kpis(headline_figures(snap), previous_values, lang_code),
        "distributions": distributions,
        "heatmap": _chart("rf_heatmap", lang, **heatmap(snap, lang)),
        "pareto": _chart(
            "pareto",
            lang,
            x=[p["customer_share"] for p in curve],
            y=[p["value_share"] for p in curve],
            value=config.abc.by,
            cutoffs=[config.abc.a_cutoff, config.abc.b_cutoff],
            top20_share=value_at(curve, 0.2),
            x_axis=lang.t("cum_customers"),
            y_axis=lang.t("cum_value", value=lang.t("revenue" if config.abc.by == "monetary" else "profit")),
        ),
        "regions": _chart("region", lang, column="province", rows=breakdown(snap, "province", lang))
        if "province" in cols
        else None,
        "industries": _chart("industry", lang, column=industry, rows=breakdown(snap, industry, lang))
        if industry in cols
        else None,
        "clv": clv_chart(snap, lang) if "clv_historical" in cols else None,
        "predicted": predictive_totals(snap),
    }
    return jsonable(data)
