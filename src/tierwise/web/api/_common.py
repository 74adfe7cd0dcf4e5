"""What every router of the REST API shares: the caller's workspace, the background jobs, roles, the audit log,
the mapping of service errors to HTTP statuses, and small response models."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from tierwise.errors import UserError
from tierwise.web.auth import Principal, accounts, client_ip, require
from tierwise.web.services.jobs import JobManager
from tierwise.workspace import Workspace

T = TypeVar("T")

Viewer = Annotated[Principal, Depends(require("viewer"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]
Admin = Annotated[Principal, Depends(require("admin"))]

Lang = Annotated[
    Literal["zh", "en"] | None,
    Query(description="Labels in zh or en (default: [workspace] language of tierwise.toml) / 标签语言"),
]
RunId = Annotated[str | None, Query(description="Run id (default: the latest run) / 运行编号（默认最新）")]
Page = Annotated[int, Query(ge=1, description="Page number, from 1 / 页码")]
PageSize = Annotated[int, Query(ge=1, le=500, description="Rows per page, 1–500 / 每页行数")]

_jobs_lock = threading.Lock()
# Service messages that mean "there is no such thing": answered with 404 instead of 400.
_NOT_FOUND = re.compile(r"^no (run|customer|job|campaign|user|active token|plan) '")


def workspace(request: Request) -> Workspace:
    """The workspace of the calling thread (its own DuckDB connection). Call it inside the endpoint, not as a
    dependency: FastAPI may run a synchronous dependency in another thread than the endpoint."""
    found: Workspace = request.app.state.handle.workspace()
    return found


def jobs(request: Request) -> JobManager:
    """The server's background jobs (created on first use)."""
    state = request.app.state
    manager: JobManager | None = getattr(state, "jobs", None)
    if manager is None:
        with _jobs_lock:
            manager = getattr(state, "jobs", None)
            if manager is None:
                manager = JobManager()
                state.jobs = manager
    return manager


def audit(request: Request, principal: Principal, action: str, detail: str = "") -> None:
    """Record who did what (never customer data)."""
    accounts(request).audit(principal.username, action, detail, client_ip(request))


class NotFound(Exception):
    """No such run, customer, job, user …: answered 404 with the message (by ApiRoute)."""


class ApiRoute(APIRoute):
    """The routes of the API: NotFound becomes 404 {"error": message}. (The app's handler for status 404 would
    replace any HTTPException(404)'s message with a generic "no such page".)"""

    def get_route_handler(self) -> Callable[[Request], Any]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response: Response = await original(request)
            except NotFound as exc:
                return JSONResponse({"error": str(exc)}, 404)
            return response

        return handler


def check_user(request: Request, username: str) -> None:
    """404 when there is no such user."""
    if accounts(request).get(username) is None:
        raise NotFound(f"no user '{username}'; list them with GET /api/v1/users")


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) with a service's "no such …" UserError answered as 404 (others stay 400)."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        if _NOT_FOUND.match(str(exc)):
            raise NotFound(str(exc)) from None
        raise


def names(value: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c'] (None when empty)."""
    if value is None:
        return None
    found = [v.strip() for v in value.split(",") if v.strip()]
    return found or None


class Flexible(BaseModel):
    """A response documented by its main fields; further fields may be present."""

    model_config = ConfigDict(extra="allow")


class JobAccepted(BaseModel):
    job_id: str = Field(description="Poll GET /api/v1/jobs/{job_id} for its state and result / 任务编号")
    status_url: str = Field(description="Where to poll / 查询地址")


class JobStatus(BaseModel):
    job_id: str
    kind: str = Field(description="run, upload or settings_preview")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str | None = Field(None, description="The step it is at, e.g. measures, classes / 当前步骤")
    progress: float | None = Field(None, description="0–1 when known / 进度")
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    result: Any = Field(None, description="The result when done (depends on the kind) / 结果")
    error: str | None = Field(None, description="What went wrong, when failed / 错误信息")
    owner: str | None = None
    cancel_requested: bool = Field(False, description="Cancel was asked for; it stops shortly / 已请求取消")


def accepted(request: Request, job_id: str) -> JobAccepted:
    return JobAccepted(job_id=job_id, status_url=str(request.url_for("job_status", job_id=job_id).path))


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong and what to do / 错误说明")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input; the message says what to change"},
    401: {"model": ErrorBody, "description": "Not logged in"},
    403: {"model": ErrorBody, "description": "The role does not allow it (or the CSRF token is missing)"},
    404: {"model": ErrorBody, "description": "No such run, customer, job …"},
    422: {"model": ErrorBody, "description": "A parameter is malformed"},
}
