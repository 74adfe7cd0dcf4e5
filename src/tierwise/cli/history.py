"""Commands of the history area: compare, trends, timeline and backfill; `serve` is the scheduler that
`tierwise serve --once` runs (tierwise.cli.web)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, LangOpt, WorkspaceOpt, date_option, err, out, print_json, with_workspace
from tierwise.errors import UserError
from tierwise.progress import progress_bars


class Every(StrEnum):
    week = "week"
    month = "month"
    quarter = "quarter"


ByOpt = Annotated[
    str,
    typer.Option(
        "--by",
        help="Class column: grade, rfm_segment, rfm_class8, abc_class, value_tier, lifecycle_stage, loyalty, "
        "cluster_name.",
    ),
]


def compare(
    run_a: Annotated[str | None, typer.Argument(help="Earlier run id (default: the run before run B).")] = None,
    run_b: Annotated[str | None, typer.Argument(help="Later run id (default: the latest run).")] = None,
    by: ByOpt = "grade",
    top: Annotated[int, typer.Option(min=0, help="Moved customers listed with their reasons (by revenue).")] = 20,
    lang: LangOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Migration between two runs: from → to matrix, upgrades, downgrades, entries, exits, and why each moved."""
    from tierwise.history.compare import compare as run_compare  # lazy: see tierwise.cli

    data, language = with_workspace(
        workspace, lang, lambda ws, language: run_compare(ws, run_a, run_b, by, language, top), read_only=True
    )
    if as_json:
        print_json(data)
        return
    _print_compare(data, language)


def _print_compare(data: dict[str, Any], language: str) -> None:
    zh = language == "zh"
    a, b = data["run_a"], data["run_b"]
    out.print(f"{data['column']}: run {a['run_id']} (as of {a['as_of']}) → run {b['run_id']} (as of {b['as_of']})")
    new_label, gone_label = ("新进入", "已离开") if zh else ("(new)", "(gone)")
    rows: dict[Any, str] = {}
    cols: dict[Any, str] = {}
    cells: dict[tuple[Any, Any], dict[str, Any]] = {}
    for c in data["matrix"]:
        f = ("entry",) if c["kind"] == "entry" else ("class", c["from"])
        t = ("exit",) if c["kind"] == "exit" else ("class", c["to"])
        rows.setdefault(f, new_label if c["kind"] == "entry" else c["from_label"])
        cols.setdefault(t, gone_label if c["kind"] == "exit" else c["to_label"])
        cells[(f, t)] = c
    row_keys = sorted(rows, key=lambda k: k == ("entry",))
    col_keys = sorted(
        cols, key=lambda k: (k == ("exit",), next((i for i, r in enumerate(row_keys) if r == k), len(row_keys)))
    )
    view = Table("从 \\ 到" if zh else "from \\ to", *[cols[k] for k in col_keys], title_justify="left",
                 title="迁移矩阵（客户数）" if zh else "migration (customers)")  # fmt: skip
    for r in row_keys:
        view.add_row(rows[r], *[f"{cells[(r, k)]['customers']:,}" if (r, k) in cells else "" for k in col_keys])
    out.print(view)
    t = data["totals"]
    out.print(
        f"in both runs {data['in_both']:,}: stayed {t['stayed']:,}, up {t['upgrade']:,}, down {t['downgrade']:,}"
        + (f", changed {t['changed']:,}" if t["changed"] else "")
        + f"; entries {t['entry']:,}, exits {t['exit']:,}"
    )
    top = data.get("new_in_top")
    if top:
        last = "—" if top["previous_run"] is None else f"{top['previous_run']:,}"
        out.print(f"new in {top['label']}: {top['this_run']:,} this run vs {last} the run before", markup=False)
    stab = data.get("stability")
    if stab and stab.get("held"):
        out.print(f"stability: {stab['held']:,} grade changes held back in run {b['run_id']}", markup=False)
    if data["moved_customers"]:
        out.print("[bold]移动的客户及原因[/]" if zh else "[bold]moved customers and why[/]")
        for m in data["moved_customers"]:
            out.print(f"{m['customer_id']} {m['from_label']} → {m['to_label']} ({m['kind']})", markup=False)
            for reason in m["reasons"]:
                out.print(f"    - {reason}", markup=False)


def trends(
    by: ByOpt = "grade",
    lang: LangOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Class sizes over all runs (one per as-of date), and customers new to the best class in each run."""
    from tierwise.history.trends import trends as run_trends  # lazy: see tierwise.cli

    data, _ = with_workspace(workspace, lang, lambda ws, language: run_trends(ws, by, language), read_only=True)
    if as_json:
        print_json(data)
        return
    top = data["top_class"]
    heads = [c["label"] for c in data["classes"]]
    view = Table("as of", *heads, *(["new in top"] if top else []), title=f"{data['column']} over runs",
                 title_justify="left")  # fmt: skip
    for r in data["runs"]:
        sizes = [f"{r['sizes'].get(str(c['code']), 0):,}" for c in data["classes"]]
        extra = [] if not top else ["—" if r["new_in_top"] is None else f"{r['new_in_top']:,}"]
        view.add_row(r["as_of"], *sizes, *extra)
    out.print(view)


def timeline(
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    lang: LangOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One customer's classes over all runs: current and previous class, and since when."""
    from tierwise.history.trends import TIMELINE_COLUMNS  # lazy: see tierwise.cli
    from tierwise.history.trends import timeline as run_timeline

    data, _ = with_workspace(
        workspace, lang, lambda ws, language: run_timeline(ws, customer_id, language), read_only=True
    )
    if as_json:
        print_json(data)
        return
    view = Table("as of", "score", *TIMELINE_COLUMNS, title=f"customer {customer_id}", title_justify="left")
    for r in data["runs"]:
        if not r["present"]:
            view.add_row(r["as_of"], "", *["(absent)"] + [""] * (len(TIMELINE_COLUMNS) - 1))
            continue
        score = r.get("composite_score")
        view.add_row(r["as_of"], "" if score is None else f"{score:.1f}", *[str(r[c] or "") for c in TIMELINE_COLUMNS])
    out.print(view)
    for column, c in data["classes"].items():
        was = f", before {c['previous_label']}" if c["changed"] else ""
        out.print(f"{column}: {c['current_label']} since {c['since']}{was}", markup=False)


def backfill(
    start: Annotated[str, typer.Option("--from", help="First as-of date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last as-of date, YYYY-MM-DD.")],
    every: Annotated[Every, typer.Option("--every", help="week, month or quarter.")] = Every.month,
    replace: Annotated[bool, typer.Option("--replace", help="Also redo dates that already have a run.")] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Runs as of past dates from the data as it stood then (nothing later is seen), so trends start at once."""
    from tierwise.pipeline.backfill import backfill as run_backfill  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    first, last = date_option(start, "--from"), date_option(end, "--to")
    with Workspace.open(workspace) as ws, progress_bars(err, bytes_mode=False) as bars:
        tick: dict[str, Any] = {}

        def on_date(done: int, total: int, day: Any) -> None:
            if "bar" not in tick:
                tick["bar"] = bars.task("backfilling runs", total)
            tick["bar"](done)

        report = run_backfill(ws, first, last, every.value, replace=replace, on_date=on_date)
    data = report.as_json()
    if as_json:
        print_json(data)
        return
    for r in report.runs:
        out.print(f"run {r.run_id} as of {r.as_of}: {r.customers:,} customers")
    out.print(f"{len(report.runs)} runs added" + (f", {len(report.skipped)} dates kept" if report.skipped else ""))
    for note in report.notes:
        out.print(f"note: {note}", markup=False)


def serve(
    once: Annotated[
        bool, typer.Option("--once", help="Refresh if a slot is due, then exit (for cron and tests).")
    ] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Refresh on the schedule of tierwise.toml: sleep until the next slot, refresh, log one line per refresh."""
    from tierwise.refresh.schedule import run_due  # lazy: see tierwise.cli
    from tierwise.refresh.schedule import serve as run_serve

    root = workspace.resolve()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if not as_json:
            out.print(line, markup=False, soft_wrap=True)

    if once:
        result = run_due(root, log)
        if as_json:
            print_json({"ran": result is not None and result.get("status") != "failed", "result": result, "log": lines})
        if result is not None and result.get("status") != "ok":
            raise typer.Exit(1)
        return
    if as_json:
        raise UserError("--json goes with --once; 'tierwise serve' alone logs one line per run")
    run_serve(root, log)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("trends")(trends)
    app.command("timeline")(timeline)
    app.command("backfill")(backfill)
