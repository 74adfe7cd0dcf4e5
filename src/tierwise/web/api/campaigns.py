"""Campaigns: the planned and the loaded ones, a campaign's response report, and planning a new one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from tierwise.campaigns.plan import create_plan
from tierwise.web.api._common import ERRORS, Analyst, ApiRoute, Lang, Viewer, audit, call, workspace
from tierwise.web.services import campaigns as service

router = APIRouter(route_class=ApiRoute, prefix="/campaigns", tags=["campaigns"], responses=ERRORS)


class PlanRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Campaign name; the campaign_id of its responses")
    where: str = Field(min_length=1, description="Customers to target, e.g. rfm_segment = 'at_risk' / 目标客户条件")
    control: str = Field("10%", description="Control group share, e.g. 10% or 0.1; 0% for none / 对照组比例")
    seed: int | None = Field(None, ge=0, description="Random seed (default: random) / 随机种子")
    stratify: str = Field("rfm_segment", description="Column whose classes are sampled separately / 分层列")
    cost_per_contact: float | None = Field(None, ge=0, description="Cost of one contact, for the ROI / 单次触达成本")
    run_id: str | None = Field(None, description="Run id (default: the latest) / 运行编号")
    replace: bool = Field(False, description="Replace a plan of the same name (draws again) / 覆盖同名计划")


@router.get("", summary="Planned and loaded campaigns", response_model=list[dict[str, Any]])
def list_campaigns(request: Request, principal: Viewer) -> Any:
    """Planned campaigns (newest first) with their group sizes, then campaign ids found only in the loaded
    contacts — as `tierwise campaign list --json`."""
    return service.list_campaigns(workspace(request))


@router.get("/{name}/report", summary="Response report of a campaign", response_model=dict[str, Any])
def report(
    request: Request,
    principal: Viewer,
    name: str,
    cost_per_contact: Annotated[
        float | None, Query(ge=0, description="Cost of one contact (default: the plan's)")
    ] = None,
    lang: Lang = None,
) -> Any:
    """Response rates (Wilson 95%), revenue per contact, lift over control (Newcombe 95%) and ROI, per stratum
    and overall — as `tierwise campaign report NAME --json`."""
    return call(service.campaign_report, workspace(request), name, cost_per_contact=cost_per_contact, language=lang)


@router.post("", status_code=201, summary="Plan a campaign", response_model=dict[str, Any])
def plan(request: Request, principal: Analyst, body: PlanRequest) -> Any:
    """Selects the run's customers matching `where`, draws a control group per stratum and records the plan,
    as `tierwise campaign plan` does (without writing list files)."""
    result = create_plan(
        workspace(request), body.name, where=body.where, control=body.control, seed=body.seed,
        stratify=body.stratify, cost_per_contact=body.cost_per_contact, run_id=body.run_id, replace=body.replace,
    ).as_json()  # fmt: skip
    audit(request, principal, "campaign_plan",
          f"{result['name']} customers={result['customers']} control={result['control']}")  # fmt: skip
    return result
