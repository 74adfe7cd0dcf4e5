"""The refresh log in the workspace: refreshes, the alerts they fired and each delivery's outcome.

A refresh's row is written when it starts and updated as each step finishes. A refresh killed half-way leaves its
row `running`; the next refresh (which holds the refresh lock, so the old one is surely gone) takes over that row,
keeping its id, and repeats only what is not recorded as done: files and database rows already loaded are skipped
by the batch identity of ingest, alert events and deliveries by their keys here.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import ibis

from tierwise.workspace import Workspace

RUNNING, OK, FAILED, PARTIAL = "running", "ok", "failed", "partial"
DONE = ("delivered", "skipped")  # deliveries never tried again


@dataclass
class RefreshRecord:
    refresh_id: str
    trigger: str
    started_at: dt.datetime
    attempts: int
    steps: dict[str, Any]

    @property
    def resumed(self) -> bool:
        return self.attempts > 1


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def start(ws: Workspace, trigger: str) -> RefreshRecord:
    """A new refresh, or the one a killed refresh left unfinished (same id, attempts + 1)."""
    t = ws.table("refreshes")
    left = t.filter(t.status == RUNNING).order_by(ibis.desc("started_at")).limit(1).to_pyarrow().to_pylist()
    if left:
        row = left[0]
        attempts = int(row["attempts"] or 1) + 1
        ws.con.raw_sql(f"UPDATE refreshes SET attempts = {attempts} WHERE refresh_id = {_sql_text(row['refresh_id'])}")
        return RefreshRecord(
            row["refresh_id"], row["trigger"], row["started_at"], attempts, json.loads(row["steps"] or "{}")
        )
    record = RefreshRecord(f"refresh-{_now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", trigger, _now(), 1, {})
    row = {
        "refresh_id": record.refresh_id,
        "trigger": trigger,
        "started_at": record.started_at,
        "finished_at": None,
        "status": RUNNING,
        "attempts": 1,
        "run_id": None,
        "steps": "{}",
        "error": None,
    }
    ws.con.insert("refreshes", ibis.memtable([row], schema=ws.table("refreshes").schema()))
    return record


def save(ws: Workspace, record: RefreshRecord, *, run_id: str | None = None) -> None:
    """Record the steps done so far (and the run, once made)."""
    sets = [f"steps = {_sql_text(json.dumps(record.steps, ensure_ascii=False, default=str))}"]
    if run_id is not None:
        sets.append(f"run_id = {_sql_text(run_id)}")
    ws.con.raw_sql(f"UPDATE refreshes SET {', '.join(sets)} WHERE refresh_id = {_sql_text(record.refresh_id)}")


def finish(ws: Workspace, record: RefreshRecord, status: str, error: str | None = None) -> None:
    save(ws, record)
    ws.con.raw_sql(
        f"UPDATE refreshes SET status = {_sql_text(status)}, finished_at = TIMESTAMP '{_now().isoformat(' ')}', "
        f"error = {'NULL' if error is None else _sql_text(error)} WHERE refresh_id = {_sql_text(record.refresh_id)}"
    )


def event_recorded(ws: Workspace, event_id: str) -> dict[str, Any] | None:
    t = ws.table("alert_events")
    found = t.filter(t.event_id == event_id).limit(1).to_pyarrow().to_pylist()
    return found[0] if found else None


def record_event(ws: Workspace, event: dict[str, Any]) -> None:
    row = {**event, "details": json.dumps(event["details"], ensure_ascii=False, default=str), "fired_at": _now()}
    ws.con.insert("alert_events", ibis.memtable([row], schema=ws.table("alert_events").schema()))


def delivery_done(ws: Workspace, event_id: str, channel: str, target: str, part: str) -> bool:
    t = ws.table("deliveries")
    hit = t.filter(
        (t.event_id == event_id) & (t.channel == channel) & (t.target == target) & (t.part == part)
        & t.status.isin(DONE)
    )  # fmt: skip
    return bool(hit.count().execute())


def record_delivery(ws: Workspace, delivery: dict[str, Any]) -> None:
    row = {**delivery, "sent_at": _now()}
    ws.con.insert("deliveries", ibis.memtable([row], schema=ws.table("deliveries").schema()))


def decode(text: str | None) -> dict[str, Any]:
    return json.loads(text or "{}")


def recent_refreshes(ws: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    """The latest refreshes, newest first, with their steps decoded."""
    t = ws.table("refreshes")
    rows = t.order_by(ibis.desc("started_at")).limit(limit).to_pyarrow().to_pylist()
    for row in rows:
        row["steps"] = decode(row["steps"])
    return rows


def alert_history(ws: Workspace, limit: int = 100, *, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Alert events, newest first, each with its `details` decoded and its `deliveries` (latest outcome per
    target)."""
    events = ws.table("alert_events")
    if since is not None:
        events = events.filter(events.fired_at >= since)
    rows = events.order_by([ibis.desc("fired_at"), "rule"]).limit(limit).to_pyarrow().to_pylist()
    if not rows:
        return rows
    d = ws.table("deliveries")
    sent = d.filter(d.event_id.isin([r["event_id"] for r in rows])).order_by("sent_at").to_pyarrow().to_pylist()
    latest: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    for s in sent:
        latest.setdefault(s["event_id"], {})[(s["channel"], s["target"], s["part"])] = s
    for row in rows:
        row["details"] = decode(row["details"])
        row["deliveries"] = list(latest.get(row["event_id"], {}).values())
    return rows
