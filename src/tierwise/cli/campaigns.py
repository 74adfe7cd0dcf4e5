"""`tierwise campaign plan|report|list`: target lists with control groups, and what the campaign achieved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, Lang, WorkspaceOpt, out, print_json

campaign_app = typer.Typer(
    help="Campaigns: target lists with a random control group, and their results (营销活动).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")


@campaign_app.command("plan")
def plan_command(
    name: Annotated[str, typer.Argument(help="Campaign name; the campaign_id of the responses file.")],
    where: Annotated[
        str, typer.Option(help="Customers to target, in the rule language, e.g. \"rfm_segment = 'at_risk'\".")
    ],
    control: Annotated[str, typer.Option(help="Control group share, e.g. 10% or 0.1; 0% for none.")] = "10%",
    seed: Annotated[
        int | None, typer.Option(min=0, help="Random seed (same seed, run and --where: same groups; default: random).")
    ] = None,
    stratify: Annotated[str, typer.Option(help="Column whose classes are sampled separately.")] = "rfm_segment",
    cost_per_contact: Annotated[
        float | None, typer.Option("--cost-per-contact", min=0, help="Cost of one contact, for the ROI.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the target list (treatment) to .csv/.xlsx/.parquet.")
    ] = None,
    control_output: Annotated[
        Path | None, typer.Option("--control-output", help="Also write the control list (not to be contacted).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a plan of the same name (draws again).")] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Select customers, draw a control group per segment, record the plan and export the target list."""
    from tierwise.campaigns.plan import create_plan  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace) as ws:
        result = create_plan(
            ws, name, where=where, control=control, seed=seed, stratify=stratify,
            cost_per_contact=cost_per_contact, run_id=run_id, output=output, control_output=control_output,
            replace=replace,
        )  # fmt: skip
    data = result.as_json()
    if as_json:
        print_json(data)
        return
    out.print(
        f"campaign '{result.name}': {result.customers:,} customers of run {result.run_id} → treatment "
        f"{result.treatment:,}, control {result.control:,} ({result.control_share:.1%} per {result.stratify}, "
        f"seed {result.seed})",
        markup=False,
    )
    view = Table(result.stratify, "customers", "treatment", "control", title_justify="left")
    for stratum, counts in result.strata.items():
        view.add_row(stratum, f"{counts['customers']:,}", f"{counts['treatment']:,}", f"{counts['control']:,}")
    out.print(view)
    for group, path in result.files.items():
        out.print(f"{group} list written to {path}", markup=False)
    if not result.files:
        out.print("no list written; add --output FILE.csv (or .xlsx) to export the target list", markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def _ci(v: list[float] | None) -> str:
    return "—" if v is None else f"{v[0]:.1%}…{v[1]:.1%}"


def _money(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f}"


@campaign_app.command("report")
def report_command(
    name: Annotated[str, typer.Argument(help="Campaign name (plan name or campaign_id of the loaded contacts).")],
    cost_per_contact: Annotated[
        float | None,
        typer.Option("--cost-per-contact", min=0, help="Cost of one contact (default: the plan's), for the ROI."),
    ] = None,
    lang: Annotated[
        Lang | None, typer.Option("--lang", help="Labels in zh or en (default: language in tierwise.toml).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Response rates (Wilson 95%), revenue per contact, lift over control (Newcombe 95%) and ROI per segment."""
    from tierwise.campaigns.evaluate import campaign_report  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        language = lang.value if lang else ws.config.workspace.language
        data = campaign_report(ws, name, cost_per_contact=cost_per_contact, language=language)
    if as_json:
        print_json(data)
        return
    zh = language == "zh"
    out.print(
        f"campaign '{data['campaign']}' ({'plan' if data['source'] == 'plan' else 'contacts only'}"
        + (f", run {data['run_id']}" if data["run_id"] else "")
        + ")",
        markup=False,
    )
    headers = (
        ["分群", "触达", "响应", "响应率 (95%区间)", "单客收入", "对照组", "对照响应率 (95%区间)", "提升 (95%区间)",
         "ROI"]
        if zh
        else ["segment", "contacted", "responded", "rate (95% CI)", "revenue/contact", "control",
              "control rate (95% CI)", "lift (95% CI)", "ROI"]
    )  # fmt: skip
    view = Table(*headers, title_justify="left")
    total = "合计" if zh else "overall"
    for row in [*data["segments"], {"label": total, **data["overall"]}]:
        roi = row["incremental_roi"] if row["incremental_roi"] is not None else row["roi"]
        view.add_row(
            row["label"],
            f"{row['contacted']:,}",
            f"{row['responded']:,}",
            f"{_pct(row['response_rate'])} ({_ci(row['response_rate_ci'])})",
            _money(row["revenue_per_contact"]),
            f"{row['control_customers']:,}",
            "—"
            if row["control_response_rate"] is None
            else f"{_pct(row['control_response_rate'])} ({_ci(row['control_response_rate_ci'])})",
            "—"
            if row["lift"] is None
            else f"{row['lift'] * 100:+.1f} pp ({row['lift_ci'][0] * 100:+.1f}…{row['lift_ci'][1] * 100:+.1f})",
            _pct(roi),
            style="bold" if row["label"] == total else None,
        )
    out.print(view)
    o = data["overall"]
    if o["cost"] is not None:
        line = f"cost {o['cost']:,.2f} ({data['cost_per_contact']:g} per contact); gross ROI {_pct(o['roi'])}"
        if o["incremental_roi"] is not None:
            line += (
                f"; incremental revenue {o['incremental_revenue']:,.2f} "
                f"({o['incremental_revenue_per_contact']:,.2f} per contact), "
                f"incremental ROI {_pct(o['incremental_roi'])}"
            )
        out.print(line, markup=False)
    for note in data["notes"]:
        out.print(f"note: {note}", markup=False)


@campaign_app.command("list")
def list_command(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Planned campaigns and campaigns found in the loaded contacts."""
    from tierwise.campaigns.plan import list_campaigns  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        rows = list_campaigns(ws)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No campaign yet: tierwise campaign plan NAME --where EXPR", markup=False)
        return
    view = Table("campaign", "planned", "run", "created", "customers", "treatment", "control", "contact rows")
    for r in rows:
        view.add_row(
            str(r["name"]),
            "yes" if r["planned"] else "no",
            str(r.get("run_id") or ""),
            str(r.get("created_at") or ""),
            f"{r['customers']:,}",
            "" if "treatment" not in r else f"{r['treatment']:,}",
            "" if "control" not in r else f"{r['control']:,}",
            f"{r['contact_rows']:,}",
        )
    out.print(view)
