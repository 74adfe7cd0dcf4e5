"""Campaign plans: the customers a campaign targets, a random control group per segment, the exported list.

A plan is recorded in two system tables (workspace.py): `campaign_plans` (one row per plan) and
`campaign_members` (one row per selected customer: group treatment/control and stratum). The control group is
drawn within each stratum (segment) so that every segment keeps the same control share; see docs/campaigns.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.checks import check_name
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.exports import write_table
from tierwise.store.runs import latest_snapshot
from tierwise.store.snapshots import select_customers
from tierwise.workspace import Workspace

TREATMENT, CONTROL = "treatment", "control"
EMPTY_STRATUM = "(empty)"  # customers whose stratify column is empty form a stratum of their own
EXPORT_FORMATS = ("csv", "xlsx", "parquet")

# Snapshot columns a target list carries when they exist (besides campaign_id, customer_id, group, stratum).
LIST_COLUMNS = (
    "name",
    "phone",
    "email",
    "owner",
    "grade",
    "priority_rank",
    "rfm_segment",
    "lifecycle_stage",
    "value_tier",
    "next_action",
    "strategy",
)


def parse_share(text: str) -> Fraction:
    """'10%' → 1/10, '0.1' → 1/10; exact, so round(share × n) never suffers from binary floating point."""
    raw = str(text).strip()
    try:
        value = Fraction(raw[:-1].strip()) / 100 if raw.endswith("%") else Fraction(raw)
    except (ValueError, ZeroDivisionError) as exc:
        raise UserError(f"--control '{text}' is not a share; write it like 10% or 0.1") from exc
    if not raw.endswith("%") and value > 1:
        raise UserError(f"--control '{text}': a share without % must be between 0 and 1; did you mean {raw}%?")
    if not 0 <= value < 1:
        raise UserError(f"--control '{text}': the control share must be at least 0% and below 100%")
    return value


def control_size(n: int, share: Fraction) -> int:
    """round(share × n) with halves rounded up (10% of 15 = 1.5 → 2), computed exactly."""
    return math.floor(share * n + Fraction(1, 2))


def draw_groups(
    customer_ids: Sequence[str], strata: Sequence[str], share: Fraction, seed: int
) -> dict[str, tuple[str, str]]:
    """customer_id → (group, stratum), with exactly control_size(n, share) controls in each stratum.

    One numpy Generator(seed) draws the strata in sorted order; within a stratum the customer ids are sorted
    before the draw, so the groups depend on the seed and the set of customers, never on row order.
    """
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for cid, stratum in zip(customer_ids, strata, strict=True):
        by_stratum[stratum].append(cid)
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[str, str]] = {}
    for stratum in sorted(by_stratum):
        ids = sorted(by_stratum[stratum])
        k = control_size(len(ids), share)
        chosen = set(rng.choice(len(ids), size=k, replace=False).tolist()) if k else set()
        for i, cid in enumerate(ids):
            out[cid] = (CONTROL if i in chosen else TREATMENT, stratum)
    return out


@dataclass
class PlanResult:
    name: str
    run_id: str
    as_of: str
    where: str
    control_share: float
    seed: int
    stratify: str
    cost_per_contact: float | None
    customers: int
    treatment: int
    control: int
    strata: dict[str, dict[str, int]]
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_id": self.run_id,
            "as_of": self.as_of,
            "where": self.where,
            "control_share": self.control_share,
            "seed": self.seed,
            "stratify": self.stratify,
            "cost_per_contact": self.cost_per_contact,
            "customers": self.customers,
            "treatment": self.treatment,
            "control": self.control,
            "strata": self.strata,
            "files": self.files,
            "notes": self.notes,
        }


def _check_output(path: Path | None, option: str) -> None:
    if path is not None and path.suffix.lstrip(".").lower() not in EXPORT_FORMATS:
        raise UserError(f"{option} {path}: cannot tell the format from the name; end it in .csv, .xlsx or .parquet")


def existing_plan(ws: Workspace, name: str) -> dict[str, Any] | None:
    plans = ws.table("campaign_plans")
    rows = plans.filter(plans["name"] == name).to_pyarrow().to_pylist()
    return rows[0] if rows else None


def create_plan(
    ws: Workspace,
    name: str,
    *,
    where: str,
    control: str = "10%",
    seed: int | None = None,
    stratify: str = "rfm_segment",
    cost_per_contact: float | None = None,
    run_id: str | None = None,
    output: Path | None = None,
    control_output: Path | None = None,
    replace: bool = False,
) -> PlanResult:
    """Select the run's customers matching `where`, draw the control group, record the plan, write the lists.

    Everything is checked before anything is written; the plan rows are stored in one transaction with the
    files, so a failed plan leaves neither a plan nor a half-written list behind."""
    name = name.strip()
    if not name:
        raise UserError("the campaign needs a name, e.g. tierwise campaign plan 2024-spring-winback --where ...")
    name = check_name(name, "campaign name")
    share = parse_share(control)
    if cost_per_contact is not None and cost_per_contact < 0:
        raise UserError(f"--cost-per-contact {cost_per_contact:g}: a cost cannot be negative")
    _check_output(output, "--output")
    _check_output(control_output, "--control-output")
    if control_output is not None and share == 0:
        raise UserError("--control-output: there is no control group with --control 0%")
    previous = existing_plan(ws, name)
    if previous is not None and not replace:
        raise UserError(
            f"a campaign plan named '{name}' already exists (run {previous['run_id']}, created "
            f"{previous['created_at']:%Y-%m-%d %H:%M}); choose another name, or add --replace to draw it again"
        )

    meta, snap = latest_snapshot(ws, run_id)
    if stratify not in snap.columns:
        close = difflib.get_close_matches(stratify, snap.columns, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'tierwise export --list-columns'"
        raise UserError(f"--stratify: no column '{stratify}' in run {meta['run_id']}; {hint}")
    kind = snap.schema()[stratify]
    if kind.is_floating() or kind.is_decimal():
        raise UserError(
            f"--stratify {stratify}: a continuous number would make almost every customer a stratum of its own; "
            "stratify by a class column such as rfm_segment, grade or lifecycle_stage"
        )
    columns = ["customer_id", stratify, *[c for c in LIST_COLUMNS if c in snap.columns and c != stratify]]
    rows = select_customers(snap, where=where, columns=columns).to_pyarrow()
    if rows.num_rows == 0:
        raise UserError(
            f"--where {where!r} matches no customer of run {meta['run_id']}; nothing planned "
            "(try the condition with 'tierwise export --where ... --format csv x.csv')"
        )
    seed = secrets.randbits(31) if seed is None else seed
    ids = [str(v) for v in rows["customer_id"].to_pylist()]
    strata = [EMPTY_STRATUM if v is None else str(v) for v in rows[stratify].to_pylist()]
    groups = draw_groups(ids, strata, share, seed)

    per_stratum: dict[str, dict[str, int]] = {}
    for group, stratum in groups.values():
        counts = per_stratum.setdefault(stratum, {"customers": 0, TREATMENT: 0, CONTROL: 0})
        counts["customers"] += 1
        counts[group] += 1
    n_control = sum(c[CONTROL] for c in per_stratum.values())
    result = PlanResult(
        name=name,
        run_id=str(meta["run_id"]),
        as_of=str(meta["as_of"]),
        where=where,
        control_share=float(share),
        seed=seed,
        stratify=stratify,
        cost_per_contact=cost_per_contact,
        customers=len(ids),
        treatment=len(ids) - n_control,
        control=n_control,
        strata=dict(sorted(per_stratum.items())),
    )
    if share and n_control == 0:
        result.notes.append(
            f"the control share {float(share):.1%} rounds to no control customer in any segment; "
            "the campaign can be reported without lift only"
        )
    plan_row = {
        "name": name,
        "run_id": result.run_id,
        "where_expr": where,
        "control_share": result.control_share,
        "seed": seed,
        "stratify": stratify,
        "cost_per_contact": cost_per_contact,
        "created_at": dt.datetime.now().replace(microsecond=0),
        "customers": result.customers,
        "treatment": result.treatment,
        "control": result.control,
        "strata": json.dumps(result.strata, ensure_ascii=False),
    }
    members = pa.table(
        {
            "name": pa.array([name] * len(ids), pa.string()),
            "customer_id": pa.array(ids, pa.string()),
            "group": pa.array([groups[c][0] for c in ids], pa.string()),
            "stratum": pa.array([groups[c][1] for c in ids], pa.string()),
        }
    )
    listed = rows.add_column(0, "campaign_id", pa.array([name] * len(ids), pa.string()))
    listed = listed.add_column(2, "group", members["group"])
    listed = listed.sort_by([(c, "ascending") for c in ("priority_rank", "customer_id") if c in listed.column_names])

    con = ws.con
    with transaction(con):
        if previous is not None:
            _delete_plan(ws, name)
            contacts = ws.table("campaign_contacts")
            loaded = int(contacts.filter(contacts.campaign_id == name).count().execute())
            if loaded:
                result.notes.append(
                    f"{loaded:,} contact rows already loaded for '{name}' are now evaluated against the new groups"
                )
        con.insert("campaign_plans", ibis.memtable([plan_row], schema=ws.table("campaign_plans").schema()))
        con.insert("campaign_members", ibis.memtable(members))
        if output is not None:
            write_table(listed.filter(pc.equal(listed["group"], TREATMENT)), output)
            result.files["treatment"] = str(output)
        if control_output is not None:
            write_table(listed.filter(pc.equal(listed["group"], CONTROL)), control_output)
            result.files["control"] = str(control_output)
    return result


def _delete_plan(ws: Workspace, name: str) -> None:
    """Remove one plan's rows (Ibis has no DELETE: keep the others, truncate, put them back)."""
    con = ws.con
    for table in ("campaign_plans", "campaign_members"):
        t = ws.table(table)
        tmp = f"_{table}_keep"
        con.create_table(tmp, t.filter(t["name"] != name), temp=True, overwrite=True)
        con.truncate_table(table)
        con.insert(table, con.table(tmp))
        con.drop_table(tmp, force=True)


def plan_members(ws: Workspace, name: str) -> pa.Table:
    m = ws.table("campaign_members")
    return m.filter(m["name"] == name).drop("name").order_by("customer_id").to_pyarrow()


def list_campaigns(ws: Workspace) -> list[dict[str, Any]]:
    """Every planned campaign and every campaign id found in the loaded contacts, newest plans first."""
    plans = ws.table("campaign_plans").order_by(ibis.desc("created_at")).to_pyarrow().to_pylist()
    contacts = ws.table("campaign_contacts")
    loaded = {
        r["campaign_id"]: r
        for r in contacts.group_by("campaign_id")
        .aggregate(rows=contacts.count(), customers=contacts.customer_id.nunique())
        .to_pyarrow()
        .to_pylist()
    }
    out: list[dict[str, Any]] = []
    for p in plans:
        got = loaded.pop(p["name"], None)
        out.append(
            {
                "name": p["name"],
                "planned": True,
                "run_id": p["run_id"],
                "created_at": p["created_at"],
                "where": p["where_expr"],
                "control_share": p["control_share"],
                "seed": p["seed"],
                "stratify": p["stratify"],
                "cost_per_contact": p["cost_per_contact"],
                "customers": p["customers"],
                "treatment": p["treatment"],
                "control": p["control"],
                "contact_rows": int(got["rows"]) if got else 0,
            }
        )
    for cid in sorted(loaded, key=str):
        got = loaded[cid]
        out.append(
            {
                "name": cid,
                "planned": False,
                "customers": int(got["customers"]),
                "contact_rows": int(got["rows"]),
            }
        )
    return out
