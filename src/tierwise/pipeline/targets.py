"""What a classifier learns (学习目标): a label column the user supplies, or an outcome taken from history.

A future outcome is computed with a calibration/holdout split: features as of `calibration_end` (from data
dated before it only), the label from the orders in [calibration_end, holdout_end). Only customers who had
bought before `calibration_end` are in the training set.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from dataclasses import dataclass, field
from typing import Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.pipeline.snapshot import build_snapshot

FutureKind = Literal["future-high-value", "future-churn"]
FUTURE_KINDS: tuple[FutureKind, ...] = ("future-high-value", "future-churn")
# kind → (positive class, other class)
FUTURE_CLASSES: dict[str, tuple[str, str]] = {
    "future-high-value": ("high_value", "other"),
    "future-churn": ("churned", "retained"),
}


@dataclass
class FutureTarget:
    kind: str
    calibration_end: dt.date
    holdout_end: dt.date
    features: pd.DataFrame  # the snapshot as of calibration_end, training customers only, by customer_id
    labels: pd.Series  # aligned to `features`
    holdout_revenue: pd.Series  # net revenue in [calibration_end, holdout_end), aligned to `features`
    positive: str
    notes: list[str] = field(default_factory=list)


def label_target(
    snapshot: pd.DataFrame, column: str, customers: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """(rows, labels) for a label column of the snapshot, or of `customers` (joined on customer_id).

    Empty labels are NULL: those customers are not trained on but still get a prediction."""
    if column not in snapshot.columns and customers is not None and column in customers.columns:
        extra = customers[["customer_id", column]].drop_duplicates("customer_id")
        snapshot = snapshot.merge(extra, on="customer_id", how="left", validate="many_to_one")
    if column not in snapshot.columns:
        known = list(snapshot.columns) + ([] if customers is None else list(customers.columns))
        close = difflib.get_close_matches(column, known, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(
            f"classify: no column '{column}' to learn; give a label column of the customers or "
            f"{' / '.join(FUTURE_KINDS)}{hint}"
        )
    texts = [None if pd.isna(v) or str(v).strip() == "" else str(v).strip() for v in snapshot[column]]
    return snapshot, pd.Series(texts, index=snapshot.index, dtype="object", name=column)


def holdout_length(holdout_days: int | None, cfg: Config) -> int:
    """[classify] holdout_days, or the feature window when it is empty."""
    return holdout_days if holdout_days is not None else cfg.features.window_days


def default_periods(orders: ir.Table, holdout_days: int) -> tuple[dt.date, dt.date]:
    """(calibration_end, holdout_end): the holdout is the last `holdout_days` days up to the last order."""
    last = orders.order_date.max().execute()
    if last is None or pd.isna(last):
        raise UserError("classify: there are no orders; load them first with 'tierwise ingest orders FILE'")
    holdout_end = pd.Timestamp(last).date() + dt.timedelta(days=1)
    return holdout_end - dt.timedelta(days=holdout_days), holdout_end


def cut_tables(tables: dict[str, ir.Table], calibration_end: dt.date) -> dict[str, ir.Table]:
    """The canonical tables as they were known on `calibration_end`: nothing dated on or after it.

    The feature code already ignores later orders, invoices, payments and interactions; cutting here as well
    means no measure can see the future, including ones added later. Customers are limited to those who had
    bought before the date, so that classes ranked across customers (value tiers, grades) are ranked among
    the training customers alone and do not move when new customers arrive."""
    cut = ibis.date(calibration_end.isoformat())
    orders = tables["orders"].filter(tables["orders"].order_date.date() < cut)
    out = dict(tables)
    out["orders"] = orders
    out["customers"] = tables["customers"].filter(tables["customers"].customer_id.isin(orders.customer_id))
    p = tables["payments"]
    p = p.filter(ibis.coalesce(p.invoice_date, p.due_date) < cut)
    out["payments"] = p.mutate(paid_date=ibis.ifelse(p.paid_date < cut, p.paid_date, ibis.null("date")))
    out["interactions"] = tables["interactions"].filter(tables["interactions"].date.date() < cut)
    if "campaign_contacts" in tables:
        c = tables["campaign_contacts"]
        out["campaign_contacts"] = c.filter(c.contacted_at.date() < cut)
    return out


def future_target(
    tables: dict[str, ir.Table],
    cfg: Config,
    calibration_end: dt.date,
    holdout_end: dt.date,
    kind: FutureKind,
    high_value_share: float = 0.2,
) -> FutureTarget:
    """Features as of `calibration_end` and the outcome in [calibration_end, holdout_end), per customer who
    bought before `calibration_end`.

    future-high-value: the top `high_value_share` of these customers by net revenue in the holdout (ties at
    the cut all count; no revenue is never high value). future-churn: no purchase in the holdout."""
    if kind not in FUTURE_CLASSES:
        raise UserError(f"classify: unknown target '{kind}'; allowed: {', '.join(FUTURE_KINDS)} or a label column")
    if holdout_end <= calibration_end:
        raise UserError(
            f"classify: the holdout end {holdout_end} must come after the calibration end {calibration_end}"
        )
    snapshot = build_snapshot(cut_tables(tables, calibration_end), cfg, calibration_end).to_pandas()
    snapshot = snapshot[snapshot["purchases"].fillna(0) > 0]
    features = snapshot.sort_values("customer_id", kind="stable").reset_index(drop=True)
    if features.empty:
        raise UserError(f"classify: no customer bought before {calibration_end}; choose a later calibration end")
    outcome = _holdout(tables["orders"], calibration_end, holdout_end)
    ids = features["customer_id"]
    revenue = ids.map(outcome["revenue"]).fillna(0.0).astype("float64")
    bought = ids.map(outcome["sales"]).fillna(0).astype("int64") > 0
    positive, other = FUTURE_CLASSES[kind]
    if kind == "future-churn":
        hit = ~bought
    else:
        needed = max(1, math.ceil(high_value_share * len(features) - 1e-9))
        hit = (revenue > 0) & (revenue.rank(ascending=False, method="min") <= needed)
    labels = pd.Series(hit.map({True: positive, False: other}).astype("object"), index=features.index)
    notes = [
        f"features as of {calibration_end} (data before it only), outcome from {calibration_end} to "
        f"{holdout_end - dt.timedelta(days=1)}; {len(features):,} customers had bought before {calibration_end}",
        f"{int(hit.sum()):,} of them are '{positive}' ({hit.mean():.1%})",
    ]
    return FutureTarget(kind, calibration_end, holdout_end, features, labels, revenue, positive, notes)


def _holdout(orders: ir.Table, start: dt.date, end: dt.date) -> pd.DataFrame:
    day = orders.order_date.date()
    o = orders.filter((day >= ibis.date(start.isoformat())) & (day < ibis.date(end.isoformat())))
    sale = ~o.is_return.fill_null(False)
    # An exact sum, as a float: pandas gets numbers, not Decimal objects (tierwise.money).
    revenue = o.amount.sum().cast("float64")
    per = o.group_by("customer_id").aggregate(revenue=revenue, sales=sale.cast("int64").sum())
    return per.to_pandas().set_index("customer_id")
