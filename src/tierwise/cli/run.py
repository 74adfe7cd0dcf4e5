"""`tierwise run`: the main job, a new run of every customer's measures and classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import JsonOpt, WorkspaceOpt, date_option, err, out, print_json
from tierwise.progress import delayed_status


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def run_command(
    workspace: WorkspaceOpt = Path("."),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Measure as of this date, YYYY-MM-DD (default: day after last order).")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb or spark (default: [engine] kind; Spark settings in [engine.spark], docs/spark.md)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The main job: features, RFM and ABC classes for every customer, stored as a new run."""
    from tierwise.pipeline.execute import run_in_workspace  # lazy: see tierwise.cli

    day = date_option(as_of, "--as-of")
    with delayed_status(err, "run") as step:
        # Waits for another run (cron) rather than failing on the database's single-writer lock.
        report = run_in_workspace(workspace, day, on_stage=step, engine=engine)
    if as_json:
        print_json(report.as_json())
        return
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items() if k != "total")
    out.print(
        f"Run {report.run_id} as of {report.as_of}: {report.customers:,} customers → {report.snapshot_table} "
        f"in {report.timings['total']:.1f}s ({stages})"
    )
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
