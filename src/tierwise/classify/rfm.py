"""RFM: recency, frequency and monetary scores, the R×F segment grid and the Chinese eight-class scheme.

Scores are 1–5 (`bins`) by the cumulative distribution: score = ceil(bins × share of scored customers whose
value is at most this one). Equal values always share a score — unlike rank-based quintiles (`ntile`), which
split ties by row order and so change from run to run. Recency is scored in reverse: the most recent buyers
get the highest score. Customers who never bought (no recency) get no scores and are Prospects; a lapsed
customer with nothing in the frequency window is scored (lowest F), not a prospect.
"""

from __future__ import annotations

from typing import Literal

import ibis
import ibis.expr.types as ir

PROSPECTS = "prospects"


# The R×F grid of DESIGN §8: (R scores, F scores) → segment. Together the rules cover all 25 cells once.
GRID: list[tuple[tuple[int, ...], tuple[int, ...], str]] = [
    ((1, 2), (1, 2), "hibernating"),
    ((1, 2), (3, 4), "at_risk"),
    ((1, 2), (5,), "cant_lose_them"),
    ((3,), (1, 2), "about_to_sleep"),
    ((3,), (3,), "need_attention"),
    ((3, 4), (4, 5), "loyal_customers"),
    ((4,), (1,), "promising"),
    ((5,), (1,), "new_customers"),
    ((4, 5), (2, 3), "potential_loyalists"),
    ((5,), (4, 5), "champions"),
]

# (recent, high frequency, high monetary) → class of the Chinese eight-class scheme (RFM八类)
CLASS8: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "重要价值客户",
    (True, False, True): "重要发展客户",
    (False, True, True): "重要保持客户",
    (False, False, True): "重要挽留客户",
    (True, True, False): "一般价值客户",
    (True, False, False): "一般发展客户",
    (False, True, False): "一般保持客户",
    (False, False, False): "一般挽留客户",
}


def _is_buyer(t: ir.Table, recency: str) -> ir.BooleanValue:
    # Recency covers the whole history: a customer quiet for longer than the frequency window is still a
    # (lapsed) buyer, scored low, not a prospect.
    return t[recency].notnull()


def add_scores(
    t: ir.Table,
    *,
    recency: str = "recency_days",
    frequency: str = "frequency",
    monetary: str = "monetary",
    bins: int = 5,
    thresholds: dict[str, list[float]] | None = None,
) -> ir.Table:
    """Add r_score, f_score, m_score (1..bins; NULL for customers without a purchase).

    `thresholds` replaces the quantiles of a measure by fixed ascending cut-offs (bins − 1 of them), keyed
    "recency", "frequency" or "monetary": recency ≤ the first cut-off scores `bins`, above the last scores 1;
    frequency or monetary below the first cut-off scores 1, at or above the last scores `bins`.
    """
    fixed = thresholds or {}
    for key, cuts in fixed.items():
        if key not in ("recency", "frequency", "monetary") or len(cuts) != bins - 1 or list(cuts) != sorted(cuts):
            raise ValueError(f"RFM thresholds for {key}: give {bins - 1} ascending cut-offs, got {list(cuts)}")
    t = t.mutate(_buyer=_is_buyer(t, recency))

    def by_share(value: ir.NumericValue) -> ir.IntegerValue:
        share = ibis.cume_dist().over(group_by=t._buyer, order_by=value)
        return ibis.greatest((share * bins).ceil().cast("int64"), 1)

    def counted(condition: list[ir.BooleanValue]) -> ir.IntegerValue:
        return sum((c.cast("int64") for c in condition), ibis.literal(0))

    def score(key: str, column: str) -> ir.IntegerValue:
        value = t[column]
        if key not in fixed:
            raw = by_share(-value if key == "recency" else value)
        elif key == "recency":
            raw = bins - counted([value > cut for cut in fixed[key]])
        else:
            raw = 1 + counted([value.fill_null(0) >= cut for cut in fixed[key]])
        return ibis.ifelse(t._buyer, raw, ibis.null("int64"))

    return t.mutate(
        r_score=score("recency", recency), f_score=score("frequency", frequency), m_score=score("monetary", monetary)
    ).drop("_buyer")


def segment(r_score: ir.IntegerValue, f_score: ir.IntegerValue) -> ir.StringValue:
    """The R×F grid segment code; Prospects where there are no scores."""
    rules = [(r_score.isin(list(rs)) & f_score.isin(list(fs)), code) for rs, fs, code in GRID]
    return ibis.cases(*rules, else_=ibis.literal(PROSPECTS))


def add_class8(
    t: ir.Table,
    *,
    recency: str = "recency_days",
    frequency: str = "frequency",
    monetary: str = "monetary",
    basis: Literal["mean", "median"] = "mean",
) -> ir.Table:
    """Add rfm_class8 by comparing each buyer with the buyers' mean (or median) R, F and M.

    "Recent" means recency_days strictly below the average; "high" F and M mean strictly above it. A customer
    who has not bought for a long time is therefore never 重要价值客户, however much they spent.
    """
    buyer = _is_buyer(t, recency)

    def centre(col: str) -> ir.FloatingValue:
        # Over the buyers only, as a window: no separate pass over the data before the snapshot is built.
        among_buyers = ibis.ifelse(buyer, t[col], ibis.null(t[col].type()))
        return (among_buyers.mean() if basis == "mean" else among_buyers.median()).over()

    recent = t[recency] < centre(recency)
    high_f = t[frequency] > centre(frequency)
    high_m = t[monetary] > centre(monetary)
    rules = [((recent == r) & (high_f == f) & (high_m == m), name) for (r, f, m), name in CLASS8.items()]
    return t.mutate(rfm_class8=ibis.ifelse(buyer, ibis.cases(*rules, else_=ibis.null("string")), ibis.null("string")))
