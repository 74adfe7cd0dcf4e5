"""Comparisons of runs: migration between two runs (matrix and Sankey) and class sizes over the runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tierwise.web.api._common import ERRORS, ApiRoute, Lang, Viewer, call, workspace
from tierwise.web.services import history

router = APIRouter(route_class=ApiRoute, prefix="/history", tags=["history"], responses=ERRORS)

By = Annotated[str, Query(description="Class column: grade, rfm_segment, abc_class, lifecycle_stage … / 分类列")]


@router.get("/compare", summary="Migration between two runs", response_model=dict[str, Any])
def compare(
    request: Request,
    principal: Viewer,
    run_a: Annotated[str | None, Query(description="The earlier run (default: the one before run_b)")] = None,
    run_b: Annotated[str | None, Query(description="The later run (default: the latest)")] = None,
    by: By = "grade",
    top: Annotated[int, Query(ge=0, le=history.MAX_TOP, description="Moved customers to list")] = 20,
    lang: Lang = None,
) -> Any:
    """The numbers of `tierwise compare --json` (matrix, totals, moved customers and why, stability) plus
    `sankey`: nodes and links for a migration chart."""
    return call(history.compare, workspace(request), run_a, run_b, by, lang, top)


@router.get("/trends", summary="Class sizes over the runs", response_model=dict[str, Any])
def trends(request: Request, principal: Viewer, by: By = "grade", lang: Lang = None) -> Any:
    """The numbers of `tierwise trends --json` plus `chart`: {x: as-of dates, series: per class}."""
    return call(history.trends, workspace(request), by, lang)
