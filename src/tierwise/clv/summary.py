"""The RFM summary that BG/NBD, Pareto/NBD and Gamma-Gamma read, as an Ibis expression (any engine).

The conventions are those of lifetimes' `summary_data_from_transaction_data` /
`calibration_and_holdout_data` with `freq="D"` and `freq_multiplier=time_unit_days`, which also reproduce
Fader & Hardie's published CDNOW summary (x, t_x, T, z̄ of the BG/NBD and Gamma-Gamma papers):

* Order timestamps are truncated to days; a *purchase occasion* is a distinct (customer, day). Several orders
  on one day are one occasion, and their amounts are added up.
* The calibration period is every day up to and including `calibration_end`; the holdout period is the days
  after it, up to and including `observation_end`. Orders after `observation_end` are ignored.
* Only customers whose first purchase is on or before `calibration_end` are summarised (the cohort that the
  models describe); the first occasion is the first purchase ever seen in `orders`.
* `frequency` = calibration occasions − 1 (repeat occasions).
* `recency` = (last calibration occasion − first occasion) in days / `time_unit_days`; 0 without repeats.
* `T` = (`calibration_end` − first occasion) in days / `time_unit_days`: a customer whose first purchase is
  on `calibration_end` has T = 0. With weeks (7) this is the paper's T: the CDNOW customer first buying on
  1997-01-01 has T = 272 / 7 = 38.86 at calibration_end 1997-09-30 (not 39).
* `monetary_value` = mean value of the repeat occasions (the first occasion excluded, as the Gamma-Gamma model
  wants), 0.0 without repeats.
* `frequency_holdout` = holdout occasions; `monetary_value_holdout` = mean value per holdout occasion (0.0
  without any; lifetimes averages per order line here, we average per occasion like the calibration value);
  `duration_holdout` = (`observation_end` − `calibration_end`) in days / `time_unit_days`.

Rows with a null customer or date are ignored; null amounts count as nothing. Returns are not treated
specially: filter them out (or net them) before calling if they should not count as purchases.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import ibis
import ibis.expr.types as ir


@ibis.udf.agg.builtin(name="min_by")
def value_at_min(value: float, key: float) -> float:  # type: ignore[empty-body]
    """The value at the smallest key: `min_by` in DuckDB and Spark. (Ibis compiles `argmin` for DuckDB as
    FIRST(value ORDER BY key), an ordered aggregate that sorts every group: a quarter of the summary's time.)"""


def _day_of(column: ir.Column) -> ir.DateValue:
    """The calendar day of a date, timestamp or ISO-formatted string column."""
    if column.type().is_timestamp():
        return column.date()
    if column.type().is_date():
        return column
    return column.cast("date")


def rfm_summary(
    orders: ir.Table,
    *,
    customer_col: str = "customer_id",
    date_col: str = "order_date",
    amount_col: str | None = None,
    calibration_end: dt.date,
    observation_end: dt.date | None = None,
    time_unit_days: float = 1.0,
    occasion: Literal["day", "timestamp"] = "day",
) -> ir.Table:
    """One row per customer: customer_id, frequency, recency, T [, monetary_value]
    [, frequency_holdout, monetary_value_holdout, duration_holdout].

    `monetary_value` needs `amount_col`; the holdout columns need `observation_end` (and
    `monetary_value_holdout` both). Times are in units of `time_unit_days` days (7 → weeks, as floats).
    See the module docstring for the exact boundary conventions.

    It costs two group-bys and no window function: one per (customer, day), then one per customer, where the
    first and last days are min/max and the first day's value comes from an arg-min aggregate, so the repeat
    occasions' mean is (calibration total − first day's value) / frequency.

    `occasion="timestamp"` makes each distinct order time an occasion and measures times to the second, the
    calibration period ending at the end of `calibration_end`'s day (T = that instant − the first purchase):
    the continuous-time data the models describe, e.g. from `tierwise generate`, without the rounding to days.
    """
    if not time_unit_days > 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    # datetime is a subclass of date: keep only the day, like the order dates.
    calibration_end = calibration_end.date() if isinstance(calibration_end, dt.datetime) else calibration_end
    if isinstance(observation_end, dt.datetime):
        observation_end = observation_end.date()
    if observation_end is not None and observation_end < calibration_end:
        raise ValueError(f"observation_end {observation_end} is before calibration_end {calibration_end}")
    with_money = amount_col is not None
    holdout = observation_end is not None

    unit = float(time_unit_days)
    epoch = dt.date(1970, 1, 1)
    # Times are days since 1970 as numbers: whole days by default, fractions of a day with timestamps. The
    # calibration period ends where the next day starts in both cases.
    cal_limit = float((calibration_end - epoch).days + 1)
    last_limit = float(((observation_end or calibration_end) - epoch).days + 1)
    if occasion == "timestamp":
        at: ir.NumericValue = orders[date_col].cast("timestamp").epoch_seconds().cast("float64") / 86400.0
        age_end = cal_limit
    else:
        at = _day_of(orders[date_col]).delta(ibis.date(epoch.isoformat()), unit="day").cast("float64")
        age_end = cal_limit - 1  # lifetimes: T runs to the calibration end's day, not past it

    cols: dict[str, ir.Value] = {"customer_id": orders[customer_col], "_day": at}
    if amount_col is not None:
        amount = orders[amount_col]
        # Money (decimal) stays exact until each occasion's total; other numbers are floats from the start.
        cols["_amount"] = amount if amount.type().is_decimal() else amount.cast("float64")
    o = orders.select(**cols)
    o = o.filter(o.customer_id.notnull(), o._day.notnull(), o._day < last_limit)

    # 1. One row per purchase occasion (customer, day — or order time), with its total value.
    day_aggs = {"_value": o._amount.sum().cast("float64").fill_null(0.0)} if with_money else {}
    days = o.group_by(["customer_id", "_day"]).aggregate(**day_aggs)
    # 2. One row per customer. Holdout days are later than every calibration day, so the first day overall is
    # the first calibration day for every customer we keep (those who bought by calibration_end). Without a
    # holdout every day is a calibration day, and the aggregates need no filter.
    cal = days._day < cal_limit if holdout else None
    aggs: dict[str, ir.Value] = {
        "_first": days._day.min(),
        "_last": days._day.max(where=cal),
        "_cal_days": days.count(where=cal),
    }
    if with_money:
        aggs["_cal_value"] = days._value.sum(where=cal)
        # The first day's value without a window: the value at the smallest day (days are unique per customer).
        aggs["_first_value"] = value_at_min(days._value, days._day)
    if holdout:
        assert cal is not None  # for mypy: `holdout` says so
        aggs["_hold_days"] = days.count(where=~cal)
        if with_money:
            aggs["_hold_value"] = days._value.sum(where=~cal)
    c = days.group_by("customer_id").aggregate(**aggs)
    c = c.filter(c._first < cal_limit)

    # Staged so that the columns below read `frequency` (Ibis inlines sub-expressions; this one is cheap).
    c = c.mutate(frequency=(c._cal_days - 1).cast("int64"))
    out: dict[str, ir.Value] = {
        "customer_id": c.customer_id,
        "frequency": c.frequency,
        "recency": (c._last - c._first) / unit,
        "T": (age_end - c._first) / unit,
    }
    if with_money:
        out["monetary_value"] = ibis.ifelse(
            c.frequency > 0, (c._cal_value - c._first_value) / c.frequency.cast("float64"), 0.0
        )
    if holdout:
        assert observation_end is not None  # for mypy: `holdout` says so
        out["frequency_holdout"] = c._hold_days.cast("int64")
        if with_money:
            out["monetary_value_holdout"] = ibis.ifelse(
                c._hold_days > 0, c._hold_value / c._hold_days.cast("float64"), 0.0
            )
        out["duration_holdout"] = ibis.literal((observation_end - calibration_end).days / unit, "float64")
    return c.select(**out)


def summary_from_occasions(occasions: ir.Table, calibration_end: dt.date, time_unit_days: float = 1.0) -> ir.Table:
    """`rfm_summary` of sales with `amount_col`, days as occasions and no holdout, from the customers'
    `tierwise.features.orders.purchase_occasions` of the orders before the day after `calibration_end`: the same values
    without grouping the order lines by customer and day a second time."""
    unit = float(time_unit_days)
    end = ibis.date(calibration_end.isoformat())
    c = occasions.mutate(frequency=(occasions.purchases - 1).cast("int64"))
    return c.select(
        "customer_id",
        "frequency",
        recency=c.last_order_date.delta(c.first_order_date, unit="day").cast("float64") / unit,
        T=end.delta(c.first_order_date, unit="day").cast("float64") / unit,
        monetary_value=ibis.ifelse(
            c.frequency > 0, (c.sales_value - c.first_day_value) / c.frequency.cast("float64"), 0.0
        ),
    )
