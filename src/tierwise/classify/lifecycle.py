"""Lifecycle stage (生命周期阶段): prospect, new, active, mature, at risk, churned.

At risk and churned are judged against each customer's own rhythm — recency compared with a multiple of
their mean time between purchases — not one global cut-off: ninety quiet days mean little for a customer who
buys twice a year and a lot for one who buys every week. Customers with a single purchase have no rhythm of
their own and are compared with the typical (median) rhythm of repeat buyers, or `default_gap_days` when
there are none.

Precedence: prospect (never bought) → churned → at risk → new → mature → active.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from tierwise.classify.settings import LifecycleSettings


def add_lifecycle(t: ir.Table, settings: LifecycleSettings | None = None) -> ir.Table:
    """Add expected_gap_days and lifecycle_stage. Needs recency_days, tenure_days, frequency, ipt_mean_days."""
    s = settings or LifecycleSettings()
    rhythm = ibis.ifelse(t.ipt_mean_days > 0, t.ipt_mean_days, ibis.null("float64"))
    # A window, not a separate query: the whole snapshot stays one lazy expression.
    typical = rhythm.median().over().coalesce(s.default_gap_days)
    t = t.mutate(expected_gap_days=rhythm.coalesce(typical))
    stage = ibis.cases(
        (t.recency_days.isnull(), "prospect"),
        (t.recency_days > s.churned_multiple * t.expected_gap_days, "churned"),
        (t.recency_days > s.at_risk_multiple * t.expected_gap_days, "at_risk"),
        (t.tenure_days <= s.new_days, "new"),
        ((t.tenure_days >= s.mature_days) & (t.frequency >= s.mature_min_frequency), "mature"),
        else_="active",
    )
    return t.mutate(lifecycle_stage=stage)
