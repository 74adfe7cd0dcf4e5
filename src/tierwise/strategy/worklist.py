"""The worklist (客户跟进清单): per sales rep, their customers by priority with the next action and why.

Customers are grouped by `owner` (no owner: "unassigned / 未分配") and ordered by `priority_rank` (graded
customers first, best first; then prospects, by revenue and id). Each row carries the playbook's next action,
its reason, the channel, and the cross-sell suggestions of tierwise.strategy.cross_sell. A run made before
the playbook existed has no `next_action`: the workspace's current playbook is applied on the fly.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ibis

from tierwise.errors import UserError
from tierwise.i18n import label as class_label
from tierwise.i18n import strategy_label
from tierwise.store.compat import with_columns
from tierwise.store.runs import latest_snapshot, run_config
from tierwise.strategy.cross_sell import cross_sell, similarity_column
from tierwise.strategy.playbook import PLAYBOOK_COLUMNS, PlaybookRule, apply_playbook

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from tierwise.workspace import Workspace

UNASSIGNED = ("unassigned", "未分配")
_CLASS_LABELS = ("grade", "rfm_segment", "lifecycle_stage", "value_tier", "loyalty")
_COLUMNS = (
    "customer_id",
    "name",
    "owner",
    "priority_rank",
    "grade",
    "composite_score",
    "monetary",
    "recency_days",
    "rfm_segment",
    "lifecycle_stage",
    "value_tier",
    "loyalty",
    "cluster_name",
    *PLAYBOOK_COLUMNS,
)


@dataclass
class Worklist:
    run_id: str
    as_of: str
    language: str
    playbook: str  # "run": the run's own columns; "applied now": the current playbook applied on the fly
    similar_by: str | None
    owners: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "language": self.language,
            "playbook": self.playbook,
            "similar_by": self.similar_by,
            "owners": self.owners,
            "notes": self.notes,
        }


def owner_label(owner: str | None, language: str) -> str:
    if owner is None:
        return UNASSIGNED[1] if language == "zh" else UNASSIGNED[0]
    return owner


def with_strategy(
    snapshot: ir.Table, rules: list[PlaybookRule], *, budget: float, language: str, reapply: bool
) -> ir.Table:
    """The snapshot with the playbook columns: its own, or (re)applied when asked or missing."""
    if reapply or "next_action" not in snapshot.columns:
        return apply_playbook(snapshot, rules, budget=budget, language=language)
    return snapshot


def ordered(snapshot: ir.Table) -> ir.Table:
    """Add `position`: 1.. within each owner, by priority_rank (nulls last), then revenue and id."""
    t = with_columns(snapshot, "owner", "priority_rank")
    keys: list[Any] = [t.priority_rank.isnull(), t.priority_rank, ibis.desc(t.monetary.fill_null(0)), t.customer_id]
    return t.mutate(position=ibis.row_number().over(group_by=t.owner, order_by=keys) + 1)


def build_worklist(
    ws: Workspace,
    *,
    run_id: str | None = None,
    owner: str | None = None,
    top: int | None = None,
    language: str | None = None,
) -> Worklist:
    if top is not None and top < 1:
        raise UserError(f"--top {top}: give 1 or more")
    lang = language or ws.config.workspace.language
    if lang not in ("zh", "en"):
        raise UserError(f"--lang '{lang}': say zh or en")
    meta, snap = latest_snapshot(ws, run_id)
    settings = ws.config
    notes: list[str] = []
    if "next_action" in snap.columns:
        try:
            settings = run_config(ws, str(meta["run_id"]))
        except Exception:  # a run stored with settings this version cannot read: use the workspace's
            notes.append("the run's settings could not be read; labels follow the workspace's playbook")
        source = "run"
        reapply = lang != settings.workspace.language  # same rules, reasons in the other language
    else:
        source, reapply = "applied now", True
        notes.append("this run has no next_action (made before the playbook): the workspace's playbook was applied now")
    rules = settings.playbook
    snap = with_strategy(snap, rules, budget=settings.strategy.budget, language=lang, reapply=reapply)
    t = ordered(snap)
    totals = {r["owner"]: int(r["n"]) for r in t.group_by("owner").aggregate(n=t.count()).to_pyarrow().to_pylist()}
    if owner is not None:
        t = t.filter(_owner_filter(t, owner))
    if top is not None:
        t = t.filter(t.position <= top)
    keep = [c for c in _COLUMNS if c in t.columns] + ["position"]
    selected = t.select(*keep)
    rows = selected.order_by([selected.owner.isnull(), selected.owner, selected.position]).to_pyarrow().to_pylist()

    strategy = ws.config.strategy
    similar_by: str | None = None
    suggestions: dict[str, list[dict[str, Any]]] = {}
    if strategy.cross_sell_top > 0 and rows:
        try:
            similar_by = similarity_column(snap, strategy.cross_sell_by)
            cs = cross_sell(
                snap,
                ws.table("orders"),
                strategy.cross_sell_top,
                similar_by,
                min_support=strategy.cross_sell_min_support,
                as_of=meta.get("as_of"),
                targets=selected,
            )
            for s in cs.order_by(["customer_id", "rank"]).to_pyarrow().to_pylist():
                suggestions.setdefault(s.pop("customer_id"), []).append(s)
        except UserError as exc:
            notes.append(f"no cross-sell suggestions: {exc}")

    names = {r.name: r.display_label(lang) for r in rules}
    owners: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        key = r["owner"]
        group = owners.setdefault(
            key, {"owner": key, "label": owner_label(key, lang), "customers": totals.get(key, 0), "rows": []}
        )
        for column in _CLASS_LABELS:
            if column in r:
                r[f"{column}_label"] = class_label(column, r[column], lang)
        r["strategy_label"] = names.get(r.get("strategy") or "", r.get("strategy") or "—")
        r["action_label"] = strategy_label("action", r.get("next_action"), lang)
        r["service_level_label"] = strategy_label("service_level", r.get("service_level"), lang)
        r["channel_label"] = strategy_label("channel", r.get("channel"), lang)
        r["cross_sell"] = suggestions.get(r["customer_id"], [])
        del r["owner"]
        group["rows"].append(r)
    return Worklist(
        run_id=str(meta["run_id"]),
        as_of=str(meta["as_of"]),
        language=lang,
        playbook=source,
        similar_by=similar_by,
        owners=list(owners.values()),
        notes=notes,
    )


def _owner_filter(t: ir.Table, owner: str) -> Any:
    if owner.strip().lower() in UNASSIGNED:
        return t.owner.isnull()
    known = [o for o in t.select("owner").distinct().to_pyarrow()["owner"].to_pylist() if o is not None]
    if owner not in known:
        close = difflib.get_close_matches(owner, known, n=3, cutoff=0.3)
        hint = ("did you mean " + " or ".join(f"'{c}'" for c in close) + "? ") if close else ""
        raise UserError(
            f"--owner '{owner}': no customer has this owner; {hint}"
            f"owners are in the customers table's owner column ('{UNASSIGNED[0]}' for customers without one)"
        )
    return t.owner == owner
