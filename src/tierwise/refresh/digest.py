"""The owner's week (`tierwise digest --owner NAME`, and the per-owner mail after a refresh): the owner's top customers
by priority with their next actions, what changed in the owner's book since the previous run, the new customers,
and the alerts of the latest run that name the owner's customers."""

from __future__ import annotations

from typing import Any

import ibis

from tierwise.errors import UserError
from tierwise.history.compare import RunView
from tierwise.refresh import log as refresh_log
from tierwise.refresh.alerts import PREVIOUS, joined
from tierwise.store.compat import with_columns
from tierwise.workspace import Workspace

TOP_FIELDS = ("customer_id", "name", "grade", "priority_rank", "lifecycle_stage", "next_action", "monetary")
CHANGED = ("grade", "lifecycle_stage")


def owners(latest: RunView) -> list[str]:
    t = with_columns(latest.snapshot, "owner")
    t = t.filter(t.owner.notnull())
    return [r["owner"] for r in t.select("owner").distinct().order_by("owner").to_pyarrow().to_pylist()]


def check_owner(latest: RunView, owner: str) -> None:
    known = owners(latest)
    if owner not in known:
        shown = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
        raise UserError(
            f"--owner '{owner}': no customer of run {latest.run_id} has this owner; owners: {shown or 'none'}"
        )


def build_digest(
    ws: Workspace, owner: str, *, latest: RunView, previous: RunView | None, top: int = 20
) -> dict[str, Any]:
    now = with_columns(latest.snapshot, "owner", *CHANGED, "priority_rank", "name")
    mine = now.filter(now.owner == owner)
    fields = [c for c in TOP_FIELDS if c in mine.columns]
    best = mine.order_by([ibis.asc("priority_rank", nulls_first=False), "customer_id"]).limit(top)
    digest: dict[str, Any] = {
        "owner": owner,
        "run_id": latest.run_id,
        "as_of": str(latest.meta["as_of"]),
        "previous_run_id": previous.run_id if previous is not None else None,
        "customers": int(mine.count().execute()),
        "top": best.select(*fields).to_pyarrow().to_pylist(),
        "changes": [],
        "new_customers": [],
        "alerts": [],
    }
    if previous is not None:
        j = joined(now, previous.snapshot)
        j = j.filter(j.owner == owner).order_by([ibis.asc("priority_rank", nulls_first=False), "customer_id"])
        picked = dict.fromkeys(["customer_id", "name", "grade", "is_new", *CHANGED, *(PREVIOUS + c for c in CHANGED)])
        rows = j.select(*picked)
        for row in rows.to_pyarrow().to_pylist():
            if row["is_new"]:
                digest["new_customers"].append({k: row[k] for k in ("customer_id", "name", "grade")})
                continue
            for c in CHANGED:
                if row[PREVIOUS + c] != row[c]:
                    digest["changes"].append(
                        {"customer_id": row["customer_id"], "name": row["name"], "column": c,
                         "previous": row[PREVIOUS + c], "now": row[c]}
                    )  # fmt: skip
    events = ws.table("alert_events")
    for event in events.filter(events.run_id == latest.run_id).order_by("rule").to_pyarrow().to_pylist():
        details = refresh_log.decode(event["details"])
        theirs = [
            {"customer_id": c["customer_id"], "name": c.get("name")}
            for c in details.get("customers", [])
            if c.get("owner") == owner
        ]
        if theirs:
            digest["alerts"].append(
                {
                    "rule": event["rule"],
                    "label": details.get(f"label_{ws.config.workspace.language}") or event["rule"],
                    "customers": theirs,
                }
            )
    return digest
