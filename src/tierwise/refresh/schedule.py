"""Scheduled refreshes ([schedule]): when the next one is due, and the loop of `tierwise serve`.

Slots are local times: daily at `time`; weekly on weekday `day` (1 = Monday) at `time`; monthly on day `day`
of the month at `time` (the month's last day when it is shorter). A slot is due when neither a refresh nor a run
was made since it (backfilled runs do not count). `serve` sleeps until the next slot, refreshes the way `tierwise
refresh` does (sources, the main job when something changed, alerts, deliveries; waiting for any run already in
progress), logs one line per refresh without any customer data, and reads tierwise.toml again before each slot so
edits apply without a restart.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierwise.config import CONFIG_FILE, load_config
from tierwise.errors import UserError
from tierwise.history.settings import ScheduleSettings
from tierwise.refresh.job import last_refresh_started, refresh
from tierwise.store.runs import list_runs
from tierwise.workspace import Workspace


def _monthly(year: int, month: int, day: int, at: dt.time) -> dt.datetime:
    return dt.datetime.combine(dt.date(year, month, min(day, calendar.monthrange(year, month)[1])), at)


def _shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    y, m = divmod(year * 12 + month - 1 + by, 12)
    return y, m + 1


def last_slot(s: ScheduleSettings, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled time at or before `now` (None when the cadence is off)."""
    at = s.at()
    if s.cadence == "off":
        return None
    if s.cadence == "daily":
        slot = dt.datetime.combine(now.date(), at)
        return slot if slot <= now else slot - dt.timedelta(days=1)
    if s.cadence == "weekly":
        back = (now.isoweekday() - s.day) % 7
        slot = dt.datetime.combine(now.date() - dt.timedelta(days=back), at)
        return slot if slot <= now else slot - dt.timedelta(days=7)
    slot = _monthly(now.year, now.month, s.day, at)
    if slot <= now:
        return slot
    y, m = _shift_month(now.year, now.month, -1)
    return _monthly(y, m, s.day, at)


def next_slot(s: ScheduleSettings, now: dt.datetime) -> dt.datetime | None:
    """The first scheduled time strictly after `now` (None when the cadence is off)."""
    last = last_slot(s, now)
    if last is None:
        return None
    if s.cadence == "daily":
        return last + dt.timedelta(days=1)
    if s.cadence == "weekly":
        return last + dt.timedelta(days=7)
    y, m = _shift_month(last.year, last.month, 1)
    return _monthly(y, m, s.day, s.at())


def last_scheduled_run(runs: list[dict[str, Any]]) -> dt.datetime | None:
    """When the latest run that was not a backfill was made."""
    made = [r["created_at"] for r in runs if not json.loads(str(r.get("models") or "{}")).get("backfill")]
    return max(made) if made else None


def is_due(s: ScheduleSettings, now: dt.datetime, last_run: dt.datetime | None) -> bool:
    slot = last_slot(s, now)
    return slot is not None and (last_run is None or last_run < slot)


def _settings(root: Path) -> ScheduleSettings:
    s = load_config(root / CONFIG_FILE).schedule
    if s.cadence == "off":
        raise UserError(
            f'{root / CONFIG_FILE}: [schedule] cadence is off; set cadence = "monthly" (or weekly, daily) to serve'
        )
    return s


def _last_run(root: Path) -> dt.datetime | None:
    """When the latest refresh (or, before refreshes existed, the latest scheduled run) was made."""
    with Workspace.open(root, wait_seconds=load_config(root / CONFIG_FILE).schedule.wait_seconds) as ws:
        made = [t for t in (last_scheduled_run(list_runs(ws)), last_refresh_started(ws)) if t is not None]
    return max(made) if made else None


def run_due(root: Path, log: Callable[[str], None], now: dt.datetime | None = None) -> dict[str, Any] | None:
    """Refresh if a slot is due; the refresh's summary (no customer data), or None when nothing was due."""
    s = _settings(root)
    now = now or dt.datetime.now()
    if not is_due(s, now, _last_run(root)):
        log(f"{now:%Y-%m-%d %H:%M:%S} nothing due; next refresh at {next_slot(s, now):%Y-%m-%d %H:%M}")
        return None
    try:
        report = refresh(root, trigger="schedule")
    except UserError as exc:
        log(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} refresh failed: {exc}")
        return {"status": "failed", "error": str(exc)}
    fired = sum(1 for a in report.alerts if a["matched"] and a["new"])
    summary = {
        "status": report.status,
        "refresh_id": report.refresh_id,
        "run_id": report.run_id,
        "run_made": report.run_made,
        "sources": len(report.sources),
        "sources_failed": sum(s["status"] in ("failed", "partial") for s in report.sources),
        "rows_loaded": sum(int(s["rows_loaded"]) for s in report.sources),
        "alerts_fired": fired,
        "seconds": report.seconds,
    }
    log(
        f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} refresh {report.refresh_id}: {report.status}; "
        f"{summary['rows_loaded']:,} rows loaded from {summary['sources']} sources"
        + (f" ({summary['sources_failed']} with errors)" if summary["sources_failed"] else "")
        + (f"; run {report.run_id}" if report.run_made else "; no new run")
        + f"; {fired} alerts fired; {report.seconds}s"
    )
    return summary


def serve(
    root: Path,
    log: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], dt.datetime] = dt.datetime.now,
    max_runs: int | None = None,
) -> None:
    """Run each due slot, then sleep until the next, forever (or until `max_runs` slots were handled)."""
    s = _settings(root)
    log(
        f"{clock():%Y-%m-%d %H:%M:%S} serving {root}: {s.cadence} at {s.time}"
        + (f" on day {s.day}" if s.cadence != "daily" else "")
    )
    handled = 0
    attempted: dt.datetime | None = None  # a failed slot is not retried in a loop; the next slot is
    while max_runs is None or handled < max_runs:
        now = clock()
        slot = last_slot(s, now)
        if slot != attempted and is_due(s, now, _last_run(root)):
            attempted = slot
            run_due(root, log, now)
            handled += 1
            continue
        wake = next_slot(s, now)
        assert wake is not None
        log(f"{now:%Y-%m-%d %H:%M:%S} next refresh at {wake:%Y-%m-%d %H:%M}")
        while (left := (wake - clock()).total_seconds()) > 0:
            sleep(min(left, 60.0))  # short naps: a changed clock or a suspended machine is noticed
        s = _settings(root)
