"""`tierwise ingest` (files or a database table into a canonical table), `tierwise quarantine` (the rows that
were not loaded) and `tierwise status` (what the workspace holds)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.batches import batch_rows, batch_table
from tierwise.cli.common import JsonOpt, WorkspaceOpt, err, out, print_json
from tierwise.errors import UserError
from tierwise.ingest.mapping import parse_map_options
from tierwise.progress import progress_bars


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("quarantine")(quarantine)
    app.command("status")(status)


class TableName(StrEnum):
    customers = "customers"
    orders = "orders"
    payments = "payments"
    interactions = "interactions"
    campaigns = "campaigns"


def ingest(
    table: Annotated[TableName, typer.Argument(help="Which table the files hold.")],
    files: Annotated[
        list[Path] | None, typer.Argument(help="CSV/TSV/TXT, XLSX/XLS or Parquet files (or --from a database).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A database instead of files: postgresql://user@host:5432/db (or mysql://…); "
            "the password from PGPASSWORD or ~/.pgpass keeps it out of the command.",
        ),
    ] = None,
    db_table: Annotated[
        str | None, typer.Option("--table", help="With --from: the table (or schema.table) to read.")
    ] = None,
    since_column: Annotated[
        str | None,
        typer.Option(
            help="With --from: read only rows whose value in this column is greater than the last load's "
            "greatest (default: [ingest] incremental for the table; none: the whole table)."
        ),
    ] = None,
    sep: Annotated[
        str | None, typer.Option(help="Separator: ',' ';' '\\t' '|' or whitespace (default: sniffed).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding, e.g. gbk, utf-8 (default: detected).")] = None,
    sheet: Annotated[
        str | None,
        typer.Option(
            help="Spreadsheets: a sheet name, its number (1 = first) or 'all' (default: every sheet whose header "
            "is recognised, as one batch)."
        ),
    ] = None,
    header_row: Annotated[
        int | None,
        typer.Option(help="Spreadsheets: the row holding the header (1 = first; default: found automatically).", min=1),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="Fields identifying a record, comma-separated (e.g. order_id,line_number), or 'none' "
            "(default: [ingest.keys], else the table's natural key; docs/ingest.md)."
        ),
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="SOURCE_COLUMN=field, repeatable; 'ignore' skips a column.")
    ] = None,
    date_format: Annotated[
        str | None, typer.Option(help="Order of day and month for dates like 03/04/2024: dmy, mdy or ymd.")
    ] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="The file has no header line.")] = False,
    keep_duplicates: Annotated[
        bool | None,
        typer.Option(
            "--keep-duplicates/--remove-duplicates",
            help="Keep rows identical in every column (default: [ingest] remove_exact_duplicates).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load files into a canonical table, cleaning values; rejected rows go to quarantine."""
    from tierwise.ingest.pipeline import BatchReport, ingest_database, ingest_file  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    files = files or []
    if from_ is None and (db_table or since_column):
        raise UserError("--table and --since-column go with --from DATABASE_URL")
    if from_ is not None and (files or not db_table):
        raise UserError("--from reads one database table: give --table NAME and no files")
    if from_ is None and not files:
        raise UserError("name the files to ingest, or --from DATABASE_URL --table NAME")
    maps = parse_map_options(map_ or [])
    keys = [k.strip() for k in key.split(",") if k.strip()] if key is not None else None
    reports: list[BatchReport] = []
    trying: list[str] = []
    with Workspace.open(workspace) as ws:
        try:
            with progress_bars(err) as bars:
                if from_ is not None and db_table is not None:
                    reports.append(
                        ingest_database(
                            ws,
                            table.value,
                            from_,
                            db_table,
                            since_column=since_column,
                            maps=maps,
                            date_format=date_format,
                            keep_duplicates=keep_duplicates,
                            key=keys,
                            progress=lambda name, total: bars.task(f"reading {db_table} (rows)", total),
                        )
                    )
                for path in files:
                    trying.append(str(path))
                    reports.append(
                        ingest_file(
                            ws,
                            table.value,
                            path,
                            sep=sep,
                            encoding=encoding,
                            sheet=sheet,
                            header=not no_header,
                            maps=maps,
                            date_format=date_format,
                            keep_duplicates=keep_duplicates,
                            header_row=header_row,
                            key=keys,
                            progress=lambda name, total: bars.task(f"reading {Path(name).name}", total),
                        )
                    )
        except UserError as exc:
            if as_json:
                # Machines learn what was stored before the failure and what was never tried.
                failed = len(trying)
                print_json(
                    {
                        "error": str(exc),
                        "committed": [r.as_json() for r in reports],
                        "failed": trying[-1] if trying else (from_ or ""),
                        "not_tried": [str(p) for p in files[failed:]],
                    }
                )
            if reports:
                err.print(f"loaded before the error: {', '.join(r.file for r in reports)}")
            raise
    if as_json:
        print_json([r.as_json() for r in reports])
        return
    for r in reports:
        _print_report(r)


def _print_report(r: Any) -> None:
    if r.status == "already_loaded":
        out.print(f"[yellow]{r.file}[/]: already loaded as batch {r.batch_id}; nothing added")
        return
    if r.status == "up_to_date":
        out.print(f"[yellow]{r.file}[/]: no rows newer than the last load; nothing added")
        return
    out.print(
        f"[bold]{r.file}[/] → {r.table}  (batch {r.batch_id}, {r.file_format}"
        + (f", {r.encoding}" if r.encoding else "")
        + (f", separator {r.delimiter!r}" if r.delimiter else "")
        + (f", sheet {r.sheet!r}" if r.sheet else "")
        + ")"
    )
    mapping = Table("field", "column", "how", title="column mapping", title_justify="left")
    fields = r.mapping.get("fields", {})
    how = r.mapping.get("how", {})
    for f, c in fields.items():
        mapping.add_row(f, str(c), how.get(f, "derived"))
    for f, c in r.mapping.get("customer_fields", {}).items():
        mapping.add_row(f"customers.{f}", str(c), "auto")
    out.print(mapping)
    if r.mapping.get("unmapped"):
        keep = " (kept as attributes)" if r.table == "customers" else " (not loaded)"
        out.print(f"unmapped columns{keep}: {', '.join(r.mapping['unmapped'])}")
    if r.date_orders:
        out.print("date order: " + ", ".join(f"{c}={o}" for c, o in r.date_orders.items()))
    rec = Table(
        "rows read",
        "new",
        "updated",
        "unchanged",
        "quarantined",
        "duplicates removed",
        title="reconciliation (read = new + updated + unchanged + quarantined + duplicates)",
        title_justify="left",
    )
    rec.add_row(
        *(
            f"{n:,}"
            for n in (
                r.rows_read,
                r.rows_new,
                r.rows_updated,
                r.rows_unchanged,
                r.rows_quarantined,
                r.duplicates_removed,
            )
        )
    )
    out.print(rec)
    if r.record_key:
        key = " + ".join(r.record_key["fields"]) + ("" if r.record_key["per_row"] else " (all lines of one)")
        extra = f"; {r.rows_replaced:,} stored rows replaced (tierwise unload {r.batch_id} puts them back)"
        out.print(f"record key: {key}" + (extra if r.rows_updated else ""))
    else:
        out.print("record key: none (rows are appended; docs/ingest.md, 'Record identity')")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    notes = []
    if r.reasons:
        notes.append("quarantine: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.reasons.items())))
    if r.returns:
        notes.append(f"returns/cancellations kept as negative revenue: {r.returns:,}")
    if r.outliers_flagged:
        notes.append(f"outliers flagged: {r.outliers_flagged:,}")
    if r.values_blanked:
        notes.append(f"unreadable optional values left empty: {r.values_blanked:,} (tierwise quarantine --blanked)")
    if r.customers_created:
        notes.append(f"minimal customer records created: {r.customers_created:,}")
    if r.customers_updated:
        notes.append(f"customers updated: {r.customers_updated:,}")
    for n in notes:
        out.print("  " + n)


def quarantine(
    workspace: WorkspaceOpt = Path("."),
    batch: Annotated[str | None, typer.Option(help="Only this batch id.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason code, e.g. BAD_DATE.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the rows to a CSV or XLSX file.")] = None,
    blanked: Annotated[bool, typer.Option("--blanked", help="Show unreadable optional values instead.")] = False,
    limit: Annotated[int, typer.Option(help="Rows to show on screen.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List or export rows that were not loaded (with file, line, column and reason)."""
    from tierwise.exports import write_table  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        t = ws.table("blanked_values" if blanked else "quarantine")
        if batch:
            t = t.filter(t.batch_id == batch)
        if reason and not blanked:
            t = t.filter(t.reason_code == reason.upper())
        t = t.order_by(["batch_id", "line"])
        total = int(t.count().execute())
        if export is not None:
            write_table(t.to_pyarrow(), export)
            out.print(f"{total:,} rows written to {export}")
            return
        rows = t.limit(limit).to_pyarrow().to_pylist()
        if as_json:
            print_json({"total": total, "rows": rows})
            return
        if not total:
            out.print("Nothing in quarantine." if not blanked else "No unreadable optional values.")
            return
        view = Table(*rows[0].keys(), title=f"{total:,} rows (showing {len(rows)})", title_justify="left")
        for row in rows:
            view.add_row(*["" if v is None else str(v)[:60] for v in row.values()])
        out.print(view)


def status(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """What the workspace holds: rows per table and the batches loaded."""
    from tierwise.workspace import Workspace  # lazy: see tierwise.cli

    with Workspace.open(workspace, read_only=True) as ws:
        counts = {
            name: int(ws.table(name).count().execute())
            for name in ("customers", "orders", "payments", "interactions", "campaign_contacts", "quarantine")
        }
        batches = batch_rows(ws)
    if as_json:
        print_json({"workspace": str(ws.root), "tables": counts, "batches": batches})
        return
    t = Table("table", "rows", title=f"workspace {ws.root}", title_justify="left")
    for name, n in counts.items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    if batches:
        out.print(batch_table(batches, detailed=False))
