"""Credit and payment behaviour (信用状况) per customer as of a date, from the `payments` table.

An invoice counts once it is due before the as-of date; a payment counts once it is made before the as-of
date (later payments were not known then). Over the invoices that fell due in the last `window_days`:

- on_time_rate: share paid on or before their due date;
- avg_days_late: mean days past the due date (0 for on-time payments; for invoices still unpaid, the days
  from the due date to the as-of date, since they are at least that late).

Over all history:

- overdue_amount: invoices past due and unpaid as of the date;
- open_amount: invoices issued and unpaid as of the date (overdue or not);
- credit_utilisation: open_amount / the customer's credit_limit (when the limit is positive).

Customers without invoices get NULL, not zero: "no invoices" is not "always on time".
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir


def payment_features(payments: ir.Table, customers: ir.Table, as_of: dt.date, window_days: int = 365) -> ir.Table:
    """customer_id, on_time_rate, avg_days_late, overdue_amount, open_amount, credit_utilisation."""
    as_of_lit = ibis.date(as_of.isoformat())
    start_lit = ibis.date((as_of - dt.timedelta(days=window_days)).isoformat())
    p = payments.filter(payments.invoice_date.isnull() | (payments.invoice_date < as_of_lit))
    # A payment after the as-of date is unknown on that date.
    paid = p.paid_date.notnull() & (p.paid_date < as_of_lit)
    due = p.due_date.notnull() & (p.due_date < as_of_lit)
    p = p.mutate(
        _paid=paid,
        _due=due,
        _due_in_window=due & (p.due_date >= start_lit),
        _on_time=paid & (p.paid_date <= p.due_date),
        _late_days=ibis.ifelse(
            paid,
            ibis.greatest(p.paid_date.delta(p.due_date, unit="day"), 0),
            as_of_lit.delta(p.due_date, unit="day"),
        ),
        _amount=p.amount.fill_null(0),
    )
    per_customer = p.group_by("customer_id").aggregate(
        _due_count=p._due_in_window.sum(),
        _on_time_count=(p._due_in_window & p._on_time).sum(),
        _late_sum=ibis.ifelse(p._due_in_window, p._late_days, 0).sum(),
        # Exact decimal sums, then floats for the ratio and the scores (tierwise.money).
        overdue_amount=ibis.ifelse(p._due & ~p._paid, p._amount, 0).sum().cast("float64"),
        open_amount=ibis.ifelse(~p._paid, p._amount, 0).sum().cast("float64"),
    )
    limits = customers.select("customer_id", _limit=customers.credit_limit.cast("float64"))
    t = per_customer.left_join(limits, "customer_id").drop("customer_id_right")
    return t.select(
        "customer_id",
        on_time_rate=ibis.ifelse(t._due_count > 0, t._on_time_count / t._due_count, ibis.null("float64")),
        avg_days_late=ibis.ifelse(t._due_count > 0, t._late_sum / t._due_count, ibis.null("float64")),
        overdue_amount=t.overdue_amount,
        open_amount=t.open_amount,
        credit_utilisation=ibis.ifelse(t._limit > 0, t.open_amount / t._limit, ibis.null("float64")),
    )
