"""What people read, in Chinese and English: the labels of the classes a run assigns, the titles of the class
columns, the names, units and descriptive words of the measure columns, and the words of the playbook's codes.

The codes stay with the logic that assigns or checks them (tierwise.classify, strategy.playbook, mining.targets);
this module holds only their display words, so rewording a label, or adding a language, touches one file. It
imports nothing from tierwise, so every layer may use it. Every table maps a key to (English, Chinese).
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["days", "money", "share", "count", "number"]

# --- classes ---------------------------------------------------------------------------------------------
# column → {code: (English, Chinese)}. The order of a column's codes is the order the report lists them in.
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    # tierwise.classify.rfm: the R×F grid segments
    "rfm_segment": {
        "champions": ("Champions", "冠军客户"),
        "loyal_customers": ("Loyal Customers", "忠诚客户"),
        "potential_loyalists": ("Potential Loyalists", "潜力客户"),
        "new_customers": ("New Customers", "新客户"),
        "promising": ("Promising", "有希望客户"),
        "need_attention": ("Need Attention", "需关注客户"),
        "about_to_sleep": ("About To Sleep", "即将沉睡客户"),
        "at_risk": ("At Risk", "风险客户"),
        "cant_lose_them": ("Can't Lose Them", "不能失去的客户"),
        "hibernating": ("Hibernating", "沉睡客户"),
        "prospects": ("Prospects", "潜在客户"),
    },
    # tierwise.classify.abc
    "abc_class": {
        "A": ("Key", "关键客户"),
        "B": ("Major", "主要客户"),
        "C": ("Ordinary", "普通客户"),
    },
    # tierwise.classify.lifecycle
    "lifecycle_stage": {
        "prospect": ("Prospect", "潜在客户"),
        "new": ("New", "新客户"),
        "active": ("Active", "活跃客户"),
        "mature": ("Mature", "成熟客户"),
        "at_risk": ("At risk", "流失风险客户"),
        "churned": ("Churned", "流失客户"),
    },
    # tierwise.classify.value
    "value_tier": {
        "high": ("High value", "高价值客户"),
        "medium": ("Medium value", "中价值客户"),
        "low": ("Low value", "低价值客户"),
        "prospect": ("Prospect", "潜在客户"),
    },
    # tierwise.classify.rfm: the eight classes (RFM八类), whose codes are their Chinese names
    "rfm_class8": {
        "重要价值客户": ("Important value", "重要价值客户"),
        "重要发展客户": ("Important development", "重要发展客户"),
        "重要保持客户": ("Important retention", "重要保持客户"),
        "重要挽留客户": ("Important win-back", "重要挽留客户"),
        "一般价值客户": ("General value", "一般价值客户"),
        "一般发展客户": ("General development", "一般发展客户"),
        "一般保持客户": ("General retention", "一般保持客户"),
        "一般挽留客户": ("General win-back", "一般挽留客户"),
    },
    # tierwise.classify.grade
    "grade": {
        "A": ("A — top priority", "A级（重点客户）"),
        "B": ("B — important", "B级（重要客户）"),
        "C": ("C — ordinary", "C级（一般客户）"),
        "D": ("D — low priority", "D级（低优先级客户）"),
    },
    # tierwise.classify.loyalty
    "loyalty": {
        "loyal": ("Loyal", "忠诚客户"),
        "potential_loyal": ("Potentially loyal", "潜在忠诚客户"),
        "occasional": ("Occasional", "偶然客户"),
        "lapsed": ("Lapsed", "流失客户"),
        "prospect": ("Prospect", "潜在客户"),
    },
    "satisfaction_level": {
        "satisfied": ("Satisfied", "满意"),
        "neutral": ("Neutral", "一般"),
        "dissatisfied": ("Dissatisfied", "不满意"),
    },
}

# What an empty class means, per column (prospects are not graded, and so on).
EMPTY_LABELS: dict[str, tuple[str, str]] = {
    "grade": ("Not graded (no purchase)", "未评级（无购买）"),
    "rfm_class8": ("No purchase", "无购买"),
    "satisfaction_level": ("No score", "无评分"),
    "cluster_name": ("Not clustered (no purchase)", "未聚类（无购买）"),
}

# class column → its title in summaries
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


def _pick(words: tuple[str, str], language: str) -> str:
    return words[1] if language == "zh" else words[0]


def label(column: str, code: object, language: str) -> str:
    """The display label of a class code: what an empty class means (else "—") for None, the code itself for a
    code without a label (clusters, tags, the user's own label columns)."""
    if code is None:
        return _pick(EMPTY_LABELS.get(column, ("—", "—")), language)
    text = str(code)
    return _pick(LABELS.get(column, {}).get(text, (text, text)), language)


# --- measure columns -------------------------------------------------------------------------------------
# (tierwise.schema labels the canonical input tables; the snapshot's measures are named here, for the cluster
# names and the rule text.) column → (English, Chinese, unit)
MEASURES: dict[str, tuple[str, str, Unit]] = {
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
TYPICAL: tuple[str, str] = ("typical", "普通客户")  # the name of a cluster that stands out on nothing


def column_label(column: str, language: str) -> str:
    """The name of a measure column (the column itself when it has none)."""
    en, zh, _ = MEASURES.get(column, (column, column, "number"))
    return zh if language == "zh" else en


def unit(column: str) -> Unit:
    return MEASURES.get(column, (column, column, "number"))[2]


def word(column: str, high: bool) -> tuple[str, str]:
    """(English, Chinese) for a group far above (high) or below the base on `column`."""
    if column in WORDS:
        return WORDS[column][0 if high else 1]
    return (f"{column} high", f"{column}高") if high else (f"{column} low", f"{column}低")


# column → (English, Chinese) for the headers of customer tables: shorter than the measure names ("Revenue",
# not "monetary"); other columns are headed by their class title or measure name.
HEADINGS: dict[str, tuple[str, str]] = {
    "customer_id": ("Customer", "客户编号"),
    "name": ("Name", "客户名称"),
    "province": ("Province", "省份"),
    "main_industry": ("Industry", "行业"),
    "owner": ("Owner", "负责人"),
    "priority_rank": ("Priority", "优先级"),
    "grade": ("Grade", "等级"),
    "composite_score": ("Score", "综合得分"),
    "monetary": ("Revenue", "收入"),
    "frequency": ("Purchases", "购买次数"),
    "recency_days": ("Days since last", "距上次购买天数"),
    "rfm_segment": ("RFM segment", "RFM分群"),
    "abc_class": ("ABC", "ABC分类"),
    "value_tier": ("Value tier", "价值分层"),
    "lifecycle_stage": ("Lifecycle", "生命周期"),
    "clv_predicted": ("Predicted CLV", "预测CLV"),
    "next_action": ("Next action", "下一步行动"),
    "satisfaction_level": ("Satisfaction", "满意度"),
    "satisfaction": ("Satisfaction score", "满意度评分"),
    "cluster": ("Cluster", "聚类编号"),
    "strategy": ("Strategy", "策略"),
    "tags": ("Tags", "标签"),
    "phone": ("Phone", "电话"),
    "email": ("E-mail", "电子邮箱"),
}


def heading(column: str, language: str) -> str:
    """A customer table's header for `column`: its heading, else its class title, else its measure name."""
    if column in HEADINGS:
        return _pick(HEADINGS[column], language)
    if column in TITLES:
        return _pick(TITLES[column], language)
    return column_label(column, language)


# --- the playbook's codes (tierwise.strategy.playbook) ----------------------------------------------------
ACTION_LABELS: dict[str, tuple[str, str]] = {
    "vip_care": ("VIP care", "尊享服务（VIP关怀）"),
    "personalised_recommendation": ("Personalised recommendations", "个性化推荐"),
    "cross_sell": ("Cross-sell", "交叉销售"),
    "up_sell": ("Up-sell", "向上销售（升级/追加）"),
    "loyalty_invitation": ("Loyalty programme invitation", "邀请加入忠诚计划"),
    "nurture": ("Nurture", "培育"),
    "win_back": ("Win-back offer", "挽回优惠"),
    "service_recovery": ("Service recovery", "服务补救"),
    "reduce_spend": ("Reduce spend", "减少投入"),
    "maintain": ("Maintain", "常规维护"),
}
SERVICE_LEVEL_LABELS: dict[str, tuple[str, str]] = {
    "premium": ("Premium", "尊享"),
    "priority": ("Priority", "优先"),
    "standard": ("Standard", "标准"),
    "basic": ("Basic (automated)", "基础（自动化）"),
}
# Channels are free text (each company has its own); these have labels.
CHANNEL_LABELS: dict[str, tuple[str, str]] = {
    "account_manager": ("Account manager", "专属客户经理"),
    "visit": ("Visit", "上门拜访"),
    "phone": ("Phone", "电话"),
    "wechat": ("WeChat", "微信"),
    "email": ("E-mail", "邮件"),
    "sms": ("SMS", "短信"),
    "app": ("App push", "应用推送"),
    "mail": ("Post", "邮寄"),
}
_STRATEGY_KINDS = {"action": ACTION_LABELS, "service_level": SERVICE_LEVEL_LABELS, "channel": CHANNEL_LABELS}


def strategy_label(kind: str, code: object, language: str) -> str:
    """Display label of an action / service_level / channel code ("—" for none, the code itself if unknown)."""
    if code is None:
        return "—"
    text = str(code)
    return _pick(_STRATEGY_KINDS[kind].get(text, (text, text)), language)


# --- learned targets (tierwise.mining.targets) -------------------------------------------------------------
# the classes of the future targets in the rule text: class → (English, Chinese)
FUTURE_CLASS_WORDS: dict[str, tuple[str, str]] = {
    "high_value": ("high value", "高价值"),
    "other": ("other", "其他"),
    "churned": ("churned", "流失"),
    "retained": ("retained", "留存"),
}
