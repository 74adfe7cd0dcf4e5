"""The run registry: every run of the main job, in the one order that decides which is the latest.

Runs are ordered by (as_of, created_at, run_id): the latest run is the one with the latest as-of date, and among runs
of the same date the one made last, so that backfilled history never hides the current picture.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.schema import TABLES
from tierwise.workspace import Workspace

ORDER = ("as_of", "created_at", "run_id")


@dataclass(frozen=True)
class Run:
    """One stored run: its id, as-of date, snapshot table and what its models kept."""

    run_id: str
    as_of: dt.date
    created_at: dt.datetime
    snapshot_table: str
    customers: int
    row: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        return cls(
            run_id=str(row["run_id"]),
            as_of=row["as_of"],
            created_at=row["created_at"],
            snapshot_table=str(row["snapshot_table"]),
            customers=int(row["customers"] or 0),
            row=row,
        )

    @property
    def models(self) -> dict[str, Any]:
        """The run's `models` JSON (parameters, notes, clusters, stability, backfill, engine); shared, read-only."""
        return run_models(str(self.row.get("models") or "{}"))

    def snapshot(self, ws: Workspace) -> ir.Table:
        return ws.table(self.snapshot_table)

    def has(self, ws: Workspace, column: str) -> bool:
        """Whether this run's snapshot has `column` (runs made by older versions lack later columns)."""
        return column in self.snapshot(ws).columns

    def config(self, ws: Workspace) -> Config:
        return run_config(ws, self.run_id)


def runs(ws: Workspace) -> list[Run]:
    """Every run, oldest first: the last one is the latest."""
    return [Run.from_row(r) for r in list_runs(ws)]


def latest(ws: Workspace) -> Run | None:
    found = runs(ws)
    return found[-1] if found else None


def previous_runs(ws: Workspace, as_of: dt.date, n: int = 1) -> list[dict[str, Any]]:
    """The latest run of each of the `n` most recent as-of dates before `as_of`, most recent first."""
    before = [r for r in list_runs(ws) if dt.date.fromisoformat(str(r["as_of"])) < as_of]
    return list(reversed(latest_per_date(before)))[:n]


def register(
    ws: Workspace,
    *,
    run_id: str,
    as_of: dt.date,
    snapshot_table: str,
    customers: int,
    batches: list[str],
    input_rows: dict[str, int],
    models: dict[str, Any],
    timings: dict[str, float],
) -> None:
    """The run becomes visible with this row, written in the same transaction as its snapshot."""
    row = {
        "run_id": run_id,
        "as_of": as_of,
        "created_at": dt.datetime.now().replace(microsecond=0),
        "snapshot_table": snapshot_table,
        "customers": customers,
        "config": ws.config.model_dump_json(),
        "input_batches": json.dumps(sorted(batches)),
        "input_rows": json.dumps(input_rows),
        "models": json.dumps(models, ensure_ascii=False),
        "timings": json.dumps(timings),
    }
    ws.con.insert("runs", ibis.memtable([row], schema=ws.table("runs").schema()))


def list_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run as a row, oldest first in the one order: the last one is the latest."""
    return ws.table("runs").order_by(list(ORDER)).drop("config").to_pyarrow().to_pylist()


def newest_first(runs: ir.Table) -> ir.Table:
    # The latest run is the one with the latest as-of date (then the newest): backfilled history stays behind.
    return runs.order_by([runs[c].desc() for c in ORDER])


def latest_run_id(ws: Workspace) -> str | None:
    rows = newest_first(ws.table("runs")).limit(1).select("run_id").to_pyarrow().to_pylist()
    return str(rows[0]["run_id"]) if rows else None


def latest_snapshot(ws: Workspace, run_id: str | None = None) -> tuple[dict[str, Any], ir.Table]:
    runs = ws.table("runs")
    if run_id:
        runs = runs.filter(runs.run_id == run_id)
    rows = newest_first(runs).limit(1).drop("config").to_pyarrow().to_pylist()
    if not rows:
        if run_id:
            raise UserError(f"no run '{run_id}'; list them with 'tierwise runs'")
        raise UserError("no run yet; run the main job first with 'tierwise run'")
    return rows[0], ws.table(str(rows[0]["snapshot_table"]))


def run_config(ws: Workspace, run_id: str) -> Config:
    """The settings a run was made with (the workspace's may have changed since)."""
    runs = ws.table("runs")
    text = runs.filter(runs.run_id == run_id).config.to_pyarrow().to_pylist()[0]
    return Config.model_validate_json(text)


def run_clusters(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The clustering summary a run kept (None for runs without clustering). Read-only: it may be shared."""
    clusters = run_models(str(meta.get("models") or "{}")).get("clusters")
    return clusters if isinstance(clusters, dict) else None


def clv_fits(meta: dict[str, Any]) -> dict[str, Any]:
    """The CLV models a run fitted: {"params": {"transactions": {...}, "spend": {...}}, "notes": [...]}; no
    parameters and no notes for runs made before the models existed. Read-only: the parameters may be shared."""
    models = run_models(str(meta.get("models") or "{}"))
    params = models.get("params") if isinstance(models.get("params"), dict) else {}
    return {"params": params, "notes": [str(n) for n in models.get("notes") or [] if n]}


@functools.lru_cache(maxsize=64)
def run_models(text: str) -> dict[str, Any]:
    """A run's `models` JSON, parsed once per text (a dashboard reads the same run's for every customer): the
    result is shared, so callers must not change it."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def runs_by_date(ws: Workspace) -> list[dict[str, Any]]:
    """The latest run of each as-of date, oldest first: the runs a history is made of."""
    return latest_per_date(list_runs(ws))


def latest_per_date(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of runs listed oldest first (list_runs), the last of each as-of date."""
    latest: dict[str, dict[str, Any]] = {}
    for r in runs:
        latest[str(r["as_of"])] = r
    return list(latest.values())


def canonical_tables(ws: Workspace) -> dict[str, ir.Table]:
    return {spec.name: ws.table(spec.name) for spec in TABLES.values()}


def snapshot_suffix(run_id: str) -> str:
    return run_id.replace("-", "_")
