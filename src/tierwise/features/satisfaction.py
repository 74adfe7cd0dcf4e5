"""Satisfaction (满意度) per customer as of a date, from service interactions and surveys.

The mean score of the interactions dated in the last `window_days` before the as-of date that carry one,
and how many interactions (scored or not) there were. NULL when nothing was scored: unknown is not unhappy.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir


def satisfaction_features(interactions: ir.Table, as_of: dt.date, window_days: int = 365) -> ir.Table:
    """customer_id, satisfaction, interactions."""
    day = interactions.date.date()
    recent = interactions.filter(
        (day < ibis.date(as_of.isoformat())) & (day >= ibis.date((as_of - dt.timedelta(days=window_days)).isoformat()))
    )
    return recent.group_by("customer_id").aggregate(
        satisfaction=recent.satisfaction.mean(), interactions=recent.count()
    )
