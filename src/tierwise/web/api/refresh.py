"""The refresh log (the last refreshes, the alerts they fired and their deliveries) and starting a refresh."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tierwise.web.api._common import (
    ERRORS,
    Admin,
    ApiRoute,
    Flexible,
    JobAccepted,
    Lang,
    Viewer,
    accepted,
    audit,
    call,
    jobs,
    workspace,
)
from tierwise.web.services import refresh as service

router = APIRouter(route_class=ApiRoute, tags=["refresh"], responses=ERRORS)

SINCE = "Only alerts fired at or after this time (server time unless a zone is given) / 只看此时间之后触发的预警"
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT, description="How many, newest first (1–500) / 条数")]


class FileFailed(BaseModel):
    file: str = Field(description="The refused file's name / 被拒绝的文件")
    error: str = Field(description="Why it was refused / 原因")


class SourceOutcome(Flexible):
    name: str = Field(description="The source's name in [[sources]] / 数据源名称")
    table: str | None = Field(None, description="The table it fills / 目标表")
    kind: str | None = Field(None, description="folder or database / 类型：文件夹或数据库")
    status: str | None = Field(None, description="The source's outcome / 该数据源的结果")
    rows_read: int | None = Field(None, description="Rows read / 读取行数")
    rows_loaded: int | None = Field(None, description="Rows loaded / 导入行数")
    rows_new: int | None = Field(None, description="New records / 新增行数")
    rows_updated: int | None = Field(None, description="Records updated / 更新行数")
    rows_quarantined: int | None = Field(None, description="Rows quarantined / 隔离行数")
    files_processed: list[str] = Field(description="Files loaded and moved to processed/ / 已处理文件")
    files_failed: list[FileFailed] = Field(description="Files refused and moved to failed/ / 失败文件")
    error: str | None = Field(None, description="What went wrong / 错误信息")


class RefreshOut(BaseModel):
    refresh_id: str = Field(description="The refresh's id / 刷新编号")
    trigger: str = Field(description="cli, schedule or dashboard / 触发方式")
    started_at: str = Field(description="When it started (server time) / 开始时间")
    finished_at: str | None = Field(None, description="When it ended / 结束时间")
    status: str = Field(description="running, ok, partial or failed / 状态")
    attempts: int = Field(description="1, or more when a killed refresh was resumed / 尝试次数")
    resumed: bool = Field(description="attempts > 1 / 是否为续跑")
    run_id: str | None = Field(None, description="The run it made / 生成的运行")
    error: str | None = Field(None, description="Why it failed / 错误信息")
    sources: list[SourceOutcome] = Field(description="Per source, in order / 各数据源结果")
    steps: dict[str, Any] = Field(description="Every step as recorded / 各步骤的原始记录")


class DeliveryOut(Flexible):
    channel: str = Field(description="webhook or email / 渠道")
    target: str | None = Field(None, description="URL or address (admins only) / 目标地址（仅管理员可见）")
    part: str | None = Field(None, description="The part sent, e.g. one owner's customers / 发送的部分")
    status: str = Field(description="delivered, failed or skipped / 投递状态")
    attempts: int | None = Field(None, description="Tries made / 尝试次数")
    detail: str | None = Field(None, description="The answer or the error / 详情")
    customers: int | None = Field(None, description="Customers in this part / 本部分客户数")
    sent_at: str | None = Field(None, description="When / 发送时间")


class AlertOut(BaseModel):
    event_id: str = Field(description="The alert event's id / 预警事件编号")
    refresh_id: str | None = Field(None, description="The refresh that fired it / 触发它的刷新")
    run_id: str | None = Field(None, description="The run it looked at / 对应的运行")
    previous_run_id: str | None = Field(None, description="The run compared with / 对比的上一次运行")
    rule: str = Field(description="The rule's name in [[alerts]] / 规则名称")
    label: str = Field(description="The rule's label in the language asked / 规则的显示名称")
    kind: str | None = Field(
        None, description="customers, source_failed, quarantine_rate or share_shift / 类型：客户级或运行级"
    )
    fired_at: str = Field(description="When it fired / 触发时间")
    matched: int = Field(description="Customers (or findings) matched / 命中数")
    customers: list[dict[str, Any]] = Field(
        description="Who matched: customer_id, name, owner, grade, priority_rank, changes / 命中的客户"
    )
    findings: list[dict[str, Any]] = Field(description="A run-level alert's findings ({what}) / 运行级发现")
    details: dict[str, Any] = Field(description="Everything recorded with the event / 事件的完整记录")
    deliveries: list[DeliveryOut] = Field(description="Latest outcome per channel, target and part / 投递结果")


class RefreshRequest(BaseModel):
    """No options yet: send no body or {} (what to load comes from [[sources]] in tierwise.toml)."""

    model_config = ConfigDict(extra="forbid")


@router.get("/refreshes", summary="The last refreshes, newest first", response_model=list[RefreshOut])
def list_refreshes(request: Request, principal: Viewer, limit: Limit = 20) -> Any:
    """Each `tierwise refresh` (from the command line, the schedule or the dashboard) with its status, the run
    it made and what each source loaded, quarantined and refused."""
    return call(service.refreshes, workspace(request), limit)


@router.get("/alerts", summary="Alerts fired, newest first", response_model=list[AlertOut])
def list_alerts(
    request: Request,
    principal: Viewer,
    limit: Limit = 100,
    since: Annotated[dt.datetime | None, Query(description=SINCE)] = None,
    lang: Lang = None,
) -> Any:
    """What each alert rule matched and how its deliveries went. Delivery targets (URLs, e-mail addresses) are
    shown to admins only."""
    return call(service.alerts, workspace(request), limit, since, language=lang, with_targets=principal.can("admin"))


@router.post("/refresh", status_code=202, summary="Start a refresh", response_model=JobAccepted)
def start_refresh(request: Request, principal: Admin, body: RefreshRequest | None = None) -> JobAccepted:
    """Runs `tierwise refresh` in the background (admins): the sources, the main job, alerts and deliveries.
    Poll the job for its steps and the refresh report."""
    job_id = jobs(request).start(
        "refresh", service.refresh_job, request.app.state.handle.root, owner=principal.username
    )
    audit(request, principal, "refresh", f"job={job_id}")
    return accepted(request, job_id)
