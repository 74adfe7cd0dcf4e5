"""Grade hysteresis ([stability]): a customer changes grade only when the change is clear.

Without it, a customer whose composite score wobbles around a cut-off flips between grades from run to run
(B, A, B, A …), and every flip sends a sales rep a different instruction. With `[stability] enabled = true`
the grade the score alone gives is kept as `grade_raw`, and `grade` moves away from the previous run's grade
only when

- the score clears the cut-off by `margin` points (0 = this rule is off): up a grade needs score ≥ cut-off
  + margin, down a grade needs score < cut-off − margin (a move of several grades goes as far as the margin
  allows), or
- the new grade has held for `confirm_runs` runs in a row: this run's grade_raw equals the grade_raw of the
  `confirm_runs − 1` previous runs.

Cut-offs are the run's own: the configured scores with `method = "cutoffs"`; with quotas, the lowest score
that got each grade in this run (equal scores share a grade, so that score is the effective boundary).
New customers, and customers ungraded in the previous run, take their grade_raw. The count of customers held
at their previous grade is what the hysteresis prevented in this run.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from tierwise.classify.grade import GRADES
from tierwise.history.settings import StabilitySettings
from tierwise.store.compat import with_columns


def _index(grade: ir.StringValue) -> ir.IntegerValue:
    return ibis.cases(*[(grade == g, i) for i, g in enumerate(GRADES)], else_=ibis.null("int64"))


def _grade_at(index: ir.IntegerValue) -> ir.StringValue:
    return ibis.cases(*[(index == i, g) for i, g in enumerate(GRADES)], else_=ibis.null("string"))


def effective_cutoffs(t: ir.Table, method: str, cutoffs: Sequence[float], grade: str = "grade") -> list[ir.Value]:
    """Lowest score of A, B and C in this run (as window values over `t`), or the configured cut-offs."""
    if method == "cutoffs":
        return [ibis.literal(float(c)) for c in cutoffs]
    return [ibis.ifelse(t[grade] == g, t.composite_score, ibis.null("float64")).min().over() for g in GRADES[:3]]


def _by_cutoffs(score: ir.NumericValue, cuts: Sequence[ir.Value]) -> ir.IntegerValue:
    """Grade index (0 = A … 3 = D) of a score against cut-offs (a missing cut-off is never reached)."""
    return ibis.cases(
        *[((score >= c).fill_null(False), i) for i, c in enumerate(cuts)],
        else_=len(cuts),
    )


def apply_stability(
    t: ir.Table,
    previous: Sequence[ir.Table],
    settings: StabilitySettings,
    *,
    method: str,
    cutoffs: Sequence[float],
) -> ir.Table:
    """Rename `grade` to `grade_raw` and add the stable `grade` and `grade_held` (kept at the previous grade).

    `previous` are earlier snapshots, the most recent first (customer_id and grade; grade_raw when stored)."""
    t = t.rename(grade_raw="grade")
    cuts = effective_cutoffs(t, method, cutoffs, grade="grade_raw")
    t = t.mutate(**{f"_cut{i}": c for i, c in enumerate(cuts)})
    cut_cols = [t[f"_cut{i}"] for i in range(len(cuts))]
    confirm = max(settings.confirm_runs - 1, 0) if settings.confirm_runs >= 2 else 0
    wanted = previous[: max(confirm, 1)]
    if not wanted or (settings.margin <= 0 and not confirm):
        return t.mutate(grade=t.grade_raw, grade_held=ibis.literal(False)).drop(*[f"_cut{i}" for i in range(3)])
    for k, prev in enumerate(wanted):
        prev = with_columns(prev, "grade_raw")
        part = prev.select(customer_id=prev.customer_id, **{f"_prev{k}": prev.grade, f"_prev_raw{k}": prev.grade_raw})
        t = t.left_join(part, "customer_id").drop("customer_id_right")
    raw_i, prev_i = _index(t.grade_raw), _index(t._prev0)
    m = settings.margin
    up = _by_cutoffs(t.composite_score, [c + m for c in cut_cols])
    down = _by_cutoffs(t.composite_score, [c - m for c in cut_cols])
    by_margin = (
        ibis.cases(
            (raw_i < prev_i, ibis.least(prev_i, up)),
            (raw_i > prev_i, ibis.greatest(prev_i, down)),
            else_=raw_i,
        )
        if m > 0
        else prev_i  # confirmation alone: hold until the new grade has lasted
    )
    confirmed = ibis.literal(False)
    if confirm:
        held = [(t[f"_prev_raw{k}"] == t.grade_raw).fill_null(False) for k in range(confirm)]
        confirmed = held[0]
        for h in held[1:]:
            confirmed = confirmed & h
        if len(wanted) < confirm:  # not enough history to confirm anything
            confirmed = ibis.literal(False)
    stable = ibis.cases(
        (t.grade_raw.isnull() | t._prev0.isnull(), t.grade_raw),
        (confirmed, t.grade_raw),
        else_=_grade_at(by_margin),
    )
    t = t.mutate(grade=stable)
    t = t.mutate(grade_held=(t.grade != t.grade_raw).fill_null(False))
    temp = [f"_cut{i}" for i in range(3)] + [c for k in range(len(wanted)) for c in (f"_prev{k}", f"_prev_raw{k}")]
    return t.drop(*temp)
