"""Reading the [[sources]] of a refresh: a folder's new files, a database table's new rows.

Each file and each database read is one ingest batch (all or nothing), identified by its content, so reading a
source again adds nothing that is already stored. What a source contributed to a refresh is counted from the
batches table — the batches this read touched whose load time lies after the refresh started — so a refresh
killed after a batch was stored and resumed reports that batch once, as loaded by the refresh.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierwise.errors import UserError
from tierwise.ingest.database import safe_url
from tierwise.ingest.pipeline import BatchReport, ProgressFactory, ingest_database, ingest_file
from tierwise.refresh.settings import SourceSettings
from tierwise.workspace import Workspace

PROCESSED, FAILED = "processed", "failed"
# Left alone in a folder: Office's lock files, browsers' and copy tools' partial downloads, hidden files.
_UNFINISHED = (".tmp", ".part", ".crdownload", ".partial", ".filepart")
COUNTS = ("rows_read", "rows_loaded", "rows_new", "rows_updated", "rows_quarantined")


@dataclass
class SourceResult:
    name: str
    table: str
    kind: str
    status: str = "nothing_new"  # ok | nothing_new | failed | partial (some files refused)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    rows_quarantined: int = 0
    files_processed: list[str] = field(default_factory=list)
    files_failed: list[dict[str, str]] = field(default_factory=list)
    files_waiting: int = 0  # too young: maybe still being copied
    batches: list[dict[str, Any]] = field(default_factory=list)  # batch_id, rows_read, rows_quarantined
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def waiting_files(folder: Path, min_age_seconds: float, now: float | None = None) -> tuple[list[Path], int]:
    """The files to load now, in name order, and how many are too young to touch."""
    now = time.time() if now is None else now
    ready: list[Path] = []
    young = 0
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        name = path.name
        if not path.is_file() or name.startswith((".", "~$")) or name.lower().endswith(_UNFINISHED):
            continue
        if now - path.stat().st_mtime < min_age_seconds:
            young += 1
            continue
        ready.append(path)
    return ready, young


def _move(path: Path, into: Path) -> Path:
    """Move `path` into the folder `into`, never over a file already there (a daily export keeps its name)."""
    into.mkdir(exist_ok=True)
    target = into / path.name
    if target.exists():
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        n = 1
        while target.exists():
            target = into / f"{path.stem}.{stamp}{'' if n == 1 else f'-{n}'}{path.suffix}"
            n += 1
    shutil.move(str(path), target)
    return target


def _loaded_since(ws: Workspace, batch_ids: list[str], since: dt.datetime) -> list[dict[str, Any]]:
    """The batches among `batch_ids` stored at or after `since` (by this refresh, or by its killed attempt)."""
    if not batch_ids:
        return []
    b = ws.table("batches")
    picked = b.filter(b.batch_id.isin(batch_ids) & (b.loaded_at >= since))
    return picked.order_by("loaded_at").select("batch_id", "file", *COUNTS).to_pyarrow().to_pylist()


def _count(result: SourceResult, ws: Workspace, batch_ids: list[str], since: dt.datetime) -> None:
    for row in _loaded_since(ws, batch_ids, since):
        for name in COUNTS:
            setattr(result, name, getattr(result, name) + int(row[name] or 0))
        result.batches.append(
            {"batch_id": row["batch_id"], "rows_read": row["rows_read"], "rows_quarantined": row["rows_quarantined"]}
        )


def _options(source: SourceSettings) -> dict[str, Any]:
    return {
        "maps": dict(source.map),
        "date_format": source.date_format,
        "keep_duplicates": source.keep_duplicates,
        "key": list(source.key) if source.key is not None else None,
    }


def read_folder(
    ws: Workspace, source: SourceSettings, since: dt.datetime, progress: ProgressFactory | None = None
) -> SourceResult:
    assert source.folder is not None
    result = SourceResult(source.name, source.table, source.kind)
    folder = Path(source.folder)
    folder = folder if folder.is_absolute() else ws.root / folder
    if not folder.is_dir():
        result.status, result.error = (
            "failed",
            (f"source '{source.name}': folder {folder} does not exist; create it or correct `folder` in [[sources]]"),
        )
        return result
    if folder.resolve() == ws.root.resolve():
        # Its files are the workspace's own (tierwise.toml, the database): loading them fails and would move them
        # into failed/.
        result.status, result.error = (
            "failed",
            f"source '{source.name}': folder {folder} is the workspace itself; give a folder of its own, e.g. "
            f'folder = "inbox/{source.table}"',
        )
        return result
    ready, result.files_waiting = waiting_files(folder, source.min_age_seconds)
    touched: list[str] = []
    for path in ready:
        try:
            report: BatchReport = ingest_file(
                ws, source.table, path, sep=source.sep, encoding=source.encoding, sheet=source.sheet,
                header=not source.no_header, header_row=source.header_row, progress=progress, **_options(source),
            )  # fmt: skip
        except UserError as exc:
            moved = _move(path, folder / FAILED)
            moved.with_name(moved.name + ".error.txt").write_text(str(exc) + "\n", encoding="utf-8")
            result.files_failed.append({"file": path.name, "error": str(exc)})
            continue
        touched.append(report.batch_id)
        _move(path, folder / PROCESSED)
        result.files_processed.append(path.name)
    # Also the folder's batches a killed attempt of this refresh stored (its files already moved away): files
    # directly in it, not in a subfolder that another source may read.
    b = ws.table("batches")
    inside = b.filter(b.file.startswith(str(folder) + os.sep) & (b.loaded_at >= since)).select("batch_id", "file")
    touched += [
        r["batch_id"]
        for r in inside.to_pyarrow().to_pylist()
        if Path(r["file"]).parent == folder and r["batch_id"] not in touched
    ]
    _count(result, ws, touched, since)
    result.status = "partial" if result.files_failed else "ok" if result.rows_read else "nothing_new"
    if result.files_failed and not result.files_processed:
        result.status = "failed"
    return result


def database_url(source: SourceSettings, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    if source.url is not None:
        return source.url
    assert source.url_env is not None
    url = env.get(source.url_env, "").strip()
    if not url:
        raise UserError(
            f"source '{source.name}': the environment variable {source.url_env} is not set; set it to the "
            "database URL (postgresql://user:password@host:5432/db) before the refresh"
        )
    return url


def read_database(
    ws: Workspace, source: SourceSettings, since: dt.datetime, progress: ProgressFactory | None = None
) -> SourceResult:
    assert source.from_table is not None
    result = SourceResult(source.name, source.table, source.kind)
    try:
        url = database_url(source)
        report = ingest_database(
            ws, source.table, url, source.from_table, since_column=source.since_column, progress=progress,
            **_options(source),
        )  # fmt: skip
    except UserError as exc:
        result.status, result.error = "failed", str(exc)
        return result
    # The batches of this table (a resumed refresh finds the killed attempt's batch here, the read itself now
    # being up to date).
    b = ws.table("batches")
    key = f"{safe_url(url)}#{source.from_table}"
    ids = [r["batch_id"] for r in b.filter(b.file == key).select("batch_id").to_pyarrow().to_pylist()]
    if report.batch_id and report.batch_id not in ids:
        ids.append(report.batch_id)
    _count(result, ws, ids, since)
    result.status = "ok" if result.rows_read else "nothing_new"
    return result


def read_sources(
    ws: Workspace,
    sources: list[SourceSettings],
    since: dt.datetime,
    *,
    on_source: Callable[[SourceResult], None] | None = None,
    progress: ProgressFactory | None = None,
) -> list[SourceResult]:
    """Every source in order; a failing source is recorded and the next one is read."""
    results: list[SourceResult] = []
    for source in sources:
        read = read_folder if source.kind == "folder" else read_database
        result = read(ws, source, since, progress)
        results.append(result)
        if on_source is not None:
            on_source(result)
    return results
