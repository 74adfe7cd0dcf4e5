"""`tierwise report`: one self-contained HTML file of a run, for showing to people who do not run tierwise.

Every number is aggregated by the engine (Ibis) — the page never holds customer rows beyond the top list —
so a report of a million customers is as small and quick to open as one of a thousand. plotly.js comes from
the installed plotly package and is inlined, with the chart data as JSON, so the file opens offline.
Sections whose columns a run does not have (runs made by older versions) are left out.

The numbers of the model page (and the skewed CLV histograms) are gathered in `report_data`, which knows nothing
of languages; this module turns them into labels, captions and chart data. The history page (trends, migration
between runs, campaign results) is built in `report_history` from the functions behind `tierwise compare`,
`tierwise trends` and `tierwise campaign report`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import jinja2
from markupsafe import Markup

from tierwise import __version__
from tierwise.classify import abc
from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.i18n import LABELS, column_label, label
from tierwise.money import exact_total
from tierwise.report import data as report_data
from tierwise.store.runs import latest_snapshot, run_config
from tierwise.store.snapshots import summarise
from tierwise.workspace import Workspace

TOP_GROUPS = 15
TOP_CUSTOMERS = 20
CLV_BINS = 30
PARETO_POINTS = 100

# Order of classes whose codes have no labels in i18n.LABELS (otherwise the order of their labels there).
ORDERS: dict[str, list[str]] = {
    "grade": ["A", "B", "C", "D"],
    "loyalty": ["loyal", "potential_loyal", "occasional", "lapsed", "prospect"],
}

# Sections of GB/T 4754-2017, the usual industry codes of Chinese company records.
INDUSTRY_SECTIONS: dict[str, tuple[str, str]] = {
    "A": ("Agriculture", "农、林、牧、渔业"),
    "B": ("Mining", "采矿业"),
    "C": ("Manufacturing", "制造业"),
    "D": ("Utilities", "电力、热力、燃气及水生产和供应业"),
    "E": ("Construction", "建筑业"),
    "F": ("Wholesale and retail", "批发和零售业"),
    "G": ("Transport and logistics", "交通运输、仓储和邮政业"),
    "H": ("Hotels and catering", "住宿和餐饮业"),
    "I": ("IT and software", "信息传输、软件和信息技术服务业"),
    "J": ("Finance", "金融业"),
    "K": ("Real estate", "房地产业"),
    "L": ("Leasing and business services", "租赁和商务服务业"),
    "M": ("Research and technical services", "科学研究和技术服务业"),
    "N": ("Water, environment and public facilities", "水利、环境和公共设施管理业"),
    "O": ("Household and repair services", "居民服务、修理和其他服务业"),
    "P": ("Education", "教育"),
    "Q": ("Health and social work", "卫生和社会工作"),
    "R": ("Culture, sports and entertainment", "文化、体育和娱乐业"),
    "S": ("Public administration", "公共管理、社会保障和社会组织"),
    "T": ("International organisations", "国际组织"),
}

# key → (English, Chinese)
TEXT: dict[str, tuple[str, str]] = {
    "title": ("Customer classification report", "客户分类报告"),
    "run": ("Run", "运行批次"),
    "as_of": ("As of", "数据截至"),
    "generated": ("Generated", "生成时间"),
    "contents": ("Contents", "目录"),
    "customers": ("Customers", "客户数"),
    "customer_share": ("Share of customers", "客户占比"),
    "revenue": ("Revenue", "收入"),
    "profit": ("Profit", "毛利"),
    "revenue_share": ("Share of revenue", "收入占比"),
    "class": ("Class", "类别"),
    "industry_name": ("Industry", "行业"),
    "other": ("Other", "其他"),
    "unknown": ("Not given", "未填写"),
    "no_purchase": ("No purchase yet", "尚未购买"),
    "kpis": ("Key figures", "关键指标"),
    "grade": ("Customer grades", "客户等级"),
    "rfm_segment": ("RFM segments", "RFM客户分群"),
    "rfm_class8": ("RFM eight classes", "RFM八类客户"),
    "rf_heatmap": ("Recency × frequency", "最近购买 × 购买频次"),
    "pareto": ("Pareto curve and ABC classes", "帕累托曲线与ABC分类"),
    "lifecycle_stage": ("Lifecycle stages", "生命周期阶段"),
    "loyalty": ("Loyalty", "客户忠诚度"),
    "region": ("Regions (province)", "地区分布（省份）"),
    "industry": ("Industries", "行业分布"),
    "clv": ("Customer lifetime value (historical)", "客户历史终身价值（CLV）"),
    "top_customers": ("Top customers", "重点客户"),
    "history": ("History and migration", "历史与迁移"),
    "campaigns": ("Campaigns", "营销活动"),
    "migration": ("Migration since the previous run", "与上一次运行相比的迁移"),
    "trends": ("Segment sizes over runs", "各分群规模的变化"),
    "models": ("Predictive models", "预测模型"),
    "clusters": ("Segments found in the data", "数据挖掘分群"),
    "learned": ("Learned rules", "学习到的分类规则"),
    "rule": ("Rule", "规则"),
    "confidence": ("Confidence", "置信度"),
    "rules": ("Rules of the decision tree", "决策树规则"),
    "rule_customers": ("Customers (this run)", "本次运行客户数"),
    "rule_support": ("Training customers", "训练客户数"),
    "learned_comparison": ("Models compared on the held-out customers", "各模型在留出集上的比较"),
    "accuracy": ("Accuracy", "准确率"),
    "macro_f1": ("Mean F1", "平均F1"),
    "confusion": ("Confusion matrix", "混淆矩阵"),
    "confusion_caption": (
        "Held-out customers by actual class (rows) and predicted class (columns).",
        "留出集客户按实际类别（行）和预测类别（列）计数。",
    ),
    "actual_predicted": ("Actual ↓ predicted →", "实际 ↓ 预测 →"),
    "recall": ("Recall", "召回率"),
    "precision": ("Precision", "精确率"),
    "model_run": ("This run's predictions", "本次运行的预测"),
    "model_params": ("Fitted parameters", "模型参数"),
    "model_backtest": ("Backtest", "回测"),
    "model": ("Model", "模型"),
    "predicts": ("Predicts", "预测对象"),
    "parameters": ("Parameters", "参数"),
    "ranking": ("Ranking", "排序方式"),
    "top10": ("Top 10%", "前 10%"),
    "top20": ("Top 20%", "前 20%"),
    "gini": ("Gini", "基尼系数"),
    "note": ("Note:", "说明："),
    "r_axis": ("R score (5 = bought most recently)", "R 分（5 = 最近购买）"),
    "f_axis": ("F score (5 = buys most often)", "F 分（5 = 购买最频繁）"),
    "cum_customers": ("Top customers, share of all customers", "排名靠前的客户占全部客户的比例"),
    "cum_value": ("Cumulative share of {value}", "{value}累计占比"),
    "clv_axis": ("Historical CLV", "历史CLV"),
    "rank": ("#", "排名"),
    "customer_id": ("Customer", "客户编号"),
    "name": ("Name", "客户名称"),
    "province": ("Province", "省份"),
    "frequency": ("Purchases", "购买次数"),
    "recency_days": ("Days since last", "距上次购买天数"),
    "score": ("Score", "综合得分"),
    "abc_class": ("ABC", "ABC分类"),
    "footer": (
        "Made by tierwise {version} with plotly.js {plotly}; opens offline, hover a chart for the numbers.",
        "由 tierwise {version} 生成，图表使用 plotly.js {plotly}；可离线打开，鼠标悬停可查看数值。",
    ),
}


@dataclass
class ReportSummary:
    path: Path
    run_id: str
    bytes: int
    sections: list[str]

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "run_id": self.run_id, "bytes": self.bytes, "sections": self.sections}


class ReportLanguage:
    def __init__(self, language: str, currency: str) -> None:
        self.language = language
        self.zh = language == "zh"
        self.currency = currency

    def t(self, key: str, **kw: object) -> str:
        en, zh = TEXT[key]
        return (zh if self.zh else en).format(**kw)

    def pick(self, en: str, zh: str) -> str:
        return zh if self.zh else en

    def label(self, column: str, code: object) -> str:
        text = label(column, code, self.language)
        if code is None and text in ("—", ""):
            # rfm_class8 is empty exactly for customers who never bought
            return self.t("no_purchase" if column == "rfm_class8" else "unknown")
        if column in ("industry_code", "main_industry") and text == code and code in INDUSTRY_SECTIONS:
            en, zh = INDUSTRY_SECTIONS[code]
            return f"{code} {zh if self.zh else en}"
        return text

    def money(self, x: float | None) -> str:
        """Compact amounts for headlines: 1.2M / 120.5万."""
        x = float(x or 0.0)
        if self.zh:
            for div, unit in ((1e8, "亿"), (1e4, "万")):
                if abs(x) >= div:
                    return f"{x / div:,.1f}{unit}"
            return f"{x:,.0f}"
        for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
            if abs(x) >= div:
                return f"{x / div:,.1f}{unit}"
        return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _share(part: float | None, whole: float | None) -> float:
    return float(part or 0.0) / float(whole) if whole else 0.0


# --- sections ---------------------------------------------------------------------------------------------


def _kpis(snap: ir.Table, cols: set[str], lang: ReportLanguage) -> list[dict[str, str]]:
    s = snap
    aggs: dict[str, Any] = {
        "customers": s.count(),
        "buyers": s.count(where=s.recency_days.notnull()),
        # Totals people compare with their books: added up exactly (tierwise.money).
        "revenue": exact_total(s.monetary),
        "profit": exact_total(s.profit),
        "active": s.count(where=s.lifecycle_stage.isin(["new", "active", "mature"])),
        "at_risk": s.count(where=s.lifecycle_stage.isin(["at_risk", "churned"])),
        "a_customers": s.count(where=s.abc_class == "A"),
        "a_revenue": exact_total(s.monetary, where=s.abc_class == "A"),
    }
    if "grade" in cols:
        aggs["grade_a"] = s.count(where=s.grade == "A")
    if "composite_score" in cols:
        aggs["score"] = s.composite_score.mean()
    if "clv_historical" in cols:
        aggs["clv"] = s.clv_historical.sum()
    if "overdue_amount" in cols:
        aggs["overdue"] = exact_total(s.overdue_amount)
        aggs["overdue_n"] = s.count(where=s.overdue_amount > 0)
    if "on_time_rate" in cols:
        aggs["on_time"] = s.on_time_rate.mean()
    if "satisfaction" in cols:
        aggs["satisfaction"] = s.satisfaction.mean()
    a = s.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    n, buyers, revenue = int(a["customers"]), int(a["buyers"]), float(a["revenue"] or 0.0)
    cur = f" ({lang.currency})" if lang.currency else ""
    p = lang.pick
    per_buyer = lang.money(revenue / buyers if buyers else 0)
    margin = _pct(_share(a["profit"], revenue))
    a_share = _pct(_share(a["a_revenue"], revenue))
    active = _pct(_share(a["active"], n))
    at_risk = _pct(_share(a["at_risk"], buyers))
    cards = [
        card(p("Customers", "客户总数"), f"{n:,}", p(f"{buyers:,} have bought", f"其中 {buyers:,} 位有购买")),
        card(p("Revenue", "收入") + cur, lang.money(revenue), p(f"{per_buyer} per buyer", f"客均 {per_buyer}")),
        card(p("Profit", "毛利") + cur, lang.money(a["profit"]), p(f"margin {margin}", f"毛利率 {margin}")),
        card(
            p("Key (A) customers", "关键客户（A类）"),
            f"{int(a['a_customers']):,}",
            p(f"{a_share} of revenue", f"贡献 {a_share} 的收入"),
        ),
        card(
            p("Active customers", "活跃客户"),
            f"{int(a['active']):,}",
            p(f"{active} of all (new, active, mature)", f"占全部客户 {active}（新、活跃、成熟）"),
        ),
        card(
            p("At risk or churned", "流失风险及已流失"),
            f"{int(a['at_risk']):,}",
            p(f"{at_risk} of buyers", f"占有购买客户 {at_risk}"),
        ),
    ]
    if "grade_a" in a:
        share = _pct(_share(a["grade_a"], n))
        cards.append(
            card(p("Grade A customers", "A级客户"), f"{int(a['grade_a'] or 0):,}", p(f"{share} of all", f"占 {share}"))
        )
    if a.get("score") is not None:
        cards.append(card(p("Mean composite score", "平均综合得分"), f"{a['score']:.1f}", p("out of 100", "满分 100")))
    if "clv" in a:
        cards.append(
            card(p("Historical CLV", "历史CLV合计") + cur, lang.money(a["clv"]), p("all customers", "全部客户"))
        )
    if "overdue" in a:
        k = int(a["overdue_n"] or 0)
        cards.append(
            card(p("Overdue", "逾期金额") + cur, lang.money(a["overdue"]), p(f"{k:,} customers", f"涉及 {k:,} 位客户"))
        )
    if a.get("on_time") is not None:
        cards.append(card(p("Paid on time", "按时付款率"), _pct(a["on_time"]), p("mean over customers", "客户平均")))
    if a.get("satisfaction") is not None:
        cards.append(
            card(p("Satisfaction", "满意度"), f"{a['satisfaction']:.2f}", p("mean over customers", "客户平均"))
        )
    return cards


def card(label: str, value: str, note: str) -> dict[str, str]:
    return {"label": label, "value": value, "note": note}


def distribution(snap: ir.Table, column: str, lang: ReportLanguage) -> list[dict[str, Any]]:
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
                "customer_share": _share(r["customers"], n),
                "revenue_share": _share(r["revenue"], revenue),
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


def _dist_caption(rows: list[dict[str, Any]], lang: ReportLanguage) -> str:
    if not rows:
        return ""
    big = max(rows, key=lambda r: r["customers"])
    rich = max(rows, key=lambda r: r["revenue_share"])
    if big is rich:
        return lang.pick(
            f"Largest group and most revenue: {big['label']} ({_pct(big['customer_share'])} of customers, "
            f"{_pct(big['revenue_share'])} of revenue).",
            f"{big['label']}人数最多（占 {_pct(big['customer_share'])}），贡献的收入也最多"
            f"（{_pct(big['revenue_share'])}）。",
        )
    return lang.pick(
        f"Largest group: {big['label']} ({_pct(big['customer_share'])} of customers); most revenue: "
        f"{rich['label']} ({_pct(rich['revenue_share'])} of revenue).",
        f"{big['label']}人数最多（占 {_pct(big['customer_share'])}），{rich['label']}贡献的收入最多"
        f"（{_pct(rich['revenue_share'])}）。",
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


def _heatmap_caption(chart: dict[str, Any], lang: ReportLanguage) -> str:
    total = sum(map(sum, chart["revenue"])) or 0.0
    top_right = chart["revenue"][0][4] + chart["revenue"][0][3] + chart["revenue"][1][4] + chart["revenue"][1][3]
    n = chart["customers"][0][4] + chart["customers"][0][3] + chart["customers"][1][4] + chart["customers"][1][3]
    return lang.pick(
        f"Each cell counts buyers by how recently (rows) and how often (columns) they buy; the {n:,} recent, "
        f"frequent buyers in the top-right four cells bring {_pct(_share(top_right, total))} of revenue.",
        f"按最近购买（行）和购买频次（列）统计客户；右上角四格中近期且频繁购买的 {n:,} 位客户贡献了 "
        f"{_pct(_share(top_right, total))} 的收入。",
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


def _value_histogram(h: dict[str, Any], axis: str, lang: ReportLanguage) -> dict[str, Any]:
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
    return None if h is None else _value_histogram(h, lang.t("clv_axis"), lang)


def _top_customers(snap: ir.Table, cols: set[str], lang: ReportLanguage) -> dict[str, Any]:
    if "priority_rank" in cols:
        ranked = snap.filter(snap.priority_rank.notnull())
        rows_expr = ranked.order_by([ranked.priority_rank, ranked.customer_id])
    else:
        rows_expr = snap.order_by([snap.monetary.desc(), snap.customer_id])
    wanted = [
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
    wanted += [c for c in ("priority_rank", "grade", "composite_score", "clv_historical") if c in cols]
    rows = rows_expr.limit(TOP_CUSTOMERS).select(*wanted).to_pyarrow().to_pylist()
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
    grade = "grade" in cols
    head.append(lang.t("grade") if grade else lang.t("abc_class"))
    if "composite_score" in cols:
        head.append(lang.t("score"))
    head += [lang.t("rfm_segment"), lang.t("lifecycle_stage")]
    if "clv_historical" in cols:
        head.append(lang.pick("CLV", "历史CLV") + cur)
    body = []
    for i, r in enumerate(rows, start=1):
        cells: list[str] = [
            str(r.get("priority_rank") or i),
            str(r["customer_id"]),
            str(r["name"] or ""),
            str(r["province"] or ""),
            f"{r['monetary'] or 0:,.0f}",
            f"{r['frequency'] or 0:,}",
            "" if r["recency_days"] is None else f"{r['recency_days']:,}",
            lang.label("grade", r["grade"]) if grade else lang.label("abc_class", r["abc_class"]),
        ]
        if "composite_score" in cols:
            cells.append("" if r["composite_score"] is None else f"{r['composite_score']:.1f}")
        cells += [lang.label("rfm_segment", r["rfm_segment"]), lang.label("lifecycle_stage", r["lifecycle_stage"])]
        if "clv_historical" in cols:
            cells.append("" if r["clv_historical"] is None else f"{r['clv_historical']:,.0f}")
        body.append(cells)
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


# --- the model page: predictive CLV of the run and the latest backtest ------------------------------------

# ranking (backtest result) → (English, Chinese)
RANKINGS: dict[str, tuple[str, str]] = {
    "clv_predicted": ("Predicted CLV", "预测CLV"),
    "composite_score": ("Composite score", "综合得分"),
    "monetary": ("Revenue to date", "历史消费金额"),
    "rfm_score": ("RFM score (R+F+M)", "RFM总分（R+F+M）"),
}
PARAM_SYMBOLS = {"alpha": "α", "beta": "β"}


def _transaction_model(params: dict[str, Any], configured: str = "") -> str:
    """BG/NBD (r, alpha, a, b) or Pareto/NBD (r, alpha, s, beta), told by the parameters' names."""
    if "s" in params or "beta" in params or (not params and configured == "pnbd"):
        return "Pareto/NBD"
    return "BG/NBD"


def _plain_note(note: str, lang: ReportLanguage) -> str:
    """A note of the models (clv.predict, the fit's warnings) as one plain sentence in the report's language."""
    note = note.strip()
    if lang.zh:
        if m := re.match(r"predictive CLV skipped: (\d+) buyers, the models need at least (\d+)", note):
            return f"本次未做预测：只有 {int(m[1]):,} 位有购买的客户，模型至少需要 {int(m[2]):,} 位。"
        if note.startswith("predictive CLV is switched off"):
            return '本次未做预测：预测CLV已关闭（[clv] model = "none"）。'
        if m := re.match(r"predictive CLV skipped: the models could not be fitted \((.*)\)$", note, re.S):
            return f"本次未做预测：模型无法拟合（{m[1]}）。"
        if m := re.match(r"(\w+): the maximum-likelihood estimate is on the boundary.*?\(([^)]*)\)", note, re.S):
            return (
                f"{m[1]} 的估计值落在参数边界上（{m[2]}）：数据中几乎看不到客户流失，"
                "预测按极限模型计算（如仍活跃概率 ≈ 1），请谨慎解读。"
            )
        return note
    note = note[:1].upper() + note[1:]
    return note if note.endswith((".", ")")) else note + "."


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
    alive = _pct(_share(totals["likely_alive"], n))
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
    share, mean = _pct(_share(likely, n)), _pct(totals["p_alive"])
    caption = lang.pick(
        f"Buyers by the probability that they still buy: {likely:,} of {n:,} ({share}) are more likely active "
        f"than not; the mean is {mean}.",
        f"按仍活跃的概率统计有购买的客户：{n:,} 位中有 {likely:,} 位（{share}）的概率不低于 50%，平均 {mean}。",
    )
    return chart, caption


def _clv_predicted_chart(snap: ir.Table, horizon: int, lang: ReportLanguage) -> tuple[dict[str, Any], str] | None:
    h = report_data.skewed_histogram(snap, "clv_predicted", CLV_BINS)
    if h is None:
        return None
    chart = _value_histogram(h, lang.pick(f"Predicted CLV, next {horizon} months", f"未来 {horizon} 个月预测CLV"), lang)
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
) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The model section's caption, its content and its charts; None when there is nothing to show: the run has
    no predictive columns (nor notes about them) and the workspace no backtest."""
    charts: dict[str, dict[str, Any]] = {}
    models = report_data.run_models(meta)
    has_columns = set(report_data.PREDICTIVE_COLUMNS) <= set(snap.columns)
    horizon = config.clv.horizon_months
    totals = report_data.predictive_totals(snap) if has_columns else None
    run_part: dict[str, Any] | None = None
    headline = ""
    if totals is not None:
        params = _model_params(models["params"], config.clv.model, lang)
        names = " + ".join(r["model"] for r in params) or _transaction_model({}, config.clv.model)
        figures: list[dict[str, str]] = []
        charts["model_palive"], caption = _p_alive_chart(snap, totals, lang)
        figures.append({"id": "model_palive", "title": lang.pick("P(alive)", "仍活跃概率"), "caption": caption})
        clv = _clv_predicted_chart(snap, horizon, lang)
        if clv is not None:
            charts["model_clv"], caption = clv
            figures.append({"id": "model_clv", "title": lang.pick("Predicted CLV", "预测CLV"), "caption": caption})
        unit = config.clv.time_unit_days
        run_part = {
            "kpis": _model_kpis(totals, horizon, lang),
            "params": params,
            "params_caption": lang.pick(
                f"Fitted by maximum likelihood on the sales before {meta['as_of']}; time unit {unit:g} days.",
                f"按 {meta['as_of']} 之前的销售用最大似然法拟合；时间单位 {unit:g} 天。",
            ),
            "figures": figures,
        }
        headline = lang.pick(
            f"{names} fitted on this run's history: the {totals['scored']:,} buyers are expected to make "
            f"{totals['purchases']:,.0f} purchases in the next {horizon} months, worth {lang.money(totals['clv'])} "
            "after discounting.",
            f"本次运行用 {names} 模型预测：{totals['scored']:,} 位有购买的客户未来 {horizon} 个月预计购买 "
            f"{totals['purchases']:,.0f} 次，折现后价值 {lang.money(totals['clv'])}。",
        )
    notes = [_plain_note(n, lang) for n in models["notes"]] if has_columns else []
    result = report_data.latest_backtest(ws)
    backtest_part: dict[str, Any] | None = None
    if result is not None:
        charts["backtest_buckets"], bucket_caption = _bucket_chart(result, lang)
        charts["backtest_rankings"], ranking_caption, rankings = _ranking_chart(result, lang)
        backtest_part = {
            "caption": _backtest_caption(result, lang),
            "figures": [
                {"id": "backtest_buckets", "title": lang.pick("Purchases", "购买次数"), "caption": bucket_caption},
                {"id": "backtest_rankings", "title": lang.pick("Rankings", "排序效果"), "caption": ranking_caption},
            ],
            "rankings": rankings,
            "notes": [_plain_note(str(n), lang) for n in result.get("notes") or [] if n],
        }
    if run_part is None and backtest_part is None and not notes:
        return None
    if run_part is None:
        headline = (
            lang.pick("This run has no predictions.", "本次运行没有预测结果。")
            if has_columns
            else lang.pick(
                "This run was made before predictive CLV; below, the latest backtest of the models.",
                "本次运行早于预测CLV功能；以下是最近一次模型回测。",
            )
        )
    content = {"notes": notes, "run": run_part, "backtest": backtest_part}
    return headline, content, charts


# --- the mining pages: clusters found in the data, learned classification rules --------------------------

DOMINANT_COLUMNS = ("rfm_segment", "grade", "province", "main_industry")
# one colour per cluster, the same in the table, the scatter plot and its legend
CLUSTER_COLORS = [
    "#1f4e8c", "#e07b39", "#3a9d5d", "#c0392b", "#8e6bbf", "#8c6d31", "#d35fa0", "#5f6b7a", "#17a2b8", "#b5a642",
]  # fmt: skip
TOP_CLUSTER_FEATURES = 3
TOP_IMPORTANCES = 15
MAX_RULES = 100

# learned model → (English, Chinese)
LEARN_MODELS: dict[str, tuple[str, str]] = {
    "tree": ("Decision tree", "决策树"),
    "boosting": ("Gradient boosting", "梯度提升"),
    "mlp": ("Neural network (MLP)", "神经网络（MLP）"),
}
# learned target → (English, Chinese); label columns are named by their class title
LEARN_TARGETS: dict[str, tuple[str, str]] = {
    "future-high-value": ("High value next period", "下期是否高价值"),
    "future-churn": ("Churn next period", "下期是否流失"),
}
# classes of the future targets → (English, Chinese)
LEARN_CLASSES: dict[str, tuple[str, str]] = {
    "high_value": ("High value", "高价值"),
    "other": ("Other", "其他"),
    "churned": ("Churned", "流失"),
    "retained": ("Retained", "留存"),
}


def _feature(column: str, lang: ReportLanguage) -> str:
    return column_label(column, lang.language)


def _features_in(text: str, lang: ReportLanguage) -> str:
    """A comma-separated list of feature columns (each maybe followed by a count in brackets) in words."""
    parts = []
    for part in text.split(", "):
        m = re.fullmatch(r"(\w+)(.*)", part.strip(), re.S)
        rest = m[2].replace("(", "（").replace(")", "）") if m and lang.zh else m[2] if m else ""
        parts.append(_feature(m[1], lang) + rest if m else part)
    return ("、" if lang.zh else ", ").join(parts)


def _mining_note(note: str, lang: ReportLanguage) -> str:
    """A note of the clustering or of the learning as one plain sentence in the report's language."""
    note = note.strip()
    if m := re.match(r"clusters are unstable: .*?index ([\d.]+) \(below ([\d.]+)\)", note, re.S):
        return lang.pick(
            f"The clusters are unstable: refits on bootstrap samples agree with them at an adjusted Rand index of "
            f"{m[1]} (below {m[2]}); try a smaller k, other features or more customers.",
            f"聚类结果不稳定：重抽样后重新拟合的结果与本次聚类的调整兰德指数为 {m[1]}（低于 {m[2]}）；"
            "可尝试更小的 k、换用其他特征或增加客户。",
        )
    if m := re.match(r"(\d+) customers without purchases are not clustered", note):
        n = int(m[1])
        return lang.pick(f"{n:,} customers without purchases are not clustered.", f"{n:,} 位尚未购买的客户未参与聚类。")
    if m := re.match(r"fitted on a random sample of ([\d,]+) of ([\d,]+) customers", note):
        return lang.pick(
            f"Fitted on a random sample of {m[1]} of the {m[2]} customers, then every customer assigned.",
            f"在 {m[2]} 位客户中随机抽取 {m[1]} 位拟合，再将全部客户分到最近的簇。",
        )
    for prefix, en, zh in (
        (
            "features not in the snapshot, skipped: ",
            "Features not in the snapshot, skipped: ",
            "快照中没有、已跳过的特征：",
        ),
        ("missing values replaced by the median: ", "Missing values replaced by the median: ", "缺失值以中位数代替："),
        ("log-transformed (log1p): ", "Log-transformed (log1p) because skewed: ", "因分布偏斜做了对数变换（log1p）："),
        (
            "constant features (no effect on the clusters): ",
            "Constant features, no effect: ",
            "取值不变、不起作用的特征：",
        ),
    ):
        if note.startswith(prefix):
            return lang.pick(en, zh) + _features_in(note[len(prefix) :], lang) + lang.pick(".", "。")
    if m := re.match(r"clustering skipped: (.*)$", note, re.S):
        return lang.pick(f"Clustering skipped: {m[1]}.", f"本次未聚类：{m[1]}。")
    if m := re.match(r"(\d+) customers without a label", note):
        n = int(m[1])
        return lang.pick(
            f"{n:,} customers have no label: not learned from, still classified.",
            f"{n:,} 位客户没有标签：不参与学习，但同样给出预测类别。",
        )
    return _plain_note(note, lang)


def _std_diff_text(column: str, diff: float, lang: ReportLanguage) -> str:
    return f"{_feature(column, lang)} {diff:+.1f}σ"


def _dominant_text(column: str, value: Any, lang: ReportLanguage) -> str:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return ""
    code, share = value
    name = str(code) if column == "province" else lang.label(column, code)
    return f"{name} · {share:.0%}"


def _cluster_name(p: dict[str, Any], lang: ReportLanguage) -> str:
    return str(p.get("name_zh" if lang.zh else "name_en") or p.get("name_en") or p.get("cluster"))


def _cluster_rows(
    profiles: list[dict[str, Any]], counts: dict[int, dict[str, float]], lang: ReportLanguage
) -> list[dict[str, Any]]:
    """One row per cluster: the snapshot's counts where it has the cluster column, else the profile's."""
    n = sum(c["customers"] for c in counts.values())
    revenue = sum(c["revenue"] for c in counts.values())
    rows: list[dict[str, Any]] = []
    for p in sorted(profiles, key=lambda p: int(p["cluster"])):
        number = int(p["cluster"])
        if counts:
            c = counts.get(number, {"customers": 0, "revenue": 0.0})
            size, rev = int(c["customers"]), float(c["revenue"])
            share, rev_share = _share(size, n), _share(rev, revenue)
        else:
            size, rev = int(p.get("size") or 0), float(p.get("revenue") or 0.0)
            share, rev_share = float(p.get("share") or 0.0), float(p.get("revenue_share") or 0.0)
        dominant = p.get("dominant") or {}
        means, base = p.get("means") or {}, p.get("base_means") or {}
        features = []
        for column, diff in (p.get("top_features") or [])[:TOP_CLUSTER_FEATURES]:
            mean, whole = means.get(column), base.get(column)
            detail = (
                lang.pick(f"mean {mean:,.1f}, all {whole:,.1f}", f"均值 {mean:,.1f}，整体 {whole:,.1f}")
                if isinstance(mean, int | float) and isinstance(whole, int | float)
                else ""
            )
            features.append({"text": _std_diff_text(column, float(diff), lang), "detail": detail})
        rows.append(
            {
                "cluster": number,
                "label": f"{number} · {_cluster_name(p, lang)}",
                "color": CLUSTER_COLORS[len(rows) % len(CLUSTER_COLORS)],
                "name": _cluster_name(p, lang),
                "code": number,
                "customers": size,
                "customer_share": share,
                "revenue": rev,
                "revenue_share": rev_share,
                "dominant": [_dominant_text(c, dominant.get(c), lang) for c in DOMINANT_COLUMNS],
                "features": features,
            }
        )
    return rows


def _k_curve(values: dict[str, Any], k: int, axis: str, name: str, lang: ReportLanguage, fmt: str) -> dict[str, Any]:
    points = sorted((int(key), float(v)) for key, v in values.items() if isinstance(v, int | float))
    return {
        "kind": "curve",
        "x": [p[0] for p in points],
        "y": [p[1] for p in points],
        "chosen": k,
        "chosen_name": lang.pick(f"chosen k = {k}", f"选定 k = {k}"),
        "name": name,
        "x_axis": lang.pick("Number of clusters k", "簇数 k"),
        "y_axis": axis,
        "format": fmt,
    }


def _cluster_kpis(c: dict[str, Any], rows: list[dict[str, Any]], lang: ReportLanguage) -> list[dict[str, str]]:
    p, k = lang.pick, int(c["k"])
    silhouette = (c.get("silhouette") or {}).get(str(k))
    tried = sorted(int(key) for key in c.get("silhouette") or {})
    if c.get("k_fixed"):
        how = p("fixed in tierwise.toml ([cluster] k)", "在 tierwise.toml 中固定（[cluster] k）")
    elif tried:
        sil = f"{silhouette:.2f}" if isinstance(silhouette, int | float) else "?"
        how = p(
            f"best silhouette ({sil}) of k = {tried[0]}–{tried[-1]}",
            f"在 k = {tried[0]}–{tried[-1]} 中轮廓系数最高（{sil}）",
        )
    else:
        how = p("chosen by silhouette", "按轮廓系数选择")
    stability, runs = c.get("stability"), len(c.get("stability_runs") or [])
    if isinstance(stability, int | float):
        unstable = bool(c.get("warning"))
        value = f"{stability:.2f}"
        note = p(
            f"adjusted Rand index, {runs} bootstrap refits" + ("; unstable" if unstable else ""),
            f"调整兰德指数，{runs} 次重抽样" + ("；不稳定" if unstable else ""),
        )
    else:
        value, note = "—", p("not measured ([cluster] bootstrap = 0)", "未评估（[cluster] bootstrap = 0）")
    clustered, excluded = int(c.get("clustered") or 0), int(c.get("excluded") or 0)
    features = [_feature(f, lang) for f in c.get("features") or []]
    algorithm = {"kmeans": "k-means", "minibatch": "MiniBatch k-means"}.get(str(c.get("algorithm")), "k-means")
    return [
        card(p("Clusters", "簇数"), f"k = {k}", how),
        card(p("Stability", "稳定性"), value, note),
        card(
            p("Customers clustered", "参与聚类的客户"),
            f"{clustered:,}",
            p(f"{excluded:,} not clustered (no purchase)", f"{excluded:,} 位未参与（无购买）"),
        ),
        card(
            p("Features", "聚类特征"),
            f"{len(features)}",
            f"{algorithm}: " + ("、" if lang.zh else ", ").join(features),
        ),
    ]


def _scatter_chart(c: dict[str, Any], rows: list[dict[str, Any]], lang: ReportLanguage) -> dict[str, Any] | None:
    projection = c.get("projection") or {}
    xs, ys, cs = projection.get("x") or [], projection.get("y") or [], projection.get("cluster") or []
    if not xs or len(xs) != len(ys) or len(xs) != len(cs):
        return None
    series = []
    for r in rows:
        pick = [j for j, label in enumerate(cs) if label == r["cluster"]]
        series.append({"name": r["label"], "x": [xs[j] for j in pick], "y": [ys[j] for j in pick], "color": r["color"]})
    return {
        "kind": "scatter",
        "series": series,
        "n": len(xs),
        "x_axis": lang.pick("First principal component", "第一主成分"),
        "y_axis": lang.pick("Second principal component", "第二主成分"),
    }


def cluster_page(
    snap: ir.Table, meta: dict[str, Any], lang: ReportLanguage
) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The clusters section's caption, content and charts; None when the run has no clustering kept."""
    c = report_data.run_clusters(meta)
    if c is None:
        return None
    notes = [_mining_note(str(n), lang) for n in c.get("notes") or [] if n]
    profiles = [p for p in c.get("profiles") or [] if isinstance(p, dict) and p.get("cluster") is not None]
    if c.get("k") is None or not profiles:
        headline = lang.pick("This run's customers were not clustered.", "本次运行没有对客户聚类。")
        return headline, {"kpis": [], "warning": None, "notes": notes, "rows": [], "figures": [], "curves": []}, {}
    rows = _cluster_rows(profiles, report_data.cluster_counts(snap), lang)
    k = int(c["k"])
    charts: dict[str, dict[str, Any]] = {}
    figures: list[dict[str, str]] = []
    scatter = _scatter_chart(c, rows, lang)
    if scatter is not None:
        charts["clusters_scatter"] = scatter
        figures.append(
            {
                "id": "clusters_scatter",
                "title": lang.pick("The clusters in two dimensions", "聚类二维投影"),
                "caption": lang.pick(
                    f"A sample of {scatter['n']:,} customers on the first two principal components of the "
                    "standardised features, coloured by cluster.",
                    f"抽样 {scatter['n']:,} 位客户，按标准化特征的前两个主成分作图，颜色表示所属簇。",
                ),
            }
        )
    charts["clusters_sizes"] = dist_chart(rows, lang)
    figures.append(
        {
            "id": "clusters_sizes",
            "title": lang.pick("Size and revenue", "规模与收入"),
            "caption": _dist_caption(rows, lang),
        }
    )
    curves: list[dict[str, str]] = []
    silhouette, inertia = c.get("silhouette") or {}, c.get("inertia") or {}
    if len(silhouette) > 1:
        charts["clusters_silhouette"] = _k_curve(
            silhouette,
            k,
            lang.pick("Silhouette (higher: better separated)", "轮廓系数（越高分得越开）"),
            lang.pick("Silhouette", "轮廓系数"),
            lang,
            ".2f",
        )
        curves.append(
            {
                "id": "clusters_silhouette",
                "title": lang.pick("Silhouette by k", "各 k 的轮廓系数"),
                "caption": lang.pick(
                    "How well separated the clusters are for each k tried, on a sample"
                    + ("." if c.get("k_fixed") else "; the highest was chosen."),
                    "每个候选 k 的轮廓系数（抽样计算）" + ("。" if c.get("k_fixed") else "，取最高者。"),
                ),
            }
        )
    if len(inertia) > 1:
        charts["clusters_elbow"] = _k_curve(
            inertia,
            k,
            lang.pick("Within-cluster sum of squares", "簇内平方和"),
            lang.pick("Inertia", "簇内平方和"),
            lang,
            ",.0f",
        )
        curves.append(
            {
                "id": "clusters_elbow",
                "title": lang.pick("Elbow curve", "肘部曲线"),
                "caption": lang.pick(
                    "Within-cluster spread for each k: past the bend, more clusters add little.",
                    "各 k 的簇内离散程度：拐点之后，再增加簇数收益不大。",
                ),
            }
        )
    warning = _mining_note(str(c["warning"]), lang) if c.get("warning") else None
    biggest = max(rows, key=lambda r: r["revenue_share"])
    headline = lang.pick(
        f"k-means found {k} groups among the {int(c.get('clustered') or 0):,} buyers; "
        f"{biggest['name']} (cluster {biggest['cluster']}) brings {_pct(biggest['revenue_share'])} of revenue "
        f"with {_pct(biggest['customer_share'])} of the customers.",
        f"k均值聚类把 {int(c.get('clustered') or 0):,} 位有购买的客户自然分成 {k} 群；"
        f"第 {biggest['cluster']} 群“{biggest['name']}”以 {_pct(biggest['customer_share'])} 的客户贡献了 "
        f"{_pct(biggest['revenue_share'])} 的收入。",
    )
    content = {
        "kpis": _cluster_kpis(c, rows, lang),
        "warning": warning,
        "notes": [n for n in notes if n != warning],
        "head": [
            "#",
            lang.pick("Cluster", "分群名称"),
            lang.t("customers"),
            lang.t("customer_share"),
            lang.t("revenue_share"),
            lang.t("rfm_segment"),
            lang.pick("Grade", "等级"),
            lang.pick("Region", "地区"),
            lang.t("industry_name"),
            lang.pick("Stands out by (vs all, in sd)", "显著特征（与整体相比，标准差）"),
        ],
        "rows": rows,
        "figures": figures,
        "curves": curves,
    }
    return headline, content, charts


def _learned_part(payload: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    """The payload in the report's language: a per-language copy when it has one, else the payload itself."""
    own = payload.get(lang.language)
    if isinstance(own, dict) and (own.get("models") or own.get("rules")):
        other = payload.get("zh" if lang.language == "en" else "en")
        merged = {**(other if isinstance(other, dict) else {}), **own}
        for key, value in payload.items():
            if key not in ("en", "zh"):
                merged.setdefault(key, value)
        return merged
    return payload


def _class_label(target: str, code: Any, lang: ReportLanguage) -> str:
    if str(code) in LEARN_CLASSES and target in LEARN_TARGETS:
        return lang.pick(*LEARN_CLASSES[str(code)])
    return lang.label(target, code)


def _target_label(target: str, lang: ReportLanguage) -> str:
    if target in LEARN_TARGETS:
        return lang.pick(*LEARN_TARGETS[target])
    if target in TEXT:
        return lang.t(target)
    return _feature(target, lang)


def _model_label(model: str, lang: ReportLanguage) -> str:
    return lang.pick(*LEARN_MODELS.get(model, (model, model)))


def _rule_text(rule: dict[str, Any], lang: ReportLanguage) -> str:
    """The rule in words, without the closing "(confidence …, N customers)": the table has columns for those."""
    for key in (f"text_{lang.language}", "text", "text_en", "expression"):
        if rule.get(key):
            text = str(rule[key])
            return re.sub(r"\s*(\(confidence [^()]*\)|（置信度[^（）]*）)$", "", text)
    return ""


def learned_page(
    ws: Workspace, snap: ir.Table, run_id: str, lang: ReportLanguage
) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The learned-rules section's caption, content and charts; None when no model was learned for the run."""
    payload = report_data.latest_learned(ws, run_id)
    if payload is None:
        return None
    data = _learned_part(payload, lang)
    target, model = str(data.get("target") or ""), str(data.get("model") or "")
    models = {str(k): v for k, v in (data.get("models") or {}).items() if isinstance(v, dict)}
    chosen = models.get(model) or next(iter(models.values()), {})
    if not model and models:
        model = next(iter(models))
    metrics = chosen.get("metrics") or {}
    p = lang.pick
    charts: dict[str, dict[str, Any]] = {}
    figures: list[dict[str, str]] = []

    cal, hold = data.get("calibration_end"), data.get("holdout_end")
    target_note = (
        p(f"measures as of {cal}, outcome up to {hold}", f"特征截至 {cal}，结果观察至 {hold}")
        if cal and hold
        else p(f"column {target}", f"标签列 {target}")
    )
    kpis = [
        card(p("Target", "学习目标"), _target_label(target, lang), target_note),
        card(
            p("Model", "模型"),
            _model_label(model, lang),
            p(f"{len(data.get('features') or [])} features", f"{len(data.get('features') or [])} 个特征"),
        ),
    ]
    accuracy, auc = metrics.get("accuracy"), metrics.get("roc_auc")
    test_rows = metrics.get("test_rows")
    if isinstance(accuracy, int | float):
        held = p(f"{int(test_rows):,} held-out customers", f"留出验证 {int(test_rows):,} 位客户") if test_rows else ""
        kpis.append(card(p("Held-out accuracy", "留出集准确率"), _pct(accuracy), held))
    if isinstance(auc, int | float):
        positive = metrics.get("positive_class")
        pos = _class_label(target, positive, lang) if positive is not None else ""
        kpis.append(card("ROC AUC", f"{auc:.3f}", p(f"for {pos}", f"针对{pos}") if pos else ""))

    comparison = []
    if len(models) > 1:
        for name, m in models.items():
            mm = m.get("metrics") or {}
            per_class = mm.get("per_class") or {}
            f1s = [float(v.get("f1") or 0.0) for v in per_class.values() if isinstance(v, dict)]
            comparison.append(
                {
                    "model": _model_label(name, lang),
                    "chosen": name == model,
                    "accuracy": mm.get("accuracy"),
                    "f1": sum(f1s) / len(f1s) if f1s else None,
                    "roc_auc": mm.get("roc_auc"),
                }
            )

    confusion = None
    cm = metrics.get("confusion_matrix") or {}
    classes, matrix = cm.get("labels") or [], cm.get("matrix") or []
    if classes and len(matrix) == len(classes):
        per_class = metrics.get("per_class") or {}
        body = []
        for code, row in zip(classes, matrix, strict=False):
            total = sum(int(v) for v in row) or 1
            pc = per_class.get(str(code)) or {}
            body.append(
                {
                    "label": _class_label(target, code, lang),
                    "cells": [{"n": int(v), "alpha": round(0.08 + 0.6 * int(v) / total, 2)} for v in row],
                    "recall": pc.get("recall"),
                    "precision": pc.get("precision"),
                }
            )
        confusion = {"labels": [_class_label(target, c, lang) for c in classes], "rows": body}

    importances = chosen.get("importances") or {}
    ranked = sorted(
        ((str(f), float(v)) for f, v in importances.items() if isinstance(v, int | float) and v > 0),
        key=lambda fv: -fv[1],
    )[:TOP_IMPORTANCES]
    if ranked:
        permutation = chosen.get("importance_kind") == "permutation"
        charts["learned_importance"] = {
            "kind": "importance",
            "labels": [_feature(f, lang) for f, _ in ranked],
            "values": [v for _, v in ranked],
            "x_axis": p("Drop in accuracy when shuffled", "打乱后准确率的下降")
            if permutation
            else p("Share of the tree's impurity decrease", "在决策树中减少不纯度的占比"),
            "format": ".3f" if permutation else ".1%",
        }
        figures.append(
            {
                "id": "learned_importance",
                "title": p("Feature importance", "特征重要性"),
                "caption": p(
                    f"The {len(ranked)} features that weigh most in the {_model_label(model, lang).lower()}.",
                    f"对{_model_label(model, lang)}影响最大的 {len(ranked)} 个特征。",
                ),
            }
        )

    counts = report_data.learned_counts(ws, snap, data.get("predictions_table"))
    if counts:
        n, revenue = sum(r["customers"] for r in counts), sum(r["revenue"] for r in counts)
        rows = [
            {
                "label": _class_label(target, r["code"], lang),
                "customers": r["customers"],
                "customer_share": _share(r["customers"], n),
                "revenue": r["revenue"],
                "revenue_share": _share(r["revenue"], revenue),
            }
            for r in counts
        ]
        charts["learned_classes"] = dist_chart(rows, lang)
        figures.append(
            {
                "id": "learned_classes",
                "title": p("Every customer classified", "全部客户的预测类别"),
                "caption": p(
                    f"The model applied to {n:,} customers: customers and revenue by learned class.",
                    f"模型应用于 {n:,} 位客户：各预测类别的客户与收入占比。",
                ),
            }
        )

    rules = []
    all_rules = [r for r in data.get("rules") or [] if isinstance(r, dict)]
    for r in all_rules[:MAX_RULES]:
        customers = r.get("customers") if r.get("customers") is not None else r.get("support")
        rules.append(
            {
                "class": _class_label(target, r.get("class"), lang),
                "text": _rule_text(r, lang),
                "confidence": r.get("confidence"),
                "customers": customers,
                "support": r.get("support"),
            }
        )
    notes = [_mining_note(str(n), lang) for n in data.get("notes") or [] if n]
    if len(all_rules) > MAX_RULES:
        notes.append(
            p(
                f"The first {MAX_RULES} of {len(all_rules)} rules are listed.",
                f"仅列出 {len(all_rules)} 条规则中的前 {MAX_RULES} 条。",
            )
        )

    acc = f"{accuracy:.1%}" if isinstance(accuracy, int | float) else "?"
    auc_en = f" (ROC AUC {auc:.2f})" if isinstance(auc, int | float) else ""
    auc_zh = f"（ROC AUC {auc:.2f}）" if auc_en else ""
    rules_en = f"; {len(all_rules)} rules below" if all_rules else ""
    rules_zh = f"；下列 {len(all_rules)} 条规则" if all_rules else ""
    headline = p(
        f"A {_model_label(model, lang).lower()} learned “{_target_label(target, lang)}”: it classifies {acc} of "
        f"the held-out customers correctly{auc_en}{rules_en}.",
        f"{_model_label(model, lang)}学习“{_target_label(target, lang)}”：留出集中 {acc} 的客户分类正确{auc_zh}"
        f"{rules_zh}。",
    )
    content = {
        "kpis": kpis,
        "comparison": comparison,
        "confusion": confusion,
        "figures": figures,
        "rules": rules,
        "notes": notes,
    }
    return headline, content, charts


# --- assembly ---------------------------------------------------------------------------------------------


# The chart drawing code of the dashboard, inlined into the report: one copy for both.
CHARTS_JS = Path(__file__).parent.parent / "web" / "static" / "charts.js"


def _plotly_js() -> tuple[str, str]:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the plotly package is not installed; the report needs its plotly.min.js (pip install plotly)")
    root = Path(next(iter(spec.submodule_search_locations)))
    js = root / "package_data" / "plotly.min.js"
    if not js.is_file():
        raise UserError(f"{js}: missing from the installed plotly package; reinstall plotly")
    text = js.read_text(encoding="utf-8")
    version = ""
    head = text[:400]
    if "plotly.js v" in head:
        version = head.split("plotly.js v", 1)[1].split()[0]
    return text, version


def _finite(data: Any) -> Any:
    """NaN and infinities become null: JSON.parse rejects them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element early, whatever customer names it holds."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_context(
    ws: Workspace,
    *,
    run_id: str | None = None,
    language: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything the template shows, aggregated by the engine."""
    step = progress or (lambda _: None)
    lang_code = language or ws.config.workspace.language
    if lang_code not in ("zh", "en"):
        raise UserError(f"--language '{language}': say zh or en")
    meta, snap = latest_snapshot(ws, run_id)
    run = str(meta["run_id"])
    config = run_config(ws, run)
    lang = ReportLanguage(lang_code, ws.config.workspace.currency)
    cols = set(snap.columns)
    sections: list[dict[str, Any]] = []
    charts: dict[str, Any] = {}

    def section(
        key: str, caption: str, chart: dict[str, Any] | None = None, group: str = lang.t("class"), **extra: Any
    ) -> None:
        if chart is not None:
            charts[key] = chart
        sections.append(
            {"id": key, "title": lang.t(key), "caption": caption, "chart": chart is not None, "group": group, **extra}
        )

    step("key figures")
    kpis = _kpis(snap, cols, lang)

    for column in ("grade", "rfm_segment", "rfm_class8"):
        if column in cols:
            step(column)
            rows = distribution(snap, column, lang)
            section(column, _dist_caption(rows, lang), dist_chart(rows, lang), table=rows)

    step("R×F")
    heat = heatmap(snap, lang)
    section("rf_heatmap", _heatmap_caption(heat, lang), heat)

    step("Pareto")
    curve = pareto_points(ws, snap, str(meta["snapshot_table"]), config.abc.by)
    value_name = lang.t("revenue" if config.abc.by == "monetary" else "profit")
    abc_rows = distribution(snap, "abc_class", lang)
    top20 = value_at(curve, 0.2)
    a = next((r for r in abc_rows if r["code"] == "A"), None)
    section(
        "pareto",
        lang.pick(
            f"The top 20% of customers bring {_pct(top20)} of {value_name.lower()}"
            + (
                f"; the {a['customers']:,} key (A) customers ({_pct(a['customer_share'])}) bring "
                f"{_pct(a['revenue_share'])} of revenue."
                if a
                else "."
            ),
            f"前 20% 的客户贡献了 {_pct(top20)} 的{value_name}"
            + (
                f"；{a['customers']:,} 位关键客户（A类，占 {_pct(a['customer_share'])}）贡献了 "
                f"{_pct(a['revenue_share'])} 的收入。"
                if a
                else "。"
            ),
        ),
        {
            "kind": "pareto",
            "x": [p["customer_share"] for p in curve],
            "y": [p["value_share"] for p in curve],
            "cutoffs": [config.abc.a_cutoff, config.abc.b_cutoff],
            "cutoff_names": ["A", "B"],
            "x_axis": lang.t("cum_customers"),
            "y_axis": lang.t("cum_value", value=value_name),
        },
        group=lang.t("abc_class"),
        table=abc_rows,
    )

    for column in ("lifecycle_stage", "loyalty"):
        if column in cols:
            step(column)
            rows = distribution(snap, column, lang)
            section(column, _dist_caption(rows, lang), dist_chart(rows, lang), table=rows)

    step("regions")
    rows = breakdown(snap, "province", lang)
    section("region", _breakdown_caption(rows, lang), dist_chart(rows, lang), group=lang.t("province"), table=rows)
    industry = "main_industry" if "main_industry" in cols else "industry_code"
    if industry in cols:
        step("industries")
        rows = breakdown(snap, industry, lang)
        section(
            "industry",
            _breakdown_caption(rows, lang),
            dist_chart(rows, lang),
            group=lang.t("industry_name"),
            table=rows,
        )

    if "clv_historical" in cols:
        step("CLV")
        clv = clv_chart(snap, lang)
        if clv is not None:
            section(
                "clv",
                lang.pick(
                    f"Customers by historical lifetime value: half of the {clv['n']:,} customers with a positive "
                    f"value are below {clv['median']:,.0f}; the last bar gathers the top 1% (≥ {clv['p99']:,.0f}).",
                    f"按历史终身价值统计客户数：{clv['n']:,} 位价值为正的客户中，一半低于 {clv['median']:,.0f}；"
                    f"最后一栏合并了最高的 1%（≥ {clv['p99']:,.0f}）。",
                ),
                clv,
            )

    step("models")
    page = model_page(ws, snap, meta, config, lang)
    if page is not None:
        caption, content, model_charts = page
        charts.update(model_charts)
        section("models", caption, model=content)

    step("clusters")
    page = cluster_page(snap, meta, lang)
    if page is not None:
        caption, content, cluster_charts = page
        charts.update(cluster_charts)
        section("clusters", caption, clusters=content)

    step("learned rules")
    page = learned_page(ws, snap, run, lang)
    if page is not None:
        caption, content, learned_charts = page
        charts.update(learned_charts)
        section("learned", caption, learned=content)

    from tierwise.report import history as report_history  # imports this module's helpers

    step("history")
    page = report_history.history_page(ws, run, lang)
    if page is not None:
        caption, content, history_charts = page
        charts.update(history_charts)
        section("history", caption, history=content)

    step("campaigns")
    page = report_history.campaigns_page(ws, lang)
    if page is not None:
        caption, content, campaign_charts = page
        charts.update(campaign_charts)
        section("campaigns", caption, campaigns=content)

    step("top customers")
    top = _top_customers(snap, cols, lang)
    section("top_customers", top["caption"], top=top)

    now = dt.datetime.now().replace(microsecond=0)
    return {
        "lang": lang_code,
        "t": {key: lang.t(key) for key in TEXT if "{" not in TEXT[key][0]},
        "run_id": run,
        "as_of": str(meta["as_of"]),
        "generated": now.isoformat(sep=" "),
        "customers": int(meta["customers"]),
        "kpis": kpis,
        "sections": [{"id": "kpis", "title": lang.t("kpis")}, *sections],
        "charts": charts,
        "lang_obj": lang,
    }


def _breakdown_caption(rows: list[dict[str, Any]], lang: ReportLanguage) -> str:
    named = [r for r in rows if r["code"] is not None]
    if not named:
        return ""
    top3 = named[:3]
    revenue = _pct(sum(r["revenue_share"] for r in top3))
    customers = _pct(sum(r["customer_share"] for r in top3))
    en_names, zh_names = ", ".join(r["label"] for r in top3), "、".join(r["label"] for r in top3)
    return lang.pick(
        f"{en_names} bring {revenue} of revenue between them, with {customers} of customers.",
        f"{zh_names}合计贡献 {revenue} 的收入，客户数占 {customers}。",
    )


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tierwise.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    plotly_js, plotly_version = _plotly_js()
    lang: ReportLanguage = context["lang_obj"]
    footer = lang.t("footer", version=__version__, plotly=plotly_version or "?")
    return env.get_template("report.html").render(
        **context,
        footer=footer,
        data_json=Markup(_json_for_script({"charts": context["charts"]})),
        plotly_js=Markup(plotly_js),
        charts_js=Markup(CHARTS_JS.read_text(encoding="utf-8")),
    )


def write_report(
    ws: Workspace,
    out: Path,
    *,
    run_id: str | None = None,
    language: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportSummary:
    """Write the HTML report of a run (default: the latest) to `out`; `progress` hears each step's name."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file name, e.g. --out {out / 'report.html'}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{out}: folder {folder} does not exist; create it first or choose another --out")
    context = build_context(ws, run_id=run_id, language=language, progress=progress)
    if progress:
        progress("writing")
    html = render(context).encode("utf-8")
    # Written beside the target and renamed, so a failure never leaves half a report behind.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(html)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UserError(f"{out}: cannot write the report ({exc.strerror or exc})") from exc
    return ReportSummary(
        path=out.resolve(),
        run_id=context["run_id"],
        bytes=len(html),
        sections=[s["id"] for s in context["sections"]],
    )
