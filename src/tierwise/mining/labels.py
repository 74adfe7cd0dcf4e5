"""Names, units and descriptive words of the snapshot's measure columns, in English and Chinese.

tierwise.schema labels the canonical input tables only; the snapshot's measures are labelled here, for the
cluster names and the rule text.
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["days", "money", "share", "count", "number"]

# column → (English, Chinese, unit)
COLUMNS: dict[str, tuple[str, str, Unit]] = {
    "recency_days": ("recency", "最近购买间隔", "days"),
    "tenure_days": ("tenure", "客户时长", "days"),
    "ipt_mean_days": ("mean gap between purchases", "平均购买间隔", "days"),
    "avg_days_late": ("average days late", "平均逾期天数", "days"),
    "expected_gap_days": ("expected gap", "预期购买间隔", "days"),
    "frequency": ("frequency", "购买频次", "count"),
    "purchases": ("purchases", "购买次数", "count"),
    "category_count": ("categories bought", "购买品类数", "count"),
    "interactions": ("interactions", "互动次数", "count"),
    "monetary": ("monetary", "消费金额", "money"),
    "profit": ("profit", "利润", "money"),
    "avg_order_value": ("average order value", "客单价", "money"),
    "credit_limit": ("credit limit", "信用额度", "money"),
    "overdue_amount": ("overdue amount", "逾期金额", "money"),
    "open_amount": ("open amount", "未付金额", "money"),
    "clv_historical": ("historical CLV", "历史CLV", "money"),
    "clv_predicted": ("predicted CLV", "预测CLV", "money"),
    "expected_spend": ("expected spend per purchase", "预期单次消费", "money"),
    "margin": ("margin", "毛利率", "share"),
    "top_category_share": ("top category share", "主品类占比", "share"),
    "online_share": ("online share", "线上占比", "share"),
    "on_time_rate": ("on-time payment rate", "按时付款率", "share"),
    "credit_utilisation": ("credit utilisation", "授信使用率", "share"),
    "main_industry_share": ("main industry share", "主营行业占比", "share"),
    "p_alive": ("probability alive", "存活概率", "share"),
    "revenue_trend": ("revenue trend", "收入趋势", "number"),
    "ipt_cv": ("purchase gap variation", "购买间隔变异系数", "number"),
    "satisfaction": ("satisfaction", "满意度", "number"),
    "expected_purchases": ("expected purchases", "预期购买次数", "number"),
}

# column → ((high English, high Chinese), (low English, low Chinese)): what a cluster far above / below the
# base on this column is called.
WORDS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "recency_days": (("lapsed", "久未购买"), ("recent", "近期活跃")),
    "frequency": (("frequent", "高频"), ("infrequent", "低频")),
    "monetary": (("high value", "高价值"), ("low value", "低价值")),
    "avg_order_value": (("large orders", "大单"), ("small orders", "小单")),
    "tenure_days": (("long-standing", "老客户"), ("new", "新客户")),
    "purchases": (("many purchases", "购买次数多"), ("few purchases", "购买次数少")),
    "profit": (("high profit", "高利润"), ("low profit", "低利润")),
    "margin": (("high margin", "高毛利"), ("low margin", "低毛利")),
    "revenue_trend": (("growing", "增长"), ("declining", "下滑")),
    "online_share": (("online", "线上为主"), ("offline", "线下为主")),
    "top_category_share": (("focused", "品类集中"), ("diverse", "品类分散")),
    "category_count": (("many categories", "多品类"), ("few categories", "少品类")),
    "on_time_rate": (("pays on time", "按时付款"), ("pays late", "付款拖延")),
    "avg_days_late": (("pays late", "付款拖延"), ("pays on time", "按时付款")),
    "overdue_amount": (("much overdue", "逾期多"), ("little overdue", "逾期少")),
    "open_amount": (("large open balance", "未付多"), ("small open balance", "未付少")),
    "credit_utilisation": (("high credit use", "授信占用高"), ("low credit use", "授信占用低")),
    "satisfaction": (("satisfied", "满意"), ("dissatisfied", "不满意")),
    "interactions": (("many contacts", "互动多"), ("few contacts", "互动少")),
    "clv_historical": (("high CLV", "高CLV"), ("low CLV", "低CLV")),
    "clv_predicted": (("high potential", "高潜力"), ("low potential", "低潜力")),
    "p_alive": (("likely active", "活跃概率高"), ("churn risk", "流失风险")),
    "ipt_mean_days": (("long gaps", "购买间隔长"), ("short gaps", "购买间隔短")),
    "credit_limit": (("large credit line", "授信额度高"), ("small credit line", "授信额度低")),
}


def column_label(column: str, language: str) -> str:
    en, zh, _ = COLUMNS.get(column, (column, column, "number"))
    return zh if language == "zh" else en


def unit(column: str) -> Unit:
    return COLUMNS.get(column, (column, column, "number"))[2]


def word(column: str, high: bool) -> tuple[str, str]:
    """(English, Chinese) for a group far above (high) or below the base on `column`."""
    if column in WORDS:
        return WORDS[column][0 if high else 1]
    return (f"{column} high", f"{column}高") if high else (f"{column} low", f"{column}低")
