"""`tierwise export` (a run's customers to CSV, XLSX or Parquet) and `tierwise report` (one HTML report of a run):
a run written to a file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import JsonOpt, WorkspaceOpt, err, out, print_json
from tierwise.errors import UserError
from tierwise.progress import delayed_status


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("report")(report)


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    parquet = "parquet"


def export(
    file: Annotated[Path | None, typer.Argument(help="File to write (.csv, .xlsx or .parquet).")] = None,
    fmt: Annotated[
        ExportFormat | None, typer.Option("--format", help="csv, xlsx or parquet (default: from the file name).")
    ] = None,
    where: Annotated[
        str | None, typer.Option(help="Only customers matching this condition, e.g. \"grade = 'A'\".")
    ] = None,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns (default: all).")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    list_columns: Annotated[bool, typer.Option("--list-columns", help="List the run's columns and stop.")] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write a run's customers (every snapshot column, customer_id first) to CSV, XLSX or Parquet."""
    from tierwise.exports import write_table  # lazy: see tierwise.cli
    from tierwise.store.runs import latest_snapshot
    from tierwise.store.snapshots import select_customers
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        meta, snap = latest_snapshot(ws, run_id)
        if list_columns:
            schema = snap.schema()
            if as_json:
                print_json({name: str(schema[name]) for name in schema.names})
            else:
                for name in schema.names:
                    out.print(f"{name}  [dim]{schema[name]}[/dim]")
            return
        if file is None:
            raise UserError("say where to write, e.g. tierwise export customers.xlsx")
        kind = fmt.value if fmt else file.suffix.lstrip(".").lower()
        if kind not in {f.value for f in ExportFormat}:
            raise UserError(f"{file}: cannot tell the format from the name; add --format csv, xlsx or parquet")
        chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        rows = select_customers(snap, where=where, columns=chosen).to_pyarrow()
        write_table(rows, file, kind)
    summary = {"run_id": meta["run_id"], "file": str(file), "format": kind, "rows": rows.num_rows}
    if as_json:
        print_json(summary)
    else:
        out.print(f"{rows.num_rows:,} customers of run {meta['run_id']} written to {file}")


def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    language: Annotated[
        str | None, typer.Option(help="Labels in zh or en (default: language in tierwise.toml, zh unless changed).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One self-contained HTML report of a run that opens offline: KPIs, classes, Pareto, R×F, top customers."""
    from tierwise.report.render import write_report  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with (
        Workspace.open(workspace, read_only=True) as ws,
        delayed_status(err, "building the report") as step,
    ):
        summary = write_report(ws, out_file, run_id=run_id, language=language, progress=step)
    if as_json:
        print_json(summary.as_json())
        return
    out.print(str(summary.path), markup=False, soft_wrap=True)
