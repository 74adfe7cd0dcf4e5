"""Record identity: overlapping weekly exports count every order once; changes replace, unload restores.

Every expectation is computed here from the test's own rows in plain Python (a dict of the latest lines per order).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from tierwise.errors import UserError
from tierwise.ingest.identity import unload
from tierwise.ingest.pipeline import ingest_file
from tierwise.workspace import Workspace

TODAY = dt.date(2025, 6, 30)
HEADER = "order_id,customer_id,order_date,amount\n"
TABLES = ["customers", "orders", "payments", "quarantine", "batches", "replaced_orders", "replaced_customers"]


def state(ws: Workspace) -> dict[str, list[str]]:
    """Everything stored, as sorted text: equal states are equal workspaces (load times aside)."""
    result = {}
    for name in TABLES:
        rows = ws.table(name).to_pyarrow().to_pylist()
        for r in rows:
            r.pop("loaded_at", None)
        result[name] = sorted(map(str, rows))
    return result


def write_orders(path: Path, rows: list[tuple[str, str, str, str]], encoding: str = "utf-8") -> Path:
    path.write_bytes((HEADER + "".join(",".join(r) + "\n" for r in rows)).encode(encoding))
    return path


def stored_orders(ws: Workspace) -> dict[str, list[tuple[str, Decimal]]]:
    """order_id → sorted (customer, amount) lines, as stored."""
    found: dict[str, list[tuple[str, Decimal]]] = {}
    for r in ws.table("orders").to_pyarrow().to_pylist():
        found.setdefault(r["order_id"], []).append((r["customer_id"], Decimal(str(r["amount"]))))
    return {k: sorted(v) for k, v in found.items()}


def reconciles(r) -> bool:
    return (
        r.rows_read == (r.rows_new + r.rows_updated + r.rows_unchanged + r.rows_quarantined + r.duplicates_removed)
        and r.rows_loaded == r.rows_new + r.rows_updated
    )


WEEK1 = [("O1", "C1", "2024-03-01", "100.10"), ("O2", "C2", "2024-03-02", "200.20")]
WEEK2 = [*WEEK1, ("O3", "C1", "2024-03-08", "300.30")]
WEEK3 = [WEEK2[0], ("O2", "C2", "2024-03-02", "250.25"), WEEK2[2], ("O4", "C3", "2024-03-15", "40.00")]


def test_three_cumulative_weeks_count_each_order_once(ws: Workspace, tmp_path: Path) -> None:
    expected: dict[str, list[tuple[str, Decimal]]] = {}
    reports = []
    for week, rows in enumerate([WEEK1, WEEK2, WEEK3], start=1):
        reports.append(ingest_file(ws, "orders", write_orders(tmp_path / f"week{week}.csv", rows), today=TODAY))
        for order, customer, _, amount in rows:
            expected[order] = [(customer, Decimal(amount))]  # the latest export's version wins
    assert stored_orders(ws) == expected
    assert all(reconciles(r) for r in reports)
    counts = [(r.rows_new, r.rows_updated, r.rows_unchanged, r.rows_replaced) for r in reports]
    assert counts == [(2, 0, 0, 0), (1, 0, 2, 0), (1, 1, 2, 1)]
    revenue = sum(Decimal(str(r["amount"])) for r in ws.table("orders").to_pyarrow().to_pylist())
    assert revenue == Decimal("100.10") + Decimal("250.25") + Decimal("300.30") + Decimal("40.00")
    # The corrected order's old version is kept, explaining the change.
    [old] = ws.table("replaced_orders").to_pyarrow().to_pylist()
    assert (old["order_id"], Decimal(str(old["amount"])), old["replaced_by"]) == (
        "O2",
        Decimal("200.20"),
        reports[2].batch_id,
    )
    assert old["batch_id"] == reports[0].batch_id


def test_gbk_export_saved_again_as_utf8_adds_nothing(ws: Workspace, tmp_path: Path) -> None:
    rows = [("单1", "客户甲", "2024-03-01", "100"), ("单2", "客户乙", "2024-03-02", "88.8")]
    first = ingest_file(ws, "orders", write_orders(tmp_path / "gbk.csv", rows, "gbk"), today=TODAY)
    before = state(ws)["orders"]
    again = ingest_file(ws, "orders", write_orders(tmp_path / "utf8.csv", rows, "utf-8"), today=TODAY)
    assert first.encoding == "gb18030" and again.status == "loaded" and again.batch_id != first.batch_id
    assert (again.rows_new, again.rows_updated, again.rows_unchanged, again.rows_loaded) == (0, 0, 2, 0)
    assert state(ws)["orders"] == before


def test_unload_restores_the_previous_state_exactly(ws: Workspace, tmp_path: Path) -> None:
    ingest_file(ws, "orders", write_orders(tmp_path / "w1.csv", WEEK1), today=TODAY)
    ingest_file(ws, "orders", write_orders(tmp_path / "w2.csv", WEEK2), today=TODAY)
    before = state(ws)
    week3 = ingest_file(ws, "orders", write_orders(tmp_path / "w3.csv", [*WEEK3, ("合计", "", "", "1")]), today=TODAY)
    assert week3.rows_updated == 1 and state(ws) != before
    done = unload(ws, week3.batch_id)
    assert (done.rows_removed, done.rows_restored) == (2, 1)  # O2's new version and O4 out, O2's old one back
    assert done.customers_removed == 1  # C3 came only with week 3
    assert state(ws) == before
    # The same file loads again afterwards, with the same outcome.
    again = ingest_file(ws, "orders", tmp_path / "w3.csv", today=TODAY)
    assert (again.rows_new, again.rows_updated, again.rows_unchanged) == (1, 1, 2)


def test_unloading_a_middle_batch_is_as_if_it_was_never_loaded(ws: Workspace, tmp_path: Path) -> None:
    versions = ["10", "20", "30"]
    ids = [
        ingest_file(ws, "orders", write_orders(tmp_path / f"v{v}.csv", [("O1", "C1", "2024-03-01", v)]), today=TODAY)
        for v in versions
    ]
    unload(ws, ids[1].batch_id)  # v20 goes; v30 stays current, and now replaced v10 itself
    assert stored_orders(ws) == {"O1": [("C1", Decimal("30"))]}
    unload(ws, ids[2].batch_id)
    assert stored_orders(ws) == {"O1": [("C1", Decimal("10"))]}
    assert ws.table("replaced_orders").count().execute() == 0


def test_order_lines_without_line_numbers_are_replaced_as_a_whole(ws: Workspace, tmp_path: Path) -> None:
    # Online Retail style: the same product twice within one invoice, on separate lines.
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
    one = (
        header
        + "536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850\n536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850\n"
    )
    (tmp_path / "a.csv").write_text(one + "536366,22633,HAND WARMER,6,2010-12-01 08:28,1.85,17850\n")
    first = ingest_file(ws, "orders", tmp_path / "a.csv", today=TODAY, keep_duplicates=True)
    assert first.record_key == {"fields": ["order_id"], "per_row": False} and first.rows_new == 3
    lines = ws.table("orders").to_pyarrow().to_pylist()
    assert {(r["product_id"], r["product_name"]) for r in lines} == {("85123A", "HEART"), ("22633", "HAND WARMER")}
    # The invoice comes again with one line removed: its stored lines are replaced by the new set.
    (tmp_path / "b.csv").write_text(header + "536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850\n")
    second = ingest_file(ws, "orders", tmp_path / "b.csv", today=TODAY)
    assert (second.rows_new, second.rows_updated, second.rows_unchanged, second.rows_replaced) == (0, 1, 0, 2)
    assert sorted((r["order_id"], r["quantity"]) for r in ws.table("orders").to_pyarrow().to_pylist()) == [
        ("536365", 6.0),
        ("536366", 6.0),
    ]


def test_conflicting_line_keys_go_to_quarantine_naming_both_lines(ws: Workspace, tmp_path: Path) -> None:
    text = (
        "订单号,行号,客户编号,下单日期,金额\n"
        "A1,1,C1,2024-03-01,10\n"
        "A1,2,C1,2024-03-01,20\n"
        "A2,1,C2,2024-03-02,30\n"
        "A1,2,C1,2024-03-01,25\n"
    )
    (tmp_path / "lines.csv").write_text(text, encoding="utf-8")
    r = ingest_file(ws, "orders", tmp_path / "lines.csv", today=TODAY)
    assert r.record_key == {"fields": ["order_id", "line_number"], "per_row": True}
    assert reconciles(r) and (r.rows_new, r.rows_quarantined) == (2, 2)
    rejected = ws.table("quarantine").order_by("line").to_pyarrow().to_pylist()
    assert [(q["line"], q["reason_code"]) for q in rejected] == [(3, "CONFLICTING_KEY"), (5, "CONFLICTING_KEY")]
    assert all("lines 3, 5" in q["message"] and q["value"] == "A1 / 2" for q in rejected)
    assert rejected[0]["column"] == "订单号 + 行号"


def test_totals_rows_are_quarantined_not_loaded(ws: Workspace, tmp_path: Path) -> None:
    rows = [("O1", "C1", "2024-03-01", "100"), ("O2", "C2", "2024-03-02", "50.5")]
    subtotal = ("", "", "", "150.5")  # a page subtotal without a label: its amount is the sum above
    more = [("O3", "C1", "2024-03-05", "10")]
    labelled = ("O-total", "合计", "2024-03-31", "160.5")  # a 合计 row with a date, in the customer column
    text_rows = [*rows, subtotal, *more, ("小计：", "", "", "10"), labelled, ("", "", "", "7")]
    r = ingest_file(ws, "orders", write_orders(tmp_path / "report.csv", text_rows), today=TODAY)
    assert reconciles(r)
    assert r.reasons == {"TOTAL_ROW": 3, "MISSING_CUSTOMER_ID": 1}  # the 7 matches no sum: a real missing id
    revenue = sum(Decimal(str(x["amount"])) for x in ws.table("orders").to_pyarrow().to_pylist())
    assert revenue == Decimal("160.5")
    customers = {c["customer_id"] for c in ws.table("customers").to_pyarrow().to_pylist()}
    assert customers == {"C1", "C2"}


def test_a_customer_called_total_company_is_not_a_totals_row(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(
        "客户编号,客户名称\nC1,Total Gas Ltd\nC2,合计\nC3,总计划科技有限公司\n", encoding="utf-8"
    )
    r = ingest_file(ws, "customers", tmp_path / "c.csv", today=TODAY)
    assert r.reasons == {"TOTAL_ROW": 1} and r.rows_new == 2


def test_customers_unchanged_changed_and_unload(ws: Workspace, tmp_path: Path) -> None:
    ingest_file(ws, "orders", write_orders(tmp_path / "o.csv", WEEK1), today=TODAY)  # C1, C2 minimal
    before = state(ws)
    (tmp_path / "c1.csv").write_text("客户编号,客户名称,城市\nC1,甲公司,杭州\nC2,乙公司,宁波\n", encoding="utf-8")
    first = ingest_file(ws, "customers", tmp_path / "c1.csv", today=TODAY)
    assert (first.rows_updated, first.customers_updated, first.rows_replaced) == (2, 2, 2)  # minimal → full
    (tmp_path / "c2.csv").write_text("客户编号,客户名称,城市\nC1,甲公司,杭州\nC2,乙公司,温州\n", encoding="utf-8")
    second = ingest_file(ws, "customers", tmp_path / "c2.csv", today=TODAY)
    assert (second.rows_new, second.rows_updated, second.rows_unchanged) == (0, 1, 1)
    unload(ws, second.batch_id)
    unload(ws, first.batch_id)
    assert state(ws) == before


def test_unloading_customers_keeps_a_record_for_customers_that_have_orders(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("客户编号,客户名称\nC1,甲公司\nC9,没有订单\n", encoding="utf-8")
    customers = ingest_file(ws, "customers", tmp_path / "c.csv", today=TODAY)
    ingest_file(ws, "orders", write_orders(tmp_path / "o.csv", WEEK1[:1]), today=TODAY)
    unload(ws, customers.batch_id)
    [c1] = ws.table("customers").to_pyarrow().to_pylist()
    assert (c1["customer_id"], c1["is_minimal"], c1["name"]) == ("C1", True, None)


def test_tables_without_a_key_warn_when_a_file_repeats_stored_rows(ws: Workspace, tmp_path: Path) -> None:
    text = "customer_id date cds amount\n00001 19970101 1 11.77\n00002 19970112 1 12.00\n"
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "b.txt").write_text(text + "00003 19970201 2 20.00\n")
    first = ingest_file(ws, "orders", tmp_path / "a.txt", today=TODAY)
    assert first.record_key is None and not first.warnings
    second = ingest_file(ws, "orders", tmp_path / "b.txt", today=TODAY)
    assert second.rows_new == 3 and ws.table("orders").count().execute() == 5  # today's behaviour: appended
    assert any("2 of 3 rows are identical to rows already stored" in w for w in second.warnings)


def test_configured_and_option_keys(ws_dir: Path, tmp_path: Path) -> None:
    (ws_dir / "tierwise.toml").write_text(
        (ws_dir / "tierwise.toml").read_text(encoding="utf-8") + '\n[ingest.keys]\norders = ["order_id", "amount"]\n',
        encoding="utf-8",
    )
    ws = Workspace.open(ws_dir)
    try:
        r = ingest_file(ws, "orders", write_orders(tmp_path / "a.csv", WEEK1), today=TODAY)
        assert r.record_key == {"fields": ["order_id", "amount"], "per_row": True}
        none = ingest_file(ws, "orders", write_orders(tmp_path / "b.csv", WEEK1[:1]), today=TODAY, key=["none"])
        assert none.record_key is None and none.rows_new == 1
        with pytest.raises(UserError, match="the record key needs line_number"):
            ingest_file(
                ws, "orders", write_orders(tmp_path / "c.csv", WEEK2), today=TODAY, key=["order_id", "line_number"]
            )
    finally:
        ws.close()


def test_batches_and_unload_on_the_command_line(ws_dir: Path, tmp_path: Path) -> None:
    a = write_orders(tmp_path / "w1.csv", WEEK1)
    b = write_orders(tmp_path / "w3.csv", WEEK3)
    assert run_cli("ingest", "orders", a, b, "-w", ws_dir).code == 0
    listed = run_cli("batches", "-w", ws_dir, "--json")
    batches = listed.json()
    assert [(x["rows_read"], x["rows_new"], x["rows_updated"], x["rows_unchanged"]) for x in batches] == [
        (2, 2, 0, 0),
        (4, 2, 1, 1),
    ]
    status = run_cli("status", "-w", ws_dir, "--json").json()
    assert status["tables"]["orders"] == 4
    bad = run_cli("unload", "orders-nope", "-w", ws_dir)
    assert bad.code == 2 and "no batch 'orders-nope'" in bad.stderr and batches[1]["batch_id"] in bad.stderr
    assert run_cli("status", "-w", ws_dir, "--json").json() == status
    done = run_cli("unload", batches[1]["batch_id"], "-w", ws_dir, "--json")
    assert done.code == 0 and done.json()["rows_restored"] == 1
    assert run_cli("status", "-w", ws_dir, "--json").json()["tables"]["orders"] == 2


def test_json_error_names_what_was_committed_and_not_tried(ws_dir: Path, tmp_path: Path) -> None:
    good = write_orders(tmp_path / "good.csv", WEEK1)
    broken = tmp_path / "broken.csv"
    broken.write_text("no,useful,columns\n1,2,3\n")
    later = write_orders(tmp_path / "later.csv", WEEK2)
    r = run_cli("ingest", "orders", good, broken, later, "-w", ws_dir, "--json")
    assert r.code == 2
    body = json.loads(r.stdout)
    assert "no column for the required field 'customer_id'" in body["error"]
    assert [c["file"] for c in body["committed"]] == [str(good)]
    assert body["failed"] == str(broken) and body["not_tried"] == [str(later)]
    assert run_cli("status", "-w", ws_dir, "--json").json()["tables"]["orders"] == 2


def test_older_workspaces_gain_the_new_columns(ws_dir: Path, tmp_path: Path) -> None:
    ws = Workspace.open(ws_dir)
    ingest_file(ws, "orders", write_orders(tmp_path / "a.csv", WEEK1), today=TODAY)
    for column in ("rows_new", "rows_updated", "rows_unchanged", "rows_replaced", "record_key", "warnings"):
        ws.con.raw_sql(f"ALTER TABLE batches DROP COLUMN {column}")
    ws.con.raw_sql("ALTER TABLE orders DROP COLUMN product_id")
    ws.con.raw_sql("DROP TABLE replaced_orders")
    ws.close()
    ws = Workspace.open(ws_dir)
    try:
        [b] = ws.table("batches").to_pyarrow().to_pylist()
        assert (b["rows_new"], b["rows_updated"], b["rows_unchanged"]) == (2, 0, 0)
        assert "product_id" in ws.table("orders").columns
        again = ingest_file(ws, "orders", write_orders(tmp_path / "b.csv", WEEK3), today=TODAY)
        assert (again.rows_new, again.rows_updated, again.rows_unchanged) == (2, 1, 1)
    finally:
        ws.close()


ORDER = st.sampled_from(["O1", "O2", "O3", "O4", "O5", "O6"])
AMOUNT = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weeks=st.lists(st.dictionaries(ORDER, AMOUNT, min_size=1, max_size=5), min_size=1, max_size=4))
def test_any_sequence_of_overlapping_exports_keeps_the_latest_version(tmp_path_factory, weeks) -> None:
    root = tmp_path_factory.mktemp("weeks")
    ws = Workspace.init(root / "ws")
    try:
        expected: dict[str, list[tuple[str, Decimal]]] = {}
        for n, week in enumerate(weeks):
            rows = [(o, "C" + o[1:], "2024-03-01", f"{a}") for o, a in sorted(week.items())]
            r = ingest_file(ws, "orders", write_orders(root / f"w{n}.csv", rows), today=TODAY)
            if r.status == "already_loaded":
                continue
            assert reconciles(r)
            changed = sum(1 for o, a in week.items() if o in expected and expected[o] != [("C" + o[1:], a)])
            same = sum(1 for o, a in week.items() if expected.get(o) == [("C" + o[1:], a)])
            assert (r.rows_updated, r.rows_unchanged, r.rows_new) == (changed, same, len(week) - changed - same)
            expected.update({o: [("C" + o[1:], a)] for o, a in week.items()})
        assert stored_orders(ws) == expected
    finally:
        ws.close()
