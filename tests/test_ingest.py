"""Ingest through the Python API: formats, encodings, mapping, values, cleaning, reconciliation, atomicity."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise.errors import UserError
from tierwise.ingest.pipeline import _cancellation, ingest_file
from tierwise.workspace import Workspace

TODAY = dt.date(2025, 6, 30)


def rows(ws: Workspace, table: str, order_by: str = "source_line") -> list[dict]:
    return ws.table(table).order_by(order_by).to_pyarrow().to_pylist()


def state(ws: Workspace) -> dict[str, object]:
    names = [
        "customers",
        "orders",
        "payments",
        "interactions",
        "campaign_contacts",
        "quarantine",
        "batches",
        "blanked_values",
    ]
    return {n: sorted(map(str, ws.table(n).to_pyarrow().to_pylist())) for n in names}


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


ORDERS_CN = (
    "订单号,客户编号,下单日期,实付金额,品类,渠道,支付方式\n"
    'A001,C1,2024-03-05,"¥1,234.50",服装,线上,支付宝\n'
    "A002,C2,2024/3/6,１２３．４５,食品,线下,现金\n"
    "A003,C1,2024年3月7日,(10.00),服装,线上,微信支付\n"
    "A004,,2024-03-08,50,食品,线上,现金\n"
    "A005,C3,2024-13-45,50,食品,线上,现金\n"
    "A006,C3,2024-03-09,abc,食品,线上,现金\n"
    "A007,C3,2099-01-01,60,食品,线上,现金\n"
    "A002,C2,2024/3/6,１２３．４５,食品,线下,现金\n"
    "A008,C4,45360,1.5万,食品,线上,现金\n"
)


def check_reconciliation(r) -> None:
    assert r.rows_read == r.rows_loaded + r.rows_quarantined + r.duplicates_removed


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_chinese_orders_in_every_encoding(ws: Workspace, tmp_path: Path, encoding: str) -> None:
    # GBK has no half-width yen sign; Chinese exports write the full-width ￥.
    text = ORDERS_CN.replace("¥", "￥") if encoding == "gbk" else ORDERS_CN
    path = write(tmp_path / f"orders-{encoding}.csv", text, encoding)
    r = ingest_file(ws, "orders", path, today=TODAY)
    check_reconciliation(r)
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.duplicates_removed) == (9, 4, 4, 1)
    assert r.reasons == {"MISSING_CUSTOMER_ID": 1, "BAD_DATE": 1, "BAD_AMOUNT": 1, "FUTURE_DATE": 1}
    assert r.mapping["fields"] == {
        "order_id": "订单号",
        "customer_id": "客户编号",
        "order_date": "下单日期",
        "amount": "实付金额",
        "product_category": "品类",
        "channel": "渠道",
        "payment_method": "支付方式",
    }
    loaded = rows(ws, "orders")
    assert [(o["order_id"], o["customer_id"], o["order_date"], o["amount"], o["is_return"]) for o in loaded] == [
        ("A001", "C1", dt.datetime(2024, 3, 5), D("1234.5"), False),
        ("A002", "C2", dt.datetime(2024, 3, 6), D("123.45"), False),
        ("A003", "C1", dt.datetime(2024, 3, 7), D("-10"), True),
        # Excel serial 45360 = 2024-03-09 (day 1 = 1900-01-01 with Excel's 1900 leap-year bug)
        ("A008", "C4", dt.datetime(2024, 3, 9), D("15000"), False),
    ]
    q = rows(ws, "quarantine", "line")
    assert [(x["line"], x["column"], x["reason_code"], x["value"]) for x in q] == [
        (5, "客户编号", "MISSING_CUSTOMER_ID", None),
        (6, "下单日期", "BAD_DATE", "2024-13-45"),
        (7, "实付金额", "BAD_AMOUNT", "abc"),
        (8, "下单日期", "FUTURE_DATE", "2099-01-01"),
    ]
    assert all(x["file"] == str(path) and x["batch_id"] == r.batch_id for x in q)
    assert q[1]["record"] == "A005,C3,2024-13-45,50,食品,线上,现金"
    # Customers seen only in orders get minimal, flagged records (C3 had no loadable order: none for it).
    customers = rows(ws, "customers", "customer_id")
    assert [(c["customer_id"], c["is_minimal"]) for c in customers] == [("C1", True), ("C2", True), ("C4", True)]
    assert r.customers_created == 3


def test_reingesting_the_same_file_adds_nothing_and_a_new_file_appends(ws: Workspace, tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", "customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-01-03,20\n")
    r1 = ingest_file(ws, "orders", first, today=TODAY)
    before = state(ws)
    copy = write(tmp_path / "a-copy.csv", first.read_text())
    r2 = ingest_file(ws, "orders", copy, today=TODAY)
    assert r2.status == "already_loaded" and r2.batch_id == r1.batch_id
    assert state(ws) == before
    second = write(tmp_path / "b.csv", "customer_id,order_date,amount\nC1,2024-02-02,30\n")
    r3 = ingest_file(ws, "orders", second, today=TODAY)
    assert r3.rows_loaded == 1 and r3.customers_created == 0
    assert ws.table("orders").count().execute() == 3
    assert ws.table("batches").count().execute() == 2


@pytest.mark.parametrize(
    ("sep_name", "sep"), [("comma", ","), ("semicolon", ";"), ("tab", "\t"), ("pipe", "|"), ("spaces", "   ")]
)
def test_separators_are_sniffed(ws: Workspace, tmp_path: Path, sep_name: str, sep: str) -> None:
    lines = [["customer_id", "order_date", "amount"], ["C1", "2024-01-02", "10.5"], ["C2", "2024-01-03", "7"]]
    text = "\n".join(sep.join(x) for x in lines) + "\n"
    r = ingest_file(ws, "orders", write(tmp_path / f"o-{sep_name}.txt", text), today=TODAY)
    assert r.delimiter == ("whitespace" if sep_name == "spaces" else sep)
    assert [(o["customer_id"], o["amount"]) for o in rows(ws, "orders")] == [("C1", 10.5), ("C2", 7.0)]


def test_explicit_separator_and_no_header_with_mapping(ws: Workspace, tmp_path: Path) -> None:
    text = " 00004 0001 19970101  2   29.33\n 00004 0001 19970118  2   29.73\n"
    path = write(tmp_path / "sample.txt", text)
    r = ingest_file(
        ws,
        "orders",
        path,
        sep="whitespace",
        header=False,
        maps={
            "column_1": "customer_id",
            "column_2": "ignore",
            "column_3": "order_date",
            "column_4": "quantity",
            "column_5": "amount",
        },
        today=TODAY,
    )
    assert r.rows_loaded == 2
    got = [
        (o["customer_id"], o["order_date"], o["quantity"], o["amount"], o["source_line"]) for o in rows(ws, "orders")
    ]
    assert got == [
        ("00004", dt.datetime(1997, 1, 1), 2.0, D("29.33"), 1),
        ("00004", dt.datetime(1997, 1, 18), 2.0, D("29.73"), 2),
    ]


def test_amount_from_quantity_times_unit_price_and_cancellations(ws: Workspace, tmp_path: Path) -> None:
    text = (
        "InvoiceNo;StockCode;Quantity;InvoiceDate;UnitPrice;CustomerID;Country\n"
        "537240;84347;2;12/06/2010 10:08;5.06;17850;United Kingdom\n"
        "C537241;84347;2;12/07/2010 11:00;5.06;17850;United Kingdom\n"
        "537242;22229;-3;2/20/11 11:39;0.85;16466;France\n"
        "537243;22229;3;2/21/11 11:39;0;16466;France\n"
    )
    r = ingest_file(ws, "orders", write(tmp_path / "retail.csv", text), today=TODAY)
    assert r.date_orders == {"InvoiceDate": "mdy"}
    got = [(o["order_id"], o["order_date"], o["quantity"], o["amount"], o["is_return"]) for o in rows(ws, "orders")]
    assert got == [
        ("537240", dt.datetime(2010, 12, 6, 10, 8), 2.0, D("10.12"), False),
        ("C537241", dt.datetime(2010, 12, 7, 11, 0), -2.0, D("-10.12"), True),
        ("537242", dt.datetime(2011, 2, 20, 11, 39), -3.0, D("-2.55"), True),
        ("537243", dt.datetime(2011, 2, 21, 11, 39), 3.0, D("0"), False),
    ]
    assert r.returns == 2
    # Country travels to the minimal customer records.
    assert {(c["customer_id"], c["country"]) for c in rows(ws, "customers")} == {
        ("17850", "United Kingdom"),
        ("16466", "France"),
    }


def test_cancelled_status_makes_revenue_negative(ws: Workspace, tmp_path: Path) -> None:
    text = (
        "客户编号,下单日期,金额,订单状态\nC1,2024-01-02,100,已完成\nC1,2024-01-03,40,退货\nC1,2024-01-04,5,Cancelled\n"
    )
    r = ingest_file(ws, "orders", write(tmp_path / "s.csv", text), today=TODAY)
    assert [o["amount"] for o in rows(ws, "orders")] == [100.0, -40.0, -5.0]
    assert r.returns == 2


def test_outliers_are_flagged_not_removed(ws: Workspace, tmp_path: Path) -> None:
    amounts = [100, 110, 90, 105, 95, 100, 98, 102, 5000]
    text = "customer_id,order_date,amount\n" + "".join(
        f"C{i},2024-01-0{i % 9 + 1},{a}\n" for i, a in enumerate(amounts)
    )
    r = ingest_file(ws, "orders", write(tmp_path / "o.csv", text), today=TODAY)
    # Q1 = 98, Q3 = 105 (linear interpolation), IQR 7: above 105 + 3 × 7 = 126 is an outlier: only 5000.
    assert r.rows_loaded == 9 and r.outliers_flagged == 1
    assert [o["amount"] for o in rows(ws, "orders") if o["is_outlier"]] == [5000.0]


def test_parquet_is_checked_and_stored_like_text(tmp_path: Path) -> None:
    """Parquet without duplicates is parsed again for each pass instead of being kept in a temporary table: the
    stored rows, quarantine, counts, returns and outlier flags equal those of the same lines as CSV, and of the
    Parquet with a repeated line (which takes the temporary table)."""
    amounts = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 98.0, 102.0, 5000.0, -40.0, 70.0, 80.0]
    lines = {
        "order_id": [f"A{i}" for i in range(len(amounts))],
        "customer_id": [f"C{i % 4}" for i in range(len(amounts) - 1)] + [None],  # the last is quarantined
        "order_date": [dt.datetime(2024, 1, 1 + i) for i in range(len(amounts))],
        "amount": amounts,
        "status": ["ok"] * 10 + ["Cancelled", "ok"],  # a negative amount and a cancellation are returns
    }
    csv = "order_id,customer_id,order_date,amount,status\n" + "".join(
        f"{o},{c or ''},{d:%Y-%m-%d},{a},{s}\n" for o, c, d, a, s in zip(*lines.values(), strict=True)
    )
    sources = {
        "csv": write(tmp_path / "o.csv", csv),
        "parquet": tmp_path / "o.parquet",
        "repeated": tmp_path / "r.parquet",
    }
    pq.write_table(pa.table(lines), sources["parquet"])
    pq.write_table(pa.table({k: v + v[:1] for k, v in lines.items()}), sources["repeated"])
    seen = {}
    for kind, path in sources.items():
        ws = Workspace.init(tmp_path / kind)
        r = ingest_file(ws, "orders", path, today=TODAY)
        check_reconciliation(r)
        stored = [
            (o["order_id"], o["customer_id"], o["amount"], o["is_return"], o["is_outlier"], o["source_line"])
            for o in rows(ws, "orders", "order_id")
        ]
        quarantine = [(q["line"], q["reason_code"]) for q in rows(ws, "quarantine", "line")]
        counts = (r.rows_loaded, r.rows_quarantined, r.returns, r.outliers_flagged, r.reasons)
        seen[kind] = (stored, quarantine, counts, r.duplicates_removed)
        assert ("clean" in r.timings) == (kind != "parquet")  # only duplicate-free Parquet skips the table
        ws.close()
    # Sales Q1 = 95, Q3 = 102 (linear interpolation over the nine good sales), IQR 7: above 123 is an outlier.
    assert seen["csv"][2] == (11, 1, 2, 1, {"MISSING_CUSTOMER_ID": 1})
    assert [o[0] for o in seen["csv"][0] if o[4]] == ["A8"]
    # A CSV's line numbers count its header line; a Parquet file's rows are numbered from 1.
    stored, quarantine, counts, duplicates = seen["csv"]
    as_parquet = ([(*o[:5], o[5] - 1) for o in stored], [(q[0] - 1, q[1]) for q in quarantine], counts, duplicates)
    assert seen["parquet"] == as_parquet
    assert seen["repeated"][:3] == as_parquet[:3] and seen["repeated"][3] == 1


def test_ambiguous_day_month_order_asks_for_date_format(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", "customer_id,order_date,amount\nC1,03/04/2024,1\nC2,05/06/2024,2\n")
    before = state(ws)
    with pytest.raises(UserError) as exc:
        ingest_file(ws, "orders", path, today=TODAY)
    assert exc.value.column == "order_date" and exc.value.line == 2
    assert "--date-format" in str(exc.value) and "03/04/2024" in str(exc.value)
    assert state(ws) == before
    ingest_file(ws, "orders", path, date_format="dmy", today=TODAY)
    assert [o["order_date"] for o in rows(ws, "orders")] == [dt.datetime(2024, 4, 3), dt.datetime(2024, 6, 5)]


def test_day_first_is_decided_from_the_data(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", "customer_id,order_date,amount\nC1,03/04/2024,1\nC2,25/06/24,2\n")
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.date_orders == {"order_date": "dmy"}
    assert [o["order_date"] for o in rows(ws, "orders")] == [dt.datetime(2024, 4, 3), dt.datetime(2024, 6, 25)]


def test_customers_upsert_attributes_and_duplicate_ids(ws: Workspace, tmp_path: Path) -> None:
    ingest_file(
        ws, "orders", write(tmp_path / "o.csv", "customer_id,order_date,amount\nC9,2024-01-02,10\n"), today=TODAY
    )
    text = (
        "客户编号,客户名称,省份,城市,行业,信用额度,注册日期,VIP备注\n"
        'C1,杭州华信贸易有限公司,浙江,杭州,F,"50,000",2020-01-05,重点\n'
        "C2,上海明达科技有限公司,上海,上海,I,abc,2021/2/3,\n"
        "C1,杭州华信贸易有限公司（重复）,浙江,杭州,F,1,2020-01-05,\n"
        "C9,北京远航物流有限公司,北京,北京,G,,2019年7月1日,\n"
    )
    r = ingest_file(ws, "customers", write(tmp_path / "c.csv", text), today=TODAY)
    check_reconciliation(r)
    assert (r.rows_loaded, r.rows_quarantined, r.customers_updated, r.values_blanked) == (3, 1, 1, 1)
    assert r.reasons == {"DUPLICATE_ID": 1}
    got = {c["customer_id"]: c for c in rows(ws, "customers", "customer_id")}
    assert set(got) == {"C1", "C2", "C9"}
    assert got["C1"]["name"] == "杭州华信贸易有限公司" and got["C1"]["credit_limit"] == 50000.0
    assert got["C1"]["signup_date"] == dt.date(2020, 1, 5)
    assert dict(got["C1"]["attributes"]) == {"VIP备注": "重点"}
    assert got["C2"]["credit_limit"] is None  # 'abc' is kept in blanked_values, not lost
    assert got["C9"]["is_minimal"] is False and got["C9"]["signup_date"] == dt.date(2019, 7, 1)
    blanked = rows(ws, "blanked_values", "line")
    assert [(b["line"], b["column"], b["field"], b["value"]) for b in blanked] == [
        (3, "信用额度", "credit_limit", "abc")
    ]


def test_xlsx_with_date_cells_and_sheet_choice(ws: Workspace, tmp_path: Path) -> None:
    import xlsxwriter

    path = tmp_path / "orders.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("说明").write(0, 0, "这是说明页")
    sheet = wb.add_worksheet("订单")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, ["客户ID", "订单日期", "数量", "单价"])
    sheet.write(1, 0, "C1")
    sheet.write_datetime(1, 1, dt.datetime(2024, 5, 1), date_fmt)
    sheet.write_number(1, 2, 3)
    sheet.write_number(1, 3, 9.99)
    sheet.write(2, 0, 10002)  # numeric ids come as 10002, not 10002.0
    sheet.write(2, 1, "2024年5月2日")
    sheet.write_number(2, 2, 1)
    sheet.write_string(2, 3, "￥20")
    wb.close()
    with pytest.raises(UserError, match="no sheet named 'Orders'; the sheets are: 说明, 订单"):
        ingest_file(ws, "orders", path, sheet="Orders", today=TODAY)
    r = ingest_file(ws, "orders", path, sheet="订单", today=TODAY)
    assert r.file_format == "excel" and r.sheet == "订单"
    got = [(o["customer_id"], o["order_date"], o["amount"], o["source_line"]) for o in rows(ws, "orders")]
    assert got == [("C1", dt.datetime(2024, 5, 1), D("29.97"), 2), ("10002", dt.datetime(2024, 5, 2), D("20"), 3)]


def test_xls(ws: Workspace, tmp_path: Path) -> None:
    import xlwt

    path = tmp_path / "customers.xls"
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Sheet1")
    for j, h in enumerate(["客户编号", "客户名称", "城市"]):
        sheet.write(0, j, h)
    sheet.write(1, 0, "K001")
    sheet.write(1, 1, "广州天河商贸")
    sheet.write(1, 2, "广州")
    book.save(str(path))
    r = ingest_file(ws, "customers", path, today=TODAY)
    assert r.rows_loaded == 1
    assert [(c["customer_id"], c["name"], c["city"]) for c in rows(ws, "customers")] == [
        ("K001", "广州天河商贸", "广州")
    ]


def test_parquet_keeps_types(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(["C1", None, "C2"]).dictionary_encode(),
                "order_date": pa.array([dt.datetime(2024, 1, 1, 9), dt.datetime(2024, 1, 2), None]),
                "amount": pa.array([10.0, 20.0, 30.0]),
                "quantity": pa.array([1, 2, 3], type=pa.int32()),
            }
        ),
        path,
    )
    r = ingest_file(ws, "orders", path, today=TODAY)
    check_reconciliation(r)
    assert (r.rows_loaded, r.reasons) == (1, {"MISSING_CUSTOMER_ID": 1, "MISSING_VALUE": 1})
    assert [(o["customer_id"], o["order_date"], o["amount"], o["quantity"]) for o in rows(ws, "orders")] == [
        ("C1", dt.datetime(2024, 1, 1, 9), 10.0, 1.0)
    ]
    assert [x["line"] for x in rows(ws, "quarantine", "line")] == [2, 3]


def test_payments_interactions_campaigns(ws: Workspace, tmp_path: Path) -> None:
    pay = (
        "发票号,客户编号,开票日期,到期日,付款日期,金额\n"
        'I1,C1,2024-01-01,2024-01-31,2024-02-05,"1,000"\n'
        "I2,C1,2024-02-01,2025-12-31,,500\n"
    )
    r = ingest_file(ws, "payments", write(tmp_path / "p.csv", pay, "gbk"), today=TODAY)
    assert r.rows_loaded == 2
    got = [(p["invoice_id"], p["due_date"], p["paid_date"], p["amount"]) for p in rows(ws, "payments")]
    assert got == [
        ("I1", dt.date(2024, 1, 31), dt.date(2024, 2, 5), 1000.0),
        ("I2", dt.date(2025, 12, 31), None, 500.0),
    ]
    inter = "customer_id,date,kind,satisfaction\nC1,2024-03-01 10:00,survey,4\nC2,2024-03-02,ticket,\n"
    assert ingest_file(ws, "interactions", write(tmp_path / "i.csv", inter), today=TODAY).rows_loaded == 2
    camp = (
        "活动编号,客户编号,触达时间,分组,是否响应,响应金额\n"
        "X1,C1,2024-04-01,treatment,是,88\n"
        "X1,C2,2024-04-01,control,否,\n"
    )
    r = ingest_file(ws, "campaigns", write(tmp_path / "k.csv", camp), today=TODAY)
    assert r.rows_loaded == 2
    assert [(c["group"], c["responded"], c["response_revenue"]) for c in rows(ws, "campaign_contacts")] == [
        ("treatment", True, 88.0),
        ("control", False, None),
    ]
    assert {c["customer_id"] for c in rows(ws, "customers")} == {"C1", "C2"}


def test_config_mapping_is_used(ws_dir: Path, tmp_path: Path) -> None:
    cfg = ws_dir / "tierwise.toml"
    cfg.write_text(
        cfg.read_text() + '\n[mapping.orders]\n"实收款" = "amount"\n"买家" = "customer_id"\n', encoding="utf-8"
    )
    w = Workspace.open(ws_dir)
    try:
        r = ingest_file(w, "orders", write(tmp_path / "o.csv", "买家,日期,实收款\nB1,2024-01-01,5\n"), today=TODAY)
        assert r.mapping["fields"]["amount"] == "实收款" and r.mapping["how"]["amount"] == "config"
        assert r.rows_loaded == 1
    finally:
        w.close()


@pytest.mark.parametrize(
    ("name", "content", "message", "line"),
    [
        ("empty.csv", b"", "the file is empty", None),
        ("header.csv", b"customer_id,order_date,amount\n", "header but no data rows", 2),
        ("blank.csv", b"\n\n  \n", "no rows", None),
        ("binary.csv", bytes(range(256)) * 8, "binary file", None),
        ("nocol.csv", b"foo,bar\n1,2\n", "no column for the required field 'customer_id'", 1),
        (
            "ragged.csv",
            b"customer_id,order_date,amount\nC1,2024-01-01,5\nC2,2024-01-02,5,7,8\n",
            "expected 3 columns",
            3,
        ),
    ],
)
def test_bad_input_leaves_workspace_unchanged(
    ws: Workspace, tmp_path: Path, name: str, content: bytes, message: str, line: int | None
) -> None:
    ingest_file(
        ws, "orders", write(tmp_path / "good.csv", "customer_id,order_date,amount\nC1,2024-01-01,1\n"), today=TODAY
    )
    before = state(ws)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as exc:
        ingest_file(ws, "orders", path, today=TODAY)
    assert message in str(exc.value)
    assert exc.value.file == str(path) and exc.value.line == line
    assert state(ws) == before
    assert not [t for t in ws.con.list_tables() if t.startswith(("_stage", "_clean"))]


def test_missing_file(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        ingest_file(ws, "orders", tmp_path / "nope.csv", today=TODAY)


def test_failure_while_storing_rolls_back_everything(ws: Workspace, tmp_path: Path, monkeypatch) -> None:
    from tierwise.ingest import pipeline

    ingest_file(
        ws, "orders", write(tmp_path / "a.csv", "customer_id,order_date,amount\nC1,2024-01-01,1\n"), today=TODAY
    )
    before = state(ws)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    # Fails after the orders and quarantine rows were inserted inside the transaction.
    monkeypatch.setattr(pipeline, "_create_minimal_customers", fail)
    path = write(tmp_path / "b.csv", "customer_id,order_date,amount\nC2,2024-01-01,1\n,2024-01-01,1\n")
    with pytest.raises(RuntimeError):
        ingest_file(ws, "orders", path, today=TODAY)
    assert state(ws) == before


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(alphabet="cC_%\\xé1", max_size=5), st.sampled_from(["ok", "Cancelled", "退货", ""])),
        min_size=1,
        max_size=20,
    ),
    st.lists(st.sampled_from(["C", "c_", "%", "é", "X\\"]), max_size=3),
)
def test_cancellation_matches_upper_cased_prefixes(rows_: list[tuple[str, str]], prefixes: list[str]) -> None:
    """Prefixes are matched with ILIKE when that is safe; the result equals upper-casing both sides."""
    statuses = ["cancelled", "退货"]
    t = ibis.memtable({"_v_order_id": [r[0] for r in rows_], "_v_status": [r[1] for r in rows_]})
    got = ibis.duckdb.connect().to_pyarrow(t.select(c=_cancellation(t, statuses, prefixes)))["c"].to_pylist()
    want = [s.lower() in statuses or any(o.upper().startswith(p.upper()) for p in prefixes) for o, s in rows_]
    assert got == want
