"""A run's snapshot for its readers: the class labels in Chinese and English and `select_customers` (the rows a
rule-language filter picks). The summaries people read are built in report/summaries.py and report/explain.py."""

from __future__ import annotations

import difflib

import ibis.expr.types as ir

from tierwise.classify import abc, grade, lifecycle, loyalty, rfm, value
from tierwise.errors import UserError
from tierwise.rules import compile_expression

# column → {code: (English, Chinese)}
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "rfm_segment": rfm.SEGMENT_LABELS,
    "abc_class": abc.LABELS,
    "lifecycle_stage": lifecycle.LABELS,
    "value_tier": value.LABELS,
    "rfm_class8": {zh: (en, zh) for zh, en in rfm.CLASS8_EN.items()},
    "grade": grade.LABELS,
    "loyalty": loyalty.LABELS,
    "satisfaction_level": loyalty.SATISFACTION_LABELS,
}
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
SUMMARIES = [
    "grade",
    "rfm_segment",
    "rfm_class8",
    "abc_class",
    "value_tier",
    "lifecycle_stage",
    "loyalty",
    "cluster_name",
]


# What an empty class means, per column (prospects are not graded, and so on).
EMPTY_LABELS: dict[str, tuple[str, str]] = {
    "grade": ("Not graded (no purchase)", "未评级（无购买）"),
    "rfm_class8": ("No purchase", "无购买"),
    "satisfaction_level": ("No score", "无评分"),
    "cluster_name": ("Not clustered (no purchase)", "未聚类（无购买）"),
}


def label(column: str, code: object, language: str) -> str:
    if code is None:
        en, zh = EMPTY_LABELS.get(column, ("—", "—"))
        return zh if language == "zh" else en
    en, zh = LABELS.get(column, {}).get(str(code), (str(code), str(code)))
    return zh if language == "zh" else en


def select_customers(snapshot: ir.Table, *, where: str | None = None, columns: list[str] | None = None) -> ir.Table:
    """The snapshot rows matching `where` (the rule language) with `columns` (default: all), customer_id first."""
    if where:
        snapshot = snapshot.filter(compile_expression(where, snapshot.schema(), what="--where")(snapshot))
    wanted = columns or list(snapshot.columns)
    unknown = [c for c in wanted if c not in snapshot.columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], snapshot.columns, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'tierwise export --list-columns'"
        raise UserError(f"--columns: no column '{unknown[0]}' in this run; {hint}")
    ordered = ["customer_id", *[c for c in wanted if c != "customer_id"]]
    return snapshot.select(*ordered).order_by("customer_id")
