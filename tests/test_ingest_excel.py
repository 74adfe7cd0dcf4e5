"""Spreadsheets as reports are laid out: header detection, two-row headers, several sheets, bounded reading, ids.

Every workbook is written here with xlsxwriter (or zipfile, for the bombs); expected figures are computed from
the rows the test wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from tierwise.errors import UserError
from tierwise.ingest import excel
from tierwise.ingest.excel import cell_text
from tierwise.ingest.mapping import header_score, resolve_mapping
from tierwise.ingest.pipeline import ingest_file
from tierwise.ingest.readers import open_source
from tierwise.ingest.source import LINE, SHEET, ReadLimits, Source
from tierwise.schema import TABLES
from tierwise.workspace import Workspace

TODAY = dt.date(2025, 6, 30)
HEADER = ["订单号", "客户编号", "下单日期", "金额"]


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace.init(tmp_path / "ws")
    yield w
    w.close()


def orders(ws: Workspace) -> list[dict[str, Any]]:
    return ws.table("orders").order_by(["order_id"]).to_pyarrow().to_pylist()


def quarantined(ws: Workspace) -> list[tuple[int, str, str]]:
    q = ws.table("quarantine").order_by("line").to_pyarrow().to_pylist()
    return [(r["line"], r["column"], r["reason_code"]) for r in q]


def read_all(source: Source) -> pa.Table:
    """The batches of a source as one table (consuming them, which also gathers the value warnings)."""
    assert source.schema is not None
    table = pa.Table.from_batches(list(source.batches), schema=source.schema)
    source.close()
    return table


def open_orders(path: Path, **kw: Any) -> Source:
    return open_source(path, header_score=header_score(TABLES["orders"]), **kw)


def exact(cell: float) -> Decimal:
    """A number cell as stored: money has four decimal places."""
    return round(Decimal(repr(cell)), 4)


def month_rows(month: int, n: int) -> list[list[Any]]:
    return [
        [f"O{month:02d}{i:03d}", f"C{i % 4}", dt.date(2024, month, 1 + i % 28).isoformat(), 10 * month + i + 0.25]
        for i in range(n)
    ]


# ---------------------------------------------------------------- header detection


@pytest.mark.parametrize(
    ("above", "header_line"),
    [
        (["2024年3月销售订单明细", "单位：元"], 3),  # title and note straight above the header
        (["2024年3月销售订单明细", None, "说明：本表由系统导出", None], 5),  # with blank rows between
    ],
)
def test_header_found_below_title_note_and_blank_rows(
    ws: Workspace, tmp_path: Path, above: list[str | None], header_line: int
) -> None:
    path = tmp_path / "report.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet("订单")
    for i, text in enumerate(above):
        if text is not None and i == 0:
            sh.merge_range(0, 0, 0, 3, text)  # titles are usually merged across the table
        elif text is not None:
            sh.write(i, 0, text)
    sh.write_row(header_line - 1, 0, HEADER)
    data = [["A1", "C1", "2024-03-01", 120.5], ["A2", "C2", "2024-03-02", "abc"], ["A3", "C1", "2024-03-03", 80]]
    for k, row in enumerate(data):
        sh.write_row(header_line + k, 0, row)
    wb.close()

    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.status == "loaded" and r.rows_read == 3
    # Line numbers are the sheet's rows: the bad amount is on the second data row, right under the header.
    assert quarantined(ws) == [(header_line + 2, "金额", "BAD_AMOUNT")]
    got = [(o["order_id"], o["amount"], o["source_line"]) for o in orders(ws)]
    assert got == [("A1", 120.5, header_line + 1), ("A3", 80.0, header_line + 3)]


def test_header_row_option_overrides_detection(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "custom.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.write(0, 0, "导出时间 2024-03-31")
    sh.write_row(2, 0, ["单号", "买家", "日子", "钱"])  # names no synonym knows: detection cannot find them
    sh.write_row(3, 0, ["A1", "C1", "2024-03-01", 5])
    sh.write_row(4, 0, ["A2", "C2", "2024-03-02", 7])
    wb.close()
    maps = {"单号": "order_id", "买家": "customer_id", "日子": "order_date", "钱": "amount"}
    with pytest.raises(UserError, match="no column for the required field 'customer_id'"):
        ingest_file(ws, "orders", path, today=TODAY)  # without --map, row 1 is taken as the header
    r = ingest_file(ws, "orders", path, maps=maps, header_row=3, today=TODAY)
    assert r.rows_loaded == 2
    assert [(o["order_id"], o["amount"], o["source_line"]) for o in orders(ws)] == [("A1", 5.0, 4), ("A2", 7.0, 5)]
    # The columns --map names count as known headers, so detection finds row 3 by itself too (another batch:
    # the same rows, unchanged).
    again = ingest_file(ws, "orders", path, maps=maps, today=TODAY)
    assert (again.rows_read, again.rows_unchanged) == (2, 2)

    with pytest.raises(UserError, match="row 2 of sheet 'Sheet1' is empty, so it cannot be the header"):
        open_orders(path, header_row=2)
    with pytest.raises(UserError, match="row 9 of sheet 'Sheet1' is empty"):
        open_orders(path, header_row=9)  # below the last row


def test_header_row_wins_over_a_better_scoring_row(tmp_path: Path) -> None:
    path = tmp_path / "two.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.write_row(0, 0, HEADER)
    sh.write_row(1, 0, ["A1", "C1", "2024-03-01", 5])
    sh.write_row(2, 0, ["订单号", "客户"])
    sh.write_row(3, 0, ["B1", "C2"])
    wb.close()
    assert open_orders(path).columns == HEADER
    src = open_orders(path, header_row=3)
    assert src.columns == ["订单号", "客户", "column_3", "column_4"]
    assert read_all(src).column(LINE).to_pylist() == [4]


# ---------------------------------------------------------------- two-row headers


def test_two_row_header_with_units_under_a_merged_amount(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tax.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.merge_range(0, 0, 0, 4, "2024年3月销售订单明细")
    for j, name in enumerate(HEADER[:3]):
        sh.merge_range(2, j, 3, j, name)  # each merged down over the second header row
    sh.merge_range(2, 3, 2, 4, "金额")
    sh.write_row(3, 3, ["含税", "不含税"])
    data = [["A1", "C1", "2024-03-01", 113.0, 100.0], ["A2", "C2", "2024-03-02", 56.5, 50.0]]
    for k, row in enumerate(data):
        sh.write_row(4 + k, 0, row)
    wb.close()

    src = open_orders(path)
    assert src.columns == ["订单号", "客户编号", "下单日期", "金额 / 含税", "金额 / 不含税"]
    src.close()
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.mapping["fields"]["amount"] == "金额 / 含税"  # the first column claiming the field wins
    assert "金额 / 不含税" in r.mapping["unmapped"]
    assert [(o["order_id"], o["amount"], o["source_line"]) for o in orders(ws)] == [
        (row[0], row[3], 5 + k) for k, row in enumerate(data)
    ]


def test_two_row_header_without_merged_cells(tmp_path: Path) -> None:
    """The same layout as plain cells (CSV-like exports, or merges lost): "金额" followed by an empty cell."""
    path = tmp_path / "plain.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.write_row(0, 0, [*HEADER, None])
    sh.write_row(1, 0, [None, None, None, "含税", "不含税"])
    sh.write_row(2, 0, ["A1", "C1", "2024-03-01", 113, 100])
    wb.close()
    src = open_orders(path)
    assert src.columns == ["订单号", "客户编号", "下单日期", "金额 / 含税", "金额 / 不含税"]
    values = ["A1", "C1", "2024-03-01", "113", "100", 3]
    assert read_all(src).to_pylist() == [dict(zip([*src.columns, LINE], values, strict=True))]


def test_group_labels_above_field_names(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "groups.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.merge_range(0, 0, 1, 0, "订单号")
    sh.merge_range(0, 1, 0, 2, "客户信息")
    sh.write_row(1, 1, ["客户编号", "客户名称"])
    sh.merge_range(0, 3, 1, 3, "下单日期")
    sh.merge_range(0, 4, 1, 4, "金额")
    data = [["A1", "C1", "华南商贸", "2024-03-01", 10], ["A2", "C2", "北方物流", "2024-03-02", 20]]
    for k, row in enumerate(data):
        sh.write_row(2 + k, 0, row)
    wb.close()
    src = open_orders(path)
    assert src.columns == ["订单号", "客户信息 / 客户编号", "客户信息 / 客户名称", "下单日期", "金额"]
    src.close()
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.mapping["fields"]["customer_id"] == "客户信息 / 客户编号"
    assert r.mapping["customer_fields"] == {"name": "客户信息 / 客户名称"}
    names = {c["customer_id"]: c["name"] for c in ws.table("customers").to_pyarrow().to_pylist()}
    assert names == {row[1]: row[2] for row in data}


def test_group_row_scoring_lower_than_the_field_names(tmp_path: Path) -> None:
    """Group labels above a complete header row ("客户" over two columns, "订单" over three) name the columns too."""
    path = tmp_path / "groups2.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.write(0, 0, "客户订单导出")
    sh.merge_range(2, 0, 2, 1, "客户")
    sh.merge_range(2, 2, 2, 4, "订单")
    sh.write_row(3, 0, ["客户编号", "客户名称", "订单号", "下单日期", "金额"])
    sh.write_row(4, 0, ["C1", "华南商贸", "A1", "2024-03-01", 10])
    wb.close()
    src = open_orders(path)
    assert src.columns == ["客户 / 客户编号", "客户 / 客户名称", "订单 / 订单号", "订单 / 下单日期", "订单 / 金额"]
    assert read_all(src).column(LINE).to_pylist() == [5]
    mapping = resolve_mapping(src.columns, TABLES["orders"], {}, {}, file="x")
    assert mapping.fields == {
        "customer_id": "客户 / 客户编号",
        "order_id": "订单 / 订单号",
        "order_date": "订单 / 下单日期",
        "amount": "订单 / 金额",
    }


def test_text_data_row_is_not_a_second_header(tmp_path: Path) -> None:
    """A first data row of text under a complete header stays data, and a merged title is no group label."""
    path = tmp_path / "text.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.merge_range(0, 0, 0, 3, "订单")
    sh.write_row(1, 0, HEADER)
    sh.write_row(2, 0, ["A1", "C1", "三月一日", "一百"])
    sh.write_row(3, 0, ["A2", "C2", "2024-03-02", "5"])
    wb.close()
    src = open_orders(path)
    assert src.columns == HEADER
    assert read_all(src).column("订单号").to_pylist() == ["A1", "A2"]


def test_mapping_tries_whole_child_then_parent() -> None:
    spec = TABLES["orders"]
    cols = ["单据 / 订单号", "客户 / 编号", "下单日期", "金额 / 含税", "金额 / 不含税"]
    m = resolve_mapping(cols, spec, {}, {}, file="x")
    # "客户 / 编号" matches as a whole ("客户编号"); "单据 / 订单号" by its child; "金额 / 含税" by its parent.
    assert m.fields == {
        "order_id": "单据 / 订单号",
        "customer_id": "客户 / 编号",
        "order_date": "下单日期",
        "amount": "金额 / 含税",
    }
    assert m.unmapped == ["金额 / 不含税"]
    score = header_score(spec)
    assert score(cols) == 4 and score(["金额 / 含税", "金额 / 不含税"]) == 1 and score(["说明", ""]) == 0


# ---------------------------------------------------------------- sheets


MONTHS = {"1月": 1, "2月": 2, "3月": 3}


def monthly_book(path: Path, *, notes: bool = True) -> dict[str, list[list[Any]]]:
    """Three monthly sheets (the third orders its columns differently) and, first, a notes sheet."""
    wb = xlsxwriter.Workbook(str(path))
    written: dict[str, list[list[Any]]] = {}
    if notes:
        wb.add_worksheet("说明").write_column(0, 0, ["本工作簿为2024年一季度订单", "金额单位：元"])
    for name, month in MONTHS.items():
        sh = wb.add_worksheet(name)
        sh.write(0, 0, f"2024年{month}月订单")
        data = month_rows(month, 5 + month)
        if month == 3:
            order = [3, 0, 2, 1]  # 金额, 订单号, 下单日期, 客户编号
            sh.write_row(1, 0, [HEADER[j] for j in order])
            for k, row in enumerate(data):
                sh.write_row(2 + k, 0, [row[j] for j in order])
        else:
            sh.write_row(1, 0, HEADER)
            for k, row in enumerate(data):
                sh.write_row(2 + k, 0, row)
        written[name] = data
    wb.close()
    return written


def test_monthly_sheets_load_as_one_batch_with_no_options(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "q1.xlsx"
    written = monthly_book(path)
    src = open_orders(path)
    assert src.columns == HEADER  # aligned by name; `_sheet` is no source column
    assert src.schema is not None and SHEET in src.schema.names
    assert src.sheet == "1月, 2月, 3月"
    table = read_all(src)
    cols = [table.column(c).to_pylist() for c in (SHEET, LINE, "订单号")]
    got = sorted(zip(*cols, strict=True))
    want = sorted((name, 3 + k, row[0]) for name, data in written.items() for k, row in enumerate(data))
    assert got == want
    [listing] = src.warnings
    assert "4 sheets" in listing and "skipped '说明'" in listing
    assert "loaded '1月' (header on row 2)" in listing and "loaded '3月' (header on row 2)" in listing

    r = ingest_file(ws, "orders", path, today=TODAY)
    all_rows = [row for data in written.values() for row in data]
    assert r.rows_read == r.rows_loaded == len(all_rows)
    stored = orders(ws)
    assert sum(o["amount"] for o in stored) == sum(exact(row[3]) for row in all_rows)
    assert {o["order_id"]: (o["customer_id"], o["amount"]) for o in stored} == {
        row[0]: (row[1], row[3]) for row in all_rows
    }


@pytest.mark.parametrize(("sheet", "name"), [("2", "1月"), ("3月", "3月"), ("1", "说明")])
def test_sheet_by_index_or_name(ws: Workspace, tmp_path: Path, sheet: str, name: str) -> None:
    path = tmp_path / "q1.xlsx"
    written = monthly_book(path)
    if name == "说明":
        with pytest.raises(UserError, match="no column for the required field"):
            ingest_file(ws, "orders", path, sheet=sheet, today=TODAY)
        return
    r = ingest_file(ws, "orders", path, sheet=sheet, today=TODAY)
    assert r.sheet == name and r.rows_loaded == len(written[name])
    assert sum(o["amount"] for o in orders(ws)) == sum(exact(row[3]) for row in written[name])


def test_sheet_all(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "q1.xlsx"
    written = monthly_book(path, notes=False)
    src = open_orders(path, sheet="all")
    assert src.sheet == "1月, 2月, 3月" and src.warnings == []
    src.close()
    r = ingest_file(ws, "orders", path, sheet="all", today=TODAY)
    assert r.rows_loaded == sum(len(d) for d in written.values())
    assert sum(o["amount"] for o in orders(ws)) == sum(exact(row[3]) for d in written.values() for row in d)


def test_unknown_sheet_lists_the_sheets(tmp_path: Path, ws_dir: Path) -> None:
    path = tmp_path / "q1.xlsx"
    monthly_book(path)
    before = run_cli("status", "--json", "-w", ws_dir).stdout
    r = run_cli("ingest", "orders", path, "--sheet", "4月", "-w", ws_dir)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "no sheet named '4月'; the sheets are: 说明, 1月, 2月, 3月" in r.stderr
    r = run_cli("ingest", "orders", path, "--sheet", "7", "-w", ws_dir)
    assert r.code == 2 and "the workbook has 4 sheet(s), in order: 说明, 1月, 2月, 3月" in r.stderr
    assert run_cli("status", "--json", "-w", ws_dir).stdout == before


def test_no_sheet_recognised_reads_the_first_with_data(tmp_path: Path) -> None:
    path = tmp_path / "odd.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("空")
    wb.add_worksheet("甲").write_row(0, 0, ["单号", "买家"])
    wb.add_worksheet("乙").write_row(0, 0, ["x", "y"])
    wb.close()
    src = open_orders(path)
    assert src.sheet == "甲" and src.columns == ["单号", "买家"]
    [listing] = src.warnings
    assert "skipped '空' (empty)" in listing and "read '甲' for lack of a recognised header" in listing


def test_single_sheet_has_no_sheet_column(tmp_path: Path) -> None:
    path = tmp_path / "one.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("x").write_row(0, 0, ["名称"])  # one sheet: loaded whatever its header
    wb.close()
    src = open_orders(path)
    assert src.schema is not None and src.schema.names == ["名称", LINE] and src.warnings == []


def test_large_sheet_is_converted_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(excel, "CHUNK_ROWS", 4)
    path = tmp_path / "chunks.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    sh.write_row(0, 0, HEADER)
    lines = [2, 3, 4, 6, 7, 8, 9, 10, 12]  # rows 5 and 11 are blank: no records, but the numbering keeps them
    for line in lines:
        sh.write_row(line - 1, 0, [f"A{line}", "C1", "2024-03-01", line])
    wb.close()
    src = open_orders(path)
    sizes = [b.num_rows for b in src.batches]
    assert sizes == [4, 4, 1]
    assert read_all(open_orders(path)).column(LINE).to_pylist() == lines


# ---------------------------------------------------------------- bounded reading


def write_xlsx_zip(path: Path, sheet_xml_rows: Any, *, header: bytes = b"") -> None:
    """A minimal XLSX written directly with zipfile: one sheet whose rows come from `sheet_xml_rows`
    (an iterable of byte chunks), streamed into the zip so the test never holds the expanded sheet."""
    ct = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-'
        'types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/'
        'worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet'
        '+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
        'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    book = (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
        'main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="订单"'
        ' sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    book_rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
        'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", ct)
        z.writestr("_rels/.rels", rels)
        z.writestr("xl/workbook.xml", book)
        z.writestr("xl/_rels/workbook.xml.rels", book_rels)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(
                b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                b'spreadsheetml/2006/main"><sheetData>' + header
            )
            for chunk in sheet_xml_rows:
                fh.write(chunk)
            fh.write(b"</sheetData></worksheet>")


BOMB_ROWS = 6_000_000


def bomb_chunks() -> Any:
    # Values cycling through 997 numbers: about 90 times smaller compressed (under the default ratio of 100),
    # so it is the row count that must stop it, as with the 1.75 MB file of issue 20.
    for start in range(0, BOMB_ROWS, 200_000):
        yield b"".join(b"<row><c><v>%d</v></c></row>" % (i % 997) for i in range(start, start + 200_000))


def test_decompression_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path, ws_dir: Path) -> None:
    bomb = tmp_path / "bomb.xlsx"
    write_xlsx_zip(bomb, bomb_chunks())
    assert bomb.stat().st_size < 3 << 20
    with zipfile.ZipFile(bomb) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
        assert info.file_size > 150 << 20 and info.file_size / info.compress_size < 100
    before = run_cli("status", "--json", "-w", ws_dir).stdout

    # A child of its own, so that ru_maxrss of the children is this ingest alone.
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        f"p = subprocess.run([sys.executable, '-m', 'tierwise.cli', 'ingest', 'orders', {str(bomb)!r}, '-w', "
        f"{str(ws_dir)!r}], capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
        "print(__import__('json').dumps({'code': p.returncode, 'stderr': p.stderr, 'seconds': time.monotonic() - t,"
        " 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["code"] == 2, out
    assert "Traceback" not in out["stderr"] and len(out["stderr"].strip().splitlines()) == 1
    assert "sheet '订单' has more than 1,048,576 rows" in out["stderr"]
    assert "max_sheet_rows" in out["stderr"] and "export it as CSV" in out["stderr"]
    assert out["seconds"] < 20
    assert out["maxrss_kib"] < 1.5 * 1024 * 1024
    assert run_cli("status", "--json", "-w", ws_dir).stdout == before


def test_highly_compressed_part_is_refused_by_its_ratio(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "ratio.xlsx"
    row = b"<row><c><v>1</v></c></row>"
    write_xlsx_zip(path, (row * 100_000 for _ in range(10)))  # 26 MB of one repeated row, ~1000:1
    t = time.monotonic()
    with pytest.raises(UserError, match=r"expands from .* times\), more than \[ingest\] max_expansion_ratio = 100"):
        ingest_file(ws, "orders", path, today=TODAY)
    assert time.monotonic() - t < 5
    assert ws.table("batches").count().execute() == 0


def test_row_limit_boundary(tmp_path: Path) -> None:
    path = tmp_path / "five.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet("订单")
    sh.write_row(0, 0, HEADER)
    for i in range(1, 5):
        sh.write_row(i, 0, [f"A{i}", "C1", "2024-03-01", i])
    wb.close()
    # Five rows in the sheet (header included): allowed at a limit of five, refused at four.
    assert read_all(open_orders(path, limits=ReadLimits(max_sheet_rows=5))).num_rows == 4
    with pytest.raises(UserError, match="sheet '订单' has more than 4 rows"):
        open_orders(path, limits=ReadLimits(max_sheet_rows=4))


def test_row_tags_split_between_chunks_are_counted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(excel, "_READ_CHUNK", 100)  # rows straddle the chunk boundaries everywhere
    path = tmp_path / "rows.xlsx"
    rows = 300
    xml = b"".join(b'<row r="%d"><c r="A%d"><v>%d</v></c></row>' % (i, i, i) for i in range(1, rows + 1))
    write_xlsx_zip(path, [xml])
    excel.check_workbook(path, ReadLimits(max_sheet_rows=rows))
    with pytest.raises(UserError, match=f"more than {rows - 1} rows"):
        excel.check_workbook(path, ReadLimits(max_sheet_rows=rows - 1))


def test_measured_ratio_of_ordinary_workbooks_is_far_below_the_default(tmp_path: Path) -> None:
    """docs/ingest.md quotes these figures: xlsxwriter sheets expand 6–15 times, the default refuses beyond 100."""
    path = tmp_path / "same.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    for i in range(20_000):
        sh.write_row(i, 0, ["O1", "C1", "2024-01-01", 100, ""])  # the most repetitive ordinary content
    wb.close()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    assert info.file_size / info.compress_size < 20
    excel.check_workbook(path, ReadLimits())


# ---------------------------------------------------------------- exact numeric ids


def test_whole_number_ids_keep_their_digits_and_warn_beyond_15(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "ids.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet("订单")
    sh.write_row(0, 0, HEADER)
    ids = [123456789012, 12345678901234600000, 1234567890123456, 98765432109876500000]
    for k, oid in enumerate(ids):
        sh.write_row(1 + k, 0, [oid, 10**15 + k if k == 3 else f"C{k}", "2024-03-01", 100.5])
    wb.close()
    src = open_orders(path)
    table = read_all(src)
    assert table.column("订单号").to_pylist() == ["123456789012", "12345678901234600000", "1234567890123456",
                                                  "98765432109876500000"]  # fmt: skip
    assert table.column("金额").to_pylist() == ["100.5"] * 4
    assert len(src.warnings) == 2  # once per column
    first, second = src.warnings
    assert "column '订单号'" in first and "first: 12345678901234600000 on row 3 of sheet '订单'" in first
    assert "Excel keeps only 15 significant digits" in first and "store ids as text" in first
    assert "column '客户编号'" in second and f"first: {10**15 + 3} on row 5" in second

    ingest_file(ws, "orders", path, today=TODAY)
    assert sorted(o["order_id"] for o in orders(ws)) == sorted(str(i) for i in ids)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300))
def test_cell_text_is_exact_and_round_trips(value: float) -> None:
    text = cell_text(value)
    assert float(text) == value or (value == 0 and float(text) == 0)
    if value.is_integer():
        assert "e" not in text and "." not in text
        # The shortest decimal that reads back as the same double, written out in full.
        assert Decimal(text) == Decimal(repr(value)).to_integral_value()


def test_hidden_sheets_are_skipped_unless_all_are_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "hidden.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    shown = wb.add_worksheet("订单")
    shown.write_row(0, 0, HEADER)
    shown.write_row(1, 0, ["A1", "C1", "2024-03-01", 1])
    lookup = wb.add_worksheet("旧订单")
    lookup.write_row(0, 0, HEADER)
    lookup.write_row(1, 0, ["B1", "C1", "2023-03-01", 2])
    lookup.hide()
    wb.close()
    src = open_orders(path)
    assert src.sheet == "订单" and "skipped '旧订单' (hidden)" in src.warnings[0]
    assert read_all(src).column("订单号").to_pylist() == ["A1"]
    assert read_all(open_orders(path, sheet="all")).column("订单号").to_pylist() == ["A1", "B1"]


def test_rows_counted_with_a_namespace_prefix_and_without_row_breaks(tmp_path: Path) -> None:
    path = tmp_path / "prefixed.xlsx"
    rows = 40
    body = b"".join(b'<x:row r="%d"><x:c><x:v>1</x:v></x:c></x:row>' % i for i in range(1, rows + 1))
    sheet = (
        b'<?xml version="1.0"?><x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b"<x:sheetData>" + body + b'</x:sheetData><x:rowBreaks count="1"><x:brk id="5"/></x:rowBreaks></x:worksheet>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    excel.check_workbook(path, ReadLimits(max_sheet_rows=rows))
    with pytest.raises(UserError, match=f"part xl/worksheets/sheet1.xml of the workbook has more than {rows - 1} rows"):
        excel.check_workbook(path, ReadLimits(max_sheet_rows=rows - 1))


def test_damaged_workbook_is_one_line(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "cut.xlsx"
    monthly_book(tmp_path / "whole.xlsx")
    data = (tmp_path / "whole.xlsx").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cannot open as a spreadsheet .*; save it again as XLSX or CSV"):
        ingest_file(ws, "orders", path, today=TODAY)


def test_xls_report_with_title_and_two_row_header(ws: Workspace, tmp_path: Path) -> None:
    import xlwt

    path = tmp_path / "report.xls"
    book = xlwt.Workbook(encoding="utf-8")
    sh = book.add_sheet("订单")
    sh.write_merge(0, 0, 0, 4, "2024年3月订单")
    for j, name in enumerate(HEADER[:3]):
        sh.write_merge(2, 3, j, j, name)
    sh.write_merge(2, 2, 3, 4, "金额")
    sh.write(3, 3, "含税")
    sh.write(3, 4, "不含税")
    data = [["A1", "C1", "2024-03-01", 113, 100], ["A2", "C2", "2024-03-02", 56.5, 50]]
    for k, row in enumerate(data):
        for j, v in enumerate(row):
            sh.write(4 + k, j, v)
    book.save(str(path))
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.mapping["fields"]["amount"] == "金额 / 含税"
    assert [(o["order_id"], o["amount"], o["source_line"]) for o in orders(ws)] == [
        (row[0], row[3], 5 + k) for k, row in enumerate(data)
    ]


def test_quarterly_report_workbook_loads_with_no_options(ws: Workspace, tmp_path: Path) -> None:
    """Issue 20's workbook (without its totals rows): a notes sheet, then three monthly sheets, each with a
    title, a blank row and a two-row header."""
    path = tmp_path / "2024Q1.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("说明").write(0, 0, "一季度订单明细，金额单位：元")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    written: dict[str, list[list[Any]]] = {}
    for name, month in MONTHS.items():
        sh = wb.add_worksheet(name)
        sh.merge_range(0, 0, 0, 4, f"2024年{month}月销售订单明细")
        for j, label in enumerate(HEADER[:3]):
            sh.merge_range(2, j, 3, j, label)
        sh.merge_range(2, 3, 2, 4, "金额")
        sh.write_row(3, 3, ["含税", "不含税"])
        gross = [100 + 11.3 * i for i in range(3 + month)]
        data = [
            [f"M{month}-{i}", f"C{i % 3}", dt.datetime(2024, month, 1 + i), g, round(g / 1.13, 2)]
            for i, g in enumerate(gross)
        ]
        for k, row in enumerate(data):
            sh.write_row(4 + k, 0, row[:2])
            sh.write_datetime(4 + k, 2, row[2], date_fmt)
            sh.write_row(4 + k, 3, row[3:])
        written[name] = data
    wb.close()

    r = ingest_file(ws, "orders", path, today=TODAY)
    everything = [row for data in written.values() for row in data]
    assert r.sheet == "1月, 2月, 3月" and r.rows_loaded == r.rows_read == len(everything)
    stored = orders(ws)
    assert sum(o["amount"] for o in stored) == sum(exact(row[3]) for row in everything)
    assert sorted((o["order_id"], o["order_date"], o["source_line"]) for o in stored) == sorted(
        (row[0], row[2], 5 + k) for data in written.values() for k, row in enumerate(data)
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(0, 200),
    chunk=st.integers(1, 97),
    prefix=st.sampled_from([b"", b"x:", b"main:"]),
    breaks=st.booleans(),
)
def test_row_count_is_exact_for_any_chunking(
    tmp_path: Path, rows: int, chunk: int, prefix: bytes, breaks: bool
) -> None:
    path = tmp_path / "count.xlsx"
    row = b"<" + prefix + b'row r="%d"><' + prefix + b"c><" + prefix + b"v>7</" + prefix + b"v></" + prefix + b"c></"
    body = b"".join((row % i) + prefix + b"row>" for i in range(1, rows + 1))
    tail = b"<" + prefix + b'rowBreaks count="1"/>' if breaks else b""
    xml = b"<" + prefix + b"worksheet><" + prefix + b"sheetData>" + body + b"</" + prefix + b"sheetData>" + tail
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", xml + b"</" + prefix + b"worksheet>")
    old = excel._READ_CHUNK
    excel._READ_CHUNK = chunk
    try:
        excel.check_workbook(path, ReadLimits(max_sheet_rows=max(rows, 1)))
        if rows > 1:
            with pytest.raises(UserError, match=f"more than {rows - 1:,} rows"):
                excel.check_workbook(path, ReadLimits(max_sheet_rows=rows - 1))
    finally:
        excel._READ_CHUNK = old


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(above=st.lists(st.one_of(st.none(), st.text("xyz 0", min_size=1, max_size=12)), max_size=12))
def test_header_found_below_any_rows_without_field_names(tmp_path: Path, above: list[str | None]) -> None:
    path = tmp_path / "above.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sh = wb.add_worksheet()
    for i, text in enumerate(above):
        if text is not None:
            sh.write_string(i, 0, text)
    h = len(above)
    sh.write_row(h, 0, HEADER)
    sh.write_row(h + 1, 0, ["A1", "C1", "2024-03-01", 5])
    wb.close()
    src = open_orders(path)
    assert src.columns == HEADER
    assert read_all(src).column(LINE).to_pylist() == [h + 2]


def test_quarterly_report_with_totals_rows_loads_with_no_options(ws: Workspace, tmp_path: Path) -> None:
    """Issue 20's whole workbook: a title, a two-row header, three monthly sheets, and each sheet's 小计 and
    合计 rows (one labelled in the first column, one only an amount equal to the sum above)."""
    path = tmp_path / "2024Q1-report.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    written: dict[str, list[list[Any]]] = {}
    totals: dict[str, list[int]] = {}
    for name, month in MONTHS.items():
        sh = wb.add_worksheet(name)
        sh.merge_range(0, 0, 0, 4, f"2024年{month}月销售订单明细")
        for j, label in enumerate(HEADER[:3]):
            sh.merge_range(2, j, 3, j, label)
        sh.merge_range(2, 3, 2, 4, "金额")
        sh.write_row(3, 3, ["含税", "不含税"])
        data = [
            [f"M{month}-{i}", f"C{i % 3}", f"2024-{month:02d}-{1 + i:02d}", f"{100 + 11.3 * i:.2f}", "0"]
            for i in range(2 + month)
        ]
        page = sum(Decimal(row[3]) for row in data[:2])
        rows = [*data[:2], ["", "", "", str(page), ""], *data[2:]]  # an unlabelled page subtotal after two rows
        rows.append(["合计", "", f"2024-{month:02d}-28", str(sum(Decimal(row[3]) for row in data)), ""])
        for k, row in enumerate(rows):
            sh.write_row(4 + k, 0, row)
        written[name] = data
        totals[name] = [5 + 2, 5 + len(rows) - 1]  # sheet rows of the subtotal and the 合计 row
    wb.close()

    r = ingest_file(ws, "orders", path, today=TODAY)
    everything = [row for data in written.values() for row in data]
    assert r.sheet == "1月, 2月, 3月" and r.reasons == {"TOTAL_ROW": 6}
    assert r.rows_read == r.rows_new + r.rows_quarantined and r.rows_new == len(everything)
    assert sum(Decimal(str(o["amount"])) for o in orders(ws)) == sum(Decimal(row[3]) for row in everything)
    q = ws.table("quarantine").to_pyarrow().to_pylist()
    assert sorted((x["file"].rsplit("#", 1)[1], x["line"]) for x in q) == sorted(
        (name, line) for name, lines in totals.items() for line in lines
    )
    assert [w for w in r.warnings if w.startswith("the workbook has 3 sheets")], r.warnings
