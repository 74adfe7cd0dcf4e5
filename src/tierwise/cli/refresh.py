"""`tierwise refresh` (sources → run → comparison → alerts → deliveries) and `tierwise digest` (an owner's week)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, LangOpt, WorkspaceOpt, err, out, print_json
from tierwise.errors import UserError
from tierwise.progress import progress_bars


def register(app: typer.Typer) -> None:
    app.command("refresh")(refresh)
    app.command("digest")(digest)


def refresh(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Read every source (\\[\\[sources]] in tierwise.toml), run when something changed, compare with the previous
    run, check the alerts (\\[\\[alerts]]) and deliver them (docs/refresh.md). Safe to repeat; a killed refresh
    resumes."""
    from tierwise.refresh.job import refresh as run_refresh  # lazy: see tierwise.cli

    def step(line: str) -> None:
        (err if as_json else out).print(line, markup=False, soft_wrap=True)

    with progress_bars(err) as bars:
        report = run_refresh(
            workspace, trigger="cli", on_step=step,
            progress=lambda name, total: bars.task(f"reading {Path(name).name}", total),
        )  # fmt: skip
    if as_json:
        print_json(report.as_json())
    if report.status != "ok":
        failed = [s["name"] for s in report.sources if s["status"] in ("failed", "partial")]
        undelivered = sum(x.get("now") and x["status"] == "failed" for a in report.alerts for x in a["deliveries"])
        problems = ([f"sources with errors: {', '.join(failed)}"] if failed else []) + (
            [f"{undelivered} deliveries failed (tried again at the next refresh)"] if undelivered else []
        )
        err.print(f"refresh {report.status}: " + "; ".join(problems), markup=False, soft_wrap=True)
        raise typer.Exit(1)


def digest(
    owner: Annotated[str, typer.Option("--owner", help="The owner (客户经理) as in the customers' owner column.")],
    workspace: WorkspaceOpt = Path("."),
    top: Annotated[int, typer.Option(help="Customers to list, by priority.", min=1, max=500)] = 20,
    send: Annotated[
        bool, typer.Option("--send", help="Also mail it to the owner's address in [delivery.owners].")
    ] = False,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An owner's week: their top customers with next actions, what changed in their book, their alerts."""
    from tierwise.refresh.deliver import send_mail  # lazy: see tierwise.cli
    from tierwise.refresh.digest import build_digest, check_owner
    from tierwise.refresh.job import dashboard_url, latest_and_previous
    from tierwise.refresh.mail import digest_mail
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        latest, previous = latest_and_previous(ws)
        if latest is None:
            raise UserError("no run yet; make one with 'tierwise refresh' or 'tierwise run'")
        check_owner(latest, owner)
        cfg = ws.config
        language = lang.value if lang else cfg.workspace.language
        found = build_digest(ws, owner, latest=latest, previous=previous, top=top)
        if send:
            address = cfg.delivery.owners.get(owner)
            if not address:
                raise UserError(f"no address for '{owner}': add it under [delivery.owners] in tierwise.toml")
            outcome = send_mail(
                cfg.delivery, address,
                digest_mail(language, found, dashboard_url=dashboard_url(cfg), currency=cfg.workspace.currency),
            )  # fmt: skip
            found["sent"] = {"status": outcome.status, "attempts": outcome.attempts, "detail": outcome.detail}
    if as_json:
        print_json(found)
    else:
        _show(found, language)
    if send and found["sent"]["status"] != "delivered":
        err.print(f"digest not sent: {found['sent']['detail']}", markup=False)
        raise typer.Exit(1)


def _show(d: dict[str, Any], language: str) -> None:
    from tierwise.i18n import heading, label, strategy_label  # lazy: see tierwise.cli

    zh = language == "zh"
    out.print(
        f"{d['owner']} 的客户（运行 {d['run_id']}，截至 {d['as_of']}）：共 {d['customers']:,} 位"
        if zh
        else f"{d['owner']}'s book (run {d['run_id']}, as of {d['as_of']}): {d['customers']:,} customers",
        markup=False,
    )
    if d["top"]:
        top = Table(*(heading(c, language) for c in d["top"][0]))
        for row in d["top"]:
            top.add_row(*(_cell(k, v, language, label, strategy_label) for k, v in row.items()))
        out.print(top)
    if d["changes"]:
        out.print("变化：" if zh else "Changes:")
        for c in d["changes"]:
            col = c["column"]
            out.print(
                f"  {c['customer_id']} {c['name'] or ''}: {heading(col, language)} "
                f"{label(col, c['previous'], language)} → {label(col, c['now'], language)}",
                markup=False,
            )
    if d["new_customers"]:
        out.print(("新客户：" if zh else "New customers: ") + ", ".join(c["customer_id"] for c in d["new_customers"]))
    for a in d["alerts"]:
        out.print(
            f"{'预警' if zh else 'alert'} {a['label']}: " + ", ".join(c["customer_id"] for c in a["customers"]),
            markup=False,
        )


def _cell(column: str, value: Any, language: str, label: Any, strategy_label: Any) -> str:
    if column == "next_action":
        return str(strategy_label("action", value, language))
    if column in ("grade", "lifecycle_stage"):
        return str(label(column, value, language))
    return "" if value is None else f"{value:,}" if isinstance(value, int) and column != "priority_rank" else f"{value}"
