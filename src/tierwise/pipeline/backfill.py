"""Backfill: a history of runs from the transaction history as it stood at past dates.

For each date D of the schedule, every canonical table is cut at D — orders, invoices and interactions dated
before D only, payments received on or after D not yet paid (mining.targets.cut_tables) — and the customers
are those known at D: who had bought before D, or signed up before D. The run is then made as of D exactly
as `tierwise run --as-of D` would on a workspace holding only that data, so a new workspace has trends on
day one and no backfilled class can see the future.

Backfilled runs are ordinary runs with as_of = D (flagged `backfill` in their `models` JSON). Runs are
ordered by as_of, so backfilling old dates never makes an old run the latest one shown by `show`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import ibis
import ibis.expr.types as ir

from tierwise.checks import check_as_of
from tierwise.errors import UserError
from tierwise.features.orders import default_as_of
from tierwise.pipeline.execute import RunReport, run
from tierwise.pipeline.targets import cut_tables
from tierwise.store.runs import canonical_tables, list_runs
from tierwise.workspace import Workspace

Every = Literal["week", "month", "quarter"]
EVERY: tuple[str, ...] = ("week", "month", "quarter")


def add_months(day: dt.date, months: int, anchor: int) -> dt.date:
    """`day` moved by whole months, on day-of-month `anchor` (or the month's last day when it is shorter)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(anchor, calendar.monthrange(year, month + 1)[1]))


def schedule_dates(start: dt.date, end: dt.date, every: str) -> list[dt.date]:
    """start, start + step, … up to and including end (months keep start's day of the month)."""
    if every not in EVERY:
        raise UserError(f"--every '{every}': say week, month or quarter")
    if end < start:
        raise UserError(f"--from {start} is after --to {end}; give the earlier date first")
    out: list[dt.date] = []
    i = 0
    while True:
        if every == "week":
            day = start + dt.timedelta(weeks=i)
        else:
            day = add_months(start, i * (1 if every == "month" else 3), start.day)
        if day > end:
            return out
        out.append(day)
        i += 1


def tables_as_of(tables: dict[str, ir.Table], day: dt.date) -> dict[str, ir.Table]:
    """The canonical tables as they stood on `day`: nothing dated on or after it."""
    out = cut_tables(tables, day)
    customers = tables["customers"]
    signed_up = customers.signup_date.notnull() & (customers.signup_date < ibis.date(day.isoformat()))
    out["customers"] = customers.filter(customers.customer_id.isin(out["orders"].customer_id) | signed_up)
    return out


@dataclass
class BackfillReport:
    dates: list[dt.date]
    runs: list[RunReport] = field(default_factory=list)
    skipped: list[dt.date] = field(default_factory=list)  # a run as of that date existed already
    empty: list[dt.date] = field(default_factory=list)  # no order before that date
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "dates": [d.isoformat() for d in self.dates],
            "runs": [
                {"run_id": r.run_id, "as_of": r.as_of.isoformat(), "customers": r.customers, "stability": r.stability}
                for r in self.runs
            ],
            "skipped": [d.isoformat() for d in self.skipped],
            "empty": [d.isoformat() for d in self.empty],
            "notes": self.notes,
        }


def backfill(
    ws: Workspace,
    start: dt.date,
    end: dt.date,
    every: str,
    *,
    replace: bool = False,
    on_date: Callable[[int, int, dt.date], None] | None = None,
) -> BackfillReport:
    """One run per date from `start` to `end`, oldest first (so [stability] holds each against the one before).

    Dates that already have a run are skipped unless `replace` (then a new run is added for them; the latest
    run of a date is the one used). Dates after the day following the last order are left out."""
    tables = canonical_tables(ws)
    if int(tables["orders"].count().execute()) == 0:
        raise UserError("there are no orders in this workspace; load them first with 'tierwise ingest orders FILE'")
    check_as_of(tables["orders"], start, "--from")
    check_as_of(tables["orders"], end, "--to")
    dates = schedule_dates(start, end, every)
    last = default_as_of(tables["orders"])
    report = BackfillReport(dates=[d for d in dates if d <= last])
    if len(report.dates) < len(dates):
        report.notes.append(f"dates after {last} (the day after the last order) left out: use 'tierwise run' for now")
    existing = {str(r["as_of"]) for r in list_runs(ws)}
    first_order = tables["orders"].order_date.min().execute().date()
    for i, day in enumerate(report.dates):
        if on_date is not None:
            on_date(i, len(report.dates), day)
        if day <= first_order:
            report.empty.append(day)
            continue
        if day.isoformat() in existing and not replace:
            report.skipped.append(day)
            continue
        report.runs.append(run(ws, day, tables=tables_as_of(tables, day), backfill=True))
    if on_date is not None:
        on_date(len(report.dates), len(report.dates), end)
    if report.skipped:
        report.notes.append(f"{len(report.skipped)} dates already had a run and were kept (--replace to redo them)")
    if report.empty:
        report.notes.append(f"{len(report.empty)} dates came before the first order and were left out")
    return report
