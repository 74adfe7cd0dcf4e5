"""Learned classification rules (分类规则学习): classes given in advance, a model that assigns customers to them.

The decision tree is the default because its rules can be read (mining.rule_text); gradient boosting and a
small neural network are there to compare against. Every model is judged on a held-out part of the labelled
customers (stratified split) and then applied to every customer as `learned_class` with its confidence.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from tierwise.errors import UserError
from tierwise.mining.rule_text import LeafRule, tree_rules
from tierwise.mining.settings import ClassifySettings, ModelKind

MODELS: tuple[ModelKind, ...] = ("tree", "boosting", "mlp")

# target column → columns computed from it (or it from them in one step), never features for it
DERIVED: dict[str, tuple[str, ...]] = {
    "grade": ("composite_score", "score_*", "contrib_*", "priority_rank"),
    "composite_score": ("grade", "score_*", "contrib_*", "priority_rank"),
    "priority_rank": ("grade", "composite_score", "score_*", "contrib_*"),
    "rfm_segment": ("r_score", "f_score", "m_score", "rfm_class8"),
    "rfm_class8": ("r_score", "f_score", "m_score", "rfm_segment"),
    "abc_class": ("abc_cum_share",),
    "lifecycle_stage": ("expected_gap_days",),
    "satisfaction_level": ("satisfaction",),
}
SLOW_FIT_ROWS = 200_000  # boosting and the network fit on a sample of this many training customers at most
IMPORTANCE_ROWS = 5000  # held-out customers used for permutation importance


@dataclass
class ModelReport:
    model: str
    classes: list[str]
    accuracy: float
    per_class: dict[str, dict[str, float]]  # class → precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class, columns: predicted class, both in `classes` order
    roc_auc: float | None  # binary targets: of the positive class
    positive: str | None
    importances: dict[str, float]  # feature → importance, largest first
    importance_kind: str  # "impurity" or "permutation"
    train_rows: int
    test_rows: int
    fit_seconds: float

    def metrics(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "confusion_matrix": {"labels": self.classes, "matrix": self.confusion},
            "roc_auc": self.roc_auc,
            "positive_class": self.positive,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
        }


@dataclass
class LearnResult:
    target: str
    model: str
    report: ModelReport
    comparison: list[ModelReport]  # every model fitted (the chosen one first)
    predictions: pd.DataFrame  # learned_class, learned_confidence; index of the input rows
    rules: list[LeafRule]  # the tree's leaves (empty for the other models)
    features: list[str]
    dropped: list[str]
    medians: dict[str, float]
    min_samples_leaf: int
    notes: list[str] = field(default_factory=list)
    estimator: Any = None

    def as_json(self, language: str = "en") -> dict[str, Any]:
        """What `tierwise classify --json` prints: per model its metrics and importances, and the rules."""
        return {
            "target": self.target,
            "model": self.model,
            "features": self.features,
            "models": {
                r.model: {"metrics": r.metrics(), "importances": r.importances, "importance_kind": r.importance_kind}
                for r in self.comparison
            },
            "rules": [
                {
                    "class": rule.predicted,
                    "confidence": rule.confidence,
                    "support": rule.support,
                    "customers": rule.customers,
                    "expression": rule.expression(),
                    "text": rule.text(language),
                }
                for rule in self.rules
            ],
            "notes": self.notes,
        }


def usable_features(df: pd.DataFrame, target: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(features to use, notes on those left out): present, numeric, and neither the target nor derived from it."""
    derived = DERIVED.get(target, ())
    used, dropped = [], []
    for f in dict.fromkeys(wanted):
        if f == target or any(f == d or (d.endswith("*") and f.startswith(d[:-1])) for d in derived):
            dropped.append(f"{f} (the target or derived from it)")
        elif f not in df.columns:
            dropped.append(f"{f} (not in the data)")
        elif not (pd.api.types.is_numeric_dtype(df[f]) or pd.api.types.is_bool_dtype(df[f])):
            dropped.append(f"{f} (not a number)")
        else:
            used.append(f)
    return used, dropped


def learn_classes(
    x: pd.DataFrame,
    y: pd.Series,
    settings: ClassifySettings | None = None,
    *,
    compare: bool = False,
    positive: str | None = None,
) -> LearnResult:
    """Fit the configured model on the labelled rows of `x` (`y` aligned to it; NULL = no label: not trained
    on, still predicted), report it on a held-out part, and predict every row.

    `compare`: fit all three models and report each. `positive`: the class ROC AUC is about for a binary
    target (default: the rarer class)."""
    # Gradient boosting's OpenMP threads spin-wait for each other: on two busy cores a fit on 2,000 customers
    # took 7.7 s with two threads and well under a second with one (measured here; k-means alike).
    with threadpool_limits(limits=1, user_api="openmp"):
        return _learn(x, y, settings or ClassifySettings(), compare, positive)


def _learn(x: pd.DataFrame, y: pd.Series, s: ClassifySettings, compare: bool, positive: str | None) -> LearnResult:
    features, dropped = usable_features(x, s.target, s.features)
    notes = [f"features left out: {', '.join(dropped)}"] if dropped else []
    if not features:
        raise UserError(f"classify: no numeric feature to learn '{s.target}' from; set [classify] features")
    values = x[features].apply(pd.to_numeric, errors="coerce").astype("float64")
    labelled = y.notna().to_numpy()
    labels = y[labelled].astype(str).to_numpy()
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UserError(f"classify: the target '{s.target}' has {len(classes)} class(es) among labelled customers")
    if (~labelled).any():
        notes.append(f"{int((~labelled).sum())} customers without a label: not trained on, still predicted")
    train, test = _split(np.flatnonzero(labelled), labels, s, notes)
    by_row = pd.Series(y.astype("object").to_numpy(), index=np.arange(len(y)))
    y_train, y_test = by_row[train].astype(str).to_numpy(), by_row[test].astype(str).to_numpy()
    medians = {f: float(v) if pd.notna(v) else 0.0 for f, v in values.iloc[train].median().items()}
    leaf = min(s.min_samples_leaf, max(1, len(train) // 100))
    if leaf < s.min_samples_leaf:
        notes.append(f"min_samples_leaf lowered to {leaf} (1% of {len(train):,} training customers)")
    pos = positive if positive is not None else _rarer(y_train, classes) if len(classes) == 2 else None

    reports, estimators = [], {}
    for kind in [s.model, *(m for m in MODELS if m != s.model)] if compare else [s.model]:
        estimator, report = _fit_one(kind, values, medians, train, test, y_train, y_test, classes, pos, leaf, s)
        reports.append(report)
        estimators[kind] = estimator
        if report.train_rows < len(train):
            notes.append(f"{kind} fitted on a sample of {report.train_rows:,} training customers")
    chosen = estimators[s.model]
    predictions = _predict(chosen, s.model, values, medians)
    rules = tree_rules(chosen, features, x, medians) if s.model == "tree" else []
    return LearnResult(
        target=s.target,
        model=s.model,
        report=reports[0],
        comparison=reports,
        predictions=predictions,
        rules=rules,
        features=features,
        dropped=dropped,
        medians=medians,
        min_samples_leaf=leaf,
        notes=notes,
        estimator=chosen,
    )


def apply_learned(result: LearnResult, df: pd.DataFrame) -> tuple[pd.DataFrame, list[LeafRule]]:
    """The fitted model on other customers (e.g. today's snapshot after learning a future target as of the
    calibration date): (learned_class and learned_confidence aligned to `df`, the tree's rules with thresholds
    rounded on `df`, so that each expression selects exactly its leaf's customers there)."""
    values = df[result.features].apply(pd.to_numeric, errors="coerce").astype("float64")
    with threadpool_limits(limits=1, user_api="openmp"):
        predictions = _predict(result.estimator, result.model, values, result.medians)
    rules = tree_rules(result.estimator, result.features, df, result.medians) if result.model == "tree" else []
    return predictions, rules


def _predict(estimator: Any, kind: str, values: pd.DataFrame, medians: dict[str, float]) -> pd.DataFrame:
    proba = estimator.predict_proba(_prepare(kind, values, medians))
    fitted = np.asarray([str(c) for c in estimator.classes_], dtype=object)
    return pd.DataFrame(
        {"learned_class": fitted[proba.argmax(axis=1)], "learned_confidence": proba.max(axis=1)}, index=values.index
    )


def _split(rows: np.ndarray, labels: np.ndarray, s: ClassifySettings, notes: list[str]) -> tuple[np.ndarray, ...]:
    counts = pd.Series(labels).value_counts()
    n_test = int(np.ceil(len(rows) * s.test_size))
    stratify = labels if counts.min() >= 2 and len(counts) <= n_test <= len(rows) - len(counts) else None
    if stratify is None:
        notes.append("the held-out part is not stratified: a class has fewer than 2 customers, or too few customers")
    train, test = train_test_split(rows, test_size=s.test_size, random_state=s.seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def _rarer(y: np.ndarray, classes: list[str]) -> str:
    counts = {c: int((y == c).sum()) for c in classes}
    return min(classes, key=lambda c: (counts[c], c))


def _make(kind: str, leaf: int, s: ClassifySettings) -> Any:
    if kind == "tree":
        return DecisionTreeClassifier(max_depth=s.max_depth, min_samples_leaf=leaf, random_state=s.seed)
    if kind == "boosting":
        return HistGradientBoostingClassifier(random_state=s.seed, min_samples_leaf=max(leaf, 20))
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, early_stopping=True, random_state=s.seed),
    )


def _prepare(kind: str, values: pd.DataFrame, medians: dict[str, float]) -> np.ndarray:
    """Boosting handles missing values itself; the tree and the network get the training medians."""
    if kind == "boosting":
        return values.to_numpy(dtype="float64")
    return values.fillna(medians).to_numpy(dtype="float64")


def _fit_one(
    kind: str,
    values: pd.DataFrame,
    medians: dict[str, float],
    train: np.ndarray,
    test: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    positive: str | None,
    leaf: int,
    s: ClassifySettings,
) -> tuple[Any, ModelReport]:
    fit_rows = np.arange(len(train))
    if kind != "tree" and len(train) > SLOW_FIT_ROWS:
        fit_rows = np.sort(np.random.default_rng(s.seed).choice(len(train), SLOW_FIT_ROWS, replace=False))
    matrix = _prepare(kind, values, medians)
    estimator = _make(kind, leaf, s)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # early stopping ends the network's training
        estimator.fit(matrix[train[fit_rows]], y_train[fit_rows])
    seconds = time.perf_counter() - started
    x_test = matrix[test]
    predicted = estimator.predict(x_test).astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(y_test, predicted, labels=classes, zero_division=0)
    per_class = {
        c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for c, p, r, f, n in zip(classes, precision, recall, f1, support, strict=True)
    }
    auc = None
    if positive is not None and len(set(y_test)) == 2:
        column = [str(c) for c in estimator.classes_].index(positive)
        auc = float(roc_auc_score(y_test == positive, estimator.predict_proba(x_test)[:, column]))
    importances, how = _importances(kind, estimator, x_test, y_test, values.columns.tolist(), s.seed)
    report = ModelReport(
        model=kind,
        classes=classes,
        accuracy=float(accuracy_score(y_test, predicted)),
        per_class=per_class,
        confusion=confusion_matrix(y_test, predicted, labels=classes).tolist(),
        roc_auc=auc,
        positive=positive,
        importances=importances,
        importance_kind=how,
        train_rows=len(fit_rows),
        test_rows=len(test),
        fit_seconds=round(seconds, 3),
    )
    return estimator, report


def _importances(
    kind: str, estimator: Any, x_test: np.ndarray, y_test: np.ndarray, features: list[str], seed: int
) -> tuple[dict[str, float], str]:
    if kind == "tree":
        raw, how = np.asarray(estimator.feature_importances_), "impurity"
    else:
        n = min(len(x_test), IMPORTANCE_ROWS)
        pick = np.sort(np.random.default_rng(seed).choice(len(x_test), n, replace=False))
        result = permutation_importance(estimator, x_test[pick], y_test[pick], n_repeats=5, random_state=seed)
        raw, how = np.asarray(result["importances_mean"]), "permutation"
    ranked = sorted(zip(features, raw.tolist(), strict=True), key=lambda p: -p[1])
    return {f: float(v) for f, v in ranked}, how
