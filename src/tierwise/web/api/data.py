"""Data in and out: exports of customer lists, uploads of data files (ingested in the background), the loaded
batches and the quarantine of rows that could not be loaded."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from tierwise.web.api._common import (
    ERRORS,
    Analyst,
    ApiRoute,
    JobAccepted,
    Page,
    PageSize,
    RunId,
    accepted,
    audit,
    call,
    jobs,
    names,
    workspace,
)
from tierwise.web.api.snapshot import Columns, Search, Where, guard_personal
from tierwise.web.auth import masked
from tierwise.web.services import exports, uploads

router = APIRouter(route_class=ApiRoute, responses=ERRORS)

UploadTable = Literal["customers", "orders", "payments", "interactions", "campaigns"]
CHUNK = 1 << 20


@router.get(
    "/exports",
    tags=["data"],
    summary="Download customers as CSV, XLSX or Parquet",
    response_class=FileResponse,
    responses={200: {"description": "The file (attachment)", "content": {m: {} for m in exports.FORMATS.values()}}},
)
def export(
    request: Request,
    principal: Analyst,
    fmt: Annotated[
        Literal["csv", "xlsx", "parquet"], Query(alias="format", description="File type / 文件格式")
    ] = "csv",
    where: Where = None,
    columns: Columns = None,
    search: Search = None,
    run_id: RunId = None,
) -> FileResponse:
    """The run's customers matching `where` (default: all) with `columns` (default: every snapshot column),
    ordered by customer id. Cells a spreadsheet would run as formulas are neutralised; CSV is UTF-8 with BOM."""
    ws = workspace(request)
    guard_personal(ws, principal, where, None)
    made = call(exports.export, ws, where=where, columns=names(columns), fmt=fmt,
                mask_personal=masked(principal), search=search, run_id=run_id)  # fmt: skip
    # The condition is recorded as given (it says which list left the building); rows are counted, not listed.
    audit(request, principal, "export",
          f"format={fmt} rows={made.rows} run={made.run_id} where={(where or '').strip() or '(all)'}")  # fmt: skip
    return FileResponse(made.path, media_type=made.media_type, filename=made.filename,
                        background=BackgroundTask(made.cleanup))  # fmt: skip


@router.post("/uploads/{table}", tags=["data"], status_code=202, summary="Upload a data file and load it",
             response_model=JobAccepted)  # fmt: skip
def upload(
    request: Request,
    principal: Analyst,
    table: Annotated[UploadTable, Path(description="The table the file holds / 数据表")],
    file: Annotated[UploadFile, File(description="CSV, TSV, TXT, XLSX, XLS or Parquet / 数据文件")],
) -> JobAccepted:
    """The file is checked at once (type, content, size) and then loaded in the background exactly as
    `tierwise ingest` does; the job's result is the ingest report with the first quarantined rows."""
    filename = file.filename or "upload"
    max_bytes: int = request.app.state.max_upload
    name = uploads.clean_name(filename)
    ext = uploads.extension(filename)
    folder = FilePath(tempfile.mkdtemp(prefix="tierwise-upload-"))
    try:
        path = folder / f"upload.{ext}"
        size = _receive(file, path, max_bytes, name)
        with path.open("rb") as fh:
            head = fh.read(uploads.SNIFF_BYTES)
        uploads.check_content(name, ext, head, size)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    handle = request.app.state.handle

    def work(progress: Any = None) -> dict[str, Any]:
        try:
            return uploads.ingest_upload(
                handle.workspace(), table, filename, path, max_bytes=max_bytes, progress=_ingest_progress(progress)
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    job_id = jobs(request).start("upload", work, owner=principal.username)
    audit(request, principal, "upload", f"table={table} file={name} bytes={size} job={job_id}")
    return accepted(request, job_id)


def _receive(file: UploadFile, target: FilePath, max_bytes: int, name: str) -> int:
    """Copy the upload to `target`, refusing it beyond max_bytes."""
    written = 0
    with target.open("wb") as out:
        while chunk := file.file.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise HTTPException(413, f"{name}: the file is over the upload limit of "
                                         f"{max_bytes / 1024 / 1024:,.0f} MB ([web] max_upload_mb); split it or "
                                         "load it with 'tierwise ingest' on the server")  # fmt: skip
            out.write(chunk)
    return written


def _ingest_progress(progress: Any) -> Any:
    """The ingest's progress protocol (stage, total bytes) → tick(bytes done), as the job's (stage, fraction)."""
    if progress is None:
        return None

    def factory(stage: str, total: int) -> Any:
        progress("reading", 0.0)

        def tick(done: int) -> None:
            progress("reading", min(done / total, 1.0) if total else None)

        return tick

    return factory


@router.get("/uploads", tags=["data"], summary="The loaded batches, newest first", response_model=list[dict[str, Any]])
def list_batches(request: Request, principal: Analyst) -> Any:
    """Every loaded file with its table, format, encoding and row counts (read, loaded, quarantined …); analysts
    and admins, as the data page."""
    return uploads.batches(workspace(request))


@router.get("/quarantine", tags=["data"], summary="Rows that could not be loaded", response_model=dict[str, Any])
def quarantine(
    request: Request,
    principal: Analyst,
    batch_id: Annotated[str | None, Query(description="One batch (default: all) / 批次")] = None,
    reason: Annotated[str | None, Query(description="One reason code, e.g. BAD_DATE / 原因代码")] = None,
    blanked: Annotated[bool, Query(description="The unreadable optional values instead / 被清空的值")] = False,
    page: Page = 1,
    page_size: PageSize = 50,
) -> Any:
    """A page of the quarantined rows with the line, column, reason and the raw record. The raw records may
    hold personal data, so this needs the analyst role."""
    return uploads.quarantine(workspace(request), batch_id, page, page_size, reason, blanked)
