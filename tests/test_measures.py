"""Payment, satisfaction, main-industry and historical-CLV measures against values worked out by hand."""

from __future__ import annotations

import datetime as dt

import ibis
import pytest

from tierwise.features.credit import payment_features
from tierwise.features.historical_clv import historical_clv
from tierwise.features.industry import main_industry
from tierwise.features.satisfaction import satisfaction_features

AS_OF = dt.date(2024, 7, 1)
D = dt.date.fromisoformat


def _rows(table: ibis.Table) -> dict[str, dict]:
    return {r["customer_id"]: r for r in table.to_pyarrow().to_pylist()}


def test_payment_behaviour_as_of_a_date() -> None:
    invoices = [
        # customer, invoice date, due, paid, amount
        ("A", "2024-01-01", "2024-02-01", "2024-01-30", 100.0),  # on time
        ("A", "2024-03-01", "2024-04-01", "2024-04-11", 200.0),  # 10 days late
        ("A", "2024-05-01", "2024-06-01", None, 300.0),  # unpaid, 30 days overdue on the as-of date
        ("A", "2024-06-15", "2024-07-15", None, 400.0),  # open, not due yet
        ("A", "2024-06-01", "2024-06-20", "2024-07-05", 50.0),  # paid after the as-of date: unpaid then, 11 days
        ("A", "2022-01-01", "2022-02-01", "2022-03-01", 70.0),  # long settled, outside the window
        ("A", "2024-08-01", "2024-09-01", None, 999.0),  # issued after the as-of date: unknown then
        ("B", "2024-01-01", "2024-01-31", "2024-01-31", 10.0),  # paid on the due date counts as on time
    ]
    payments = ibis.memtable(
        {
            "customer_id": [r[0] for r in invoices],
            "invoice_date": [D(r[1]) for r in invoices],
            "due_date": [D(r[2]) for r in invoices],
            "paid_date": [D(r[3]) if r[3] else None for r in invoices],
            "amount": [r[4] for r in invoices],
        }
    )
    customers = ibis.memtable({"customer_id": ["A", "B", "C"], "credit_limit": [1000.0, None, 500.0]})
    got = _rows(payment_features(payments, customers, AS_OF))
    assert set(got) == {"A", "B"}  # C has no invoices: no figures rather than perfect ones
    a = got["A"]
    assert a["on_time_rate"] == pytest.approx(1 / 4)
    assert a["avg_days_late"] == pytest.approx((0 + 10 + 30 + 11) / 4)
    assert a["overdue_amount"] == pytest.approx(350.0)
    assert a["open_amount"] == pytest.approx(750.0)
    assert a["credit_utilisation"] == pytest.approx(0.75)
    b = got["B"]
    assert (b["on_time_rate"], b["avg_days_late"], b["overdue_amount"]) == (1.0, 0.0, 0.0)
    assert b["credit_utilisation"] is None


def test_satisfaction_is_the_mean_of_scored_interactions_in_the_window() -> None:
    rows = [
        ("A", "2024-06-30 23:00", 4.0),
        ("A", "2024-01-01 09:00", None),
        ("A", "2023-12-01 09:00", 2.0),
        ("A", "2024-07-01 09:00", 1.0),  # on the as-of date: not yet
        ("A", "2023-01-01 09:00", 1.0),  # before the window
        ("B", "2024-02-02 10:00", None),
    ]
    t = ibis.memtable(
        {
            "customer_id": [r[0] for r in rows],
            "date": [dt.datetime.fromisoformat(r[1]) for r in rows],
            "satisfaction": [r[2] for r in rows],
        }
    )
    got = _rows(satisfaction_features(t, AS_OF))
    assert (got["A"]["satisfaction"], got["A"]["interactions"]) == (3.0, 3)
    assert (got["B"]["satisfaction"], got["B"]["interactions"]) == (None, 1)


def _industry_inputs() -> tuple[ibis.Table, ibis.Table]:
    customers = ibis.memtable(
        {"customer_id": ["A", "B", "C", "D", "E"], "industry_code": [None, "C13; C27", "C27、C13", "X", None]}
    )
    lines = [
        ("A", "C13", 10.0, False),
        ("A", "C27", 10.0, False),  # a tie with C13
        ("B", "C13", 5.0, False),
        ("B", "C27", 20.0, False),
        ("B", "C13", 50.0, True),  # a return: not revenue of that industry
        ("D", None, 3.0, False),
    ]
    orders = ibis.memtable(
        {
            "customer_id": [r[0] for r in lines],
            "industry_code": [r[1] for r in lines],
            "amount": [r[2] for r in lines],
            "is_return": [r[3] for r in lines],
            "order_date": [dt.datetime(2024, 3, 1)] * len(lines),
        }
    )
    return customers, orders


def test_main_industry_by_revenue_share_then_priority_then_record() -> None:
    customers, orders = _industry_inputs()
    plain = _rows(main_industry(customers, orders, AS_OF))
    # A ties 10 vs 10 → by code; B: C27 has 20 of 25; C: no orders → first code listed; D: from its record.
    assert {k: (v["main_industry"], v["main_industry_share"]) for k, v in plain.items()} == {
        "A": ("C13", 0.5),
        "B": ("C27", 0.8),
        "C": ("C27", None),
        "D": ("X", None),
    }  # E has no industry anywhere: no row (the measures' left join leaves it empty)
    ranked = _rows(main_industry(customers, orders, AS_OF, priority=["C27"]))
    assert ranked["A"]["main_industry"] == "C27"  # the priority list settles the tie
    assert ranked["B"]["main_industry"] == "C27"
    ranked = _rows(main_industry(customers, orders, AS_OF, priority=["C13"]))
    assert ranked["C"]["main_industry"] == "C13"  # and chooses among the codes of a record
    assert ranked["B"]["main_industry"] == "C27"  # but never overrides a larger share


def test_historical_clv_discounts_each_period_back_from_the_as_of_date() -> None:
    orders = ibis.memtable(
        {
            "customer_id": ["A", "A", "A", "B", "B"],
            "amount": [100.0, 200.0, -50.0, 80.0, 10.0],
            "cost": [60.0, None, -30.0, None, 1.0],
            "order_date": [
                dt.datetime(2024, 5, 31, 10),  # t = 0
                dt.datetime(2023, 6, 1),  # 366 days before (2024 is a leap year) → t = 1
                dt.datetime(2023, 5, 31),  # t = 1
                dt.datetime(2022, 1, 1),  # t = 2
                dt.datetime(2024, 7, 1),  # on the as-of date: not yet
            ],
        }
    )
    as_of = dt.date(2024, 6, 1)
    got = _rows(historical_clv(orders, as_of, discount_rate=0.10, missing_cost_margin=0.5))
    # A: t0 margin 40; t1 margin 200×0.5 + (−50 − −30) = 80 → 40 + 80/1.1.  B: t2 margin 40 → 40/1.21.
    assert got["A"]["clv_historical"] == pytest.approx(40 + 80 / 1.1)
    assert got["B"]["clv_historical"] == pytest.approx(40 / 1.21)
    undiscounted = _rows(historical_clv(orders, as_of, discount_rate=0.0))
    assert undiscounted["A"]["clv_historical"] == pytest.approx(40 + 200 - 20)
    # The boundary: 365 days back is the last day of period 0, 366 days back the first of period 1.
    edge = ibis.memtable(
        {
            "customer_id": ["E", "F"],
            "amount": [10.0, 10.0],
            "cost": [0.0, 0.0],
            "order_date": [dt.datetime(2023, 6, 2), dt.datetime(2023, 6, 1)],
        }
    )
    e = _rows(historical_clv(edge, as_of, discount_rate=1.0))
    assert (e["E"]["clv_historical"], e["F"]["clv_historical"]) == (10.0, 5.0)
