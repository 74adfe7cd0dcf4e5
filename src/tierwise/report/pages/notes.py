"""The notes the models and the mining keep (in English, as the code wrote them) as plain sentences in the
report's language; shared by the model, cluster and learned-rules pages."""

from __future__ import annotations

import re

from tierwise.i18n import column_label
from tierwise.report.language import ReportLanguage


def feature(column: str, lang: ReportLanguage) -> str:
    return column_label(column, lang.language)


def features_in(text: str, lang: ReportLanguage) -> str:
    """A comma-separated list of feature columns (each maybe followed by a count in brackets) in words."""
    parts = []
    for part in text.split(", "):
        m = re.fullmatch(r"(\w+)(.*)", part.strip(), re.S)
        rest = m[2].replace("(", "（").replace(")", "）") if m and lang.zh else m[2] if m else ""
        parts.append(feature(m[1], lang) + rest if m else part)
    return ("、" if lang.zh else ", ").join(parts)


def plain_note(note: str, lang: ReportLanguage) -> str:
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


def mining_note(note: str, lang: ReportLanguage) -> str:
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
            return lang.pick(en, zh) + features_in(note[len(prefix) :], lang) + lang.pick(".", "。")
    if m := re.match(r"clustering skipped: (.*)$", note, re.S):
        return lang.pick(f"Clustering skipped: {m[1]}.", f"本次未聚类：{m[1]}。")
    if m := re.match(r"(\d+) customers without a label", note):
        n = int(m[1])
        return lang.pick(
            f"{n:,} customers have no label: not learned from, still classified.",
            f"{n:,} 位客户没有标签：不参与学习，但同样给出预测类别。",
        )
    return plain_note(note, lang)
