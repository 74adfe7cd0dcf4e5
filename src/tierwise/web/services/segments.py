"""The segments page: each class of a class column with its size, revenue, share and the playbook's strategy
for most of its members, and the members of one class (a page of the customer list)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.i18n import TITLES, strategy_label
from tierwise.report.charts import distribution
from tierwise.report.language import ReportLanguage
from tierwise.store.snapshots import SUMMARIES
from tierwise.strategy.settings import ACTIONS
from tierwise.web.cache import cache_for
from tierwise.web.services._common import cluster_names, jsonable, language_of
from tierwise.web.services.customers import query_customers
from tierwise.workspace import Workspace

CLASS_COLUMNS = (*SUMMARIES, "satisfaction_level")


def _check_column(column: str, snap: ir.Table) -> None:
    usable = [c for c in CLASS_COLUMNS if c in snap.columns]
    if column not in usable:
        raise UserError(f"segments by '{column}': not a class column of this run; choose one of {', '.join(usable)}")


def _code_filter(column: str, code: str | None) -> Any:
    """Members of class `code`; None or '' are the customers without a class (e.g. prospects have no grade)."""
    if code is None or code == "":
        return lambda t: t[column].isnull()
    return lambda t: t[column].cast("string") == str(code)


def segments(
    ws: Workspace, column: str = "grade", run_id: str | None = None, language: str | None = None
) -> dict[str, Any]:
    """{run_id, as_of, column, title, classes: [{code, label, customers, customer_share, revenue, revenue_share,
    strategy, strategy_label, strategy_share, next_action, action_label, action_share}]}: the classes in the
    report's order; `strategy` is the playbook rule most of the class's members got (ties: the rule listed
    first), `strategy_share` the share of the members with it; the same for `next_action`."""
    lang_code = language_of(ws, language)
    meta, snap = cache_for(ws).snapshot(ws, run_id)
    _check_column(column, snap)
    config = cache_for(ws).config(ws, str(meta["run_id"]))
    lang = ReportLanguage(lang_code, ws.config.workspace.currency)
    rows = distribution(snap, column, lang)
    if column == "cluster_name":  # the snapshot holds the names in the workspace's language
        names_in_lang = cluster_names([meta], lang_code)
        for r in rows:
            if r["code"] is not None:
                r["label"] = names_in_lang.get(str(r["code"]), r["label"])
    names = {r.name: r.display_label(lang_code) for r in config.playbook}
    order = {r.name: i for i, r in enumerate(config.playbook)}
    strategy = _most_common(snap, column, "strategy", order)
    actions = _most_common(snap, column, "next_action", {a: i for i, a in enumerate(ACTIONS)})
    for r in rows:
        key = None if r["code"] is None else str(r["code"])
        s, s_n = strategy.get(key, (None, 0))
        a, a_n = actions.get(key, (None, 0))
        r.update(
            strategy=s,
            strategy_label=None if s is None else names.get(s, s),
            strategy_share=s_n / r["customers"] if r["customers"] else 0.0,
            next_action=a,
            action_label=None if a is None else strategy_label("action", a, lang_code),
            action_share=a_n / r["customers"] if r["customers"] else 0.0,
        )
    return jsonable(
        {
            "run_id": meta["run_id"],
            "as_of": meta["as_of"],
            "column": column,
            "title": TITLES.get(column, (column, column))[1 if lang_code == "zh" else 0],
            "classes": rows,
        }
    )


def _most_common(snap: ir.Table, column: str, what: str, order: dict[str, int]) -> dict[str | None, tuple[Any, int]]:
    """class code (as text) → (the most common value of `what` among its members, how many have it)."""
    if what not in snap.columns:
        return {}
    t = snap.select(code=snap[column].cast("string"), value=snap[what])
    g = t.group_by("code", "value").aggregate(n=ibis._.count()).to_pyarrow().to_pylist()
    best: dict[str | None, tuple[Any, int]] = {}
    for r in g:
        if r["value"] is None:
            continue
        current = best.get(r["code"])
        rank = order.get(r["value"], len(order))
        if (
            current is None
            or r["n"] > current[1]
            or (r["n"] == current[1] and rank < order.get(current[0], len(order)))
        ):
            best[r["code"]] = (r["value"], int(r["n"]))
    return best


def segment_members(
    ws: Workspace,
    column: str,
    code: str | None,
    *,
    page: int = 1,
    page_size: int = 50,
    sort: str | None = "priority_rank",
    columns: Sequence[str] | None = None,
    where: str | None = None,
    search: str | None = None,
    mask_personal: bool = False,
    run_id: str | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """A page of the customers in class `code` of `column` (None or '': those without a class): the shape of
    customers.list_customers, with `column` and `code` added."""
    lang = language_of(ws, language)
    meta, snap = cache_for(ws).snapshot(ws, run_id)
    _check_column(column, snap)
    data = query_customers(
        ws,
        meta,
        snap,
        where=where,
        search=search,
        sort=sort,
        page=page,
        page_size=page_size,
        columns=columns,
        mask_personal=mask_personal,
        language=lang,
        restrict=_code_filter(column, code),
        restrict_key=(column, code or None),
    )
    return {"column": column, "code": code or None, **data}
