"""Runs: the list (with timings, sizes and as-of dates), one run in detail, its models, and starting a run as a
background job."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from tierwise.errors import UserError
from tierwise.report import data as report_data
from tierwise.store.learned import learned_payload
from tierwise.store.runs import clv_fits, run_clusters
from tierwise.web.services._common import jsonable, parse_json
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.web.jobs")


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    timings = parse_json(r.get("timings")) or {}
    models = parse_json(r.get("models")) or {}
    return {
        "run_id": r["run_id"],
        "as_of": r["as_of"],
        "created_at": r["created_at"],
        "customers": int(r["customers"]),
        "snapshot_table": r["snapshot_table"],
        "timings": timings,
        "seconds": timings.get("total"),
        "input_rows": parse_json(r.get("input_rows")) or {},
        "notes": list(models.get("notes") or []),
        "backfill": bool(models.get("backfill")),
    }


def list_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run, newest first in the order of `tierwise runs` reversed (by as-of date, then creation): the
    first is the latest (`latest: true`). [{run_id, as_of, created_at, customers, snapshot_table, timings,
    seconds, input_rows, notes, backfill, latest}]"""
    from tierwise.store.runs import list_runs as stored_runs

    rows = [_summary(r) for r in reversed(stored_runs(ws))]
    for i, r in enumerate(rows):
        r["latest"] = i == 0
    return jsonable(rows)


def run_detail(ws: Workspace, run_id: str) -> dict[str, Any]:
    """One run: the list's fields plus input_batches, the CLV model parameters, the clustering summary, the
    stability summary, and the settings it was made with (grade, abc, value, lifecycle, rules, playbook …)."""
    runs = ws.table("runs")
    rows = runs.filter(runs.run_id == run_id).to_pyarrow().to_pylist()
    if not rows:
        raise UserError(f"no run '{run_id}'; list the runs with GET /api/v1/runs or 'tierwise runs'")
    r = rows[0]
    models = parse_json(r.get("models")) or {}
    config = parse_json(r.get("config")) or {}
    from tierwise.store.runs import latest_run_id

    return jsonable(
        {
            **_summary(r),
            "latest": latest_run_id(ws) == run_id,
            "input_batches": parse_json(r.get("input_batches")) or [],
            "model_params": models.get("params") or {},
            "clusters": models.get("clusters"),
            "stability": models.get("stability"),
            "config": config,
        }
    )


def models(ws: Workspace, run_id: str | None = None) -> dict[str, Any]:
    """The models page of a run: {run_id, as_of, clv: {params, notes} (the fitted CLV models), predicted (totals
    of the predictive columns or None), backtest (the latest `tierwise backtest` or None), clusters (profiles
    and choice of k, or None), learned (the latest `tierwise classify` of the run: metrics, importances, rules
    — or None)}."""
    from tierwise.store.runs import latest_snapshot

    meta, snap = latest_snapshot(ws, run_id)
    run = str(meta["run_id"])
    return jsonable(
        {
            "run_id": run,
            "as_of": meta["as_of"],
            "clv": clv_fits(meta),
            "predicted": report_data.predictive_totals(snap),
            "backtest": report_data.latest_backtest(ws),
            "clusters": run_clusters(meta),
            "learned": learned_payload(ws, run),
        }
    )


def run_job(root: Path | str, as_of: dt.date | str | None = None, progress: Any = None) -> dict[str, Any]:
    """A run of the main job for JobManager.start("run", run_job, root, as_of): opens the workspace in the
    job's thread (tierwise.pipeline.execute.run_in_workspace: waits for another run), reports its stages, and
    returns the run report (RunReport.as_json)."""
    from tierwise.pipeline.execute import run_in_workspace
    from tierwise.web.services.jobs import run_progress

    day = None
    if as_of:
        try:
            day = as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of))
        except ValueError as exc:
            raise UserError(f"as_of '{as_of}' is not a date like 2024-06-30") from exc
    on_stage = run_progress(progress) if progress is not None else None
    report = run_in_workspace(root, day, on_stage=on_stage).as_json()
    try:
        warm(root)
    except Exception:  # the run is stored: a cancel arriving now (or a failure here) must not say otherwise
        log.warning("preparing the cross-sell suggestions after run %s failed", report["run_id"], exc_info=True)
    return jsonable(report)


def warm(root: Path | str) -> None:
    """Make the latest run's cross-sell table (customers.prepare_cross_sell) in a workspace of its own."""
    from tierwise.web.services.customers import prepare_cross_sell

    ws = Workspace.open(root)
    try:
        prepare_cross_sell(ws)
    finally:
        ws.close()
