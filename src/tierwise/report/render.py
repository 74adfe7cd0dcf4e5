"""`tierwise report`: one self-contained HTML file of a run, for showing to people who do not run tierwise.

Every number is aggregated by the engine (Ibis) — the page never holds customer rows beyond the top list —
so a report of a million customers is as small and quick to open as one of a thousand. plotly.js comes from
the installed plotly package and is inlined, with the chart data as JSON, so the file opens offline.
Sections whose columns a run does not have (runs made by older versions) are left out.

This module puts the report together and writes it: the headline figures are in `report.figures`, the class
charts in `report.charts`, each page (models, clusters, learned rules, history, campaigns …) in `report.pages`,
the words in `report.language`; the numbers of the model page in `report.data`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import jinja2
from markupsafe import Markup

from tierwise import __version__
from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.report.language import TEXT, ReportLanguage
from tierwise.report.pages import Section, page_section
from tierwise.report.pages.campaigns import campaigns_page
from tierwise.report.pages.classes import (
    breakdown_section,
    clv_section,
    distribution_section,
    heatmap_section,
    pareto_section,
)
from tierwise.report.pages.clusters import cluster_page
from tierwise.report.pages.history import history_page
from tierwise.report.pages.key_figures import key_figures
from tierwise.report.pages.learned import learned_page
from tierwise.report.pages.models import model_page
from tierwise.report.pages.top_customers import top_customers_table
from tierwise.store.runs import latest_snapshot, run_config
from tierwise.workspace import Workspace

# Class columns drawn as distributions, before and after the R×F heatmap and the Pareto curve.
FIRST_CLASSES = ("grade", "rfm_segment", "rfm_class8")
LATER_CLASSES = ("lifecycle_stage", "loyalty")


@dataclass
class ReportSummary:
    path: Path
    run_id: str
    bytes: int
    sections: list[str]

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "run_id": self.run_id, "bytes": self.bytes, "sections": self.sections}


# The chart drawing code of the dashboard, inlined into the report: one copy for both.
CHARTS_JS = Path(__file__).parent.parent / "web" / "static" / "charts.js"


def _plotly_js() -> tuple[str, str]:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the plotly package is not installed; the report needs its plotly.min.js (pip install plotly)")
    root = Path(next(iter(spec.submodule_search_locations)))
    js = root / "package_data" / "plotly.min.js"
    if not js.is_file():
        raise UserError(f"{js}: missing from the installed plotly package; reinstall plotly")
    text = js.read_text(encoding="utf-8")
    version = ""
    head = text[:400]
    if "plotly.js v" in head:
        version = head.split("plotly.js v", 1)[1].split()[0]
    return text, version


def _finite(data: Any) -> Any:
    """NaN and infinities become null: JSON.parse rejects them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element early, whatever customer names it holds."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


Step = tuple[str, Callable[[], Section | None]]


def _class_steps(
    ws: Workspace, snap: ir.Table, meta: dict[str, Any], config: Config, lang: ReportLanguage
) -> list[Step]:
    """The class sections the run has columns for, as (progress name, builder) in the report's order."""
    cols = set(snap.columns)
    steps: list[Step] = [(c, partial(distribution_section, snap, c, lang)) for c in FIRST_CLASSES if c in cols]
    steps.append(("R×F", partial(heatmap_section, snap, lang)))
    steps.append(("Pareto", partial(pareto_section, ws, snap, str(meta["snapshot_table"]), config, lang)))
    steps += [(c, partial(distribution_section, snap, c, lang)) for c in LATER_CLASSES if c in cols]
    steps.append(("regions", partial(breakdown_section, "region", snap, "province", lang.t("province"), lang)))
    industry = "main_industry" if "main_industry" in cols else "industry_code"
    if industry in cols:
        group = lang.t("industry_name")
        steps.append(("industries", partial(breakdown_section, "industry", snap, industry, group, lang)))
    if "clv_historical" in cols:
        steps.append(("CLV", partial(clv_section, snap, lang)))
    return steps


def _page_steps(
    ws: Workspace, snap: ir.Table, meta: dict[str, Any], config: Config, lang: ReportLanguage
) -> list[Step]:
    """The pages after the class sections, each left out when the run has nothing to show there."""
    run = str(meta["run_id"])

    def top() -> Section:
        table = top_customers_table(snap, set(snap.columns), lang)
        return Section("top_customers", table["caption"], extra={"top": table})

    return [
        ("models", lambda: page_section("models", "model", model_page(ws, snap, meta, config, lang))),
        ("clusters", lambda: page_section("clusters", "clusters", cluster_page(snap, meta, lang))),
        ("learned rules", lambda: page_section("learned", "learned", learned_page(ws, snap, run, lang))),
        ("history", lambda: page_section("history", "history", history_page(ws, run, lang))),
        ("campaigns", lambda: page_section("campaigns", "campaigns", campaigns_page(ws, lang))),
        ("top customers", top),
    ]


def build_context(
    ws: Workspace,
    *,
    run_id: str | None = None,
    language: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything the template shows, aggregated by the engine."""
    step = progress or (lambda _: None)
    lang_code = language or ws.config.workspace.language
    if lang_code not in ("zh", "en"):
        raise UserError(f"--language '{language}': say zh or en")
    meta, snap = latest_snapshot(ws, run_id)
    run = str(meta["run_id"])
    config = run_config(ws, run)
    lang = ReportLanguage(lang_code, ws.config.workspace.currency)
    sections: list[dict[str, Any]] = []
    charts: dict[str, Any] = {}

    step("key figures")
    kpis = key_figures(snap, lang)
    for name, make in _class_steps(ws, snap, meta, config, lang) + _page_steps(ws, snap, meta, config, lang):
        step(name)
        found = make()
        if found is not None:
            sections.append(_add_section(found, charts, lang))

    now = dt.datetime.now().replace(microsecond=0)
    return {
        "lang": lang_code,
        "t": {key: lang.t(key) for key in TEXT if "{" not in TEXT[key][0]},
        "run_id": run,
        "as_of": str(meta["as_of"]),
        "generated": now.isoformat(sep=" "),
        "customers": int(meta["customers"]),
        "kpis": kpis,
        "sections": [{"id": "kpis", "title": lang.t("kpis")}, *sections],
        "charts": charts,
        "lang_obj": lang,
    }


def _add_section(s: Section, charts: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    """The section as the template reads it; its charts join `charts` (in the order the page draws them)."""
    if s.chart is not None:
        charts[s.key] = s.chart
    charts.update(s.charts)
    group = lang.t("class") if s.group is None else s.group
    title = lang.t(s.key)
    return {"id": s.key, "title": title, "caption": s.caption, "chart": s.chart is not None, "group": group, **s.extra}


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tierwise.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    plotly_js, plotly_version = _plotly_js()
    lang: ReportLanguage = context["lang_obj"]
    footer = lang.t("footer", version=__version__, plotly=plotly_version or "?")
    return env.get_template("report.html").render(
        **context,
        footer=footer,
        data_json=Markup(_json_for_script({"charts": context["charts"]})),
        plotly_js=Markup(plotly_js),
        charts_js=Markup(CHARTS_JS.read_text(encoding="utf-8")),
    )


def write_report(
    ws: Workspace,
    out: Path,
    *,
    run_id: str | None = None,
    language: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportSummary:
    """Write the HTML report of a run (default: the latest) to `out`; `progress` hears each step's name."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file name, e.g. --out {out / 'report.html'}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{out}: folder {folder} does not exist; create it first or choose another --out")
    context = build_context(ws, run_id=run_id, language=language, progress=progress)
    if progress:
        progress("writing")
    html = render(context).encode("utf-8")
    # Written beside the target and renamed, so a failure never leaves half a report behind.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(html)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UserError(f"{out}: cannot write the report ({exc.strerror or exc})") from exc
    return ReportSummary(
        path=out.resolve(),
        run_id=context["run_id"],
        bytes=len(html),
        sections=[s["id"] for s in context["sections"]],
    )
