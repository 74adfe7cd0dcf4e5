"""Uploads: a file from the browser or an API client loaded into a canonical table exactly as `tierwise ingest`
does (tierwise.ingest.pipeline.ingest_file: the same report, reconciliation and quarantine).

Before anything is read, the upload is checked: a known extension (csv, tsv, txt, xlsx, xls, parquet), content
that matches it (Parquet and Excel by their signatures, text by having no binary content), and the size limit.
The check whether the file was loaded before and its load happen under the workspace's write lock
(tierwise.access.write_lock), so identical uploads racing each other load once.
The file is kept in the workspace's `uploads/` folder under a timestamped, cleaned name, so that the batch's and
the quarantine's `file` column name a file that exists; a failed or repeated upload leaves nothing there.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tierwise import access
from tierwise.errors import UserError
from tierwise.ingest.pipeline import ingest_file
from tierwise.ingest.readers import detect_encoding
from tierwise.schema import TABLES
from tierwise.web.services._common import check_page, file_name, jsonable, pages
from tierwise.workspace import Workspace

UPLOAD_DIR = "uploads"
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
TEXT_EXTENSIONS = {"csv", "tsv", "txt"}
EXTENSIONS = (*sorted(TEXT_EXTENSIONS), "xlsx", "xls", "parquet")
SNIFF_BYTES = 64 * 1024

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PARQUET = b"PAR1"
# Other binary formats people pick by mistake: refuse them with a clear word rather than a parser error.
_BINARY = {
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"MZ": "a Windows program",
    b"\x7fELF": "a program",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"SQLite format 3": "a SQLite database",
}

Data = bytes | bytearray | Path | IO[bytes]


def clean_name(filename: str) -> str:
    """The file's own name without folders, with anything but letters, digits, '.', '-' and '_' as '_'."""
    base = re.split(r"[\\/]", filename or "")[-1].strip()
    base = re.sub(r"[^\w.\-]", "_", base).lstrip(".")
    return base[-120:] or "upload"


def extension(filename: str) -> str:
    name = clean_name(filename)
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if not ext:
        raise UserError(f"{name}: the name has no extension; upload a .{', .'.join(EXTENSIONS)} file")
    if ext not in EXTENSIONS:
        raise UserError(f"{name}: '.{ext}' is not a file type tierwise reads; upload {', '.join(EXTENSIONS)}")
    return ext


def check_content(name: str, ext: str, head: bytes, size: int) -> None:
    """The first bytes must agree with the extension (raises UserError saying what the file looks like)."""
    if size == 0:
        raise UserError(f"{name}: the file is empty; export it again with its rows")
    for magic, what in _BINARY.items():
        if head.startswith(magic):
            raise UserError(f"{name}: this is {what}, not a data file; upload {', '.join(EXTENSIONS)}")
    if ext == "parquet" and not head.startswith(_PARQUET):
        raise UserError(f"{name}: not a Parquet file (no PAR1 signature); upload the file as exported, or a CSV")
    if ext == "xlsx" and not head.startswith(_ZIP):
        raise UserError(f"{name}: not an Excel .xlsx workbook; save it from Excel as .xlsx, or export a CSV")
    if ext == "xls" and not head.startswith(_OLE):
        if head.startswith(_ZIP):
            return  # an .xlsx saved as .xls: the reader opens it by its content
        raise UserError(f"{name}: not an Excel .xls workbook; save it from Excel as .xlsx, or export a CSV")
    if ext in TEXT_EXTENSIONS:
        if head.startswith((_ZIP, _OLE)):
            raise UserError(f"{name}: this is an Excel workbook, not text; name it .xlsx (or .xls) and upload again")
        if head.startswith(_PARQUET):
            raise UserError(f"{name}: this is a Parquet file, not text; name it .parquet and upload again")
        detect_encoding(head, Path(name))  # refuses binary content with the reader's own message


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:,.0f} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:,.1f} KB"
    return f"{n / 1024 / 1024:,.1f} MB"


def _size_error(name: str, size: int | None, max_bytes: int) -> UserError:
    got = f"is {_size(size)}" if size is not None else "is larger"
    return UserError(
        f"{name}: the file {got}, over the upload limit of {_size(max_bytes)}; split it, or load it with "
        "'tierwise ingest' on the server"
    )


def _save(data: Data, target: Path, max_bytes: int, name: str) -> int:
    """Copy the upload to `target`, at most max_bytes (UserError beyond); returns its size."""
    if isinstance(data, bytes | bytearray):
        if len(data) > max_bytes:
            raise _size_error(name, len(data), max_bytes)
        target.write_bytes(bytes(data))
        return len(data)
    if isinstance(data, Path):
        size = data.stat().st_size
        if size > max_bytes:
            raise _size_error(name, size, max_bytes)
        shutil.copyfile(data, target)
        return size
    written = 0
    with target.open("wb") as out:
        while chunk := data.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                raise _size_error(name, None, max_bytes)
            out.write(chunk)
    return written


def ingest_upload(
    ws: Workspace,
    table: str,
    filename: str,
    data: Data,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sep: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    maps: dict[str, str] | None = None,
    date_format: str | None = None,
    quarantine_rows: int = 20,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Check and load one uploaded file into `table` (customers, orders, payments, interactions,
    campaign_contacts). `data`: the bytes, a file path, or a binary file object (read in chunks, stopped at
    max_bytes). {report: the ingest report (BatchReport.as_json: status loaded | already_loaded, rows_read,
    rows_loaded, rows_quarantined, duplicates_removed, values_blanked, mapping, reasons …; `file` is the stored
    file's name, never its folder), quarantine: {batch_id, total, rows: the first `quarantine_rows` rows of this
    batch}, file: the stored name (None when nothing was loaded), previous: None, or for an already loaded file
    the earlier batch (as `batches` lists it: batch_id, file, loaded_at, rows_loaded, rows_quarantined …); an
    already loaded file loads nothing, so its quarantine is empty (the earlier batch's is the batch's own)}."""
    if table not in TABLES:
        raise UserError(f"table '{table}': upload into one of {', '.join(TABLES)}")
    name = clean_name(filename)
    ext = extension(filename)
    folder = ws.root / UPLOAD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    target = folder / f"{stamp}-{uuid.uuid4().hex[:6]}-{name}"
    try:
        size = _save(data, target, max_bytes, name)
        with target.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        check_content(name, ext, head, size)
        # The "loaded before?" check and the load are one step under the workspace's write lock: identical uploads
        # at the same moment (two tabs, a retrying script) load once, the others find the batch already there.
        with access.write_lock(ws.root, access.wait_for(ws.config.workspace.wait_seconds)):
            report = ingest_file(
                ws,
                table,
                target,
                sep=sep,
                encoding=encoding,
                sheet=sheet,
                maps=maps,
                date_format=date_format,
                progress=progress,
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    loaded = report.status == "loaded"
    if not loaded:
        target.unlink(missing_ok=True)
    out = report.as_json()
    out["file"] = target.name if loaded else name  # the name only: the server's folders are not shown
    previous = None
    if not loaded:
        # The same content was loaded before: nothing new, and the earlier batch's quarantine is not this upload's.
        found = [b for b in batches(ws) if b["batch_id"] == report.batch_id]
        previous = found[0] if found else {"batch_id": report.batch_id}
    rows = (
        quarantine(ws, report.batch_id, page_size=max(1, min(quarantine_rows, 500)))
        if quarantine_rows and loaded and report.rows_quarantined
        else None
    )
    return jsonable(
        {
            "report": out,
            "file": target.name if loaded else None,
            "previous": previous,
            "quarantine": {
                "batch_id": report.batch_id if loaded else None,
                "total": report.rows_quarantined if loaded else 0,
                "rows": rows["rows"] if rows else [],
            },
        }
    )


def quarantine(
    ws: Workspace,
    batch_id: str | None = None,
    page: int = 1,
    page_size: int = 50,
    reason: str | None = None,
    blanked: bool = False,
) -> dict[str, Any]:
    """A page of the rows not loaded (as `tierwise quarantine --json`: ordered by batch and line), of one batch
    and one reason code when given; `blanked`: the unreadable optional values instead.
    {total, page, page_size, pages, rows: [{batch_id, table_name, file, line, column, reason_code, message,
    value, record}]}."""
    check_page(page, page_size)
    t = ws.table("blanked_values" if blanked else "quarantine")
    if batch_id:
        t = t.filter(t.batch_id == batch_id)
    if reason and not blanked:
        t = t.filter(t.reason_code == reason.upper())
    total = int(t.count().execute())
    rows = (
        t.order_by(["batch_id", "line", "column"])
        .limit(page_size, offset=(page - 1) * page_size)
        .to_pyarrow()
        .to_pylist()
        if (page - 1) * page_size < total
        else []
    )
    for r in rows:
        if "file" in r:
            r["file"] = file_name(r["file"])
    return jsonable(
        {"total": total, "page": page, "page_size": page_size, "pages": pages(total, page_size), "rows": rows}
    )


def batches(ws: Workspace) -> list[dict[str, Any]]:
    """The loaded batches, newest first, as `tierwise status --json` lists them (with the reconciliation); `file`
    is the loaded file's name without its folder."""
    b = ws.table("batches")
    cols = [
        c
        for c in (
            "batch_id",
            "table_name",
            "file",
            "file_format",
            "encoding",
            "rows_read",
            "rows_loaded",
            "rows_new",
            "rows_updated",
            "rows_unchanged",
            "rows_replaced",
            "rows_quarantined",
            "duplicates_removed",
            "values_blanked",
            "loaded_at",
        )
        if c in b.columns
    ]
    rows = b.select(*cols).order_by(b.loaded_at.desc()).to_pyarrow().to_pylist()
    for r in rows:
        if "file" in r:
            r["file"] = file_name(r["file"])  # the name only: the server's folders are not shown
    return jsonable(rows)
