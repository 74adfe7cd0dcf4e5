"""The refresh log as the alerts page and its JSON twins show it: the last refreshes with each source's outcome,
the alerts they fired with their deliveries, the count behind the navigation's badge, and a refresh started
from the dashboard as a background job.

Read from the workspace's log tables through tierwise.refresh.log (written by `tierwise refresh`); nothing is
kept between calls. Delivery targets (webhook URLs, e-mail addresses) are left out unless `with_targets`.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from tierwise.errors import UserError
from tierwise.refresh.log import RUNNING, alert_history, recent_refreshes
from tierwise.web.services._common import jsonable, language_of
from tierwise.web.services.runs import warm
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.web.jobs")

MAX_LIMIT = 500
SOURCE_COUNTS = ("rows_read", "rows_loaded", "rows_new", "rows_updated", "rows_quarantined")
# The newest refresh that is over: a refresh still running has not fired all its alerts yet, and the badge
# should not drop to nothing while it runs.
_BADGE_SQL = (
    "SELECT count(*) FROM alert_events WHERE refresh_id = (SELECT refresh_id FROM refreshes "
    f"WHERE status <> '{RUNNING}' ORDER BY started_at DESC, refresh_id DESC LIMIT 1)"
)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit {limit}: give 1 to {MAX_LIMIT}")


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _source(step: dict[str, Any]) -> dict[str, Any]:
    """One source's step as recorded, with its counts as integers (or None) and its file lists always lists."""
    processed = step.get("files_processed") or []
    failed = _dicts(step.get("files_failed"))
    return {
        **step,  # what later versions record too (files_waiting, batches …)
        "name": str(step.get("name") or ""),
        "table": step.get("table"),
        "kind": step.get("kind"),
        "status": step.get("status"),
        **{key: _count(step.get(key)) for key in SOURCE_COUNTS},
        "files_processed": [str(f) for f in processed] if isinstance(processed, list) else [],
        "files_failed": [{"file": str(f.get("file") or ""), "error": str(f.get("error") or "")} for f in failed],
        "error": step.get("error"),
    }


def refreshes(ws: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    """The latest refreshes, newest first: [{refresh_id, trigger, started_at, finished_at, status, attempts,
    resumed, run_id, error, sources: [{name, table, kind, status, rows_read, rows_loaded, rows_new,
    rows_updated, rows_quarantined, files_processed, files_failed, error}], steps}] (`steps` as recorded)."""
    _check_limit(limit)
    out = []
    for row in recent_refreshes(ws, limit):
        steps = _dict(row.get("steps"))
        attempts = int(row.get("attempts") or 1)
        out.append(
            {
                "refresh_id": row["refresh_id"],
                "trigger": row["trigger"],
                "started_at": row["started_at"],
                "finished_at": row["finished_at"],
                "status": row["status"],
                "attempts": attempts,
                "resumed": attempts > 1,
                "run_id": row["run_id"],
                "error": row["error"],
                "sources": [_source(s) for s in _dicts(steps.get("sources"))],
                "steps": steps,
            }
        )
    result: list[dict[str, Any]] = jsonable(out)
    return result


def _local(since: dt.datetime) -> dt.datetime:
    """The log's times are the server's local time without a zone: an instant with a zone is turned into it."""
    if since.tzinfo is None:
        return since
    try:
        return since.astimezone().replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 moved across midnight by the zone
        raise UserError(f"since {since.isoformat()}: give a time between the years 1 and 9999") from None


def alerts(
    ws: Workspace,
    limit: int = 100,
    since: dt.datetime | None = None,
    *,
    language: str | None = None,
    with_targets: bool = False,
) -> list[dict[str, Any]]:
    """Alert events, newest first: [{event_id, refresh_id, run_id, previous_run_id, rule, label (the rule's name
    in `language`), kind, fired_at, matched, customers (details.customers: who matched, with the changed
    columns), findings (details.findings of a run-level alert), details, deliveries: [{channel, target (only
    `with_targets`), part, status, attempts, detail, customers, sent_at}]}]."""
    _check_limit(limit)
    lang = language_of(ws, language)
    out = []
    for row in alert_history(ws, limit, since=None if since is None else _local(since)):
        details = _dict(row.get("details"))
        deliveries = [dict(d) for d in row.get("deliveries") or []]
        for d in deliveries:
            d.pop("event_id", None)
            if not with_targets:
                d.pop("target", None)
        out.append(
            {
                "event_id": row["event_id"],
                "refresh_id": row["refresh_id"],
                "run_id": row["run_id"],
                "previous_run_id": row["previous_run_id"],
                "rule": row["rule"],
                "label": details.get(f"label_{lang}") or row["rule"],
                "kind": row["kind"],
                "fired_at": row["fired_at"],
                "matched": int(row["matched"] or 0),
                "customers": _dicts(details.get("customers")),
                "findings": _dicts(details.get("findings")),
                "details": details,
                "deliveries": deliveries,
            }
        )
    result: list[dict[str, Any]] = jsonable(out)
    return result


def latest_alert_count(ws: Workspace) -> int:
    """How many alerts the latest finished refresh fired (0 before any)."""
    found = ws.con.con.execute(_BADGE_SQL).fetchone()
    return int(found[0]) if found else 0


def refresh_job(root: Path | str, progress: Any = None) -> dict[str, Any]:
    """A refresh started from the dashboard, for JobManager.start("refresh", refresh_job, root): every source,
    the main job, the comparison, alerts and deliveries (tierwise.refresh.job.refresh, which opens the workspace
    in the job's thread and waits for a refresh already under way); each step's line is the job's stage.
    Returns the refresh report (RefreshReport.as_json)."""
    # lazy: the refresh imports the pipeline (scikit-learn, 1.0 s) and the mail and webhook code: loaded by the
    # first refresh, not by the server.
    from tierwise.refresh.job import refresh

    def on_step(line: str) -> None:
        if progress is not None:
            progress(line, None)

    report = refresh(Path(root), trigger="dashboard", on_step=on_step)
    if report.run_made:
        try:
            warm(root)
        except Exception:  # the refresh is stored: a cancel arriving now (or a failure here) must not say otherwise
            log.warning("preparing the cross-sell suggestions after %s failed", report.refresh_id, exc_info=True)
    result: dict[str, Any] = jsonable(report.as_json())
    return result
