"""Loyalty (忠诚度) and satisfaction (满意度) classes.

Judged on repeat purchases over the whole history, tenure, the lifecycle stage (so recency is measured
against the customer's own rhythm) and, when interactions carry scores, satisfaction. Precedence:

- prospect 潜在客户: never bought;
- lapsed 流失客户: churned (silent for more than `churned_multiple` of their usual gaps);
- loyal 忠诚客户: at least `loyal_min_purchases` purchase occasions, a first purchase at least
  `loyal_min_tenure_days` ago, not at risk, and not dissatisfied (unknown satisfaction does not count against);
- potential loyal 潜在忠诚客户 (to cultivate): bought more than once, or bought once recently (new) and said
  they were satisfied;
- occasional 偶然客户: everyone else (one-off buyers, and at-risk one-off buyers).

satisfaction_level: satisfied (score ≥ `satisfied_min`), dissatisfied (≤ `dissatisfied_max`), neutral between,
NULL when no score exists.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from tierwise.classify.settings import LoyaltySettings


def add_loyalty(t: ir.Table, settings: LoyaltySettings | None = None) -> ir.Table:
    """Add satisfaction_level and loyalty. Needs purchases, tenure_days, lifecycle_stage, satisfaction."""
    s = settings or LoyaltySettings()
    level = ibis.cases(
        (t.satisfaction >= s.satisfied_min, "satisfied"),
        (t.satisfaction <= s.dissatisfied_max, "dissatisfied"),
        (t.satisfaction.notnull(), "neutral"),
        else_=ibis.null("string"),
    )
    t = t.mutate(satisfaction_level=level)
    dissatisfied = (t.satisfaction_level == "dissatisfied").fill_null(False)
    satisfied = (t.satisfaction_level == "satisfied").fill_null(False)
    loyalty = ibis.cases(
        (t.lifecycle_stage == "prospect", "prospect"),
        (t.lifecycle_stage == "churned", "lapsed"),
        (
            (t.purchases >= s.loyal_min_purchases)
            & (t.tenure_days >= s.loyal_min_tenure_days)
            & (t.lifecycle_stage != "at_risk")
            & ~dissatisfied,
            "loyal",
        ),
        (t.purchases >= 2, "potential_loyal"),
        ((t.lifecycle_stage == "new") & satisfied, "potential_loyal"),
        else_="occasional",
    )
    return t.mutate(loyalty=loyalty)
