"""Campaign statistics: response rates with Wilson intervals, lift over control with Newcombe's interval, ROI.

Pure functions on counts and sums, so every figure of `tierwise campaign report` can be checked by hand
(docs/campaigns.md gives the formulas).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.campaigns.plan import existing_plan
from tierwise.errors import UserError
from tierwise.i18n import label
from tierwise.store.runs import latest_snapshot
from tierwise.workspace import Workspace

Z95 = 1.959963984540054  # the 97.5% point of the standard normal distribution


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (Wilson 1927); None when n = 0.

    centre = (p + z²/2n) / (1 + z²/n), half-width = z / (1 + z²/n) · sqrt(p(1 − p)/n + z²/4n²).
    Unlike p ± z·sqrt(p(1 − p)/n) it stays inside [0, 1] and is not empty at 0 or n successes.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not within 0..{n}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Rounding can push the bounds a hair past p at 0 or n successes; the exact bounds are p there.
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval for p1 − p2 of two independent proportions: Newcombe's (1998) hybrid score method 10.

    From the Wilson intervals (l1, u1) and (l2, u2): d − sqrt((p1 − l1)² + (u2 − p2)²) to
    d + sqrt((u1 − p1)² + (p2 − l2)²), with d = p1 − p2. None when either group is empty.
    """
    first, second = wilson_interval(x1, n1, z), wilson_interval(x2, n2, z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


@dataclass(frozen=True)
class GroupCounts:
    """One group (treatment or control) of one segment: customers, responders and their revenue."""

    customers: int = 0
    responded: int = 0
    revenue: float = 0.0

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(
            self.customers + other.customers, self.responded + other.responded, self.revenue + other.revenue
        )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def figures(treatment: GroupCounts, control: GroupCounts, cost_per_contact: float | None) -> dict[str, Any]:
    """Every figure of one report line (a segment or the whole campaign).

    - response_rate = responded / contacted (treatment), with its Wilson 95% interval;
    - revenue_per_contact = treatment revenue / contacted;
    - control_response_rate likewise for the control group, control_revenue_per_customer;
    - lift = response_rate − control_response_rate (percentage points as a fraction) with Newcombe's 95%
      interval; relative_lift = lift / control_response_rate;
    - incremental_revenue_per_contact = revenue_per_contact − control_revenue_per_customer;
    - with a cost per contact c: cost = contacted × c; roi = (revenue_per_contact − c) / c (gross: counts all
      revenue of the contacted as caused by the campaign) and incremental_roi =
      (incremental_revenue_per_contact − c) / c (only the revenue above what the control group brought).
    """
    n_t, x_t = treatment.customers, treatment.responded
    n_c, x_c = control.customers, control.responded
    rate_t = _ratio(x_t, n_t)
    rate_c = _ratio(x_c, n_c)
    rev_t = _ratio(treatment.revenue, n_t)
    rev_c = _ratio(control.revenue, n_c)
    ci_t = wilson_interval(x_t, n_t)
    ci_c = wilson_interval(x_c, n_c)
    lift = None if rate_t is None or rate_c is None else rate_t - rate_c
    lift_ci = newcombe_interval(x_t, n_t, x_c, n_c)
    relative = None if lift is None or not rate_c else lift / rate_c
    incremental = None if rev_t is None or rev_c is None else rev_t - rev_c
    cost = roi = incremental_roi = None
    if cost_per_contact:
        cost = n_t * cost_per_contact
        roi = None if rev_t is None else (rev_t - cost_per_contact) / cost_per_contact
        incremental_roi = None if incremental is None else (incremental - cost_per_contact) / cost_per_contact
    return {
        "contacted": n_t,
        "responded": x_t,
        "response_rate": rate_t,
        "response_rate_ci": list(ci_t) if ci_t else None,
        "revenue": treatment.revenue,
        "revenue_per_contact": rev_t,
        "control_customers": n_c,
        "control_responded": x_c,
        "control_response_rate": rate_c,
        "control_response_rate_ci": list(ci_c) if ci_c else None,
        "control_revenue": control.revenue,
        "control_revenue_per_customer": rev_c,
        "lift": lift,
        "lift_ci": list(lift_ci) if lift_ci else None,
        "relative_lift": relative,
        "incremental_revenue_per_contact": incremental,
        "incremental_revenue": None if incremental is None else incremental * n_t,
        "cost": cost,
        "roi": roi,
        "incremental_roi": incremental_roi,
    }


# Group names a contacts file may use (compared lower-cased, trimmed); anything else is left out with a note.
CONTROL_WORDS = ("control", "holdout", "hold-out", "c", "对照", "对照组", "控制组", "空白组")
TREATMENT_WORDS = ("treatment", "test", "target", "t", "实验", "实验组", "处理组", "目标组", "营销组", "触达")
NO_STRATUM = "(not in the latest run)"


def _normalised_group(col: ir.StringValue) -> ir.StringValue:
    g = col.strip().lower()
    return ibis.cases(
        (g.isnull() | (g == ""), ibis.null("string")),
        (g.isin(CONTROL_WORDS), ibis.literal("control")),
        (g.isin(TREATMENT_WORDS), ibis.literal("treatment")),
        else_=ibis.literal("unknown"),
    )


def _responses(ws: Workspace, name: str) -> ir.Table:
    """One row per customer contacted in campaign `name`: responded (any row says so, or brought revenue),
    revenue (sum over the rows) and the group the file gives (NULL if none, 'conflict' if rows disagree)."""
    c = ws.table("campaign_contacts")
    c = c.filter(c.campaign_id == name).mutate(_g=_normalised_group(c.group))
    revenue = c.response_revenue.fill_null(0)
    per = c.group_by("customer_id").aggregate(
        responded=(c.responded.fill_null(False) | (revenue > 0)).any(),
        # exact per customer, then a float for the statistics (tierwise.money)
        revenue=revenue.sum().cast("float64"),
        _groups=c._g.nunique(),
        _group=c._g.max(),
    )
    return per.mutate(file_group=ibis.cases((per._groups > 1, ibis.literal("conflict")), else_=per._group)).drop(
        "_groups", "_group"
    )


def campaign_report(
    ws: Workspace, name: str, *, cost_per_contact: float | None = None, language: str = "en"
) -> dict[str, Any]:
    """Per stratum and overall figures (see `figures`) of a planned or an ingested-only campaign."""
    zh = language == "zh"
    plan = existing_plan(ws, name)
    responses = _responses(ws, name)
    contacted_customers = int(responses.count().execute())
    notes: list[str] = []
    if plan is None and contacted_customers == 0:
        known = [str(r["name"]) for r in _names(ws)]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'tierwise campaign list'"
        raise UserError(f"no campaign '{name}': no plan and no contacts loaded under that id; {hint}")
    if cost_per_contact is None and plan is not None:
        cost_per_contact = plan["cost_per_contact"]
    if cost_per_contact is not None and cost_per_contact < 0:
        raise UserError(f"--cost-per-contact {cost_per_contact:g}: a cost cannot be negative")

    coverage: dict[str, Any] = {}
    if plan is not None:
        source, stratify = "plan", str(plan["stratify"])
        run_id: str | None = str(plan["run_id"])
        m = ws.table("campaign_members")
        m = m.filter(m["name"] == name)
        joined = m.left_join(responses, m.customer_id == responses.customer_id)
        base = joined.select(
            "group",
            "stratum",
            responded=joined.responded.fill_null(False),
            revenue=joined.revenue.fill_null(0.0),
            has_row=joined.responded.notnull(),
            mismatch=joined.file_group.notnull() & (joined.file_group != joined.group),
        )
        cov = base.group_by("group").aggregate(
            members=base.count(), with_rows=base.has_row.sum(), mismatched=base.mismatch.sum()
        )
        cov_rows = {r["group"]: r for r in cov.to_pyarrow().to_pylist()}
        outside = int(responses.anti_join(m, "customer_id").count().execute())
        missing = {g: int(cov_rows[g]["members"] - cov_rows[g]["with_rows"]) for g in cov_rows}
        coverage = {
            "customers_with_response_rows": sum(int(r["with_rows"]) for r in cov_rows.values()),
            "customers_without_response_rows": missing,
            "contacts_outside_plan": outside,
            "group_mismatches": sum(int(r["mismatched"]) for r in cov_rows.values()),
        }
        if contacted_customers == 0:
            notes.append(
                f"no contacts loaded yet for '{name}' (tierwise ingest campaigns FILE, with campaign_id {name}): "
                "every planned customer counts as not responded"
            )
        elif sum(missing.values()):
            notes.append(
                "planned customers without a row in the loaded contacts count as not responded with revenue 0: "
                + ", ".join(f"{g} {n:,}" for g, n in sorted(missing.items()) if n)
            )
        if outside:
            notes.append(f"{outside:,} contacted customers are not in the plan and are left out")
        if coverage["group_mismatches"]:
            notes.append(
                f"{coverage['group_mismatches']:,} customers have a different group in the contacts file than in "
                "the plan; the plan's group is used"
            )
    else:
        source, stratify = "contacts", "rfm_segment"

        latest = latest_snapshot(ws)[0] if ws.table("runs").count().execute() else None
        run_id = str(latest["run_id"]) if latest else None
        notes.append(f"'{name}' was never planned: groups come from the group column of the loaded contacts")
        unknown = responses.filter(responses.file_group.isin(["unknown", "conflict"]))
        n_unknown = int(unknown.count().execute())
        if n_unknown:
            notes.append(
                f"{n_unknown:,} customers with a group that is neither treatment nor control (or both) are left out; "
                f"control is written {', '.join(CONTROL_WORDS[:3])} or 对照组, "
                f"treatment {', '.join(TREATMENT_WORDS[:3])} or 实验组"
            )
        usable = responses.filter(~responses.file_group.isin(["unknown", "conflict"]) | responses.file_group.isnull())
        no_group = int(usable.filter(usable.file_group.isnull()).count().execute())
        if no_group:
            notes.append(f"{no_group:,} contacted customers without a group count as treatment")
        group = usable.file_group.fill_null("treatment")
        if latest:
            snap = ws.table(str(latest["snapshot_table"])).select("customer_id", "rfm_segment")
            j = usable.left_join(snap, usable.customer_id == snap.customer_id)
            base = j.select(
                group=j.file_group.fill_null("treatment"),
                stratum=j.rfm_segment.fill_null(NO_STRATUM),
                responded=j.responded,
                revenue=j.revenue,
            )
            notes.append(f"segments are the customers' rfm_segment in the latest run {run_id}")
        else:
            base = usable.select(
                group=group, stratum=ibis.literal(NO_STRATUM), responded="responded", revenue="revenue"
            )
            notes.append("no run yet: one line for all customers (tierwise run gives segments)")

    agg = base.group_by("stratum", "group").aggregate(
        customers=base.count(), responded=base.responded.cast("int64").sum(), revenue=base.revenue.sum()
    )
    cells: dict[str, dict[str, GroupCounts]] = {}
    for r in agg.to_pyarrow().to_pylist():
        cells.setdefault(r["stratum"], {})[r["group"]] = GroupCounts(
            int(r["customers"]), int(r["responded"] or 0), float(r["revenue"] or 0.0)
        )
    empty = GroupCounts()
    segments = []
    total_t, total_c = empty, empty
    for stratum in sorted(cells):
        t, c = cells[stratum].get("treatment", empty), cells[stratum].get("control", empty)
        total_t, total_c = total_t + t, total_c + c
        shown = label(stratify, stratum, language) if stratum not in (NO_STRATUM, "(empty)") else stratum
        segments.append({"stratum": stratum, "label": shown, **figures(t, c, cost_per_contact)})
    overall = figures(total_t, total_c, cost_per_contact)
    has_control = total_c.customers > 0
    if not has_control:
        notes.insert(
            0,
            "没有对照组：无法计算相对对照组的提升，响应率和收入仅为触达客户的数字"
            if zh
            else "no control group: lift over control cannot be measured; rates and revenue are of the contacted "
            "customers only",
        )
    else:
        without = [s["label"] for s in segments if s["control_customers"] == 0 and s["contacted"]]
        if without:
            notes.append(f"segments without control customers (no lift there): {', '.join(without)}")
    if cost_per_contact is None:
        notes.append("no cost per contact (plan --cost-per-contact or report --cost-per-contact): no ROI")
    return {
        "campaign": name,
        "source": source,
        "run_id": run_id,
        "stratify": stratify,
        "plan": None
        if plan is None
        else {k: plan[k] for k in ("where_expr", "control_share", "seed", "created_at", "customers")},
        "cost_per_contact": cost_per_contact,
        "has_control": has_control,
        "confidence": 0.95,
        "coverage": coverage,
        "overall": overall,
        "segments": segments,
        "notes": notes,
    }


def _names(ws: Workspace) -> list[dict[str, Any]]:
    plans = ws.table("campaign_plans").select("name")
    contacts = ws.table("campaign_contacts").select(name=ibis._.campaign_id)
    return plans.union(contacts).distinct().to_pyarrow().to_pylist()
