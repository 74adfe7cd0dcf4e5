"""`tierwise runs` and `tierwise show`: the stored runs, a run's class summaries and top customers, one customer
explained."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, WorkspaceOpt, out, print_json
from tierwise.errors import UserError
from tierwise.i18n import TITLES


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("show")(show)


def runs(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the stored runs with their as-of dates, sizes and timings."""
    from tierwise.store.runs import list_runs  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        rows = list_runs(ws)
    if as_json:
        print_json(rows)
        return
    view = Table("run", "as of", "created", "customers", "timings (s)", title="runs", title_justify="left")
    for r in rows:
        view.add_row(str(r["run_id"]), str(r["as_of"]), str(r["created_at"]), f"{r['customers']:,}", str(r["timings"]))
    out.print(view)


def show(
    what: Annotated[str, typer.Argument(help="'summary' (default) or 'customer'.")] = "summary",
    customer_id: Annotated[str | None, typer.Argument(help="Customer id, with 'customer'.")] = None,
    workspace: WorkspaceOpt = Path("."),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    top: Annotated[int, typer.Option(help="How many top customers to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Class summaries of a run and its top customers; 'show customer ID' explains one customer."""
    from tierwise.report.summaries import summarise, top_customers  # lazy: see tierwise.cli
    from tierwise.store.runs import latest_snapshot
    from tierwise.store.snapshots import SUMMARIES
    from tierwise.workspace import Workspace

    if what not in ("summary", "customer"):
        raise UserError(f"'tierwise show {what}': say 'tierwise show' or 'tierwise show customer ID'")
    if what == "customer" and not customer_id:
        raise UserError("'tierwise show customer' needs the customer id, e.g. tierwise show customer C0000001")
    with Workspace.open(workspace, read_only=True) as ws:
        if what == "customer":
            detail = _explain(ws, run_id, str(customer_id))
        else:
            lang = ws.config.workspace.language
            meta, snap = latest_snapshot(ws, run_id)
            data = {
                "run_id": meta["run_id"],
                "as_of": str(meta["as_of"]),
                "summaries": {c: summarise(snap, c, lang) for c in SUMMARIES if c in snap.columns},
                "top_customers": top_customers(snap, top, lang),
            }
    if what == "customer":
        if as_json:
            print_json(detail)
            return
        out.print(f"customer {customer_id} · run {detail['run_id']} · as of {detail['as_of']}")
        for key, value in detail["customer"].items():
            out.print(f"  {key}: {value}", markup=False)
        out.print("why:")
        for reason in detail["reasons"]:
            out.print(f"  - {reason}", markup=False)
        return
    if as_json:
        print_json(data)
        return
    zh = lang == "zh"
    out.print(f"run {data['run_id']} · as of {data['as_of']}")
    for column, rows in data["summaries"].items():
        title = TITLES[column][1 if zh else 0]
        view = Table(
            "客户类别" if zh else "class",
            "客户数" if zh else "customers",
            "占比" if zh else "share",
            "收入" if zh else "revenue",
            "收入占比" if zh else "revenue share",
            title=title,
            title_justify="left",
        )
        for r in rows:
            view.add_row(
                r["label"],
                f"{r['customers']:,}",
                f"{r['customer_share']:.1%}",
                f"{r['revenue']:,.0f}",
                f"{r['revenue_share']:.1%}",
            )
        out.print(view)
    view = Table(
        "#",
        "customer_id",
        "名称" if zh else "name",
        "等级" if zh else "grade",
        "得分" if zh else "score",
        "收入" if zh else "revenue",
        "RFM",
        "生命周期" if zh else "lifecycle",
        title="优先客户" if zh else "top priority customers",
        title_justify="left",
    )
    for r in data["top_customers"]:
        score = r.get("composite_score")
        view.add_row(
            str(r.get("priority_rank") or ""),
            str(r["customer_id"]),
            str(r["name"] or ""),
            str(r.get("grade") or ""),
            "" if score is None else f"{score:.1f}",
            f"{r['monetary']:,.0f}",
            r["rfm_segment_label"],
            r.get("lifecycle_stage_label", ""),
        )
    out.print(view)


def _explain(ws: Any, run_id: str | None, customer_id: str) -> dict[str, Any]:
    """Why one customer of the run is where it is, with its learned class if one was stored."""
    # lazy: see tierwise.cli
    from tierwise.pipeline.learn import learned_for_customer
    from tierwise.report.explain import explain_customer
    from tierwise.store.runs import latest_snapshot, run_config

    meta, snap = latest_snapshot(ws, run_id)
    config = run_config(ws, str(meta["run_id"]))
    detail = explain_customer(snap, meta, customer_id, config, ws.config.workspace.language)
    learned = learned_for_customer(ws, str(meta["run_id"]), customer_id)
    detail["learned"] = learned
    if learned and learned["class"] is not None:
        detail["reasons"].append(
            f"learned class ({learned['model']} on {learned['target']}, model {learned['model_id']}): "
            f"{learned['class']} with confidence {learned['confidence']:.0%}"
        )
    return detail
