"""Runs of the main job (list, detail, start one in the background), background jobs, and the models of a run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from tierwise.checks import check_as_of
from tierwise.errors import UserError
from tierwise.web.api._common import (
    ERRORS,
    Analyst,
    ApiRoute,
    ErrorBody,
    Flexible,
    JobAccepted,
    JobStatus,
    NotFound,
    RunId,
    Viewer,
    accepted,
    audit,
    call,
    jobs,
    workspace,
)
from tierwise.web.auth import Principal
from tierwise.web.services import runs as service

router = APIRouter(route_class=ApiRoute, responses=ERRORS)


class RunSummary(Flexible):
    run_id: str
    as_of: str
    created_at: str
    customers: int
    snapshot_table: str
    timings: dict[str, float] = Field(description="Seconds per stage / 各步骤耗时（秒）")
    seconds: float | None = None
    input_rows: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    backfill: bool = False
    latest: bool = Field(description="The run the dashboard shows by default / 是否为最新运行")


class RunRequest(BaseModel):
    as_of: dt.date | None = Field(
        None, description="Measure as of this date (default: the day after the last order) / 计算基准日"
    )


@router.get("/runs", tags=["runs"], summary="List the runs, newest first", response_model=list[RunSummary])
def list_runs(request: Request, principal: Viewer) -> Any:
    """Every stored run with its as-of date, size and timings; the first is the latest."""
    return service.list_runs(workspace(request))


@router.get("/runs/{run_id}", tags=["runs"], summary="One run in detail", response_model=RunSummary)
def run_detail(request: Request, run_id: str, principal: Viewer) -> Any:
    """The run's input batches, CLV model parameters, clustering and stability summaries, and for admins (as the
    settings page) the settings it was made with (`config`)."""
    detail = call(service.run_detail, workspace(request), run_id)
    if not principal.can("admin"):
        detail.pop("config", None)
    return detail


@router.post("/runs", tags=["runs"], status_code=202, summary="Start a run of the main job",
             response_model=JobAccepted)  # fmt: skip
def start_run(request: Request, principal: Analyst, body: RunRequest | None = None) -> JobAccepted:
    """Runs in the background (one run at a time per workspace); poll the job for stages and the run report."""
    as_of = body.as_of if body is not None else None
    if as_of is not None:  # refused now, with the allowed range, rather than as a failed job
        _check_as_of(request, as_of)
    job_id = jobs(request).start("run", service.run_job, request.app.state.handle.root, as_of, owner=principal.username)
    audit(request, principal, "run", f"as_of={as_of or 'default'} job={job_id}")
    return accepted(request, job_id)


@router.get("/jobs", tags=["jobs"], summary="Background jobs", response_model=list[JobStatus])
def list_jobs(request: Request, principal: Analyst) -> Any:
    """Your jobs, newest first (admins: everyone's). Viewers start none (runs, uploads and previews are on the
    analysts' and admins' pages)."""
    return [j for j in jobs(request).list() if _may_see(principal, j)]


@router.get("/jobs/{job_id}", tags=["jobs"], name="job_status", summary="State of a background job",
            response_model=JobStatus)  # fmt: skip
def job_status(request: Request, job_id: str, principal: Analyst) -> Any:
    """state (queued, running, done, failed, cancelled), stage, progress (0–1) and the result or the error."""
    status = call(jobs(request).status, job_id)
    if not _may_see(principal, status):
        raise NotFound(f"no job '{job_id}'; it may have finished long ago — start it again")
    return status


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a background job", response_model=JobStatus,
             responses={409: {"model": ErrorBody, "description": "The job has already finished"}})  # fmt: skip
def cancel_job(request: Request, job_id: str, principal: Analyst) -> Any:
    """Stops a queued or running job (run, upload, settings preview): the query it is running is interrupted and
    what it did is rolled back. Answers at once with `cancel_requested: true`; poll the job until its state is
    `cancelled` (a few seconds at most). Your own jobs; admins: anyone's. A finished job: 409."""
    manager = jobs(request)
    status = call(manager.status, job_id)
    if principal.role != "admin" and status.get("owner") != principal.username:
        raise HTTPException(403, "only the user who started this job, or an admin, can cancel it")
    try:
        cancelled = manager.cancel(job_id)
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    if not status["cancel_requested"]:  # asking again changes nothing
        audit(request, principal, "job_cancel", f"job={job_id} kind={status['kind']}")
    return cancelled


def _check_as_of(request: Request, as_of: dt.date) -> None:
    try:
        check_as_of(workspace(request).table("orders"), as_of)
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None


def _may_see(principal: Principal, job: dict[str, Any]) -> bool:
    return principal.role == "admin" or job.get("owner") in (None, principal.username)


@router.get("/models", tags=["models"], summary="Models of a run", response_model=dict[str, Any])
def models(request: Request, principal: Viewer, run_id: RunId = None) -> Any:
    """The fitted CLV models and their notes, predictive totals, the latest backtest, the cluster profiles and
    the latest learned classification model of the run."""
    return call(service.models, workspace(request), run_id)
