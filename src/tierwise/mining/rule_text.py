"""A fitted decision tree as rules people can read (决策树规则) and as tierwise rule expressions.

Each leaf becomes one rule: the conditions on the path to it, merged per feature into one interval, the class
the leaf predicts, its confidence (the share of that class among the leaf's training customers) and its
support (how many training customers reached it).

Thresholds are made round without changing whom a rule selects: the tree splits at the midpoint between two
neighbouring values, and any number from the lower value up to (not including) the upper one splits the
customers the same way, so the roundest such number is shown (45 rather than 45.5, 12,000 rather than
11,987.25). The neighbours are looked up among the customers of the rendered data that reach the split, so
each expression selects exactly the customers of its leaf on that data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from tierwise.i18n import column_label, unit

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Condition:
    """lower < feature ≤ upper (either bound may be absent); `missing`: customers without a value match too
    (the model gave them the median, which lies inside the interval)."""

    feature: str
    lower: float | None = None
    upper: float | None = None
    missing: bool = False

    def expression(self) -> str:
        column = _quoted(self.feature)
        parts = []
        if self.lower is not None:
            parts.append(f"{column} > {number_literal(self.lower)}")
        if self.upper is not None:
            parts.append(f"{column} <= {number_literal(self.upper)}")
        test = " and ".join(parts) or "true"
        if self.missing:
            return f"({column} is null or {'(' + test + ')' if len(parts) > 1 else test})"
        return test

    def text(self, language: str, currency: str = "¥") -> str:
        name = column_label(self.feature, language)
        lo = None if self.lower is None else readable(self.feature, self.lower, language, currency)
        hi = None if self.upper is None else readable(self.feature, self.upper, language, currency)
        if lo is not None and hi is not None:
            out = f"{lo} < {name} ≤ {hi}"
        elif hi is not None:
            out = f"{name} ≤ {hi}"
        elif lo is not None:
            out = f"{name} > {lo}"
        else:
            out = name
        if self.missing:
            out += "（或未知）" if language == "zh" else " (or unknown)"
        return out


@dataclass
class LeafRule:
    leaf: int  # node id in the fitted tree
    conditions: list[Condition]
    predicted: str
    confidence: float
    support: int  # training customers in the leaf
    distribution: dict[str, float] = field(default_factory=dict)  # class → share of the leaf's training customers
    customers: int | None = None  # customers of the rendered data in the leaf

    def expression(self) -> str:
        return " and ".join(c.expression() for c in self.conditions) or "true"

    def text(self, language: str = "en", class_label: str | None = None, currency: str = "¥") -> str:
        label = class_label or self.predicted
        pct = f"{self.confidence * 100:.0f}%"
        if language == "zh":
            when = " 且 ".join(c.text("zh", currency) for c in self.conditions)
            head = f"如果 {when} 则 " if when else "所有客户："
            return f"{head}{label}（置信度 {pct}，{self.support:,} 位客户）"
        when = " and ".join(c.text("en", currency) for c in self.conditions)
        head = f"if {when} then " if when else "all customers: "
        return f"{head}{label} (confidence {pct}, {self.support:,} customers)"


def tree_rules(
    tree: DecisionTreeClassifier,
    features: list[str],
    data: pd.DataFrame | None = None,
    medians: dict[str, float] | None = None,
) -> list[LeafRule]:
    """One rule per leaf, largest support first.

    `data`: the customers the rules are for, raw (NULLs allowed), with the `features` columns; `medians`: the
    values the model put in place of NULLs. With both, thresholds are rounded (see the module doc) and
    conditions say whether customers without a value fall inside."""
    t = tree.tree_
    classes = [str(c) for c in tree.classes_]
    filled, missing, reach = None, set(), None
    if data is not None:
        filled = data[features].apply(pd.to_numeric, errors="coerce").astype("float64")
        missing = {f for f, n in filled.isna().sum().items() if n}
        filled = filled.fillna({f: (medians or {}).get(f, 0.0) for f in features})
        # node → the rows that reach it: a threshold only has to split those rows as the tree does
        reach = tree.decision_path(filled.to_numpy(dtype="float32")).tocsc()
    rules: list[LeafRule] = []
    # (node, {feature index: [lower, upper]}) — depth first, left (≤) before right (>)
    stack: list[tuple[int, dict[int, list[float | None]]]] = [(0, {})]
    while stack:
        node, bounds = stack.pop()
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == right:  # a leaf
            rule = _leaf(tree, node, bounds, features, classes, missing, medians)
            if reach is not None:
                rule.customers = int(reach.indptr[node + 1] - reach.indptr[node])
            rules.append(rule)
            continue
        f = int(t.feature[node])
        cut = float(t.threshold[node])
        if filled is not None and reach is not None:
            rows = reach.indices[reach.indptr[node] : reach.indptr[node + 1]]
            cut = _round_cut(filled[features[f]].to_numpy()[rows], cut)
        lo, hi = bounds.get(f, [None, None])
        stack.append((right, {**bounds, f: [cut if lo is None else max(lo, cut), hi]}))
        stack.append((left, {**bounds, f: [lo, cut if hi is None else min(hi, cut)]}))
    return sorted(rules, key=lambda r: (-r.support, r.leaf))


def _leaf(
    tree: DecisionTreeClassifier,
    node: int,
    bounds: dict[int, list[float | None]],
    features: list[str],
    classes: list[str],
    missing: set[str],
    medians: dict[str, float] | None,
) -> LeafRule:
    t = tree.tree_
    value = np.asarray(t.value[node][0], dtype="float64")
    shares = value / value.sum() if value.sum() > 0 else value
    best = int(np.argmax(shares))
    conditions = []
    for f in sorted(bounds):
        name = features[f]
        lo, hi = bounds[f]
        m = (medians or {}).get(name)
        inside = m is not None and (lo is None or m > lo) and (hi is None or m <= hi)
        conditions.append(Condition(name, lo, hi, missing=name in missing and inside))
    return LeafRule(
        leaf=node,
        conditions=conditions,
        predicted=classes[best],
        confidence=float(shares[best]),
        support=int(t.n_node_samples[node]),
        distribution={c: float(s) for c, s in zip(classes, shares, strict=True)},
    )


def _round_cut(values: np.ndarray, cut: float) -> float:
    """The roundest threshold that splits `values` as the tree does. The tree compares float32 copies of
    the values with `cut`, so the neighbours are found on that comparison but taken in float64, the
    precision the rule engine compares in."""
    goes_left = values.astype("float32") <= cut
    if goes_left.all() or not goes_left.any():
        return cut
    return nice_threshold(float(values[goes_left].max()), float(values[~goes_left].min()))


def nice_threshold(low: float, high: float) -> float:
    """The roundest number t with low ≤ t < high (fewest significant digits; `low` itself if none is)."""
    if not high > low:
        return low
    top = max(abs(low), abs(high), high - low)
    for exponent in range(math.floor(math.log10(top)) + 1, -13, -1):
        step = 10.0**exponent
        digits = max(0, -exponent)
        candidate = round(math.ceil(low / step) * step, digits)
        if candidate < low:
            candidate = round(candidate + step, digits)
        if low <= candidate < high:
            return candidate + 0.0  # no "-0"
    return low


def number_literal(value: float) -> str:
    """The exact value as a plain decimal number for a rule expression (no exponent, no trailing zeros)."""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(np.format_float_positional(value, trim="-"))


def readable(column: str, value: float, language: str, currency: str = "¥") -> str:
    """A threshold as people write it: days as whole days, money with thousands separators, shares in %."""
    kind = unit(column)
    if kind == "share":
        return f"{_digits(value * 100)}%"
    if kind == "money":
        return f"{'-' if value < 0 else ''}{currency}{_digits(abs(value))}"
    if kind == "days":
        return f"{_digits(value)}天" if language == "zh" else f"{_digits(value)} days"
    return _digits(value)


def _digits(value: float) -> str:
    """Thousands separators; decimals only as far as the number has them (at most 4 significant places)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value)))) if value else 0
    return f"{value:,.{decimals}f}".rstrip("0").rstrip(".")


def _quoted(column: str) -> str:
    return column if _IDENTIFIER.fullmatch(column) else '"' + column.replace('"', '""') + '"'


def rules_toml(rules: list[LeafRule], *, prefix: str = "learned", classes: list[str] | None = None) -> str:
    """`[[rules]]` entries for tierwise.toml: one tag per rule, named <prefix>_<class>_<n> (n by support)."""
    out, seen = [], dict[str, int]()
    for rule in sorted(rules, key=lambda r: (-r.support, r.leaf)):
        if classes is not None and rule.predicted not in classes:
            continue
        seen[rule.predicted] = seen.get(rule.predicted, 0) + 1
        label = re.sub(r"[^\w.\-]+", "_", rule.predicted.strip())  # a valid rule name (tierwise.checks)
        name = f"{prefix}_{label}_{seen[rule.predicted]}"
        out += ["[[rules]]", f"name = {_toml_string(name)}", f"expression = {_toml_string(rule.expression())}", ""]
    return "\n".join(out)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
