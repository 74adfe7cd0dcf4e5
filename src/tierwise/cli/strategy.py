"""Commands of the strategy area: `tierwise worklist` and `tierwise playbook`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, LangOpt, RunOpt, WorkspaceOpt, out, print_json
from tierwise.errors import UserError
from tierwise.i18n import strategy_label

_HEADERS = {
    "zh": ("#", "优先级", "客户", "等级", "下一步行动", "渠道", "原因", "交叉销售建议"),
    "en": ("#", "priority", "customer", "grade", "next action", "channel", "reason", "cross-sell"),
}


def register(app: typer.Typer) -> None:
    app.command("worklist")(worklist)
    app.command("playbook")(playbook)


def worklist(
    owner: Annotated[
        str | None, typer.Option("--owner", help="Only this sales rep ('unassigned' / '未分配': no owner).")
    ] = None,
    top: Annotated[int | None, typer.Option("--top", help="At most this many customers per sales rep.")] = None,
    lang: LangOpt = None,
    workspace: WorkspaceOpt = Path("."),
    run_id: RunOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The prioritised list per sales rep: next action, why, channel and cross-sell suggestions."""
    from tierwise.strategy.worklist import build_worklist  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        data = build_worklist(ws, run_id=run_id, owner=owner, top=top, language=lang.value if lang else None)
    if as_json:
        print_json(data.as_json())
        return
    zh = data.language == "zh"
    out.print(f"{'运行' if zh else 'run'} {data.run_id} · {'截至' if zh else 'as of'} {data.as_of}", markup=False)
    if not data.owners:
        out.print("没有客户。" if zh else "No customers.")
    for group in data.owners:
        shown = len(group["rows"])
        title = f"{group['label']} · {shown:,} / {group['customers']:,}"
        view = Table(*_HEADERS[data.language], title=title, title_justify="left", show_lines=True)
        view.columns[6].overflow = "fold"  # the reason is the point of the list: wrap it, never cut it
        for r in group["rows"]:
            suggestions = "\n".join(f"{s['category']} {s['support']:.0%} ({s['buyers']:,})" for s in r["cross_sell"])
            view.add_row(
                str(r["position"]),
                "" if r.get("priority_rank") is None else str(r["priority_rank"]),
                f"{r['customer_id']}\n{r.get('name') or ''}",
                r.get("grade_label", ""),
                f"{r['action_label']}\n({r['strategy_label']})",
                r["channel_label"],
                r.get("action_reason") or "",
                suggestions or "—",
            )
        out.print(view)
    for note in data.notes:
        out.print(f"note: {note}", markup=False)


def playbook(
    lang: LangOpt = None,
    workspace: WorkspaceOpt = Path("."),
    run_id: RunOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The playbook rules in order (first match wins), with the customers each matched in the latest run."""
    from tierwise.store.runs import latest_snapshot  # lazy: see tierwise.cli
    from tierwise.strategy.worklist import with_strategy
    from tierwise.workspace import Workspace

    with Workspace.open(workspace, read_only=True) as ws:
        cfg = ws.config
        language = lang.value if lang else cfg.workspace.language
        counts: dict[str | None, int] | None = None
        try:
            _, snap = latest_snapshot(ws, run_id)
        except UserError:
            if run_id:
                raise
            snap = None
        if snap is not None:
            t = with_strategy(snap, cfg.playbook, budget=cfg.strategy.budget, language=language, reapply=True)
            grouped = t.group_by("strategy").aggregate(n=t.count()).to_pyarrow().to_pylist()
            counts = {r["strategy"]: int(r["n"]) for r in grouped}
    rules = []
    for i, r in enumerate(cfg.playbook, start=1):
        rules.append(
            {
                "position": i,
                **r.model_dump(),
                "label": r.display_label(language),
                "action_label": strategy_label("action", r.action, language),
                "service_level_label": strategy_label("service_level", r.service_level, language),
                "channel_label": strategy_label("channel", r.channel, language),
                "budget": cfg.strategy.budget * r.budget_share,
                "customers": None if counts is None else counts.get(r.name, 0),
            }
        )
    unmatched = None if counts is None else counts.get(None, 0)
    if as_json:
        print_json({"budget": cfg.strategy.budget, "rules": rules, "unmatched": unmatched})
        return
    zh = language == "zh"
    headers = (
        ("#", "策略", "条件", "行动", "服务", "渠道", "联系间隔(天)", "预算占比", "客户数")
        if zh
        else ("#", "strategy", "when", "action", "service", "channel", "every (days)", "budget share", "customers")
    )
    view = Table(*headers, title="策略手册（按顺序，首条匹配生效）" if zh else "playbook (in order, first match wins)")
    for entry in rules:
        view.add_row(
            str(entry["position"]),
            f"{entry['label']}\n{entry['name']}",
            " ".join(entry["when"].split()),
            entry["action_label"],
            entry["service_level_label"],
            entry["channel_label"],
            str(entry["contact_every_days"]),
            f"{entry['budget_share']:.0%}",
            "" if entry["customers"] is None else f"{entry['customers']:,}",
        )
    out.print(view)
    if unmatched:
        out.print(f"{unmatched:,} " + ("位客户未匹配任何规则" if zh else "customers match no rule"), markup=False)
