"""Downloads of a run's customers: CSV (UTF-8 with BOM), XLSX or Parquet, written by tierwise.exports (cells
that a spreadsheet would run as formulas are neutralised), with phone numbers and e-mails masked on request."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tierwise.errors import UserError
from tierwise.exports import write_table
from tierwise.rules import compile_expression
from tierwise.store.runs import latest_snapshot
from tierwise.store.snapshots import select_customers
from tierwise.web.services.customers import (
    available_columns,
    contact_columns,
    is_personal,
    mask_value,
    refuse_personal,
    search_filter,
    unknown_column,
    where_columns,
    with_contacts,
)
from tierwise.workspace import Workspace

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass
class ExportFile:
    """A written export: stream `path` as `filename` with `media_type`, then call cleanup()."""

    filename: str
    path: Path
    media_type: str
    rows: int
    run_id: str

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def cleanup(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)

    def as_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "media_type": self.media_type, "rows": self.rows, "run_id": self.run_id}


def masked(table: pa.Table) -> pa.Table:
    """Personal columns (phone, email …) masked as customers.mask_value does."""
    columns = {}
    for name in table.column_names:
        col = table[name]
        if is_personal(name):
            col = pa.array([mask_value(name, v) for v in col.to_pylist()], type=pa.string())
        columns[name] = col
    return pa.table(columns)


def export(
    ws: Workspace,
    *,
    where: str | None = None,
    columns: Sequence[str] | None = None,
    fmt: str = "csv",
    mask_personal: bool = False,
    search: str | None = None,
    run_id: str | None = None,
    directory: Path | None = None,
) -> ExportFile:
    """Write the run's customers matching `where` (and `search`, as in the list) with `columns` (default:
    every snapshot column; contact columns of the customers table may be named too), customer_id first and
    ordered by it, to a new temporary folder (or under `directory`). The caller streams the file and then
    calls cleanup(). `fmt`: csv, xlsx or parquet."""
    kind = (fmt or "").lower().lstrip(".")
    if kind not in FORMATS:
        raise UserError(f"format '{fmt}': use csv, xlsx or parquet")
    meta, snap = latest_snapshot(ws, run_id)
    known = available_columns(ws, snap)
    chosen = list(dict.fromkeys(columns)) if columns else list(snap.columns)
    for c in chosen:
        if c not in known:
            raise unknown_column("columns", c, known)
    if mask_personal:
        refuse_personal(where, None, known)
    t = with_contacts(ws, snap, [*chosen, *where_columns(where, contact_columns(ws, snap))])
    if where and where.strip():
        t = t.filter(compile_expression(where, t.schema(), what="where")(t))
    if search and search.strip():
        t = t.filter(search_filter(t, search))
    rows = select_customers(t, columns=chosen).to_pyarrow()
    if mask_personal:
        rows = masked(rows)
    run = str(meta["run_id"])
    folder = Path(tempfile.mkdtemp(prefix="tierwise-export-", dir=directory))
    filename = f"tierwise-customers-{run}.{kind}"
    path = folder / filename
    try:
        write_table(rows, path, kind)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ExportFile(filename=filename, path=path, media_type=FORMATS[kind], rows=rows.num_rows, run_id=run)
