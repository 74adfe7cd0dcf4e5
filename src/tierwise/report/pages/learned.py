"""The learned-rules page: the latest classification model `tierwise classify` learned for the run, its
held-out metrics, feature importances, the classes it gives every customer and the decision tree's rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import ibis.expr.types as ir

from tierwise.report import data as report_data
from tierwise.report.charts import dist_chart
from tierwise.report.language import TEXT, ReportLanguage, card, pct, share
from tierwise.report.pages import PageParts
from tierwise.report.pages.notes import feature, mining_note
from tierwise.store.learned import learned_payload
from tierwise.workspace import Workspace

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
    return feature(target, lang)


def _model_label(model: str, lang: ReportLanguage) -> str:
    return lang.pick(*LEARN_MODELS.get(model, (model, model)))


def _rule_text(rule: dict[str, Any], lang: ReportLanguage) -> str:
    """The rule in words, without the closing "(confidence …, N customers)": the table has columns for those."""
    for key in (f"text_{lang.language}", "text", "text_en", "expression"):
        if rule.get(key):
            text = str(rule[key])
            return re.sub(r"\s*(\(confidence [^()]*\)|（置信度[^（）]*）)$", "", text)
    return ""


@dataclass
class _Learned:
    """The learned model in the report's language: the stored payload, its target, the chosen model's name, every
    model compared (name → its part of the payload) and the chosen one's metrics."""

    data: dict[str, Any]
    target: str
    model: str
    models: dict[str, dict[str, Any]]
    chosen: dict[str, Any]

    @classmethod
    def of(cls, payload: dict[str, Any], lang: ReportLanguage) -> _Learned:
        data = _learned_part(payload, lang)
        target, model = str(data.get("target") or ""), str(data.get("model") or "")
        models = {str(k): v for k, v in (data.get("models") or {}).items() if isinstance(v, dict)}
        chosen = models.get(model) or next(iter(models.values()), {})
        if not model and models:
            model = next(iter(models))
        return cls(data, target, model, models, chosen)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.chosen.get("metrics") or {}


def learned_page(ws: Workspace, snap: ir.Table, run_id: str, lang: ReportLanguage) -> PageParts | None:
    """The learned-rules section's caption, content and charts; None when no model was learned for the run."""
    payload = learned_payload(ws, run_id)
    if payload is None:
        return None
    m = _Learned.of(payload, lang)
    charts: dict[str, dict[str, Any]] = {}
    figures: list[dict[str, str]] = []
    for key, found in (("learned_importance", _importance(m, lang)), ("learned_classes", _classes(ws, snap, m, lang))):
        if found is not None:
            charts[key], figure = found
            figures.append({"id": key, **figure})
    all_rules = [r for r in m.data.get("rules") or [] if isinstance(r, dict)]
    content = {
        "kpis": _learned_kpis(m, lang),
        "comparison": _comparison(m, lang),
        "confusion": _confusion(m, lang),
        "figures": figures,
        "rules": [_rule_row(m.target, r, lang) for r in all_rules[:MAX_RULES]],
        "notes": _notes(m, len(all_rules), lang),
    }
    return _headline(m, len(all_rules), lang), content, charts


def _learned_kpis(m: _Learned, lang: ReportLanguage) -> list[dict[str, str]]:
    p, data, target, metrics = lang.pick, m.data, m.target, m.metrics
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
            _model_label(m.model, lang),
            p(f"{len(data.get('features') or [])} features", f"{len(data.get('features') or [])} 个特征"),
        ),
    ]
    accuracy, auc = metrics.get("accuracy"), metrics.get("roc_auc")
    test_rows = metrics.get("test_rows")
    if isinstance(accuracy, int | float):
        held = p(f"{int(test_rows):,} held-out customers", f"留出验证 {int(test_rows):,} 位客户") if test_rows else ""
        kpis.append(card(p("Held-out accuracy", "留出集准确率"), pct(accuracy), held))
    if isinstance(auc, int | float):
        positive = metrics.get("positive_class")
        pos = _class_label(target, positive, lang) if positive is not None else ""
        kpis.append(card("ROC AUC", f"{auc:.3f}", p(f"for {pos}", f"针对{pos}") if pos else ""))
    return kpis


def _comparison(m: _Learned, lang: ReportLanguage) -> list[dict[str, Any]]:
    """The models compared on the held-out customers (`classify --compare`); empty when only one was fitted."""
    comparison: list[dict[str, Any]] = []
    if len(m.models) > 1:
        for name, fitted in m.models.items():
            mm = fitted.get("metrics") or {}
            per_class = mm.get("per_class") or {}
            f1s = [float(v.get("f1") or 0.0) for v in per_class.values() if isinstance(v, dict)]
            comparison.append(
                {
                    "model": _model_label(name, lang),
                    "chosen": name == m.model,
                    "accuracy": mm.get("accuracy"),
                    "f1": sum(f1s) / len(f1s) if f1s else None,
                    "roc_auc": mm.get("roc_auc"),
                }
            )
    return comparison


def _confusion(m: _Learned, lang: ReportLanguage) -> dict[str, Any] | None:
    metrics = m.metrics
    cm = metrics.get("confusion_matrix") or {}
    classes, matrix = cm.get("labels") or [], cm.get("matrix") or []
    if not classes or len(matrix) != len(classes):
        return None
    per_class = metrics.get("per_class") or {}
    body = []
    for code, row in zip(classes, matrix, strict=False):
        total = sum(int(v) for v in row) or 1
        pc = per_class.get(str(code)) or {}
        body.append(
            {
                "label": _class_label(m.target, code, lang),
                "cells": [{"n": int(v), "alpha": round(0.08 + 0.6 * int(v) / total, 2)} for v in row],
                "recall": pc.get("recall"),
                "precision": pc.get("precision"),
            }
        )
    return {"labels": [_class_label(m.target, c, lang) for c in classes], "rows": body}


def _importance(m: _Learned, lang: ReportLanguage) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The chart of the features that weigh most in the chosen model, and its figure's title and caption."""
    p = lang.pick
    importances = m.chosen.get("importances") or {}
    ranked = sorted(
        ((str(f), float(v)) for f, v in importances.items() if isinstance(v, int | float) and v > 0),
        key=lambda fv: -fv[1],
    )[:TOP_IMPORTANCES]
    if not ranked:
        return None
    permutation = m.chosen.get("importance_kind") == "permutation"
    chart = {
        "kind": "importance",
        "labels": [feature(f, lang) for f, _ in ranked],
        "values": [v for _, v in ranked],
        "x_axis": p("Drop in accuracy when shuffled", "打乱后准确率的下降")
        if permutation
        else p("Share of the tree's impurity decrease", "在决策树中减少不纯度的占比"),
        "format": ".3f" if permutation else ".1%",
    }
    figure = {
        "title": p("Feature importance", "特征重要性"),
        "caption": p(
            f"The {len(ranked)} features that weigh most in the {_model_label(m.model, lang).lower()}.",
            f"对{_model_label(m.model, lang)}影响最大的 {len(ranked)} 个特征。",
        ),
    }
    return chart, figure


def _classes(
    ws: Workspace, snap: ir.Table, m: _Learned, lang: ReportLanguage
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Customers and revenue by the class the model gives them, and the figure's title and caption; None when
    neither the snapshot nor the model's predictions table has the classes."""
    counts = report_data.learned_counts(ws, snap, m.data.get("predictions_table"))
    if not counts:
        return None
    n, revenue = sum(r["customers"] for r in counts), sum(r["revenue"] for r in counts)
    rows = [
        {
            "label": _class_label(m.target, r["code"], lang),
            "customers": r["customers"],
            "customer_share": share(r["customers"], n),
            "revenue": r["revenue"],
            "revenue_share": share(r["revenue"], revenue),
        }
        for r in counts
    ]
    figure = {
        "title": lang.pick("Every customer classified", "全部客户的预测类别"),
        "caption": lang.pick(
            f"The model applied to {n:,} customers: customers and revenue by learned class.",
            f"模型应用于 {n:,} 位客户：各预测类别的客户与收入占比。",
        ),
    }
    return dist_chart(rows, lang), figure


def _rule_row(target: str, r: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    customers = r.get("customers") if r.get("customers") is not None else r.get("support")
    return {
        "class": _class_label(target, r.get("class"), lang),
        "text": _rule_text(r, lang),
        "confidence": r.get("confidence"),
        "customers": customers,
        "support": r.get("support"),
    }


def _notes(m: _Learned, n_rules: int, lang: ReportLanguage) -> list[str]:
    notes = [mining_note(str(n), lang) for n in m.data.get("notes") or [] if n]
    if n_rules > MAX_RULES:
        notes.append(
            lang.pick(
                f"The first {MAX_RULES} of {n_rules} rules are listed.",
                f"仅列出 {n_rules} 条规则中的前 {MAX_RULES} 条。",
            )
        )
    return notes


def _headline(m: _Learned, n_rules: int, lang: ReportLanguage) -> str:
    accuracy, auc = m.metrics.get("accuracy"), m.metrics.get("roc_auc")
    acc = f"{accuracy:.1%}" if isinstance(accuracy, int | float) else "?"
    auc_en = f" (ROC AUC {auc:.2f})" if isinstance(auc, int | float) else ""
    auc_zh = f"（ROC AUC {auc:.2f}）" if auc_en else ""
    rules_en = f"; {n_rules} rules below" if n_rules else ""
    rules_zh = f"；下列 {n_rules} 条规则" if n_rules else ""
    model, target = _model_label(m.model, lang), _target_label(m.target, lang)
    return lang.pick(
        f"A {model.lower()} learned “{target}”: it classifies {acc} of the held-out customers correctly"
        f"{auc_en}{rules_en}.",
        f"{model}学习“{target}”：留出集中 {acc} 的客户分类正确{auc_zh}{rules_zh}。",
    )
