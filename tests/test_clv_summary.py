"""rfm_summary (the BG/NBD / Gamma-Gamma input) and discounted predictive CLV."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from collections import defaultdict
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierwise.clv.summary import rfm_summary, summary_from_occasions
from tierwise.clv.value import DAYS_PER_MONTH, customer_lifetime_value
from tierwise.features.orders import purchase_occasions

CDNOW_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cdnow" / "CDNOW_sample.txt"

ORDERS_SCHEMA = pa.schema([("customer_id", pa.string()), ("order_date", pa.timestamp("us")), ("amount", pa.float64())])


@pytest.fixture(scope="module")
def con() -> ibis.BaseBackend:
    return ibis.duckdb.connect()


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _orders(rows: list[tuple[str, dt.datetime, float]]) -> ibis.Table:
    cols: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    return ibis.memtable(pa.table(dict(zip(ORDERS_SCHEMA.names, cols, strict=True)), schema=ORDERS_SCHEMA))


def _run(con: ibis.BaseBackend, expr: ibis.Table) -> pd.DataFrame:
    return con.execute(expr).sort_values("customer_id").set_index("customer_id")


# --- by hand -------------------------------------------------------------------------------------------------

HAND_ORDERS = [
    # a: two orders on Jan 1 (one occasion worth 15), Jan 8 (20), two on Jan 15 (40); holdout: two on Feb 10
    # (one occasion worth 10) and Feb 20 (30); Mar 2 is after observation_end and ignored.
    ("a", _ts("2024-01-01 09:00"), 10.0),
    ("a", _ts("2024-01-01 18:30"), 5.0),
    ("a", _ts("2024-01-08 12:00"), 20.0),
    ("a", _ts("2024-01-15 08:00"), 30.0),
    ("a", _ts("2024-01-15 20:00"), 10.0),
    ("a", _ts("2024-02-10 10:00"), 7.0),
    ("a", _ts("2024-02-10 11:00"), 3.0),
    ("a", _ts("2024-02-20 10:00"), 30.0),
    ("a", _ts("2024-03-02 10:00"), 100.0),
    # b: first buys late on calibration_end itself (in calibration, T = 0), again late on observation_end.
    ("b", _ts("2024-01-31 23:59"), 12.0),
    ("b", _ts("2024-03-01 23:00"), 8.0),
    # c: first purchase after calibration_end: not in the cohort.
    ("c", _ts("2024-02-01 00:00"), 99.0),
    ("c", _ts("2024-02-05 00:00"), 99.0),
    # d: started last year, one repeat, nothing in the holdout.
    ("d", _ts("2023-12-25 10:00"), 50.0),
    ("d", _ts("2024-01-04 10:00"), 10.0),
]
CAL_END = dt.date(2024, 1, 31)
OBS_END = dt.date(2024, 3, 1)  # 30 days later (2024 is a leap year)


def test_rfm_summary_by_hand_in_weeks(con: ibis.BaseBackend) -> None:
    s = rfm_summary(
        _orders(HAND_ORDERS),
        amount_col="amount",
        calibration_end=CAL_END,
        observation_end=OBS_END,
        time_unit_days=7,
    )
    assert s.columns == (
        "customer_id",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "frequency_holdout",
        "monetary_value_holdout",
        "duration_holdout",
    )
    df = _run(con, s)
    assert list(df.index) == ["a", "b", "d"]
    expected = pd.DataFrame(
        {
            # a: 3 calibration occasions; last − first = 14 days; Jan 1 → Jan 31 = 30 days; (20 + 40) / 2.
            # b: one occasion on calibration_end; holdout: one occasion worth 8.
            # d: Dec 25 → Jan 4 = 10 days; Dec 25 → Jan 31 = 37 days; the repeat is worth 10.
            "frequency": [2, 0, 1],
            "recency": [14 / 7, 0.0, 10 / 7],
            "T": [30 / 7, 0.0, 37 / 7],
            "monetary_value": [30.0, 0.0, 10.0],
            "frequency_holdout": [2, 1, 0],
            "monetary_value_holdout": [20.0, 8.0, 0.0],
            "duration_holdout": [30 / 7] * 3,
        },
        index=pd.Index(["a", "b", "d"], name="customer_id"),
    )
    pd.testing.assert_frame_equal(df, expected, check_dtype=False, check_exact=False, rtol=1e-12)
    assert df.frequency.dtype.kind == "i" and df.frequency_holdout.dtype.kind == "i"


def test_rfm_summary_without_amount_or_holdout_and_other_column_names(con: ibis.BaseBackend) -> None:
    orders = _orders(HAND_ORDERS).rename(cust="customer_id", day="order_date")
    orders = orders.mutate(day=orders.day.date())  # a DATE column works as well as a timestamp
    s = rfm_summary(orders, customer_col="cust", date_col="day", calibration_end=CAL_END)
    assert s.columns == ("customer_id", "frequency", "recency", "T")
    df = _run(con, s)
    assert df.frequency.to_dict() == {"a": 2, "b": 0, "d": 1}
    assert df.recency.to_dict() == {"a": 14.0, "b": 0.0, "d": 10.0}  # days by default
    assert df["T"].to_dict() == {"a": 30.0, "b": 0.0, "d": 37.0}


def test_rfm_summary_holdout_without_amount(con: ibis.BaseBackend) -> None:
    s = rfm_summary(_orders(HAND_ORDERS), calibration_end=CAL_END, observation_end=OBS_END)
    assert s.columns == ("customer_id", "frequency", "recency", "T", "frequency_holdout", "duration_holdout")
    df = _run(con, s)
    assert df.frequency_holdout.to_dict() == {"a": 2, "b": 1, "d": 0}
    assert set(df.duration_holdout) == {30.0}


def test_rfm_summary_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="time_unit_days"):
        rfm_summary(_orders(HAND_ORDERS), calibration_end=CAL_END, time_unit_days=0)
    with pytest.raises(ValueError, match="before calibration_end"):
        rfm_summary(_orders(HAND_ORDERS), calibration_end=CAL_END, observation_end=dt.date(2024, 1, 30))


def _spark_ready() -> bool:
    from tierwise.pipeline import spark

    return importlib.util.find_spec("pyspark") is not None and (spark.java_major_version() or 0) >= 17


@pytest.mark.slow
@pytest.mark.skipif(not _spark_ready(), reason="PySpark with Java 17+ is needed")
# PySpark 4.0's pandas conversions pass an argument pandas 3 deprecates (as in test_spark.py).
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_rfm_summary_is_the_same_on_spark(con: ibis.BaseBackend) -> None:
    from tierwise.pipeline import spark

    def summary(orders: ibis.Table) -> ibis.Table:
        return rfm_summary(
            orders, amount_col="amount", calibration_end=CAL_END, observation_end=OBS_END, time_unit_days=7
        )

    spark_con = spark.connect(spark.local_session("tierwise-clv-tests"))
    try:
        table = _orders(HAND_ORDERS).to_pyarrow()
        on_spark = _run(spark_con, summary(spark.copy_table(spark_con, "clv_orders", table)))
        pd.testing.assert_frame_equal(on_spark, _run(con, summary(ibis.memtable(table))), check_dtype=False)
    finally:
        spark_con.disconnect()


# --- against a plain-Python implementation ----------------------------------------------------------------------


def _reference(
    rows: list[tuple[str, dt.datetime, float]], cal_end: dt.date, obs_end: dt.date | None, unit: float
) -> dict[str, dict[str, float]]:
    """The conventions written out as directly as possible: per-day totals, then per customer."""
    last_day = obs_end or cal_end
    per_day: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for customer, when, amount in rows:
        if when.date() <= last_day:
            per_day[customer][when.date()] += amount
    out = {}
    for customer, days in per_day.items():
        cal = sorted(d for d in days if d <= cal_end)
        if not cal:
            continue
        hold = [d for d in days if d > cal_end]
        repeat_values = [days[d] for d in cal[1:]]
        row = {
            "frequency": len(cal) - 1,
            "recency": (cal[-1] - cal[0]).days / unit,
            "T": (cal_end - cal[0]).days / unit,
            "monetary_value": sum(repeat_values) / len(repeat_values) if repeat_values else 0.0,
        }
        if obs_end is not None:
            row["frequency_holdout"] = len(hold)
            row["monetary_value_holdout"] = sum(days[d] for d in hold) / len(hold) if hold else 0.0
            row["duration_holdout"] = (obs_end - cal_end).days / unit
        out[customer] = row
    return out


START = dt.datetime(2024, 1, 1)
order_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.integers(0, 90 * 24 - 1).map(lambda h: START + dt.timedelta(hours=h)),
        st.integers(0, 50_000).map(lambda cents: cents / 100),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=order_rows,
    cal_offset=st.integers(0, 89),
    holdout_days=st.none() | st.integers(0, 40),
    unit=st.sampled_from([1.0, 7.0, 2.5, DAYS_PER_MONTH]),
)
def test_rfm_summary_matches_plain_python(
    con: ibis.BaseBackend,
    rows: list[tuple[str, dt.datetime, float]],
    cal_offset: int,
    holdout_days: int | None,
    unit: float,
) -> None:
    cal_end = START.date() + dt.timedelta(days=cal_offset)
    obs_end = None if holdout_days is None else cal_end + dt.timedelta(days=holdout_days)
    s = rfm_summary(
        _orders(rows), amount_col="amount", calibration_end=cal_end, observation_end=obs_end, time_unit_days=unit
    )
    got = _run(con, s).to_dict(orient="index")
    want = _reference(rows, cal_end, obs_end, unit)
    assert got.keys() == want.keys()
    for customer, row in want.items():
        assert got[customer] == pytest.approx(row, rel=1e-9, abs=1e-9), customer


# --- CDNOW ------------------------------------------------------------------------------------------------------

# Fader & Hardie's CDNOW summary (the BG/NBD paper's data), as shipped by lifetimes
# (datasets/cdnow_customers_summary_with_transactions.csv): ID → x, t_x, T (weeks), z̄, rounded to 2 decimals.
# Chosen to cover same-day duplicate orders (26, 147, 157, 165, 244, 325: several orders on one day count once)
# and the T convention (customer 1: first purchase 1997-01-01, T = 272 / 7 = 38.86, not 39).
CDNOW_PUBLISHED = {
    1: (2, 30.43, 38.86, 22.35),
    2: (1, 1.71, 38.86, 11.77),
    6: (7, 29.43, 38.86, 73.74),
    26: (1, 1.57, 38.71, 227.14),
    59: (1, 38.43, 38.43, 6.49),
    147: (4, 29.29, 38.00, 29.86),
    157: (29, 37.71, 38.00, 26.26),
    165: (0, 0.00, 37.86, 0.00),
    244: (5, 5.14, 37.29, 194.86),
    325: (25, 27.29, 36.86, 37.21),
    509: (18, 35.14, 35.86, 78.63),
    584: (1, 35.43, 35.43, 45.98),
}


@pytest.fixture(scope="module")
def cdnow(con: ibis.BaseBackend) -> pd.DataFrame:
    if not CDNOW_SAMPLE.exists():
        pytest.skip(f"{CDNOW_SAMPLE} is not there")
    # master_id sample_id YYYYMMDD number_of_cds dollar_value, separated by runs of spaces.
    rows = [line.split() for line in CDNOW_SAMPLE.read_text().splitlines() if line.strip()]
    orders = ibis.memtable(
        pa.table(
            {
                "customer_id": [int(r[1]) for r in rows],
                "order_date": [dt.datetime.strptime(r[2], "%Y%m%d").date() for r in rows],
                "amount": [float(r[4]) for r in rows],
            }
        )
    )
    s = rfm_summary(
        orders,
        amount_col="amount",
        calibration_end=dt.date(1997, 9, 30),
        observation_end=dt.date(1998, 6, 30),
        time_unit_days=7,
    )
    return _run(con, s)


def test_cdnow_totals(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 2357  # the whole cohort: all first bought in 1997 Q1
    # Computed from the sample with these conventions (the per-customer values are checked against the
    # published summary below): repeat occasions in the 39-week calibration period, customers with at least
    # one (the Gamma-Gamma model's input), occasions in weeks 40-78.
    assert int(cdnow.frequency.sum()) == 2457
    assert int((cdnow.frequency > 0).sum()) == 946
    assert int(cdnow.frequency_holdout.sum()) == 1882
    assert set(cdnow.duration_holdout) == {39.0}
    # First purchases run from 1997-01-01 (272 days before calibration_end) to 1997-03-25 (189 days).
    assert (cdnow["T"].max(), cdnow["T"].min()) == pytest.approx((272 / 7, 189 / 7))


def test_cdnow_matches_published_summary(cdnow: pd.DataFrame) -> None:
    for customer, (x, t_x, big_t, zbar) in CDNOW_PUBLISHED.items():
        row = cdnow.loc[customer]
        assert row.frequency == x, customer
        # 0.006: the published figures are rounded to cents/hundredths (22.345 is printed 22.35).
        assert (row.recency, row["T"], row.monetary_value) == pytest.approx((t_x, big_t, zbar), abs=0.006), customer


# --- CLV --------------------------------------------------------------------------------------------------------


class PoissonModel:
    """Purchases at a constant rate per time unit, forever: E[purchases in (0, t]] = rate × t."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.times: list[float] = []

    def expected_purchases(self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        self.times.append(t)
        return self.rate * (frequency + 1) * t * np.ones_like(recency + T)


class DyingModel:
    """Buys at `rate` while alive and dies at `death_rate`: E[purchases in (0, t]] = rate/death · (1 − e^(−death·t))."""

    def __init__(self, rate: float, death_rate: float) -> None:
        self.rate, self.death_rate = rate, death_rate

    def expected_purchases(self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return self.rate / self.death_rate * (1 - np.exp(-self.death_rate * t)) * np.ones_like(frequency)


class MeanSpend:
    def expected_spend(self, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
        return monetary_value + 5.0


def test_clv_is_the_geometric_sum_for_a_poisson_buyer() -> None:
    # Time unit = one month, so t = m. Customer 0 buys 2 a month (rate 2 × (frequency 0 + 1)), spends 45 + 5 = 50,
    # keeps 30%: 30 a month. Discounted at 1% a month for 12 months: 30 · Σ 1.01^−m = 30 · (1 − 1.01^−12) / 0.01.
    model = PoissonModel(rate=2.0)
    clv = customer_lifetime_value(
        model,
        MeanSpend(),
        frequency=[0, 1],
        recency=[0.0, 3.0],
        T=[6.0, 6.0],
        monetary_value=[45.0, 95.0],
        horizon_months=12,
        discount_rate_monthly=0.01,
        time_unit_days=DAYS_PER_MONTH,
        margin=0.3,
    )
    annuity = (1 - 1.01**-12) / 0.01
    assert clv[0] == pytest.approx(30 * annuity) and clv[0] == pytest.approx(337.652, abs=1e-3)
    assert clv[1] == pytest.approx(2 * 2 * 100 * 0.3 * annuity)  # rate 4, spend 100
    assert model.times == pytest.approx(list(range(1, 13)))


def test_clv_in_weeks_with_margin_per_customer_and_no_discount() -> None:
    # In weeks a month is 30.4375 / 7 time units; without discounting CLV = rate · 12 months · spend · margin.
    model = PoissonModel(rate=0.5)
    clv = customer_lifetime_value(
        model,
        MeanSpend(),
        frequency=np.zeros(3),
        recency=np.zeros(3),
        T=np.full(3, 10.0),
        monetary_value=np.full(3, 15.0),
        discount_rate_monthly=0.0,
        time_unit_days=7,
        margin=np.array([1.0, 0.5, 0.0]),
    )
    months_in_weeks = 12 * DAYS_PER_MONTH / 7
    np.testing.assert_allclose(clv, 0.5 * months_in_weeks * 20 * np.array([1.0, 0.5, 0.0]))
    assert model.times[0] == pytest.approx(DAYS_PER_MONTH / 7)


def test_clv_uses_each_months_own_purchases() -> None:
    # Cumulative purchases c(1 − q^m), q = e^(−death), so month m has c(1 − q)q^(m−1) purchases, and the CLV is
    # spend · c(1 − q)/(1 + d) · Σ (q/(1 + d))^(m−1) = spend · c(1 − q)/(1 + d) · (1 − r^H)/(1 − r), r = q/(1 + d).
    rate, death, d, horizon = 3.0, 0.2, 0.02, 24
    clv = customer_lifetime_value(
        DyingModel(rate, death),
        MeanSpend(),
        frequency=[2.0],
        recency=[1.0],
        T=[5.0],
        monetary_value=[35.0],
        horizon_months=horizon,
        discount_rate_monthly=d,
        time_unit_days=DAYS_PER_MONTH,
    )
    c, q = rate / death, math.exp(-death)
    ratio = q / (1 + d)
    assert clv[0] == pytest.approx(40 * c * (1 - q) / (1 + d) * (1 - ratio**horizon) / (1 - ratio))


def test_clv_edge_cases() -> None:
    zero = customer_lifetime_value(PoissonModel(1.0), MeanSpend(), [0], [0], [1], [1], horizon_months=0)
    assert zero.tolist() == [0.0]
    with pytest.raises(ValueError, match="horizon_months"):
        customer_lifetime_value(PoissonModel(1.0), MeanSpend(), [0], [0], [1], [1], horizon_months=-1)
    with pytest.raises(ValueError, match="discount_rate_monthly"):
        customer_lifetime_value(PoissonModel(1.0), MeanSpend(), [0], [0], [1], [1], discount_rate_monthly=-1)
    with pytest.raises(ValueError, match="time_unit_days"):
        customer_lifetime_value(PoissonModel(1.0), MeanSpend(), [0], [0], [1], [1], time_unit_days=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=order_rows,
    returns=order_rows,
    cal_offset=st.integers(0, 89),
    unit=st.sampled_from([1.0, 7.0, 2.5, DAYS_PER_MONTH]),
)
def test_summary_from_purchase_occasions_matches_plain_python(
    con: ibis.BaseBackend,
    rows: list[tuple[str, dt.datetime, float]],
    returns: list[tuple[str, dt.datetime, float]],
    cal_offset: int,
    unit: float,
) -> None:
    """The run's route to the models' summary: the features' purchase occasions (returns left out), then
    `summary_from_occasions`, equals the conventions written out in plain Python."""
    cal_end = START.date() + dt.timedelta(days=cal_offset)
    lines = [(*r, False) for r in rows] + [(c, when, -amount, True) for c, when, amount in returns]
    schema = ORDERS_SCHEMA.append(pa.field("is_return", pa.bool_()))
    cols: list[tuple[object, ...]] = list(zip(*lines, strict=True)) if lines else [(), (), (), ()]
    orders = ibis.memtable(pa.table(dict(zip(schema.names, cols, strict=True)), schema=schema))
    occasions = purchase_occasions(orders, cal_end + dt.timedelta(days=1))
    got = _run(con, summary_from_occasions(occasions, cal_end, unit)).to_dict(orient="index")
    want = _reference(rows, cal_end, None, unit)
    assert got.keys() == want.keys()
    for customer, row in want.items():
        assert got[customer] == pytest.approx(row, rel=1e-9, abs=1e-9), customer
