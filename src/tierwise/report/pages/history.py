"""The report's history page: class sizes over runs, and migration between the report's run and the run before
(Sankey and heatmap).

Every number comes from the functions behind `tierwise compare` and `tierwise trends` (tierwise.history), so the
page and those commands always agree. This module only turns them into labels, captions, KPI cards and chart data;
the dashboard's history page draws the same charts.
"""

from __future__ import annotations

from typing import Any

from tierwise.errors import UserError
from tierwise.history.compare import ORDERS, RunView, compare, pick_runs
from tierwise.history.trends import trends
from tierwise.report.language import ReportLanguage, card, pct
from tierwise.report.pages import PageParts
from tierwise.store.runs import runs_by_date
from tierwise.workspace import Workspace

# Class columns whose sizes over runs are drawn, when the runs have them; the first two always are.
TREND_COLUMNS = ("grade", "rfm_segment", "lifecycle_stage")
# Migration: grade by default, RFM segments for runs made before grades existed.
MIGRATION_COLUMNS = ("grade", "rfm_segment")

# key of the "no class" code (customers without a grade: prospects)
NONE_KEY = "__none__"
NEW_KEY, GONE_KEY = "__new__", "__gone__"

# one colour per kind of move, the same in the Sankey and the KPI cards' meaning
MOVE_COLORS = {
    "stayed": "rgba(159,179,200,0.55)",
    "upgrade": "rgba(58,157,93,0.55)",
    "downgrade": "rgba(192,57,43,0.50)",
    "changed": "rgba(224,123,57,0.55)",
    "entry": "rgba(31,78,140,0.45)",
    "exit": "rgba(97,110,124,0.40)",
}

CLASS_COLORS = [
    "#1f4e8c", "#3a9d5d", "#e07b39", "#c0392b", "#8e6bbf", "#8c6d31", "#d35fa0", "#17a2b8", "#b5a642",
    "#5f6b7a", "#9fb3c8", "#243b53",
]  # fmt: skip


def _class_name(column: str, code: Any, lang: ReportLanguage) -> str:
    if code is None:
        return lang.pick("Not graded", "未分级") if column == "grade" else lang.pick("No class", "无类别")
    return lang.label(column, code)


def _column_title(column: str, lang: ReportLanguage) -> str:
    titles = {
        "grade": ("grade", "等级"),
        "rfm_segment": ("RFM segment", "RFM分群"),
        "lifecycle_stage": ("lifecycle stage", "生命周期阶段"),
    }
    return lang.pick(*titles.get(column, (column, column)))


def trend_chart(data: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    """Stacked bars: one bar per run (as-of date), one colour per class; revenue in the hover."""
    column = data["column"]
    runs = data["runs"]
    series = []
    for i, c in enumerate(data["classes"]):
        key = str(c["code"])
        series.append(
            {
                "name": _class_name(column, c["code"], lang),
                "values": [int(r["sizes"].get(key, 0)) for r in runs],
                "revenue": [float(r["revenue"].get(key, 0.0)) for r in runs],
                "color": CLASS_COLORS[i % len(CLASS_COLORS)],
            }
        )
    return {
        "kind": "trend",
        "x": [r["as_of"] for r in runs],
        "series": series,
        "totals": [int(r["customers"]) for r in runs],
        "x_axis": lang.t("as_of"),
        "y_axis": lang.t("customers"),
        "revenue_name": lang.t("revenue"),
    }


def _trend_caption(data: dict[str, Any], lang: ReportLanguage) -> str:
    column, runs = data["column"], data["runs"]
    first, last = runs[0], runs[-1]
    top = data.get("top_class")
    text_en = f"Customers per {_column_title(column, lang)} in each of the {len(runs)} runs, {first['as_of']} to "
    text_zh = f"{first['as_of']} 至 {last['as_of']} 共 {len(runs)} 次运行中各{_column_title(column, lang)}的客户数"
    if top is not None:
        name = _class_name(column, top, lang)
        a, b = int(first["sizes"].get(str(top), 0)), int(last["sizes"].get(str(top), 0))
        return lang.pick(f"{text_en}{last['as_of']}; {name}: {a:,} → {b:,}.", f"{text_zh}；{name}：{a:,} → {b:,}。")
    return lang.pick(f"{text_en}{last['as_of']}.", f"{text_zh}。")


def _key(code: Any) -> str:
    return NONE_KEY if code is None else str(code)


def _ordered(column: str, codes: set[Any]) -> list[Any]:
    order = ORDERS.get(column, [])
    rank = {c: i for i, c in enumerate(order)}
    return sorted(codes, key=lambda c: (c is None, rank.get(c, len(rank)), str(c)))


def migration_charts(data: dict[str, Any], lang: ReportLanguage) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Sankey (previous classes and "new" → current classes and "gone") and the from × to heatmap."""
    column = data["column"]
    cells = data["matrix"]
    sources = _ordered(column, {c["from"] for c in cells if c["kind"] != "entry"})
    targets = _ordered(column, {c["to"] for c in cells if c["kind"] != "exit"})
    new_name, gone_name = lang.pick("New", "新进入"), lang.pick("Gone", "已离开")
    row_keys = [_key(c) for c in sources] + ([NEW_KEY] if any(c["kind"] == "entry" for c in cells) else [])
    col_keys = [_key(c) for c in targets] + ([GONE_KEY] if any(c["kind"] == "exit" for c in cells) else [])
    names = {_key(c): _class_name(column, c, lang) for c in [*sources, *targets]}
    names.update({NEW_KEY: new_name, GONE_KEY: gone_name})
    colours = {
        _key(c): CLASS_COLORS[i % len(CLASS_COLORS)] for i, c in enumerate(_ordered(column, {*sources, *targets}))
    }
    colours.update({NEW_KEY: "#1f4e8c", GONE_KEY: "#616e7c"})

    customers: list[list[int | None]] = [[None] * len(col_keys) for _ in row_keys]
    revenue_from: list[list[float | None]] = [[None] * len(col_keys) for _ in row_keys]
    revenue_to: list[list[float | None]] = [[None] * len(col_keys) for _ in row_keys]
    links: dict[str, list[Any]] = {k: [] for k in ("source", "target", "value", "revenue", "color", "kind")}
    kinds = {
        "stayed": lang.pick("stayed", "未变"),
        "upgrade": lang.pick("upgrade", "升级"),
        "downgrade": lang.pick("downgrade", "降级"),
        "changed": lang.pick("changed", "变化"),
        "entry": lang.pick("entered", "新进入"),
        "exit": lang.pick("left", "离开"),
    }
    for c in cells:
        r = row_keys.index(NEW_KEY if c["kind"] == "entry" else _key(c["from"]))
        k = col_keys.index(GONE_KEY if c["kind"] == "exit" else _key(c["to"]))
        customers[r][k] = int(c["customers"])
        revenue_from[r][k] = float(c["revenue_from"])
        revenue_to[r][k] = float(c["revenue_to"])
        links["source"].append(r)
        links["target"].append(len(row_keys) + k)
        links["value"].append(int(c["customers"]))
        links["revenue"].append(float(c["revenue_to"] if c["kind"] != "exit" else c["revenue_from"]))
        links["color"].append(MOVE_COLORS.get(c["kind"], MOVE_COLORS["changed"]))
        links["kind"].append(kinds.get(c["kind"], c["kind"]))
    a, b = data["run_a"], data["run_b"]
    sankey = {
        "kind": "sankey",
        "labels": [names[k] for k in row_keys] + [names[k] for k in col_keys],
        "colors": [colours[k] for k in row_keys] + [colours[k] for k in col_keys],
        "links": links,
        "left": f"{a['as_of']}",
        "right": f"{b['as_of']}",
        "customers_name": lang.t("customers"),
        "revenue_name": lang.t("revenue"),
    }
    heat = {
        "kind": "migration",
        "rows": [names[k] for k in row_keys],
        "cols": [names[k] for k in col_keys],
        "row_keys": row_keys,
        "col_keys": col_keys,
        "customers": customers,
        "revenue_from": revenue_from,
        "revenue_to": revenue_to,
        "x_axis": lang.pick(f"Run as of {b['as_of']} (to)", f"{b['as_of']} 运行（迁入）"),
        "y_axis": lang.pick(f"Run as of {a['as_of']} (from)", f"{a['as_of']} 运行（迁出）"),
        "customers_name": lang.t("customers"),
        "revenue_names": [
            lang.pick(f"Revenue as of {a['as_of']}", f"{a['as_of']} 收入"),
            lang.pick(f"Revenue as of {b['as_of']}", f"{b['as_of']} 收入"),
        ],
    }
    return sankey, heat


def migration_kpis(data: dict[str, Any], lang: ReportLanguage) -> list[dict[str, str]]:
    p, t = lang.pick, data["totals"]
    both = int(data["in_both"])
    a, b = data["run_a"], data["run_b"]

    def of_both(n: int) -> str:
        share = pct(n / both) if both else "—"
        return p(f"{share} of the {both:,} in both runs", f"占两次都在的 {both:,} 位客户的 {share}")

    cards = [
        card(p("Stayed", "类别未变"), f"{t['stayed']:,}", of_both(t["stayed"])),
        card(p("Upgraded", "升级"), f"{t['upgrade']:,}", of_both(t["upgrade"])),
        card(p("Downgraded", "降级"), f"{t['downgrade']:,}", of_both(t["downgrade"])),
    ]
    if t.get("changed"):
        cards.append(card(p("Changed", "类别变化"), f"{t['changed']:,}", of_both(t["changed"])))
    cards += [
        card(p("Entered", "新进入"), f"{t['entry']:,}", p(f"not in the run of {a['as_of']}", f"{a['as_of']} 时尚无")),
        card(p("Left", "已离开"), f"{t['exit']:,}", p(f"not in the run of {b['as_of']}", f"{b['as_of']} 时已无")),
    ]
    top = data.get("new_in_top")
    if top:
        name = _class_name(data["column"], top["class"], lang)
        last = top.get("previous_run")
        note = (
            p("no run before the previous one", "上一次运行之前没有运行")
            if last is None
            else p(f"vs {last:,} in the run before", f"上一次为 {last:,} 位")
        )
        cards.append(card(p(f"New in {name}", f"新进入{name}"), f"{int(top['this_run']):,}", note))
    stab = data.get("stability")
    if isinstance(stab, dict) and stab.get("held"):
        held = int(stab["held"])
        cards.append(
            card(
                p("Held by [stability]", "稳定性规则保持"),
                f"{held:,}",
                p("grade changes held back", "次等级变化被保持"),
            )
        )
    return cards


def migration_caption(data: dict[str, Any], lang: ReportLanguage) -> str:
    a, b, t = data["run_a"], data["run_b"], data["totals"]
    column = _column_title(data["column"], lang)
    return lang.pick(
        f"Run {b['run_id']} (as of {b['as_of']}) against run {a['run_id']} (as of {a['as_of']}), by {column}: of the "
        f"{data['in_both']:,} customers in both, {t['stayed']:,} kept their class, {t['upgrade']:,} moved up and "
        f"{t['downgrade']:,} down; {t['entry']:,} entered and {t['exit']:,} left.",
        f"本次运行 {b['run_id']}（截至 {b['as_of']}）与上一次运行 {a['run_id']}（截至 {a['as_of']}）按{column}比较："
        f"两次都在的 {data['in_both']:,} 位客户中，{t['stayed']:,} 位类别未变，{t['upgrade']:,} 位升级，"
        f"{t['downgrade']:,} 位降级；新进入 {t['entry']:,} 位，离开 {t['exit']:,} 位。",
    )


def history_page(ws: Workspace, run_id: str, lang: ReportLanguage) -> PageParts | None:
    """The history section's caption, content and charts; None when the workspace has a single run (or the
    report's run has nothing to be compared with and there is no trend to draw)."""
    dated = runs_by_date(ws)
    charts: dict[str, dict[str, Any]] = {}
    p = lang.pick
    migration = _migration(ws, run_id, charts, lang)
    trend_figures = _trends(ws, charts, lang) if len(dated) >= 2 else []
    if migration is None and not trend_figures:
        return None
    if migration is not None:
        headline = migration["caption"]
    else:
        headline = p(
            f"Class sizes over the {len(dated)} runs; run {run_id} has no earlier run to compare with.",
            f"{len(dated)} 次运行中各类别的规模；运行 {run_id} 之前没有可比较的运行。",
        )
    notes = []
    if len(dated) < 2:
        notes.append(
            p(
                "All runs have the same as-of date: no trend over time yet (tierwise backfill builds past runs).",
                "所有运行的数据截至日期相同，尚无时间趋势（可用 tierwise backfill 生成历史运行）。",
            )
        )
    content = {"migration": migration, "trends": trend_figures, "notes": notes}
    return headline, content, charts


def _migration(
    ws: Workspace, run_id: str, charts: dict[str, dict[str, Any]], lang: ReportLanguage
) -> dict[str, Any] | None:
    """The migration from the run before to the report's run (its Sankey and matrix go into `charts`); None when
    there is no run before, or the two runs share no class column to compare."""
    try:
        pair: tuple[RunView, RunView] | None = pick_runs(ws, None, run_id)
    except UserError:  # no run before the report's run
        pair = None
    if pair is None:
        return None
    a, b = pair
    column = next((c for c in MIGRATION_COLUMNS if c in a.snapshot.columns and c in b.snapshot.columns), None)
    if column is None:
        return None
    # the same call as `tierwise compare A B --by column --json` (A defaults to the run before B)
    data = compare(ws, a.run_id, b.run_id, column, lang.language, top=0)
    charts["history_sankey"], charts["history_matrix"] = migration_charts(data, lang)
    return {
        "column": column,
        "run_a": data["run_a"],
        "run_b": data["run_b"],
        "in_both": data["in_both"],
        "totals": data["totals"],
        "kpis": migration_kpis(data, lang),
        "caption": migration_caption(data, lang),
        "figures": _migration_figures(data, _column_title(column, lang), lang),
    }


def _migration_figures(data: dict[str, Any], title: str, lang: ReportLanguage) -> list[dict[str, str]]:
    p = lang.pick
    return [
        {
            "id": "history_sankey",
            "title": p(f"Migration of {title}", f"{title}迁移"),
            "caption": p(
                f"Customers flowing from their class as of {data['run_a']['as_of']} (left, with the "
                f"new ones) to their class as of {data['run_b']['as_of']} (right, with the ones gone); "
                "green up, red down.",
                f"客户从 {data['run_a']['as_of']} 的类别（左，含新进入）流向 "
                f"{data['run_b']['as_of']} 的类别（右，含已离开）；绿色为升级，红色为降级。",
            ),
        },
        {
            "id": "history_matrix",
            "title": p("Migration matrix", "迁移矩阵"),
            "caption": p(
                "Customers per cell from → to; hover a cell for its revenue in both runs.",
                "各格为从（行）→ 到（列）的客户数；鼠标悬停可查看两次运行中的收入。",
            ),
        },
    ]


def _trends(ws: Workspace, charts: dict[str, dict[str, Any]], lang: ReportLanguage) -> list[dict[str, str]]:
    """Class sizes over the runs for each trend column the runs have (their charts go into `charts`)."""
    figures: list[dict[str, str]] = []
    for column in TREND_COLUMNS:
        try:
            data = trends(ws, column, lang.language)
        except UserError:  # a run without the column (made by an older version)
            continue
        key = f"history_trend_{column}"
        charts[key] = trend_chart(data, lang)
        title = _column_title(column, lang)
        figures.append(
            {
                "id": key,
                "title": lang.pick(f"Customers by {title} over runs", f"各{title}客户数变化"),
                "caption": _trend_caption(data, lang),
            }
        )
    return figures
