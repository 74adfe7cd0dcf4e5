"""Customer features as of a date, from the canonical tables — Ibis expressions only.

Only orders dated before the as-of date count (nothing from the future). Purchase occasions are distinct
order days of sales (returns excluded); revenue figures are net (returns subtracted). Frequency, monetary,
profit, categories, channels and payment methods use the last `window_days`; recency, first and last orders,
tenure and the rhythm of purchases use the whole history.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from tierwise.clv.summary import value_at_min
from tierwise.features.settings import FeaturesSettings
from tierwise.ingest.parse import one_of
from tierwise.ingest.settings import IngestSettings


def default_as_of(orders: ir.Table) -> dt.date:
    """The day after the last order: every order counts, and the most recent buyer has recency 1."""
    last = orders.order_date.max().execute()
    if last is None:
        return dt.date.today()
    return (last.date() if hasattr(last, "date") else last) + dt.timedelta(days=1)


def _days_between(later: ir.DateValue, earlier: ir.DateValue) -> ir.IntegerValue:
    return later.delta(earlier, unit="day")


def purchase_occasions(orders: ir.Table, as_of: dt.date) -> ir.Table:
    """Per customer with a sale before `as_of`: the first and last purchase days, the number of purchase
    occasions (distinct days with a sale), the mean and spread of the days between them, and the sales value of
    all occasions and of the first one.

    Both the features (below) and the CLV models' summary (clv.predict) read these. Grouping every order line by
    customer and day is the costliest step of each, so the run computes this table once for both."""
    as_of_lit = ibis.date(as_of.isoformat())
    o = orders.mutate(_day=orders.order_date.date())
    sales = o.filter((o._day < as_of_lit) & ~o.is_return.fill_null(False))
    # Each day's value is an exact decimal sum (the amounts are MONEY), then a float for the models.
    day_value = sales.amount.sum().cast("float64").fill_null(0.0)
    days = sales.group_by(["customer_id", "_day"]).aggregate(_value=day_value)
    days = days.mutate(_gap=_days_between(days._day, days._day.lag().over(group_by="customer_id", order_by="_day")))
    # The spread is rounded: the engine adds in parallel, in no fixed order (see customer_features).
    return days.group_by("customer_id").aggregate(
        first_order_date=days._day.min(),
        last_order_date=days._day.max(),
        purchases=days.count(),
        ipt_mean_days=days._gap.mean(),
        ipt_std_days=days._gap.std(how="pop").round(9),
        sales_value=days._value.sum(),
        first_day_value=value_at_min(days._value, _days_between(days._day, ibis.date("1970-01-01")).cast("float64")),
    )


def _money_sum(amount: ir.NumericColumn, where: ir.BooleanValue | None = None) -> ir.FloatingScalar:
    """The exact sum of money (decimal; 0 for none where a condition leaves no rows), as a float."""
    total = amount.sum(where=where) if where is not None else amount.sum()
    if where is not None:
        total = total.fill_null(0)
    return total.cast("float64")


def _plain(column: ir.Column) -> ir.Column:
    """A stored amount carried into the snapshot (credit_limit) as a float, like every money figure there."""
    return column.cast("float64") if column.type().is_decimal() else column


def customer_features(
    customers: ir.Table,
    orders: ir.Table,
    as_of: dt.date,
    settings: FeaturesSettings | None = None,
    occasions: ir.Table | None = None,
    carry: dict[str, str] | None = None,
    ingest: IngestSettings | None = None,
) -> ir.Table:
    """One row per customer (prospects included) with the order features of DESIGN §5. `occasions` may be the
    `purchase_occasions` of the same orders and date, computed once for the features and the CLV models.
    `carry` names more columns of `customers` to keep (output name → column), last. The online share counts
    the channels of `ingest` (online_channels): one list of online channel names for the whole product."""
    s = settings or FeaturesSettings()
    online_channels = (ingest or IngestSettings()).online_channels
    as_of_lit = ibis.date(as_of.isoformat())
    start_lit = ibis.date((as_of - dt.timedelta(days=s.window_days)).isoformat())
    prev_start_lit = ibis.date((as_of - dt.timedelta(days=2 * s.window_days)).isoformat())

    o = orders.mutate(_day=orders.order_date.date()).filter(ibis._._day < as_of_lit)
    o = o.mutate(
        _sale=~o.is_return.fill_null(False),
        _in_window=o._day >= start_lit,
        _in_previous=(o._day >= prev_start_lit) & (o._day < start_lit),
        _profit=o.amount - o.cost,
        _online=one_of(o.channel.lower().strip(), [c.lower() for c in online_channels]).fill_null(False),
    )
    window = o.filter(o._in_window)
    window_sales = window.filter(window._sale)

    # Money is summed as decimals (exact, in any order: two runs, or two engines, give the same snapshot), and
    # each sum is then a float, which the ratios, scores and models below and after want. A float with 4
    # places converts back to the same decimal (15 significant digits), so totals over customers can still be
    # added exactly (tierwise.money.exact_total).
    # The spreads are rounded: the engine adds in parallel, in no fixed order, and the last bits of a float sum
    # depend on the order; rounded, two runs on the same data give the same snapshot.
    # Purchase occasions over the whole history, and the gaps between them (purchase_occasions).
    occasions = occasions if occasions is not None else purchase_occasions(orders, as_of)
    rhythm = occasions.select(
        "customer_id",
        "first_order_date",
        "last_order_date",
        "purchases",
        "ipt_mean_days",
        ipt_cv=ibis.ifelse(
            occasions.ipt_mean_days > 0, occasions.ipt_std_days / occasions.ipt_mean_days, ibis.null("float64")
        ),
    )

    counted = window_sales._day.nunique() if s.frequency_by == "days" else window_sales.order_id.nunique()
    activity = window_sales.group_by("customer_id").aggregate(
        frequency=counted,
        _sales_revenue=_money_sum(window_sales.amount),
        category_count=window_sales.product_category.nunique(),
    )
    money = window.group_by("customer_id").aggregate(
        monetary=_money_sum(window.amount),
        profit=_money_sum(window._profit),
        _costed=window.cost.count(),
        _online_revenue=_money_sum(window.amount, where=window._online & window._sale),
    )
    previous = o.filter(o._in_previous).group_by("customer_id")
    previous = previous.aggregate(_previous_revenue=_money_sum(ibis._.amount))

    per_category = window_sales.group_by(["customer_id", "product_category"])
    per_category = per_category.aggregate(_rev=_money_sum(ibis._.amount))
    per_category = per_category.filter(per_category.product_category.notnull())
    per_category = per_category.mutate(
        _rank=ibis.row_number().over(
            group_by="customer_id", order_by=[ibis.desc(per_category._rev), per_category.product_category]
        )
    )
    top = per_category.filter(per_category._rank == 0).select(
        "customer_id", top_category="product_category", _top_revenue="_rev"
    )
    per_payment = window_sales.group_by(["customer_id", "payment_method"]).aggregate(_n=ibis._.count())
    per_payment = per_payment.filter(per_payment.payment_method.notnull())
    per_payment = per_payment.mutate(
        _rank=ibis.row_number().over(
            group_by="customer_id", order_by=[ibis.desc(per_payment._n), per_payment.payment_method]
        )
    )
    payment = per_payment.filter(per_payment._rank == 0).select(
        "customer_id", preferred_payment_method="payment_method"
    )

    carried = {name: _plain(customers[column]) for name, column in (carry or {}).items()}
    t = customers.select("customer_id", "name", "province", "city", "industry_code", "owner", **carried)
    for part in (rhythm, activity, money, previous, top, payment):
        t = t.left_join(part, "customer_id").drop("customer_id_right")

    out = t.mutate(
        frequency=t.frequency.fill_null(0),
        purchases=t.purchases.fill_null(0),
        monetary=t.monetary.fill_null(0.0),
        recency_days=_days_between(as_of_lit, t.last_order_date),
        tenure_days=_days_between(as_of_lit, t.first_order_date),
        avg_order_value=ibis.ifelse(t.frequency > 0, t._sales_revenue / t.frequency, ibis.null("float64")),
        profit=ibis.ifelse(t._costed > 0, t.profit, ibis.null("float64")),
        margin=ibis.ifelse((t._costed > 0) & (t.monetary > 0), t.profit / t.monetary, ibis.null("float64")),
        revenue_trend=ibis.ifelse(
            t._previous_revenue > 0,
            (t.monetary.fill_null(0) - t._previous_revenue) / t._previous_revenue,
            ibis.null("float64"),
        ),
        top_category_share=ibis.ifelse(t._sales_revenue > 0, t._top_revenue / t._sales_revenue, ibis.null("float64")),
        online_share=ibis.ifelse(t._sales_revenue > 0, t._online_revenue / t._sales_revenue, ibis.null("float64")),
        category_count=t.category_count.fill_null(0),
    ).drop("_sales_revenue", "_costed", "_online_revenue", "_previous_revenue", "_top_revenue")
    return out.select(*(c for c in out.columns if c not in carried), *carried)
