"""Queries of a run's snapshot: the overview, segments and their members, the customer list, one customer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import Field

from tierwise.web.api._common import (
    ERRORS,
    ApiRoute,
    Flexible,
    Lang,
    Page,
    PageSize,
    RunId,
    Viewer,
    call,
    names,
    workspace,
)
from tierwise.web.auth import Principal, masked
from tierwise.web.services import customers, history, overview, segments
from tierwise.workspace import Workspace

router = APIRouter(route_class=ApiRoute, responses=ERRORS)

NO_CLASS = "-"

Where = Annotated[
    str | None,
    Query(description="A condition in the rule language, e.g. grade = 'A' and monetary > 10000 / 筛选条件"),
]
Search = Annotated[str | None, Query(description="Part of the customer id or name (case ignored) / 按编号或名称搜索")]
Sort = Annotated[str | None, Query(description="A column; '-column' for descending (default priority_rank) / 排序列")]
Columns = Annotated[
    str | None, Query(description="Columns to return, comma-separated (see GET /api/v1/columns) / 返回的列")
]


class CustomerPage(Flexible):
    run_id: str
    as_of: str
    total: int = Field(description="Customers matching, on all pages / 符合条件的客户数")
    page: int
    page_size: int
    pages: int
    sort: str
    columns: list[str]
    rows: list[dict[str, Any]]


class Column(Flexible):
    name: str
    type: str
    source: str = Field(description="snapshot (the run) or customers (contact data) / 来源")


def guard_personal(ws: Workspace, principal: Principal, where: str | None, sort: str | None) -> None:
    """Viewers see phone numbers and e-mails masked, so they may not filter or sort by them either (that would
    reveal them a condition at a time)."""
    if not masked(principal) or not ((where and where.strip()) or sort):
        return
    known = [c["name"] for c in customers.customer_columns(ws)]
    # A syntax error in `where` counts as no column here: the service reports it, with its message.
    used = customers.personal_used(where, sort.strip().lstrip("-+").strip() if sort else None, known)
    if used:
        raise HTTPException(403, f"viewers cannot filter or sort by personal data ({', '.join(used)}); "
                                 "ask an analyst")  # fmt: skip


@router.get("/overview", tags=["snapshot"], summary="Key figures and charts of a run", response_model=dict[str, Any])
def get_overview(request: Request, principal: Viewer, run_id: RunId = None, lang: Lang = None) -> Any:
    """KPIs with the change since the previous run, class distributions, the R×F heatmap, the Pareto curve,
    region and industry breakdowns and the CLV histogram."""
    return call(overview.overview, workspace(request), run_id, lang)


@router.get("/segments/{column}", tags=["snapshot"], summary="The classes of a class column",
            response_model=dict[str, Any])  # fmt: skip
def get_segments(
    request: Request,
    principal: Viewer,
    column: Annotated[str, Path(description="grade, rfm_segment, abc_class, value_tier, lifecycle_stage …")],
    run_id: RunId = None,
    lang: Lang = None,
) -> Any:
    """Each class with its size, revenue, shares and the strategy and next action most of its members got."""
    return call(segments.segments, workspace(request), column, run_id, lang)


@router.get("/segments/{column}/{code}/customers", tags=["snapshot"], summary="Members of one class",
            response_model=CustomerPage)  # fmt: skip
def get_segment_members(
    request: Request,
    principal: Viewer,
    column: str,
    code: Annotated[str, Path(description=f"The class code; '{NO_CLASS}' for customers without a class")],
    page: Page = 1,
    page_size: PageSize = 50,
    sort: Sort = None,
    where: Where = None,
    search: Search = None,
    columns: Columns = None,
    run_id: RunId = None,
    lang: Lang = None,
) -> Any:
    """A page of the customers in the class, in the shape of GET /api/v1/customers (with column and code)."""
    ws = workspace(request)
    guard_personal(ws, principal, where, sort)
    return call(
        segments.segment_members, ws, column, None if code == NO_CLASS else code, page=page, page_size=page_size,
        sort=sort or "priority_rank", columns=names(columns), where=where, search=search,
        mask_personal=masked(principal), run_id=run_id, language=lang,
    )  # fmt: skip


@router.get("/customers", tags=["customers"], summary="Filter, sort and page the customers",
            response_model=CustomerPage)  # fmt: skip
def get_customers(
    request: Request,
    principal: Viewer,
    where: Where = None,
    search: Search = None,
    sort: Sort = None,
    page: Page = 1,
    page_size: PageSize = 50,
    columns: Columns = None,
    run_id: RunId = None,
    lang: Lang = None,
) -> Any:
    """A page of the run's customers. Class columns get a `<column>_label`; viewers see phone numbers and
    e-mails masked."""
    ws = workspace(request)
    guard_personal(ws, principal, where, sort)
    return call(
        customers.list_customers, ws, where=where, search=search, sort=sort or "priority_rank", page=page,
        page_size=page_size, columns=names(columns), mask_personal=masked(principal), run_id=run_id, language=lang,
    )  # fmt: skip


@router.get("/columns", tags=["customers"], summary="Columns a list, filter or export can use",
            response_model=list[Column])  # fmt: skip
def get_columns(request: Request, principal: Viewer, run_id: RunId = None) -> Any:
    """Every column of the run's snapshot and the contact columns of the customers table, with its type."""
    return call(customers.customer_columns, workspace(request), run_id)


@router.get("/customers/columns", tags=["customers"], include_in_schema=False)
def get_customer_columns(request: Request, principal: Viewer, run_id: RunId = None) -> Any:
    return call(customers.customer_columns, workspace(request), run_id)


@router.get("/customers/{customer_id}", tags=["customers"], summary="One customer in full",
            response_model=dict[str, Any])  # fmt: skip
def get_customer(request: Request, principal: Viewer, customer_id: str, run_id: RunId = None, lang: Lang = None) -> Any:
    """Profile, every score with the indicator breakdown, the reasons, the class timeline over the runs, the
    next action, cross-sell suggestions and the learned class."""
    return call(
        customers.customer_detail, workspace(request), customer_id, run_id=run_id, language=lang,
        mask_personal=masked(principal),
    )  # fmt: skip


@router.get("/customers/{customer_id}/timeline", tags=["customers"], summary="A customer's classes over the runs",
            response_model=dict[str, Any])  # fmt: skip
def get_timeline(request: Request, principal: Viewer, customer_id: str, lang: Lang = None) -> Any:
    """The customer's classes in every run, and per class column since when it has held its class."""
    return call(history.timeline, workspace(request), customer_id, lang)
