"""Exact money: amounts stored as decimals, headline totals equal to the source's own sum to the cent, and
workspaces of the previous version (DOUBLE amounts) converted when opened."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import ibis
import pyarrow as pa
import pytest
from tests.conftest import run_cli

from tierwise.errors import UserError
from tierwise.money import MONEY
from tierwise.schema import TABLES
from tierwise.workspace import Workspace, canonical_schema, money_to_decimal

DATABASE = "tierwise.duckdb"  # the default [engine] database

# Amounts whose float sums drift: many tenths, cents that have no binary form, a large total split into lines.
BIG = Decimal("2816389.49")


def _amount_texts(rng: random.Random) -> list[str]:
    texts = ["0.1"] * 700 + ["1234.57"] * 37 + ["0.07", "19.99", "0.3", "-0.2", "(5.55)", "¥1,234.57", "1.2345"]
    # 2,816,389.49 in 50 lines of unequal cents
    parts = [Decimal(rng.randint(1, 9999999)) / 100 for _ in range(49)]
    texts += [str(p) for p in parts] + [str(BIG - sum(parts))]
    rng.shuffle(texts)
    return texts


def _value(text: str) -> Decimal:
    """The amount a text means, by plain Python (the forms used above)."""
    t = text.replace("¥", "").replace(",", "")
    return -Decimal(t[1:-1]) if t.startswith("(") else Decimal(t)


@pytest.fixture(scope="module")
def money_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("money")
    rng = random.Random(20)
    texts = _amount_texts(rng)
    start = dt.date(2024, 1, 1)
    lines = ["order_id,customer_id,order_date,amount"]
    per_customer: dict[str, Decimal] = {}
    for i, text in enumerate(texts):
        customer = f"C{i % 23:03d}"
        day = start + dt.timedelta(days=rng.randint(0, 300))
        lines.append(f'O{i:05d},{customer},{day.isoformat()},"{text}"')
        per_customer[customer] = per_customer.get(customer, Decimal(0)) + _value(text)
    path = root / "orders.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws_dir = root / "ws"
    assert run_cli("init", ws_dir).code == 0
    ingested = run_cli("ingest", "orders", path, "-w", ws_dir)
    assert ingested.code == 0, ingested.stderr
    ran = run_cli("run", "-w", ws_dir)
    assert ran.code == 0, ran.stderr
    shown = run_cli("show", "-w", ws_dir, "--json")
    assert shown.code == 0, shown.stderr
    return {"ws": ws_dir, "texts": texts, "per_customer": per_customer, "show": shown.json()}


def test_the_data_really_drifts_in_floats(money_run: dict) -> None:
    """The check below means something: adding these amounts as floats misses the exact total."""
    exact = sum(_value(t) for t in money_run["texts"])
    floats = 0.0
    for t in money_run["texts"]:
        floats += float(_value(t))
    assert Decimal(repr(floats)) != exact


def test_stored_amounts_and_their_sum_are_the_source_s(money_run: dict) -> None:
    ws = Workspace.open(money_run["ws"])
    try:
        orders = ws.table("orders")
        assert orders.schema()["amount"] == MONEY
        stored = sorted(orders.amount.to_pyarrow().to_pylist())
        total = orders.amount.sum().execute()
    finally:
        ws.close()
    assert stored == sorted(_value(t) for t in money_run["texts"])
    assert all(isinstance(v, Decimal) for v in stored)
    assert total == sum(_value(t) for t in money_run["texts"])


def test_headline_totals_equal_the_source_to_the_cent(money_run: dict) -> None:
    from tierwise.report.charts import breakdown
    from tierwise.report.language import ReportLanguage
    from tierwise.report.pages.key_figures import key_figures
    from tierwise.store.runs import latest_snapshot
    from tierwise.web.services.overview import overview

    exact = sum(money_run["per_customer"].values())
    ws = Workspace.open(money_run["ws"])
    try:
        _, snap = latest_snapshot(ws, None)
        # the snapshot keeps the types it had: money figures are floats there, for every reader of it
        assert [c for c, t in snap.schema().items() if t.is_decimal()] == []
        # per customer: every monetary figure is the customer's exact sum (a float that reads back as it)
        got = {r["customer_id"]: r["monetary"] for r in snap.select("customer_id", "monetary").to_pyarrow().to_pylist()}
        assert {c: Decimal(repr(v)) for c, v in got.items()} == money_run["per_customer"]
        assert all(type(v) is float for v in got.values())
        # the dashboard's revenue card
        cards = {k["key"]: k for k in overview(ws)["kpis"]}
        revenue = cards["revenue"]["value"]
        assert type(revenue) is float and revenue == float(exact) and f"{revenue:.2f}" == f"{exact:.2f}"
        json.dumps(overview(ws))  # nothing in it that JSON cannot hold (no Decimal objects)
        # the report's revenue breakdowns add up to the same total, group by group exactly
        rows = breakdown(snap, "abc_class", ReportLanguage("en", ""))
        assert sum(Decimal(repr(r["revenue"])) for r in rows) == exact
        assert all(type(r["revenue"]) is float for r in rows)
        kpis = key_figures(snap, ReportLanguage("en", ""))
        assert any(c["value"] == ReportLanguage("en", "").money(float(exact)) for c in kpis)
    finally:
        ws.close()
    # `show`: every class summary's revenues add up to the exact total
    for column, summary in money_run["show"]["summaries"].items():
        assert sum(Decimal(repr(r["revenue"])) for r in summary) == exact, column


def test_amount_from_quantity_times_price_is_exact(ws: Workspace, tmp_path: Path) -> None:
    from tierwise.ingest.pipeline import ingest_file

    # products past 64-bit decimals (100 × 92,233.72 at 12 places) are exact too
    rows = [("3", "19.99"), ("7", "0.10"), ("2.5", "1.3333"), ("1", "0.005"), ("-1", "0.005"), ("100", "92233.72")]
    beyond = [("1e20", "5"), ("1e11", "99999999999999.9999")]  # products beyond DECIMAL(18,4)
    text = "order_id,customer_id,order_date,quantity,unit_price\n" + "".join(
        f"O{i},C1,2024-05-0{i + 1},{q},{p}\n" for i, (q, p) in enumerate(rows + beyond)
    )
    path = tmp_path / "lines.csv"
    path.write_text(text, encoding="utf-8")
    r = ingest_file(ws, "orders", path, today=dt.date(2025, 1, 1))
    got = ws.table("orders").order_by("source_line").amount.to_pyarrow().to_pylist()
    # rounded to cents, half away from zero, as the product always was
    assert got == [(Decimal(q) * Decimal(p)).quantize(Decimal("0.01"), ROUND_HALF_UP) for q, p in rows]
    assert r.reasons == {"BAD_AMOUNT": 2}
    q = ws.table("quarantine").order_by("line").to_pyarrow().to_pylist()
    assert [(x["line"], x["column"], x["value"]) for x in q] == [
        (len(rows) + 2 + i, "quantity×unit_price", f"{a}×{b}") for i, (a, b) in enumerate(beyond)
    ]


def test_parquet_float_int_and_decimal_amounts_are_stored_as_decimals(ws: Workspace, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from tierwise.ingest.pipeline import ingest_file

    n = 3
    base = {"customer_id": ["C1"] * n, "order_date": [dt.datetime(2024, 5, 1)] * n}
    cases = {
        "double": pa.array([0.1, 1234.57, 2816389.49], pa.float64()),
        "int": pa.array([1, -2, 300], pa.int64()),
        "decimal": pa.array([Decimal("0.12345"), Decimal("-7.5"), Decimal("99.99")], pa.decimal128(10, 5)),
    }
    want = {
        "double": [Decimal("0.1"), Decimal("1234.57"), Decimal("2816389.49")],
        "int": [Decimal(1), Decimal(-2), Decimal(300)],
        "decimal": [Decimal("0.1235"), Decimal("-7.5"), Decimal("99.99")],  # 5 places rounded to 4
    }
    for kind, amounts in cases.items():
        path = tmp_path / f"{kind}.parquet"
        pq.write_table(pa.table({**base, "order_id": [f"{kind}{i}" for i in range(n)], "amount": amounts}), path)
        ingest_file(ws, "orders", path, today=dt.date(2025, 1, 1))
        o = ws.table("orders")
        got = o.filter(o.order_id.startswith(kind)).order_by("source_line").amount.to_pyarrow().to_pylist()
        assert got == want[kind], kind


# --- workspaces of the previous version ------------------------------------------------------------------------

OLD_ROWS = {
    "orders": {"amount": [0.1, 2816389.49, -12.3], "cost": [0.07, None, 1.2345], "unit_price": [None, 19.99, 0.0]},
    "payments": {"amount": [1234.57, 0.3]},
    "customers": {"credit_limit": [50000.0, None]},
    "campaign_contacts": {"response_revenue": [99.9, None]},
}


def _old_workspace(root: Path) -> None:
    """A workspace as the previous version made it: every amount column DOUBLE, holding OLD_ROWS."""
    Workspace.init(root).close()
    con = ibis.duckdb.connect(str(root / DATABASE))
    for name, columns in OLD_ROWS.items():
        schema = canonical_schema(next(spec for spec in TABLES.values() if spec.name == name))
        old = ibis.schema({c: ("float64" if t == MONEY else t) for c, t in schema.items()})
        n = len(next(iter(columns.values())))
        rows = {c: [None] * n for c in old.names} | {"customer_id": [f"C{i}" for i in range(n)]} | columns
        con.create_table(name, pa.table(rows, schema=old.to_pyarrow()), overwrite=True)
    con.disconnect()


def test_an_old_workspace_is_converted_when_opened(tmp_path: Path) -> None:
    root = tmp_path / "old"
    _old_workspace(root)
    ws = Workspace.open(root)
    try:
        for name, columns in OLD_ROWS.items():
            t = ws.table(name)
            for column, values in columns.items():
                assert t.schema()[column] == MONEY, (name, column)
                got = t.order_by("customer_id")[column].to_pyarrow().to_pylist()
                assert got == [None if v is None else Decimal(repr(v)) for v in values], (name, column)
        # the other columns are untouched, and a second opening has nothing left to do
        assert ws.table("orders").schema()["quantity"].is_floating()
        assert money_to_decimal(ws.con, set(ws.con.list_tables())) == []
    finally:
        ws.close()


def test_a_value_that_cannot_convert_leaves_the_old_workspace_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "old"
    _old_workspace(root)
    con = duckdb.connect(str(root / DATABASE))
    con.execute("UPDATE payments SET amount = 1e20 WHERE customer_id = 'C1'")  # beyond DECIMAL(18,4)
    before = {n: con.execute(f'SELECT * FROM "{n}" ORDER BY customer_id').fetchall() for n in OLD_ROWS}
    con.close()
    with pytest.raises(UserError, match="cannot convert the amounts of this workspace"):
        Workspace.open(root)
    con = duckdb.connect(str(root / DATABASE))
    try:
        for name in OLD_ROWS:
            assert con.execute(f'SELECT * FROM "{name}" ORDER BY customer_id').fetchall() == before[name]
            types = dict(
                con.execute(
                    f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{name}'"
                ).fetchall()
            )
            assert all(types[c] == "DOUBLE" for c in OLD_ROWS[name]), name  # the orders too, not half converted
    finally:
        con.close()


def test_unreadable_float_amounts_in_parquet_are_quarantined(ws: Workspace, tmp_path: Path) -> None:
    """NaN, infinities and values beyond DECIMAL(18,4) in a float column are BAD_AMOUNT; an empty amount is
    derived from quantity × unit price when they are there, and is MISSING_VALUE when not."""
    import pyarrow.parquet as pq

    from tierwise.ingest.pipeline import ingest_file

    amounts = [1.25, float("nan"), float("inf"), -1e20, None, None, 123456789.12]
    n = len(amounts)
    table = pa.table(
        {
            "order_id": [f"P{i}" for i in range(n)],
            "customer_id": ["C1"] * n,
            "order_date": [dt.datetime(2024, 5, 1)] * n,
            "amount": pa.array(amounts, pa.float64()),
            "quantity": [1.0, 1.0, 1.0, 1.0, 3.0, None, 1.0],
            "unit_price": [1.25, 1.0, 1.0, 1.0, 19.99, None, 1.0],
        }
    )
    path = tmp_path / "floats.parquet"
    pq.write_table(table, path)
    r = ingest_file(ws, "orders", path, today=dt.date(2025, 1, 1))
    assert r.reasons == {"BAD_AMOUNT": 3, "MISSING_VALUE": 1}
    q = ws.table("quarantine").order_by("line").to_pyarrow().to_pylist()
    assert [(x["line"], x["reason_code"]) for x in q] == [
        (2, "BAD_AMOUNT"),
        (3, "BAD_AMOUNT"),
        (4, "BAD_AMOUNT"),
        (6, "MISSING_VALUE"),
    ]
    got = ws.table("orders").order_by("source_line").amount.to_pyarrow().to_pylist()
    assert got == [Decimal("1.25"), Decimal("59.97"), Decimal("123456789.12")]
