"""The report's key-figure cards: the run's headline figures (report/figures.py) with a note each, in the
report's language."""

from __future__ import annotations

import ibis.expr.types as ir

from tierwise.report.figures import headline_figures
from tierwise.report.language import ReportLanguage, card, pct, share

Figures = dict[str, int | float | None]


def key_figures(snap: ir.Table, lang: ReportLanguage) -> list[dict[str, str]]:
    """Six cards every run has (customers, revenue, profit, key customers, active, at risk), then one for each
    optional figure the run has (grade A, score, CLV, overdue, paid on time, satisfaction)."""
    f = headline_figures(snap)
    return _base_cards(f, lang) + _optional_cards(f, lang)


def _base_cards(f: Figures, lang: ReportLanguage) -> list[dict[str, str]]:
    n, buyers, revenue = int(f["customers"] or 0), int(f["buyers"] or 0), float(f["revenue"] or 0.0)
    cur = f" ({lang.currency})" if lang.currency else ""
    p = lang.pick
    per_buyer = lang.money(revenue / buyers if buyers else 0)
    margin = pct(share(f.get("profit"), revenue))
    a_share = pct(share(f["abc_a_revenue"], revenue))
    at_risk_n = int(f["at_risk"] or 0) + int(f["churned"] or 0)  # at risk or churned: people act on both
    active = pct(share(f["active"], n))
    at_risk = pct(share(at_risk_n, buyers))
    return [
        card(p("Customers", "客户总数"), f"{n:,}", p(f"{buyers:,} have bought", f"其中 {buyers:,} 位有购买")),
        card(p("Revenue", "收入") + cur, lang.money(revenue), p(f"{per_buyer} per buyer", f"客均 {per_buyer}")),
        card(p("Profit", "毛利") + cur, lang.money(f.get("profit")), p(f"margin {margin}", f"毛利率 {margin}")),
        card(
            p("Key (A) customers", "关键客户（A类）"),
            f"{int(f['abc_a'] or 0):,}",
            p(f"{a_share} of revenue", f"贡献 {a_share} 的收入"),
        ),
        card(
            p("Active customers", "活跃客户"),
            f"{int(f['active'] or 0):,}",
            p(f"{active} of all (new, active, mature)", f"占全部客户 {active}（新、活跃、成熟）"),
        ),
        card(
            p("At risk or churned", "流失风险及已流失"),
            f"{at_risk_n:,}",
            p(f"{at_risk} of buyers", f"占有购买客户 {at_risk}"),
        ),
    ]


def _optional_cards(f: Figures, lang: ReportLanguage) -> list[dict[str, str]]:
    cur = f" ({lang.currency})" if lang.currency else ""
    p = lang.pick
    cards = []
    if "grade_a" in f:
        grade_share = pct(share(f["grade_a"], f["customers"]))
        cards.append(
            card(
                p("Grade A customers", "A级客户"),
                f"{int(f['grade_a'] or 0):,}",
                p(f"{grade_share} of all", f"占 {grade_share}"),
            )
        )
    if f.get("avg_score") is not None:
        cards.append(
            card(p("Mean composite score", "平均综合得分"), f"{f['avg_score']:.1f}", p("out of 100", "满分 100"))
        )
    if "clv_historical" in f:
        cards.append(
            card(
                p("Historical CLV", "历史CLV合计") + cur,
                lang.money(f["clv_historical"]),
                p("all customers", "全部客户"),
            )
        )
    if "overdue" in f:
        k = int(f["overdue_customers"] or 0)
        cards.append(
            card(p("Overdue", "逾期金额") + cur, lang.money(f["overdue"]), p(f"{k:,} customers", f"涉及 {k:,} 位客户"))
        )
    if (on_time := f.get("on_time_rate")) is not None:
        cards.append(card(p("Paid on time", "按时付款率"), pct(on_time), p("mean over customers", "客户平均")))
    if f.get("satisfaction") is not None:
        cards.append(
            card(p("Satisfaction", "满意度"), f"{f['satisfaction']:.2f}", p("mean over customers", "客户平均"))
        )
    return cards
