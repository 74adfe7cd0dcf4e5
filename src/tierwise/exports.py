"""Writing tables for people: CSV (UTF-8 with BOM, so Excel shows Chinese), XLSX, Parquet.

Spreadsheet programs run a cell that starts with = + - @ (or a tab/CR before them) as a formula; exported
text cells get a leading apostrophe so a customer name like "=HYPERLINK(...)" stays text (OWASP CSV injection).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import xlsxwriter

from tierwise.errors import UserError

XLSX_MAX_ROWS = 1_048_576  # including the header row


def _neutralise_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        return col
    return pc.replace_substring_regex(col, pattern=r"^([=+\-@\t\r])", replacement=r"'\1")


def safe_for_spreadsheets(table: pa.Table) -> pa.Table:
    return pa.table({name: _neutralise_column(table[name]) for name in table.column_names})


def _flatten_nested(table: pa.Table) -> pa.Table:
    """Maps, lists and structs become JSON-ish text: CSV and XLSX hold scalars only."""
    cols = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_nested(col.type):
            cols[name] = pa.array([None if v is None else str(v) for v in col.to_pylist()], type=pa.string())
        else:
            cols[name] = col
    return pa.table(cols)


def write_table(table: pa.Table, path: Path, fmt: str | None = None) -> None:
    """Write through a temporary file beside the target: a failed export leaves no half-written file."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    part = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(table, part, fmt)
        part.replace(path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror or exc}); choose another folder or file name") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        safe = safe_for_spreadsheets(_flatten_nested(table))
        with path.open("wb") as fh:
            fh.write(b"\xef\xbb\xbf")
            pacsv.write_csv(safe, fh)
    elif fmt == "xlsx":
        if table.num_rows >= XLSX_MAX_ROWS:
            raise UserError(
                f"{path}: {table.num_rows:,} rows do not fit in an Excel sheet ({XLSX_MAX_ROWS - 1:,} at most); "
                "export to csv or parquet, or narrow the rows with --where"
            )

        safe = safe_for_spreadsheets(_flatten_nested(table))
        wb = xlsxwriter.Workbook(
            str(path),
            {
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "default_date_format": "yyyy-mm-dd",
                "remove_timezone": True,
            },
        )
        ws = wb.add_worksheet()
        ws.write_row(0, 0, safe.column_names)
        for r, row in enumerate(safe.to_pylist(), start=1):
            ws.write_row(r, 0, list(row.values()))
        wb.close()
    else:
        raise UserError(f"{path}: unknown export format '{fmt}'; use csv, xlsx or parquet")
