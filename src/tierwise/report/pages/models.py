"""The model page: predictive CLV of the run (P(alive), predicted CLV, fitted parameters) and the latest
backtest of the models (purchases by frequency bucket, revenue captured by each ranking)."""

from __future__ import annotations

import math
from typing import Any

import ibis.expr.types as ir

from tierwise.config import Config
from tierwise.report import data as report_data
from tierwise.report.charts import CLV_BINS, value_histogram
from tierwise.report.language import ReportLanguage, card, pct, share
from tierwise.report.pages import PageParts
from tierwise.report.pages.notes import plain_note
from tierwise.store.runs import clv_fits
from tierwise.workspace import Workspace

# ranking (backtest result) → (English, Chinese)
RANKINGS: dict[str, tuple[str, str]] = {
    "clv_predicted": ("Predicted CLV", "预测CLV"),
    "composite_score": ("Composite score", "综合得分"),
    "monetary": ("Revenue to date", "历史消费金额"),
    "rfm_score": ("RFM score (R+F+M)", "RFM总分（R+F+M）"),
}

PARAM_SYMBOLS = {"alpha": "α", "beta": "β"}


def _transaction_model(params: dict[str, Any], configured: str = "") -> str:
    """BG/NBD (r, alpha, a, b) or Pareto/NBD (r, alpha, s, beta), told by the parameters' names; MBG/NBD has
    BG/NBD's names, so only the configured model tells it."""
    if "s" in params or "beta" in params or (not params and configured == "pnbd"):
        return "Pareto/NBD"
    return "MBG/NBD" if configured == "mbgnbd" else "BG/NBD"


def _model_params(params: dict[str, Any], configured: str, lang: ReportLanguage) -> list[dict[str, Any]]:
    """The fitted parameters of runs.models as table rows: model, what it predicts, name = value pairs."""
    rows: list[dict[str, Any]] = []
    for part, model, role in (
        (
            "transactions",
            _transaction_model(params.get("transactions") or {}, configured),
            lang.pick("purchases", "购买次数"),
        ),
        ("spend", "Gamma-Gamma", lang.pick("spend per purchase", "每次购买金额")),
    ):
        values = params.get(part) or {}
        if values:
            rows.append(
                {
                    "model": model,
                    "role": role,
                    "values": [(PARAM_SYMBOLS.get(k, k), f"{float(v):.4g}") for k, v in values.items()],
                }
            )
    return rows


def _model_kpis(totals: dict[str, Any], horizon: int, lang: ReportLanguage) -> list[dict[str, str]]:
    p, cur = lang.pick, f" ({lang.currency})" if lang.currency else ""
    n = totals["scored"]
    per = totals["purchases"] / n if n else 0.0
    alive = pct(share(totals["likely_alive"], n))
    return [
        card(
            p(f"Predicted CLV, next {horizon} months", f"未来 {horizon} 个月预测CLV") + cur,
            lang.money(totals["clv"]),
            p(f"{n:,} buyers, discounted", f"{n:,} 位有购买客户，已折现"),
        ),
        card(
            p(f"Expected purchases, next {horizon} months", f"未来 {horizon} 个月预计购买次数"),
            f"{totals['purchases']:,.0f}",
            p(f"{per:.2f} per buyer", f"客均 {per:.2f} 次"),
        ),
        card(
            p("Likely still active", "大概率仍活跃"),
            f"{totals['likely_alive']:,}",
            p(f"P(alive) ≥ 50%: {alive} of buyers", f"活跃概率 ≥ 50%，占有购买客户 {alive}"),
        ),
        card(
            p("Expected spend per purchase", "预计每次购买金额") + cur,
            lang.money(totals["spend"]),
            p("mean over buyers", "客户平均"),
        ),
    ]


def _p_alive_chart(snap: ir.Table, totals: dict[str, Any], lang: ReportLanguage) -> tuple[dict[str, Any], str]:
    bins = report_data.P_ALIVE_BINS
    counts = report_data.p_alive_counts(snap, bins)
    chart = {
        "kind": "histogram",
        "x": [(i + 0.5) / bins for i in range(bins)],
        "width": 1 / bins,
        "customers": counts,
        "labels": [f"{i / bins:.0%} – {(i + 1) / bins:.0%}" for i in range(bins)],
        "x_axis": lang.pick("Probability of still being active, P(alive)", "仍活跃的概率 P(alive)"),
        "y_axis": lang.t("customers"),
        "tickformat": ".0%",
        "n": sum(counts),
    }
    n, likely = totals["scored"], totals["likely_alive"]
    likely_share, mean = pct(share(likely, n)), pct(totals["p_alive"])
    caption = lang.pick(
        f"Buyers by the probability that they still buy: {likely:,} of {n:,} ({likely_share}) are more likely "
        f"active than not; the mean is {mean}.",
        f"按仍活跃的概率统计有购买的客户：{n:,} 位中有 {likely:,} 位（{likely_share}）的概率不低于 50%，平均 {mean}。",
    )
    return chart, caption


def _clv_predicted_chart(snap: ir.Table, horizon: int, lang: ReportLanguage) -> tuple[dict[str, Any], str] | None:
    h = report_data.skewed_histogram(snap, "clv_predicted", CLV_BINS)
    if h is None:
        return None
    chart = value_histogram(h, lang.pick(f"Predicted CLV, next {horizon} months", f"未来 {horizon} 个月预测CLV"), lang)
    caption = lang.pick(
        f"Buyers by predicted lifetime value over the next {horizon} months: half of the {h['n']:,} buyers with a "
        f"positive value are below {h['median']:,.0f}; the last bar gathers the top 1% (≥ {h['p99']:,.0f}).",
        f"按未来 {horizon} 个月的预测终身价值统计客户数：{h['n']:,} 位价值为正的客户中，一半低于 {h['median']:,.0f}；"
        f"最后一栏合并了最高的 1%（≥ {h['p99']:,.0f}）。",
    )
    return chart, caption


def _bucket_chart(result: dict[str, Any], lang: ReportLanguage) -> tuple[dict[str, Any], str]:
    buckets = result["buckets"]
    chart = {
        "kind": "buckets",
        "labels": [str(b["frequency"]) for b in buckets],
        "customers": [int(b["customers"]) for b in buckets],
        "series": [
            {"name": lang.pick("Predicted", "预测"), "values": [float(b["predicted"]) for b in buckets]},
            {"name": lang.pick("Actual", "实际"), "values": [float(b["actual"]) for b in buckets]},
        ],
        "x_axis": lang.pick("Repeat purchases in the calibration period", "校准期复购次数"),
        "y_axis": lang.pick("Holdout purchases per customer", "留存期人均购买次数"),
        "customers_name": lang.t("customers"),
    }
    caption = lang.pick(
        "By purchases in the calibration period: predicted and actual purchases per customer in the holdout.",
        "按校准期购买次数分组：预测与实际的留存期购买次数（人均）。",
    )
    return chart, caption


def _ranking_chart(result: dict[str, Any], lang: ReportLanguage) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = [
        {
            "label": lang.pick(*RANKINGS.get(r["ranking"], (r["ranking"], r["ranking"]))),
            "top10": float(r["top10_share"]),
            "top20": float(r["top20_share"]),
            "gini": float(r["gini"]),
        }
        for r in result.get("rankings") or []
    ]
    chart = {
        "kind": "capture",
        "labels": [r["label"] for r in rows],
        "series": [
            {"name": lang.pick("Top 10% of customers", "前 10% 客户"), "values": [r["top10"] for r in rows]},
            {"name": lang.pick("Top 20% of customers", "前 20% 客户"), "values": [r["top20"] for r in rows]},
        ],
        "gini": [r["gini"] for r in rows],
        "gini_name": lang.t("gini"),
        "x_axis": lang.pick("Share of holdout revenue", "留存期收入占比"),
    }
    best = max(rows, key=lambda r: r["gini"], default=None)
    caption = lang.pick(
        "Share of holdout revenue brought by the top 10% and 20% of customers under each ranking"
        + (f"; {best['label']} captures most (Gini {best['gini']:.2f})." if best else "."),
        "各种排序下前 10% 与前 20% 的客户贡献的留存期收入占比"
        + (f"；{best['label']}最好（基尼系数 {best['gini']:.2f}）。" if best else "。"),
    )
    return chart, caption, rows


def _backtest_caption(result: dict[str, Any], lang: ReportLanguage) -> str:
    model = _transaction_model(result.get("params") or {}, str(result.get("model", "")))
    cal, hold, n = result["calibration_end"], result["holdout_end"], int(result.get("customers") or 0)
    purchases = result.get("purchases") or {}
    predicted, actual = float(purchases.get("predicted_total") or 0), float(purchases.get("actual_total") or 0)
    corr = purchases.get("correlation")
    corr_en = f" (correlation per customer {corr:.2f})" if isinstance(corr, float) and math.isfinite(corr) else ""
    corr_zh = f"（逐客户相关系数 {corr:.2f}）" if corr_en else ""
    return lang.pick(
        f"Backtest with {model}, calibration to {cal}, holdout to {hold}, {n:,} customers: {predicted:,.0f} repeat "
        f"purchases predicted for the holdout, {actual:,.0f} made{corr_en}.",
        f"回测（{model}，校准期截至 {cal}，留存期至 {hold}，{n:,} 位客户）：预测留存期复购 {predicted:,.0f} 次，"
        f"实际 {actual:,.0f} 次{corr_zh}。",
    )


def model_page(
    ws: Workspace, snap: ir.Table, meta: dict[str, Any], config: Config, lang: ReportLanguage
) -> PageParts | None:
    """The model section's caption, its content and its charts; None when there is nothing to show: the run has
    no predictive columns (nor notes about them) and the workspace no backtest."""
    charts: dict[str, dict[str, Any]] = {}
    models = clv_fits(meta)
    has_columns = set(report_data.PREDICTIVE_COLUMNS) <= set(snap.columns)
    totals = report_data.predictive_totals(snap) if has_columns else None
    run_part: dict[str, Any] | None = None
    headline = ""
    if totals is not None:
        run_part = _run_part(snap, meta, config, totals, models["params"], charts, lang)
        headline = _run_headline(totals, run_part["params"], config, lang)
    notes = [plain_note(n, lang) for n in models["notes"]] if has_columns else []
    result = report_data.latest_backtest(ws)
    backtest_part = None if result is None else _backtest_part(result, charts, lang)
    if run_part is None and backtest_part is None and not notes:
        return None
    if run_part is None and has_columns:
        headline = lang.pick("This run has no predictions.", "本次运行没有预测结果。")
    elif run_part is None:
        headline = lang.pick(
            "This run was made before predictive CLV; below, the latest backtest of the models.",
            "本次运行早于预测CLV功能；以下是最近一次模型回测。",
        )
    content = {"notes": notes, "run": run_part, "backtest": backtest_part}
    return headline, content, charts


def _run_part(
    snap: ir.Table,
    meta: dict[str, Any],
    config: Config,
    totals: dict[str, Any],
    params: dict[str, Any],
    charts: dict[str, dict[str, Any]],
    lang: ReportLanguage,
) -> dict[str, Any]:
    """This run's predictions: KPI cards, fitted parameters and the P(alive) and CLV charts (into `charts`)."""
    horizon = config.clv.horizon_months
    figures: list[dict[str, str]] = []
    charts["model_palive"], caption = _p_alive_chart(snap, totals, lang)
    figures.append({"id": "model_palive", "title": lang.pick("P(alive)", "仍活跃概率"), "caption": caption})
    clv = _clv_predicted_chart(snap, horizon, lang)
    if clv is not None:
        charts["model_clv"], caption = clv
        figures.append({"id": "model_clv", "title": lang.pick("Predicted CLV", "预测CLV"), "caption": caption})
    unit = config.clv.time_unit_days
    return {
        "kpis": _model_kpis(totals, horizon, lang),
        "params": _model_params(params, config.clv.model, lang),
        "params_caption": lang.pick(
            f"Fitted by maximum likelihood on the sales before {meta['as_of']}; time unit {unit:g} days.",
            f"按 {meta['as_of']} 之前的销售用最大似然法拟合；时间单位 {unit:g} 天。",
        ),
        "figures": figures,
    }


def _run_headline(totals: dict[str, Any], params: list[dict[str, Any]], config: Config, lang: ReportLanguage) -> str:
    horizon = config.clv.horizon_months
    names = " + ".join(r["model"] for r in params) or _transaction_model({}, config.clv.model)
    return lang.pick(
        f"{names} fitted on this run's history: the {totals['scored']:,} buyers are expected to make "
        f"{totals['purchases']:,.0f} purchases in the next {horizon} months, worth {lang.money(totals['clv'])} "
        "after discounting.",
        f"本次运行用 {names} 模型预测：{totals['scored']:,} 位有购买的客户未来 {horizon} 个月预计购买 "
        f"{totals['purchases']:,.0f} 次，折现后价值 {lang.money(totals['clv'])}。",
    )


def _backtest_part(result: dict[str, Any], charts: dict[str, dict[str, Any]], lang: ReportLanguage) -> dict[str, Any]:
    """The latest backtest: its caption, notes, rankings and the bucket and ranking charts (into `charts`)."""
    charts["backtest_buckets"], bucket_caption = _bucket_chart(result, lang)
    charts["backtest_rankings"], ranking_caption, rankings = _ranking_chart(result, lang)
    return {
        "caption": _backtest_caption(result, lang),
        "figures": [
            {"id": "backtest_buckets", "title": lang.pick("Purchases", "购买次数"), "caption": bucket_caption},
            {"id": "backtest_rankings", "title": lang.pick("Rankings", "排序效果"), "caption": ranking_caption},
        ],
        "rankings": rankings,
        "notes": [plain_note(str(n), lang) for n in result.get("notes") or [] if n],
    }
