"""The Python API for notebooks and scripts: one workspace object that does what the command line does.

    import tierwise

    with tierwise.Workspace.init("shop") as ws:
        ws.ingest("orders", "orders.csv")
        ws.run()
        top = ws.snapshot().order_by("priority_rank").limit(10).to_pandas()

Everything here is a thin door onto the same code the CLI runs (same checks, same locks, same stored results), so a
notebook and a `tierwise serve` can share a workspace. docs/python.md has the tour.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import TracebackType
from typing import Any

import ibis.expr.types as ir

from tierwise import workspace as _workspace
from tierwise.config import Config
from tierwise.history.compare import compare as _compare
from tierwise.ingest.pipeline import BatchReport, ingest_file
from tierwise.pipeline.execute import RunReport
from tierwise.pipeline.execute import run as _run
from tierwise.report.render import ReportSummary, write_report
from tierwise.store.runs import Run, latest_snapshot
from tierwise.store.runs import runs as stored_runs

__all__ = ["BatchReport", "ReportSummary", "Run", "RunReport", "Workspace"]


class Workspace:
    """A tierwise workspace: a folder with `tierwise.toml` and its DuckDB database.

    Open it with `Workspace.open(path)` or create it with `Workspace.init(path)`, preferably as a context manager so
    the database is closed (and other processes may write) when the block ends."""

    def __init__(self, core: _workspace.Workspace) -> None:
        self.core = core

    @classmethod
    def init(cls, path: Path | str) -> Workspace:
        """Create the workspace (folder, default `tierwise.toml`, database) if it does not exist yet, and open it."""
        return cls(_workspace.Workspace.init(path))

    @classmethod
    def open(cls, path: Path | str = ".", *, read_only: bool = False, wait_seconds: float | None = None) -> Workspace:
        """Open an existing workspace. `read_only`: share it with other readers; `wait_seconds`: how long to wait
        while another process is writing (default: [workspace] wait_seconds)."""
        return cls(_workspace.Workspace.open(path, read_only=read_only, wait_seconds=wait_seconds))

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.core.close()

    @property
    def root(self) -> Path:
        return self.core.root

    @property
    def config(self) -> Config:
        """The workspace's settings (tierwise.toml), validated."""
        return self.core.config

    def ingest(self, table: str, path: Path | str, **options: Any) -> BatchReport:
        """Load one file into a canonical table (customers, orders, payments, interactions, campaigns), as
        `tierwise ingest TABLE FILE` does. Options are those of the command: sep, encoding, sheet, header, maps,
        date_format, keep_duplicates, header_row, key."""
        return ingest_file(self.core, table, Path(path).expanduser(), **options)

    def run(self, as_of: dt.date | str | None = None, *, engine: str | None = None) -> RunReport:
        """The main job (`tierwise run`): measures, classes, grade, strategies, stored as a new run."""
        day = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        return _run(self.core, day, engine=engine)

    def runs(self) -> list[Run]:
        """Every stored run, oldest first; the last one is the latest."""
        return stored_runs(self.core)

    def snapshot(self, run: Run | str | None = None) -> ir.Table:
        """A run's snapshot (default: the latest run) as an Ibis table: filter, select, then `.to_pandas()` or
        `.to_pyarrow()`."""
        run_id = run.run_id if isinstance(run, Run) else run
        return latest_snapshot(self.core, run_id)[1]

    def compare(
        self,
        run_a: Run | str | None = None,
        run_b: Run | str | None = None,
        *,
        column: str = "grade",
        language: str = "zh",
        top: int = 20,
    ) -> dict[str, Any]:
        """Migration of `column` between two runs (default: the latest and the one before), as `tierwise compare`."""
        a = run_a.run_id if isinstance(run_a, Run) else run_a
        b = run_b.run_id if isinstance(run_b, Run) else run_b
        return _compare(self.core, a, b, column=column, language=language, top=top)

    def report(self, out: Path | str, *, run: Run | str | None = None, language: str | None = None) -> ReportSummary:
        """Write the offline HTML report of a run (default: the latest) to `out`, as `tierwise report`."""
        run_id = run.run_id if isinstance(run, Run) else run
        return write_report(self.core, Path(out), run_id=run_id, language=language)

    def table(self, name: str) -> ir.Table:
        """Any table of the workspace (the canonical tables, `runs`, `batches`, a run's snapshot) as Ibis."""
        return self.core.table(name)
