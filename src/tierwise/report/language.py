"""The report's words in Chinese and English and the helpers that format its numbers (shares, compact amounts,
KPI cards); shared by the report's pages and the dashboard, which shows the same captions and labels."""

from __future__ import annotations

from tierwise.i18n import label

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


class ReportLanguage:
    """The report's words (TEXT), class labels and compact amounts in one language (zh or en)."""

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


def pct(x: float) -> str:
    """A share as a percentage with one decimal: 0.4567 → 45.7%."""
    return f"{x:.1%}"


def share(part: float | None, whole: float | None) -> float:
    """part / whole, 0 when there is no whole (no customers, no revenue) and for a missing part."""
    return float(part or 0.0) / float(whole) if whole else 0.0


def card(label: str, value: str, note: str) -> dict[str, str]:
    """A KPI card as the template shows it: a label, a value and a note under it."""
    return {"label": label, "value": value, "note": note}
