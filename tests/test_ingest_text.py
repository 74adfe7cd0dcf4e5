"""The text (CSV/TSV) reader: file line numbers, header-only files, bytes the encoding cannot read.

Every expected line number is counted here from the text the test wrote (`str.splitlines` over what comes
before a record), never taken from the reader.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from tierwise.errors import UserError
from tierwise.ingest.pipeline import ingest_file
from tierwise.ingest.readers import SAMPLE_BYTES, _LineFinder, open_source
from tierwise.workspace import Workspace

TODAY = dt.date(2025, 6, 30)
HEADER = ["客户编号", "下单日期", "实付金额", "备注"]
EN_HEADER = ["customer_id", "order_date", "amount", "note"]


@dataclass
class Written:
    text: str
    starts: list[int]  # the file line each record starts on, in the order given


def quote(value: str, sep: str, always: bool = False) -> str:
    if always or any(c in value for c in (sep, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def compose(
    records: list[list[str]],
    *,
    sep: str = ",",
    eol: str = "\n",
    header: list[str] = HEADER,
    lead: int = 0,
    blanks: dict[int, int] | None = None,
    trailing: int = 0,
    final_eol: bool = True,
) -> Written:
    """A delimited text; `blanks[i]` blank lines go before record i. Line numbers are counted from the text
    written before each record (as a text editor numbers them)."""
    parts = [eol] * lead + [sep.join(quote(h, sep) for h in header) + eol]
    lines = len("".join(parts).splitlines())  # every part ends with a line break
    starts = []
    for i, rec in enumerate(records):
        parts += [eol] * (blanks or {}).get(i, 0)
        lines += (blanks or {}).get(i, 0)
        starts.append(lines + 1)
        part = sep.join(quote(v, sep) for v in rec) + (eol if final_eol or i < len(records) - 1 else "")
        parts.append(part)
        lines += len(part.splitlines())
    return Written("".join(parts) + eol * trailing, starts)


def rows(ws: Workspace, table: str, batch_id: str, order_by: str) -> list[dict]:
    t = ws.table(table)
    return t.filter(t.batch_id == batch_id).order_by(order_by).to_pyarrow().to_pylist()


def state(ws: Workspace) -> dict[str, list[str]]:
    names = ["customers", "orders", "quarantine", "batches", "blanked_values"]
    return {n: sorted(map(str, ws.table(n).to_pyarrow().to_pylist())) for n in names}


def write_good(tmp_path: Path) -> Path:
    good = tmp_path / "good.csv"
    good.write_text("customer_id,order_date,amount\nC1,2024-01-01,1\n")
    return good


def status(ws: Path) -> object:
    r = run_cli("status", "--json", "-w", ws)
    assert r.code == 0, r.stderr
    return r.json()


# A value that spans lines, separators and doubled quotes inside quotes, blank lines, a line of separators
# only (a row like any other: it is read and quarantined), an unreadable date and an unreadable amount.
RECORDS = [
    ["C1", "2024-01-02", "10", "first\nsecond\nthird"],
    ["C2", "2024-01-03", "abc", 'says "hi", then leaves'],
    ["C3", "2024-13-45", "7", "多行\n备注"],
    ["", "", "", ""],
    ["C4", "2024-01-05", "8", ""],
    ["C5, Ltd", "2024-01-06", "oops", "x\n\ny"],
    ["C6", "2024-01-07", "9", "end"],
]
GOOD = [0, 4, 6]


@pytest.mark.parametrize(
    ("encoding", "eol"),
    [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("gbk", "\r\n"), ("utf-16", "\n"), ("utf-8", "\r")],
    ids=["utf8-LF", "BOM-CRLF", "gbk-CRLF", "utf16-LF", "utf8-CR"],
)
def test_quarantine_and_orders_carry_file_lines(ws: Workspace, tmp_path: Path, encoding: str, eol: str) -> None:
    records = [[v.replace("\n", eol) for v in rec] for rec in RECORDS]
    w = compose(records, eol=eol, lead=2, blanks={2: 1, 4: 3}, trailing=2)
    path = tmp_path / "orders.csv"
    path.write_bytes(w.text.encode(encoding))
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (7, 3, 4)
    got = [o["source_line"] for o in rows(ws, "orders", r.batch_id, "source_line")]
    assert got == [w.starts[i] for i in GOOD]
    quarantined = {(q["line"], q["reason_code"]) for q in rows(ws, "quarantine", r.batch_id, "line")}
    assert quarantined == {
        (w.starts[1], "BAD_AMOUNT"),
        (w.starts[2], "BAD_DATE"),
        (w.starts[3], "MISSING_CUSTOMER_ID"),
        (w.starts[5], "BAD_AMOUNT"),
    }
    # Spot check against the counting above: the header is on line 3 after two blank lines.
    if eol == "\n":
        assert w.starts == [4, 7, 9, 11, 15, 16, 19]


def test_lines_across_batches_and_in_utf16(tmp_path: Path) -> None:
    """Past pyarrow's 16 MiB blocks the count carries on; a UTF-16 file longer than the sample reads whole."""
    big = [[f"C{i}", "2024-01-01", str(i), "a\nb" if i % 1000 == 0 else "note " * 12] for i in range(200_000)]
    w = compose(big, blanks={i: 1 for i in range(0, 200_000, 777)})
    path = tmp_path / "big.csv"
    path.write_text(w.text, encoding="utf-8", newline="")
    assert path.stat().st_size > 16 << 20  # more than one of pyarrow's blocks
    batches = list(open_source(path).batches)
    assert len(batches) > 1
    assert [x for b in batches for x in b.column("_line").to_pylist()] == w.starts

    small = big[:40_000]
    w16 = compose(small, eol="\r\n", blanks={5: 2})
    path16 = tmp_path / "u16.csv"
    path16.write_bytes(w16.text.encode("utf-16"))
    assert path16.stat().st_size > SAMPLE_BYTES
    got = [x for b in open_source(path16).batches for x in b.column("_line").to_pylist()]
    assert got == w16.starts


def test_line_finder_tells_blank_lines_across_small_chunks(tmp_path: Path, monkeypatch) -> None:
    text = "h\r\n\r\n,,\r\n\n\r\rx\n\r\n" + "y\n" * 30 + "\n,\r\n"
    lines = text.splitlines()
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8"))
    for chunk in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(_LineFinder, "CHUNK", chunk)
        finder = _LineFinder(path, "utf-8")
        assert [finder.is_blank(n) for n in range(1, len(lines) + 3)] == [ln == "" for ln in lines] + [False] * 2
        finder.close()


def load_good(ws_dir: Path, tmp_path: Path) -> None:
    ws = Workspace.open(ws_dir)
    try:
        assert ingest_file(ws, "orders", write_good(tmp_path), today=TODAY).rows_loaded == 1
    finally:
        ws.close()


def late_bad_byte(tmp_path: Path, encoding: str, bad: bytes) -> tuple[Path, int]:
    """More than the first MiB of good text, then a record whose quoted note has a byte the encoding cannot
    read on the record's second line; returns the file and that line."""
    records = [[f"C{i}", "2024-01-01", str(i), "多行\n备注" if i == 3 else "备注"] for i in range(60_000)]
    w = compose(records, blanks={10: 1})
    head = w.text.encode(encoding)
    assert len(head) > SAMPLE_BYTES
    tail = "C9,2024-01-02,5,".encode(encoding) + b'"ab\ncd' + bad + b'"\n'
    path = tmp_path / "late.csv"
    path.write_bytes(head + tail + "C10,2024-01-03,6,x\n".encode(encoding))
    return path, len(w.text.splitlines()) + 2


def test_cli_refuses_bad_text_files_and_keeps_the_workspace(ws_dir: Path, tmp_path: Path) -> None:
    """Each file fails with one line naming the file (and line), exit code 2, and the workspace unchanged."""
    load_good(ws_dir, tmp_path)
    header_only = tmp_path / "header.csv"
    header_only.write_bytes(b"customer_id,order_date,amount")
    late, bad_line = late_bad_byte(tmp_path, "utf-8", b"\xe9t\xe9")
    w = compose([["C1", "2024-01-01", "1", "a\nb\nc"], ["C2", "2024-01-01", "2", "x"]], blanks={1: 1})
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(w.text + "C3,2024-01-01,3,x,extra\n", encoding="utf-8")
    ragged_line = len(w.text.splitlines()) + 1
    cases = [
        (header_only, "header.csv: the file has a header but no data rows; export it again with its rows"),
        (
            late,
            f"late.csv, line {bad_line}, column '备注': byte 0xE9 cannot be read as utf-8 (the encoding found in "
            "the first MiB of the file); pass the file's real encoding with --encoding (e.g. gbk, latin-1), or "
            "save the file again as UTF-8",
        ),
        (ragged, f"ragged.csv, line {ragged_line}: expected 4 columns but found 5"),
    ]
    before = status(ws_dir)
    for path, message in cases:
        r = run_cli("ingest", "orders", path, "-w", ws_dir)
        assert r.code == 2, r.stderr
        assert message in " ".join(r.stderr.split())
        assert "Traceback" not in r.stderr and "block size" not in r.stderr
    assert status(ws_dir) == before


def test_bad_byte_after_the_first_mib_gbk(ws: Workspace, tmp_path: Path) -> None:
    ingest_file(ws, "orders", write_good(tmp_path), today=TODAY)
    before = state(ws)
    path, bad_line = late_bad_byte(tmp_path, "gbk", b"\x80")
    with pytest.raises(UserError) as exc:
        ingest_file(ws, "orders", path, today=TODAY)
    assert (exc.value.line, exc.value.column, exc.value.file) == (bad_line, "备注", str(path))
    assert "byte 0x80 cannot be read as gb18030" in str(exc.value)
    assert state(ws) == before


def test_wrong_encoding_given_names_the_line(ws: Workspace, tmp_path: Path) -> None:
    w = compose([["C1", "2024-01-01", "1", "a\nb"], ["C2", "2024-01-01", "2", "好"]], header=EN_HEADER)
    path = tmp_path / "gbk.csv"
    path.write_bytes(w.text.encode("gbk"))
    with pytest.raises(UserError) as exc:
        ingest_file(ws, "orders", path, encoding="utf-8", today=TODAY)
    assert (exc.value.line, exc.value.column) == (w.starts[1], "note")
    assert "the encoding given with --encoding" in str(exc.value)


def test_whitespace_separated_with_blank_lines(ws: Workspace, tmp_path: Path) -> None:
    text = "\ncustomer_id order_date amount\n\nC1  2024-01-01   1\n   \nC2 2024-13-01 2\n\n\nC3\t2024-01-03  3\n"
    path = tmp_path / "cdnow.txt"
    path.write_text(text)
    lines = text.splitlines()
    r = ingest_file(ws, "orders", path, today=TODAY)
    assert r.rows_read == 3
    want = {ln.split()[0]: n for n, ln in enumerate(lines, start=1) if ln.strip().startswith("C")}
    assert [(o["customer_id"], o["source_line"]) for o in rows(ws, "orders", r.batch_id, "source_line")] == [
        ("C1", want["C1"]),
        ("C3", want["C3"]),
    ]
    assert [q["line"] for q in rows(ws, "quarantine", r.batch_id, "line")] == [want["C2"]]


# ---------------------------------------------------------------- property

_counter = itertools.count()
_note = st.lists(st.sampled_from([*'ab 中,;\t"', "\n", "\r\n"]), max_size=12).map("".join)
_row = st.tuples(
    st.sampled_from(["", ",", '"', ";", '""']),  # in the customer id, to be quoted
    st.sampled_from(["ok", "bad date", "bad amount"]),
    _note,
    st.booleans(),  # quote every value of the row
    st.integers(min_value=0, max_value=2),  # blank lines before the row
)


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("shared") / "ws"
    w = Workspace.init(d)
    yield w
    w.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows_=st.lists(_row, min_size=1, max_size=12),
    sep=st.sampled_from([",", ";", "\t"]),
    eol=st.sampled_from(["\n", "\r\n"]),
)
def test_quarantine_lines_are_file_lines(
    shared_ws: Workspace, tmp_path_factory: pytest.TempPathFactory, rows_: list, sep: str, eol: str
) -> None:
    run = next(_counter)
    text = sep.join(EN_HEADER) + eol
    expected: dict[str, int] = {}
    bad: set[int] = set()
    for i, (suffix, kind, note, always, blank) in enumerate(rows_):
        text += eol * blank
        start = len(text.splitlines()) + 1
        cid = f"R{run}-{i}{suffix}"
        date = "2024-02-30" if kind == "bad date" else f"2024-01-{i % 28 + 1:02d}"
        amount = "abc" if kind == "bad amount" else f"{i}.5"
        text += sep.join(quote(v, sep, always) for v in (cid, date, amount, note)) + eol
        expected[cid] = start
        if kind != "ok":
            bad.add(start)
    path = tmp_path_factory.mktemp("prop") / "orders.csv"
    path.write_bytes(text.encode("utf-8"))
    r = ingest_file(shared_ws, "orders", path, sep="\\t" if sep == "\t" else sep, today=TODAY)
    assert r.rows_read == len(rows_)
    assert {q["line"] for q in rows(shared_ws, "quarantine", r.batch_id, "line")} == bad
    loaded = {o["customer_id"]: o["source_line"] for o in rows(shared_ws, "orders", r.batch_id, "source_line")}
    assert loaded == {c: n for c, n in expected.items() if n not in bad}


def test_gbk_detected_in_a_file_with_cr_line_ends(tmp_path: Path) -> None:
    """The only LF is inside a quoted value near the top; the GBK characters come after it."""
    w = compose([["C1", "2024-01-01", "1", "a\nb"], ["C2", "2024-01-02", "2", "好"]], header=EN_HEADER, eol="\r")
    path = tmp_path / "cr.csv"
    path.write_bytes(w.text.encode("gbk"))
    source = open_source(path)
    got = [(r["note"], r["_line"]) for b in source.batches for r in b.to_pylist()]
    assert source.encoding == "gb18030"
    assert got == [("a\nb", w.starts[0]), ("好", w.starts[1])] == [("a\nb", 2), ("好", 4)]
