"""Value parsers: hand-written cases and property tests against Python's own arithmetic and calendar."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierwise.ingest.parse import (
    DateOrderEvidence,
    DateOrderProblem,
    date_order_evidence,
    decide_date_order,
    parse_column,
    strip,
)


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def parse(con, values: list[str], kind: str, order: str = "ymd", pivot: int = 70) -> list:
    t = ibis.memtable({"s": values}, schema={"s": "string"})
    return con.to_pyarrow(parse_column(t, "s", kind, order, pivot))["s"].to_pylist()  # type: ignore[arg-type]


AMOUNTS = {
    "¥1,234.50": "1234.5",
    "1234.50元": "1234.5",
    "￥12,000": "12000",
    "$ 5": "5",
    "€3.10": "3.1",
    "£7": "7",
    "CNY 88": "88",
    "rmb99.9": "99.9",
    "(12.30)": "-12.3",
    "（12.30）": "-12.3",
    "１２３．４５": "123.45",
    "1.5万": "15000",
    "1.23456万": "12345.6",
    "-3": "-3",
    "+4.25": "4.25",
    "1e3": "1000",
    "1.5e-3": "0.0015",
    ".5": "0.5",
    "  42  ": "42",
    "1,234,567.891": "1234567.891",
    "2816389.49": "2816389.49",
    "99999999999999.9999": "99999999999999.9999",
    # more than 4 places: rounded half away from zero (docs/ingest.md, "Values")
    "0.00005": "0.0001",
    "-0.00005": "-0.0001",
    "1.23445": "1.2345",
    "1.23444": "1.2344",
    "(0.00015)": "-0.0002",
    "100000000000000": None,  # beyond DECIMAL(18,4)
    "1E100": None,
    "9999999999999999999999万": None,
    "abc": None,
    "": None,
    "-": None,
    "1,23": None,
    "1.234,50": None,
    "12 34": None,
    "(-5)": None,
    "1.2.3": None,
}


def test_amount_cases(con) -> None:
    got = parse(con, list(AMOUNTS), "amount")
    for (text, want), value in zip(AMOUNTS.items(), got, strict=True):
        if want is None:
            assert value is None, text
        else:
            assert isinstance(value, Decimal) and value == Decimal(want), text


def test_number_is_a_float(con) -> None:
    """Quantities and other numbers read the same forms as amounts, as floats (they are not money)."""
    assert parse(con, ["1.5万", "(2.5)", "1e3", "x"], "number") == [15000.0, -2.5, 1000.0, None]


def test_integer_and_boolean(con) -> None:
    assert parse(con, ["3", "3.0", "3.5", "x", "1,000"], "integer") == [3, 3, None, None, 1000]
    texts = ["是", "否", "Yes", "n", "TRUE", "f", "1", "0", "有", "无", "maybe", ""]
    assert parse(con, texts, "boolean") == [True, False, True, False, True, False, True, False, True, False, None, None]


TIMESTAMPS_MDY = {
    "2024-03-05": dt.datetime(2024, 3, 5),
    "2024-03-05 14:30": dt.datetime(2024, 3, 5, 14, 30),
    "2024-03-05T14:30:15": dt.datetime(2024, 3, 5, 14, 30, 15),
    "2024-03-05T14:30:15.250+08:00": dt.datetime(2024, 3, 5, 14, 30, 15, 250000),
    "2024-03-05 14:30:15Z": dt.datetime(2024, 3, 5, 14, 30, 15),
    "2024-03-05 14:30:15 -0500": dt.datetime(2024, 3, 5, 14, 30, 15),
    "2024/3/5": dt.datetime(2024, 3, 5),
    "2024.3.5 9:05": dt.datetime(2024, 3, 5, 9, 5),
    "2024-3-5": dt.datetime(2024, 3, 5),
    "2024年3月5日": dt.datetime(2024, 3, 5),
    "2024年3月5日 14:30": dt.datetime(2024, 3, 5, 14, 30),
    "2024年3月5日 14时30分": dt.datetime(2024, 3, 5, 14, 30),
    "2024年3月5日 14时30分15秒": dt.datetime(2024, 3, 5, 14, 30, 15),
    "２０２４年３月５日": dt.datetime(2024, 3, 5),
    "20240305": dt.datetime(2024, 3, 5),
    "12/06/2010 10:08": dt.datetime(2010, 12, 6, 10, 8),
    "2/20/11 11:39": dt.datetime(2011, 2, 20, 11, 39),
    "2/20/11 11:39 PM": dt.datetime(2011, 2, 20, 23, 39),
    "2/20/11 12:05 AM": dt.datetime(2011, 2, 20, 0, 5),
    "2/20/69": dt.datetime(2069, 2, 20),
    "2/20/70": dt.datetime(1970, 2, 20),
    "45360": dt.datetime(2024, 3, 9),
    "45360.75": dt.datetime(2024, 3, 9, 18),
    "2024-02-29": dt.datetime(2024, 2, 29),
    "2023-02-29": None,
    "2024-13-01": None,
    "2024-03-05 25:00": None,
    "2024-03-05 garbage": None,
    "13/13/2024": None,
    "hello": None,
    "": None,
    "19000": None,  # an Excel serial out of the accepted range (1952)
    "123456": None,
}


def test_timestamp_cases(con) -> None:
    got = parse(con, list(TIMESTAMPS_MDY), "timestamp", "mdy")
    for (text, want), value in zip(TIMESTAMPS_MDY.items(), got, strict=True):
        assert value == want, text


def test_day_first_and_year_first_orders(con) -> None:
    assert parse(con, ["05/03/2024", "25/12/99"], "timestamp", "dmy") == [
        dt.datetime(2024, 3, 5),
        dt.datetime(1999, 12, 25),
    ]
    assert parse(con, ["05/03/2024", "2024-01-02"], "timestamp", "ymd") == [None, dt.datetime(2024, 1, 2)]
    assert parse(con, ["2024-03-05 10:00"], "date") == [dt.date(2024, 3, 5)]


def test_date_order_evidence(con) -> None:
    def evidence(values: list[str]) -> DateOrderEvidence:
        return date_order_evidence(ibis.memtable({"d": values}, schema={"d": "string"}), "d")

    retail = evidence(["12/06/2010 10:08", "2/20/11 11:39", "2011-01-01"])
    assert (retail.year_last, retail.second_over_12, retail.first_over_12) == (2, 1, 0)
    assert decide_date_order(retail, "auto") == "mdy"
    day_first = evidence(["25/06/2024", "03/04/2024"])
    assert decide_date_order(day_first, "auto") == "dmy"
    assert decide_date_order(evidence(["25/06/2024", "06/25/2024"]), "auto") == DateOrderProblem(
        "conflict", "25/06/2024"
    )
    assert decide_date_order(evidence(["03/04/2024", "05/06/2024"]), "auto") == DateOrderProblem(
        "ambiguous", "03/04/2024"
    )
    assert decide_date_order(evidence(["01/01/2024", "2024-05-06"]), "auto") == "mdy"
    assert decide_date_order(evidence(["2024-05-06"]), "auto") == "ymd"
    assert decide_date_order(evidence(["03/04/2024"]), "dmy") == "dmy"


# ---------------------------------------------------------------- properties

FULL = str.maketrans("0123456789.,-", "０１２３４５６７８９．，－")


def _with_thousands(digits: str) -> str:
    out = []
    for i, ch in enumerate(reversed(digits)):
        if i and i % 3 == 0:
            out.append(",")
        out.append(ch)
    return "".join(reversed(out))


@st.composite
def formatted_amount(draw) -> tuple[str, Decimal]:
    places = draw(st.integers(0, 4))
    value = draw(
        st.decimals(
            min_value=Decimal("-99999999999999.9999"),
            max_value=Decimal("99999999999999.9999"),
            places=places,
            allow_nan=False,
            allow_infinity=False,
        )
    )
    magnitude = abs(value)
    whole, _, frac = f"{magnitude:.{places}f}".partition(".")
    body = (_with_thousands(whole) if draw(st.booleans()) else whole) + ("." + frac if frac else "")
    if value < 0:
        body = f"({body})" if draw(st.booleans()) else "-" + body
    symbol = draw(st.sampled_from(["", "¥", "￥", "$", "€", "£", "CNY ", "RMB"]))
    text = symbol + body if draw(st.booleans()) else body + draw(st.sampled_from(["", "元", " CNY", "€"]))
    if draw(st.booleans()):
        text = text.translate(FULL)
    if draw(st.booleans()):
        text = f"  {text} "
    return text, value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(formatted_amount(), min_size=1, max_size=40))
def test_amount_round_trip(con, cases: list[tuple[str, Decimal]]) -> None:
    """Any amount with up to 4 places, in any of the written forms, is stored exactly as the decimal written."""
    got = parse(con, [c[0] for c in cases], "amount")
    for (text, value), parsed in zip(cases, got, strict=True):
        assert isinstance(parsed, Decimal) and parsed == value, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.decimals(min_value=-(10**13), max_value=10**13, places=8, allow_nan=False), min_size=1))
def test_amount_rounding_beyond_four_places(con, values: list[Decimal]) -> None:
    """More than 4 places: rounded once, half away from zero (Python's ROUND_HALF_UP), never through a float."""
    got = parse(con, [str(v) for v in values], "amount")
    assert got == [v.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP) for v in values]


@st.composite
def formatted_datetime(draw) -> tuple[str, dt.datetime, str]:
    moment = draw(st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2060, 12, 31)))
    moment = moment.replace(microsecond=0)
    form = draw(
        st.sampled_from(["iso", "isoT", "slash", "dot", "cn", "cn_time", "compact", "dmy", "mdy", "mdy2", "serial"])
    )
    y, m, d = moment.year, moment.month, moment.day
    if form == "iso":
        return f"{y}-{m:02d}-{d:02d} {moment:%H:%M:%S}", moment, "ymd"
    if form == "isoT":
        return f"{moment:%Y-%m-%dT%H:%M:%S}+08:00", moment, "ymd"
    if form == "slash":
        return f"{y}/{m}/{d}", moment.replace(hour=0, minute=0, second=0), "ymd"
    if form == "dot":
        return f"{y}.{m}.{d} {moment.hour}:{moment:%M}", moment.replace(second=0), "ymd"
    if form == "cn":
        return f"{y}年{m}月{d}日", moment.replace(hour=0, minute=0, second=0), "ymd"
    if form == "cn_time":
        return f"{y}年{m}月{d}日 {moment.hour}时{moment.minute}分{moment.second}秒", moment, "ymd"
    if form == "compact":
        return f"{y}{m:02d}{d:02d}", moment.replace(hour=0, minute=0, second=0), "ymd"
    if form == "dmy":
        return f"{d}/{m}/{y} {moment:%H:%M}", moment.replace(second=0), "dmy"
    if form == "mdy":
        return f"{m}/{d}/{y} {moment:%I:%M:%S %p}", moment, "mdy"
    if form == "mdy2":
        # Two-digit years are read in the pivot window 1970–2069.
        moment = moment.replace(year=1970 + (moment.year - 1950) % 100)
        return f"{moment.month}/{moment.day}/{moment:%y}", moment.replace(hour=0, minute=0, second=0), "mdy"
    # Excel serials are read between 20000 and 80000 (1954-10-03 onwards).
    moment = max(moment, dt.datetime(1955, 1, 1))
    day = moment.replace(hour=0, minute=0, second=0)
    serial = (day - dt.datetime(1899, 12, 30)).days
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return f"{serial + seconds / 86400:.10f}".rstrip("0").rstrip("."), moment, "ymd"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(formatted_datetime(), min_size=1, max_size=40))
def test_datetime_round_trip(con, cases: list[tuple[str, dt.datetime, str]]) -> None:
    for order in ("ymd", "dmy", "mdy"):
        subset = [c for c in cases if c[2] == order]
        if not subset:
            continue
        got = parse(con, [c[0] for c in subset], "timestamp", order)
        for (text, want, _), value in zip(subset, got, strict=True):
            assert value == want, text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=30), min_size=1, max_size=40))
def test_arbitrary_text_never_fails(con, texts: list[str]) -> None:
    texts = [t.replace("\x00", "") for t in texts]
    for kind in ("amount", "timestamp", "integer", "boolean"):
        for v in parse(con, texts, kind, "mdy"):
            assert v is None or isinstance(v, float | int | bool | dt.datetime | Decimal)


SPACES = " \t\n\r\x0b\x0c"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=SPACES + "a无\x01\x1f\xa0\u3000", max_size=6) | st.none(), min_size=1, max_size=30))
def test_strip_removes_what_a_plain_strip_removes(con, texts: list[str | None]) -> None:
    """The cheap strip (trims only values with a space at either end) equals trimming every value."""
    t = ibis.memtable({"s": texts}, schema={"s": "string"})
    got = con.to_pyarrow(t.select(s=strip(t.s)))["s"].to_pylist()
    assert got == [None if v is None else v.strip(SPACES) for v in texts]
