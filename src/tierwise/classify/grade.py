"""Weighted composite grade (综合加权评分, 客户分级): indicators → 0–100 scores → weighted score → A/B/C/D, priority.

Each indicator is an expression over the customer's features where larger is better (credit status, order
amount, development prospect, profit contribution by default). Among buyers, each is normalised to 0–100:
by percentile (100 × the share of buyers with a value at most this one, so equal values score the same) or
by min–max. The composite score is the weighted mean of a customer's indicator scores, and each indicator's
contribution (weight × score / the weights used) is kept, so the points add up to the composite score.

Missing values are not zeros. A customer with a short history (tenure under `short_history_days`) takes the
development-prospect score in place of any indicator it cannot have yet; any other missing indicator is left
out and the remaining weights are rescaled. Grades A/B/C/D go by quotas of the graded customers (top 10%,
next 20%, next 30%, rest by default; equal scores share a grade) or by score cut-offs. priority_rank is
1..n over graded customers by score (ties: revenue, then id). Prospects (no purchase) are not graded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from tierwise.classify.settings import GradeSettings

GRADES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Indicator:
    name: str
    value: Callable[[ir.Table], ir.NumericValue]
    weight: float


def _normalised(raw: ir.NumericValue, how: str) -> ir.FloatingValue:
    known = raw.notnull()
    if how == "percentile":
        position = ibis.cume_dist().over(group_by=known, order_by=raw)
        return ibis.ifelse(known, 100.0 * position, ibis.null("float64"))
    low, high = raw.min().over(), raw.max().over()
    spread = (high - low).cast("float64")
    return ibis.ifelse(spread > 0, 100.0 * (raw - low) / spread, ibis.ifelse(known, 50.0, ibis.null("float64")))


def add_grade(
    t: ir.Table,
    indicators: Sequence[Indicator],
    settings: GradeSettings | None = None,
    *,
    buyer: str = "recency_days",
) -> ir.Table:
    """Add score_<name> and contrib_<name> per indicator, composite_score, grade and priority_rank.

    `indicators` are the compiled ones: `settings.indicators` (expressions) is not read here."""
    s = settings or GradeSettings()
    names = [i.name for i in indicators]
    if not indicators or sum(i.weight for i in indicators) <= 0 or any(i.weight < 0 for i in indicators):
        raise ValueError("the composite grade needs at least one indicator and non-negative weights adding to > 0")
    if s.method == "quotas" and (any(q < 0 for q in s.quotas) or sum(s.quotas) > 1):
        raise ValueError(f"grade quotas must be non-negative and add up to at most 1, got {list(s.quotas)}")
    if s.method == "cutoffs" and not s.cutoffs[0] >= s.cutoffs[1] >= s.cutoffs[2]:
        raise ValueError(f"grade cut-offs must fall from A to C, got {list(s.cutoffs)}")

    is_buyer = t[buyer].notnull()
    t = t.mutate(**{f"_raw_{i.name}": ibis.ifelse(is_buyer, i.value(t).cast("float64"), None) for i in indicators})
    t = t.mutate(**{f"score_{n}": _normalised(t[f"_raw_{n}"], s.normalise) for n in names})
    if s.prospect_indicator in names:
        short = t.tenure_days < s.short_history_days
        prospect = t[f"score_{s.prospect_indicator}"]
        t = t.mutate(
            **{f"score_{n}": ibis.ifelse(short, t[f"score_{n}"].coalesce(prospect), t[f"score_{n}"]) for n in names}
        )
    used = sum(ibis.ifelse(t[f"score_{i.name}"].notnull(), i.weight, 0.0) for i in indicators)
    t = t.mutate(_weights=used)
    t = t.mutate(
        **{
            f"contrib_{i.name}": ibis.ifelse(t._weights > 0, i.weight * t[f"score_{i.name}"] / t._weights, None)
            for i in indicators
        }
    )
    t = t.mutate(
        composite_score=ibis.ifelse(
            t._weights > 0, sum(t[f"contrib_{n}"].fill_null(0.0) for n in names), ibis.null("float64")
        )
    )
    graded = t.composite_score.notnull()
    if s.method == "quotas":
        t = t.mutate(_position=ibis.cume_dist().over(group_by=graded, order_by=ibis.desc(t.composite_score)))
        position, graded = t._position, t.composite_score.notnull()
        qa, qb, qc = s.quotas
        cases = [
            (position <= qa + 1e-12, "A"),
            (position <= qa + qb + 1e-12, "B"),
            (position <= qa + qb + qc + 1e-12, "C"),
        ]
    else:
        ca, cb, cc = s.cutoffs
        cases = [(t.composite_score >= ca, "A"), (t.composite_score >= cb, "B"), (t.composite_score >= cc, "C")]
    t = t.mutate(grade=ibis.ifelse(graded, ibis.cases(*cases, else_="D"), ibis.null("string")))
    graded = t.composite_score.notnull()
    rank = ibis.row_number().over(
        group_by=graded, order_by=[ibis.desc(t.composite_score), ibis.desc(t.monetary), t.customer_id]
    )
    t = t.mutate(priority_rank=ibis.ifelse(graded, rank + 1, ibis.null("int64")))
    return t.drop("_weights", *[f"_raw_{n}" for n in names], *(["_position"] if s.method == "quotas" else []))
