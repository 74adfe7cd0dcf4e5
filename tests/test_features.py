"""Customer features as of a date, against values worked out by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import ibis
import pyarrow as pa
import pytest

from tierwise.features.orders import customer_features, default_as_of
from tierwise.features.settings import FeaturesSettings
from tierwise.schema import CUSTOMERS
from tierwise.workspace import canonical_schema

AS_OF = dt.date(2024, 7, 1)


def _orders() -> ibis.Table:
    rows = [
        # customer, order, date, amount, cost, category, channel, payment, is_return
        ("A", "O1", "2022-12-01 10:00", 100.0, 60.0, "X", "线下", "现金", False),
        ("A", "O2", "2024-01-10 09:00", 200.0, 120.0, "X", "线上", "支付宝", False),
        ("A", "O3", "2024-01-10 15:00", 50.0, 20.0, "Y", "线上", "支付宝", False),
        ("A", "O4", "2024-03-10 11:00", 300.0, 150.0, "Y", "线下", "现金", False),
        ("A", "R1", "2024-03-15 11:00", -50.0, -25.0, "Y", "线下", "现金", True),
        ("A", "O5", "2024-08-01 11:00", 999.0, 1.0, "X", "线上", "现金", False),  # after the as-of date
        ("B", "O6", "2024-06-30 20:00", 80.0, None, "Z", "线上", "微信支付", False),
    ]
    cols = [
        "customer_id",
        "order_id",
        "order_date",
        "amount",
        "cost",
        "product_category",
        "channel",
        "payment_method",
        "is_return",
    ]
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    data["order_date"] = [dt.datetime.fromisoformat(d) for d in data["order_date"]]
    # money as the store holds it: exact decimals
    money = pa.decimal128(18, 4)
    table = pa.table(data)
    for name in ("amount", "cost"):
        values = [None if v is None else Decimal(str(v)) for v in data[name]]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, money))
    return ibis.memtable(table)


def _customers() -> ibis.Table:
    schema = canonical_schema(CUSTOMERS)
    ids = ["A", "B", "C"]
    data = {name: [None] * 3 for name in schema.names}
    data["customer_id"] = ids
    data["province"] = ["浙江", "广东", "北京"]
    return ibis.memtable(pa.table(data, schema=schema.to_pyarrow()))


@pytest.fixture(scope="module")
def features() -> dict[str, dict]:
    con = ibis.duckdb.connect()
    t = customer_features(_customers(), _orders(), AS_OF, FeaturesSettings(window_days=365))
    out = {r["customer_id"]: r for r in con.to_pyarrow(t).to_pylist()}
    con.disconnect()
    return out


def test_regular_customer(features) -> None:
    a = features["A"]
    assert a["first_order_date"] == dt.date(2022, 12, 1) and a["last_order_date"] == dt.date(2024, 3, 10)
    assert a["recency_days"] == (AS_OF - dt.date(2024, 3, 10)).days == 113
    assert a["tenure_days"] == (AS_OF - dt.date(2022, 12, 1)).days
    # Window 2023-07-02 .. 2024-06-30: sale days 01-10 (two orders) and 03-10; the return is net revenue.
    assert a["frequency"] == 2
    assert a["monetary"] == pytest.approx(500.0)
    assert a["avg_order_value"] == pytest.approx(550.0 / 2)
    assert a["profit"] == pytest.approx(80 + 30 + 150 - 25)
    assert a["margin"] == pytest.approx(235 / 500)
    assert a["revenue_trend"] == pytest.approx((500 - 100) / 100)
    # Gaps between purchase days: 405 and 60 days → mean 232.5, population std 172.5.
    assert a["ipt_mean_days"] == pytest.approx(232.5)
    assert a["ipt_cv"] == pytest.approx(172.5 / 232.5)
    assert (a["top_category"], a["category_count"]) == ("Y", 2)
    assert a["top_category_share"] == pytest.approx(350 / 550)
    assert a["online_share"] == pytest.approx(250 / 550)
    assert a["preferred_payment_method"] == "支付宝"
    assert a["province"] == "浙江"


def test_single_purchase_and_prospect(features) -> None:
    b = features["B"]
    assert (b["recency_days"], b["frequency"], b["monetary"], b["avg_order_value"]) == (1, 1, 80.0, 80.0)
    assert b["profit"] is None and b["margin"] is None  # no cost data
    assert b["revenue_trend"] is None and b["ipt_mean_days"] is None and b["ipt_cv"] is None
    assert (b["top_category"], b["top_category_share"], b["online_share"]) == ("Z", 1.0, 1.0)
    c = features["C"]
    assert (c["frequency"], c["monetary"], c["recency_days"], c["category_count"]) == (0, 0.0, None, 0)


def test_frequency_by_orders_and_default_as_of() -> None:
    con = ibis.duckdb.connect()
    t = customer_features(_customers(), _orders(), AS_OF, FeaturesSettings(window_days=365, frequency_by="orders"))
    got = {r["customer_id"]: r["frequency"] for r in con.to_pyarrow(t).to_pylist()}
    assert got == {"A": 3, "B": 1, "C": 0}
    assert default_as_of(_orders()) == dt.date(2024, 8, 2)
    con.disconnect()
