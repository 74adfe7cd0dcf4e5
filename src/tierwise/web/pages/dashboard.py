"""The read-only pages every role may open: overview, segments, customers, one customer, history, models.

Their numbers come from the service functions behind the JSON twins (GET /api/v1/overview, /segments/{column},
/customers, /customers/{id}, /history/compare, /history/trends, /models); the charts are drawn from the
report's own chart data (tierwise.report.charts, tierwise.report.pages) by /static/charts.js.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tierwise.errors import UserError
from tierwise.i18n import TITLES, heading, label
from tierwise.report.charts import dist_chart
from tierwise.report.language import TEXT, ReportLanguage
from tierwise.report.pages.clusters import cluster_page
from tierwise.report.pages.history import migration_caption, migration_charts, migration_kpis, trend_chart
from tierwise.report.pages.learned import learned_page
from tierwise.report.pages.models import model_page
from tierwise.web.cache import cache_for
from tierwise.web.pages._base import Page, PageError, router, view
from tierwise.web.services import customers as customer_service
from tierwise.web.services import history as history_service
from tierwise.web.services import overview as overview_service
from tierwise.web.services import segments as segment_service

PAGE_SIZES = (25, 50, 100, 200)

# chart key (element id "chart-<key>") per class column of the overview
OVERVIEW_CHARTS = {
    "grade": "grades",
    "rfm_segment": "segments",
    "rfm_class8": "class8",
    "abc_class": "abc",
    "value_tier": "value",
    "lifecycle_stage": "lifecycle",
    "loyalty": "loyalty",
}


def _int(request: Request, name: str, default: int, low: int = 1, high: int = 10**9) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return max(low, min(high, value))


def _lang(page: Page) -> ReportLanguage:
    return ReportLanguage(page.lang, page.ws.config.workspace.currency)


def _kpi_text(k: dict[str, Any], lang: ReportLanguage) -> tuple[str, str]:
    """(value, change) as shown on a KPI card."""
    value, change, fmt = k["value"], k["change"], k["format"]
    if value is None:
        return "—", ""
    if fmt == "money":
        text = lang.money(value)
        delta = "" if change is None else ("+" if change >= 0 else "−") + lang.money(abs(change))
    elif fmt == "score":
        text = f"{value:.1f}"
        delta = "" if change is None else f"{change:+.1f}"
    elif fmt == "share":
        text = f"{value:.1%}"
        delta = "" if change is None else f"{change * 100:+.1f} pp"
    else:
        text = f"{int(value):,}"
        delta = "" if change is None else f"{int(change):+,}"
    if delta and k.get("change_share") is not None and fmt != "share":
        delta += f" ({k['change_share']:+.1%})"
    return text, delta


# --- overview ---------------------------------------------------------------------------------------------


@router.get("/overview")
def overview_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        data = overview_service.overview(p.ws, language=p.lang)
        lang = _lang(p)
        kpis = []
        for k in data["kpis"]:
            text, delta = _kpi_text(k, lang)
            kpis.append({**k, "text": text, "delta": delta})
        sections = []
        for column, d in data["distributions"].items():
            key = OVERVIEW_CHARTS.get(column, column)
            p.charts[key] = dist_chart(d["rows"], lang)
            sections.append({"key": key, "column": column, "title": d["title"], "rows": d["rows"],
                             "group": p.t("class")})  # fmt: skip
        p.charts["heatmap"] = data["heatmap"]
        pareto = data["pareto"]
        p.charts["pareto"] = {**pareto, "kind": "pareto", "cutoff_names": ["A", "B"]}
        breakdowns = []
        for key, part in (("regions", data["regions"]), ("industries", data["industries"])):
            if part:
                p.charts[key] = dist_chart(part["rows"], lang)
                breakdowns.append({"key": key, "title": part["title"], "rows": part["rows"],
                                   "group": heading(part["column"], p.lang)})  # fmt: skip
        if data.get("clv"):
            p.charts["clv"] = data["clv"]
        return {"data": data, "kpis": kpis, "sections": sections, "breakdowns": breakdowns,
                "distribution_title": lambda c: next((s for s in sections if s["column"] == c), None)}  # fmt: skip

    return view(request, "viewer", "overview.html", build)


# --- segments ---------------------------------------------------------------------------------------------


@router.get("/segments")
def segments_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        _, snap = cache_for(p.ws).snapshot(p.ws)
        columns = [c for c in segment_service.CLASS_COLUMNS if c in snap.columns]
        column = request.query_params.get("column") or ("grade" if "grade" in columns else columns[0])
        data = segment_service.segments(p.ws, column, language=p.lang)
        p.charts["segment"] = dist_chart(data["classes"], _lang(p))
        members = None
        code: str | None = None
        if "code" in request.query_params:
            code = request.query_params.get("code") or None
            members = segment_service.segment_members(
                p.ws, column, code, page=_int(request, "page", 1), page_size=50, mask_personal=p.masked,
                language=p.lang,
            )  # fmt: skip
        tabs = [{"column": c, "title": TITLES.get(c, (c, c))[1 if p.lang == "zh" else 0]} for c in columns]
        return {"data": data, "tabs": tabs, "column": column, "members": members, "code": code,
                "column_label": lambda c: heading(c, p.lang)}  # fmt: skip

    return view(request, "viewer", "segments.html", build)


# --- customers --------------------------------------------------------------------------------------------


@router.get("/customers")
def customers_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        q = request.query_params
        search, where = q.get("q", "").strip(), q.get("where", "").strip()
        sort = q.get("sort", "priority_rank") or "priority_rank"
        size = _int(request, "page_size", 50, 1, 500)
        error = None
        try:
            data = customer_service.list_customers(
                p.ws, where=where or None, search=search or None, sort=sort, page=_int(request, "page", 1),
                page_size=size, mask_personal=p.masked, language=p.lang,
            )  # fmt: skip
        except UserError as exc:  # a bad filter or sort: the form stays, with the message
            error = str(exc)
            data = customer_service.list_customers(p.ws, page_size=size, mask_personal=p.masked, language=p.lang)
        sortable = [c for c in data["columns"] if c not in ("next_action",)]
        return {
            "data": data, "search": search, "where": where, "sort": data["sort"] if not error else sort,
            "sort_column": (data["sort"] if not error else sort).lstrip("-"),
            "descending": (data["sort"] if not error else sort).startswith("-"), "page_size": size,
            "page_sizes": PAGE_SIZES, "sortable": sortable, "error": error, "status": 400 if error else 200,
            "column_label": lambda c: heading(c, p.lang),
        }  # fmt: skip

    return view(request, "viewer", "customers.html", build)


@router.get("/customers/{customer_id:path}")
def customer_page(request: Request, customer_id: str) -> Response:
    def build(p: Page) -> dict[str, Any]:
        try:
            data = customer_service.customer_detail(p.ws, customer_id, language=p.lang, mask_personal=p.masked)
        except UserError as exc:
            if str(exc).startswith("no customer"):
                raise PageError(404, str(exc)) from exc
            raise
        scores = data["scores"]
        hidden = {"run_id", "customer_id", "name", "action_reason"}
        timeline = data.get("timeline") or {}
        timeline_columns = [c for c in ("grade", "rfm_segment", "abc_class", "value_tier", "lifecycle_stage", "loyalty")
                            if any(r.get(c) is not None for r in timeline.get("runs", []))]  # fmt: skip
        return {
            "data": data,
            "name": (data.get("profile") or {}).get("name") or scores.get("name"),
            # class columns show their label in the page's language (cluster names and RFM classes are stored
            # as words of the workspace's language)
            "score_rows": [
                (k, data["labels"][k] if k in data["labels"] and v is not None else v)
                for k, v in scores.items()
                if k not in hidden and not k.startswith("contrib_")
            ],
            "timeline": timeline,
            "timeline_columns": timeline_columns,
            "column_label": lambda c: heading(c, p.lang),
            "label": lambda c, v: label(c, v, p.lang),
        }

    return view(request, "viewer", "customer.html", build)


# --- history ----------------------------------------------------------------------------------------------


@router.get("/history")
def history_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        lang = _lang(p)
        _, snap = cache_for(p.ws).snapshot(p.ws)
        columns = [c for c in ("grade", "rfm_segment", "abc_class", "value_tier", "lifecycle_stage", "loyalty")
                   if c in snap.columns]  # fmt: skip
        column = request.query_params.get("column") or columns[0]
        migration = None
        try:
            migration = history_service.compare(p.ws, column=column, language=p.lang, top=20)
        except UserError:  # a single run, or the previous run lacks the column: no migration to show
            migration = None
        kpis: list[dict[str, str]] = []
        if migration is not None:
            p.charts["sankey"], p.charts["matrix"] = migration_charts(migration, lang)
            kpis = migration_kpis(migration, lang)
        trends = None
        try:
            trends = history_service.trends(p.ws, column, language=p.lang)
            if len(trends["runs"]) >= 2:
                p.charts["trend"] = trend_chart(trends, lang)
            else:
                trends = None
        except UserError:
            trends = None
        tabs = [{"column": c, "title": TITLES.get(c, (c, c))[1 if p.lang == "zh" else 0]} for c in columns]
        return {"migration": migration, "kpis": kpis, "trends": trends, "tabs": tabs, "column": column,
                "caption": migration_caption(migration, lang) if migration else None}  # fmt: skip

    return view(request, "viewer", "history.html", build)


# --- models -----------------------------------------------------------------------------------------------


@router.get("/models")
def models_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        lang = _lang(p)
        meta, snap = cache_for(p.ws).snapshot(p.ws)
        run = str(meta["run_id"])
        config = cache_for(p.ws).config(p.ws, run)
        parts: list[dict[str, Any]] = []
        found = model_page(p.ws, snap, meta, config, lang)
        if found is not None:
            caption, content, charts = found
            p.charts.update(charts)
            parts.append({"id": "clv", "title": p.t.clv_models, "caption": caption, "model": content})
        found = cluster_page(snap, meta, lang)
        if found is not None:
            caption, content, charts = found
            p.charts.update(charts)
            parts.append({"id": "clusters", "title": p.t.clusters, "caption": caption, "clusters": content})
        found = learned_page(p.ws, snap, run, lang)
        if found is not None:
            caption, content, charts = found
            p.charts.update(charts)
            parts.append({"id": "learned", "title": p.t.learned, "caption": caption, "learned": content})
        return {"parts": parts, "run_id": run, "as_of": meta["as_of"],
                "rt": {key: lang.t(key) for key in TEXT if "{" not in TEXT[key][0]}}  # fmt: skip

    return view(request, "viewer", "models.html", build)
