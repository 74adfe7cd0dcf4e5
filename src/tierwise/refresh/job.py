"""`tierwise refresh`: every source in order → the main job → the comparison with the previous run → alerts →
deliveries (→ the owners' digests), one refresh at a time per workspace, recorded step by step in the refresh log
(tierwise.refresh.log) so that a refresh killed half-way resumes without loading or sending anything twice.

A run is made when the data changed since the latest run (a batch that stored rows is newer than every run) or
when there is no run yet; a refresh with nothing new makes none, and finds its alerts already recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierwise.access import Holder, file_lock, wait_for
from tierwise.config import CONFIG_FILE, Config, load_config
from tierwise.errors import UserError
from tierwise.history.compare import RunView, migration, open_run
from tierwise.ingest.pipeline import ProgressFactory
from tierwise.pipeline.execute import run_in_workspace
from tierwise.refresh import log as refresh_log
from tierwise.refresh.alerts import Finding, check_rules, evaluate, per_refresh
from tierwise.refresh.deliver import Outcome, post_webhook, send_mail
from tierwise.refresh.digest import build_digest
from tierwise.refresh.mail import alert_mail, digest_mail, run_alert_mail
from tierwise.refresh.settings import AlertSettings
from tierwise.refresh.sources import SourceResult, read_sources
from tierwise.store.runs import list_runs
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.refresh")
LOCK_FILE = ".tierwise-refresh.lock"


@dataclass
class RefreshReport:
    refresh_id: str
    trigger: str
    attempts: int
    status: str = refresh_log.RUNNING  # ok | partial (a source or a delivery failed) | failed
    sources: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    run_made: bool = False
    previous_run_id: str | None = None
    comparison: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    digests: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def resumed(self) -> bool:
        return self.attempts > 1

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "resumed": self.resumed}


def dashboard_url(cfg: Config) -> str:
    if cfg.delivery.dashboard_url:
        return cfg.delivery.dashboard_url.rstrip("/")
    host = cfg.web.host if cfg.web.host not in ("0.0.0.0", "::") else "localhost"
    return f"http://{host}:{cfg.web.port}"


def _lock(root: Path, wait_seconds: float) -> Any:
    def busy(holder: Holder | None, waited: float) -> UserError:
        who = holder.describe() if holder else "another process"
        return UserError(
            f"another refresh of {root} is in progress: {who}; waited {waited:g} s — try again when it has finished"
        )

    return file_lock(root / LOCK_FILE, wait_seconds, what=f"another refresh of {root} to finish", busy=busy)


def _needs_run(ws: Workspace) -> bool:
    """No run yet, or a batch that stored rows is newer than every run."""
    last_run = ws.table("runs").created_at.max().to_pyarrow().as_py()  # None, not NaT, for an empty table
    if last_run is None:
        return True
    b = ws.table("batches")
    last_batch = b.filter(b.rows_loaded > 0).loaded_at.max().to_pyarrow().as_py()
    return last_batch is not None and last_batch > last_run


def _merge_sources(before: list[dict[str, Any]], now: list[SourceResult]) -> list[dict[str, Any]]:
    """A resumed refresh's sources: the files its killed attempt moved are no longer in the folder, so their
    names come from the log; the counts are whole already (they are read back from the batches table)."""
    earlier = {s["name"]: s for s in before}
    merged = []
    for result in now:
        row = result.as_json()
        old = earlier.get(result.name)
        if old is not None:
            row["files_processed"] = list(dict.fromkeys([*old.get("files_processed", []), *row["files_processed"]]))
            failed = {f["file"]: f for f in [*old.get("files_failed", []), *row["files_failed"]]}
            row["files_failed"] = list(failed.values())
            if row["status"] == "nothing_new" and row["rows_read"]:
                row["status"] = "ok"
            if row["files_failed"] and row["status"] in ("ok", "nothing_new"):
                row["status"] = "partial" if row["files_processed"] else "failed"
        merged.append(row)
    return merged


def latest_and_previous(ws: Workspace) -> tuple[RunView | None, RunView | None]:
    """The latest run and the one `tierwise compare` compares it with (the latest of an earlier as-of date, else the
    run made before it on the same date)."""
    runs = list_runs(ws)
    if not runs:
        return None, None
    latest = runs[-1]
    earlier = [r for r in runs[:-1] if r["as_of"] < latest["as_of"]] or runs[:-1]
    return open_run(ws, latest), (open_run(ws, earlier[-1]) if earlier else None)


def _event_id(alert: AlertSettings, refresh_id: str, run_id: str | None) -> str | None:
    key = refresh_id if per_refresh(alert) else run_id
    return None if key is None else f"{alert.name}@{key}"


def _details(found: Finding, latest: RunView | None) -> dict[str, Any]:
    return {
        "label_zh": found.rule.label("zh"),
        "label_en": found.rule.label("en"),
        "as_of": str(latest.meta["as_of"]) if latest is not None else None,
        "customers": found.customers,
        "findings": found.findings,
    }


class _Refresh:
    def __init__(self, root: Path, cfg: Config, say: Callable[[str], None], progress: ProgressFactory | None) -> None:
        self.root, self.cfg, self.say, self.progress = root, cfg, say, progress
        self.language = cfg.workspace.language

    def sources(self, ws: Workspace, record: refresh_log.RefreshRecord, report: RefreshReport) -> None:
        def line(r: SourceResult) -> None:
            files = f", {len(r.files_processed)} files" if r.kind == "folder" else ""
            failed = f", {len(r.files_failed)} refused (moved to failed/)" if r.files_failed else ""
            waiting = f", {r.files_waiting} too new, left for the next refresh" if r.files_waiting else ""
            error = f": {r.error}" if r.error else ""
            self.say(
                f"source {r.name} ({r.table}): {r.status}{error} — {r.rows_read:,} rows read, {r.rows_loaded:,} "
                f"loaded ({r.rows_new:,} new, {r.rows_updated:,} updated), {r.rows_quarantined:,} quarantined"
                f"{files}{failed}{waiting}"
            )

        results = read_sources(ws, self.cfg.sources, record.started_at, on_source=line, progress=self.progress)
        report.sources = _merge_sources(record.steps.get("sources", []), results)
        record.steps["sources"] = report.sources
        refresh_log.save(ws, record)
        self._results = results

    def run(self, record: refresh_log.RefreshRecord, report: RefreshReport, needed: bool) -> None:
        done = record.steps.get("run")
        if done is not None:  # made by the killed attempt
            report.run_id, report.run_made = done["run_id"], True
            self.say(f"run {done['run_id']}: made before the interruption")
            return
        if not needed:
            self.say("run: nothing new since the latest run; it is kept")
            return
        made = run_in_workspace(self.root)
        report.run_id, report.run_made = made.run_id, True
        record.steps["run"] = {"run_id": made.run_id, "as_of": made.as_of.isoformat(), "customers": made.customers}
        self.say(f"run {made.run_id} as of {made.as_of}: {made.customers:,} customers in {made.timings['total']:.1f}s")

    def compare(self, latest: RunView | None, previous: RunView | None, report: RefreshReport) -> None:
        if latest is None:
            self.say("comparison: no run yet")
            return
        report.run_id = report.run_id or latest.run_id
        if previous is None:
            self.say(f"comparison: {latest.run_id} is the first run; alerts on customers start with the next one")
            return
        report.previous_run_id = previous.run_id
        cells = migration(previous.snapshot, latest.snapshot, "grade")
        kinds: dict[str, int] = {}
        for c in cells:
            kinds[c["kind"]] = kinds.get(c["kind"], 0) + c["customers"]
        report.comparison = {"by": "grade", "previous_run_id": previous.run_id, "run_id": latest.run_id, **kinds}
        self.say(
            f"comparison with {previous.run_id} (grade): {kinds.get('upgrade', 0):,} up, "
            f"{kinds.get('downgrade', 0):,} down, {kinds.get('entry', 0):,} new, {kinds.get('exit', 0):,} gone"
        )

    def alerts(
        self, ws: Workspace, record: refresh_log.RefreshRecord, report: RefreshReport,
        latest: RunView | None, previous: RunView | None,
    ) -> None:  # fmt: skip
        if latest is not None:  # with one run, against itself: a wrong rule is told at once, not a run later
            check_rules(self.cfg.alerts, latest.snapshot, (previous or latest).snapshot)
        secret = self.cfg.delivery.webhook_secret_env
        if any(a.webhook for a in self.cfg.alerts) and not os.environ.get(secret):
            self.say(f"note: {secret} is not set, so webhooks go unsigned; set it to the key the receiver checks")
        for alert in self.cfg.alerts:
            event_id = _event_id(alert, record.refresh_id, latest.run_id if latest is not None else None)
            if event_id is None:
                continue
            stored = refresh_log.event_recorded(ws, event_id)
            if stored is not None:
                details = refresh_log.decode(stored["details"])
                matched, new = int(stored["matched"]), False
            else:
                found = evaluate(alert, latest=latest, previous=previous, sources=self._results, language=self.language)
                matched, new, details = found.matched, True, _details(found, latest)
                if matched:
                    refresh_log.record_event(
                        ws,
                        {
                            "event_id": event_id,
                            "refresh_id": record.refresh_id,
                            "run_id": latest.run_id if latest is not None else None,
                            "previous_run_id": previous.run_id if previous is not None else None,
                            "rule": alert.name,
                            "kind": alert.kind,
                            "matched": matched,
                            "details": details,
                        },
                    )
            entry: dict[str, Any] = {
                "rule": alert.name,
                "label": alert.label(self.language),
                "kind": alert.kind,
                "event_id": event_id,
                "matched": matched,
                "new": new,
                "customers": [c["customer_id"] for c in details.get("customers", [])],
                "deliveries": [],
            }
            if matched:
                entry["deliveries"] = self.deliver(ws, alert, event_id, details, record, latest, previous)
            report.alerts.append(entry)
            sent = sum(d["status"] == "delivered" for d in entry["deliveries"] if d.get("now"))
            self.say(
                f"alert {alert.name}: {matched:,} matched"
                + ("" if new or not matched else " (recorded before)")
                + (f", {sent} deliveries sent" if sent else "")
            )
        record.steps["alerts"] = [{k: a[k] for k in ("rule", "event_id", "matched")} for a in report.alerts]
        refresh_log.save(ws, record)

    def _targets(self, alert: AlertSettings, details: dict[str, Any]) -> list[tuple[str, str, str, list[Any]]]:
        """(channel, target, part, customers) of every delivery the alert asks for."""
        customers = details.get("customers", [])
        out: list[tuple[str, str, str, list[Any]]] = []
        if alert.webhook:
            out.append(("webhook", alert.webhook, "all", customers))
        out += [("email", address, "all", customers) for address in alert.email]
        if alert.per_owner and alert.kind == "customers":
            owners: dict[str, list[Any]] = {}
            for c in customers:
                if c.get("owner"):
                    owners.setdefault(str(c["owner"]), []).append(c)
            for owner, theirs in sorted(owners.items()):
                out.append(("email", self.cfg.delivery.owners.get(owner, ""), owner, theirs))
        return out

    def deliver(
        self, ws: Workspace, alert: AlertSettings, event_id: str, details: dict[str, Any],
        record: refresh_log.RefreshRecord, latest: RunView | None, previous: RunView | None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        d = self.cfg.delivery
        label = alert.label(self.language)
        run_id = latest.run_id if latest is not None else ""
        out = []
        for channel, target, part, customers in self._targets(alert, details):
            row: dict[str, Any] = {"channel": channel, "part": part, "target": target, "customers": len(customers)}
            if refresh_log.delivery_done(ws, event_id, channel, target, part):
                out.append({**row, "status": "delivered", "now": False})
                continue
            if channel == "webhook":
                payload = {
                    "rule": alert.name,
                    "label": label,
                    "kind": alert.kind,
                    "refresh_id": record.refresh_id,
                    "run_id": run_id,
                    "previous_run_id": previous.run_id if previous is not None else None,
                    "as_of": details.get("as_of"),
                    "matched": len(customers) if alert.kind == "customers" else len(details.get("findings", [])),
                    "customers": customers,
                    "findings": details.get("findings", []),
                }
                outcome = post_webhook(
                    target, payload, secret=os.environ.get(d.webhook_secret_env) or None, settings=d, event_id=event_id
                )
            elif not target:
                outcome = Outcome("skipped", 0, "no address for this owner in [delivery.owners]")
            else:
                if alert.kind == "customers":
                    content = alert_mail(
                        self.language, rule_label=label, run_id=run_id, as_of=str(details.get("as_of") or ""),
                        customers=customers, dashboard_url=dashboard_url(self.cfg),
                        currency=self.cfg.workspace.currency,
                    )  # fmt: skip
                else:
                    content = run_alert_mail(
                        self.language, rule_label=label, refresh_id=record.refresh_id,
                        findings=details.get("findings", []), dashboard_url=dashboard_url(self.cfg),
                    )  # fmt: skip
                outcome = send_mail(d, target, content)
            refresh_log.record_delivery(
                ws,
                {
                    "event_id": event_id, "channel": channel, "target": target, "part": part,
                    "status": outcome.status, "attempts": outcome.attempts, "detail": outcome.detail,
                    "customers": len(customers),
                },
            )  # fmt: skip
            # Only the rule, the channel and the outcome: targets and parts name people.
            log.info("alert %s: %s delivery %s (%s)", alert.name, channel, outcome.status, outcome.detail)
            out.append({**row, "status": outcome.status, "attempts": outcome.attempts, "detail": outcome.detail,
                        "now": True})  # fmt: skip
        return out

    def digests(self, ws: Workspace, report: RefreshReport, latest: RunView | None, previous: RunView | None) -> None:
        d = self.cfg.delivery
        if not d.digest or latest is None or not report.run_made:
            return
        event_id = f"digest@{latest.run_id}"
        for owner, address in sorted(d.owners.items()):
            if refresh_log.delivery_done(ws, event_id, "email", address, owner):
                report.digests.append({"owner": owner, "status": "delivered", "now": False})
                continue
            digest = build_digest(ws, owner, latest=latest, previous=previous, top=d.digest_top)
            content = digest_mail(
                self.language, digest, dashboard_url=dashboard_url(self.cfg), currency=self.cfg.workspace.currency
            )
            outcome = send_mail(d, address, content)
            refresh_log.record_delivery(
                ws,
                {
                    "event_id": event_id, "channel": "email", "target": address, "part": owner,
                    "status": outcome.status, "attempts": outcome.attempts, "detail": outcome.detail,
                    "customers": len(digest["top"]),
                },
            )  # fmt: skip
            log.info("digest: delivery %s (%s)", outcome.status, outcome.detail)
            report.digests.append({"owner": owner, "status": outcome.status, "attempts": outcome.attempts,
                                   "detail": outcome.detail, "now": True})  # fmt: skip
        sent = sum(x["now"] and x["status"] == "delivered" for x in report.digests)
        self.say(f"digests: {sent} sent to {len(d.owners)} owners")


def refresh(
    root: Path | str,
    *,
    trigger: str = "cli",
    on_step: Callable[[str], None] | None = None,
    progress: ProgressFactory | None = None,
) -> RefreshReport:
    """Read every source, run when something changed, compare, check the alerts and deliver them; see the module
    docstring. `on_step` receives one line per step (no customer data)."""
    started = time.perf_counter()
    root = Path(root).resolve()
    cfg = load_config(root / CONFIG_FILE) if (root / CONFIG_FILE).is_file() else Workspace.open(root).config
    say = on_step or (lambda line: None)
    job = _Refresh(root, cfg, say, progress)
    with _lock(root, wait_for(cfg.schedule.wait_seconds)):
        with Workspace.open(root) as ws:
            record = refresh_log.start(ws, trigger)
            report = RefreshReport(record.refresh_id, record.trigger, record.attempts)
            say(f"refresh {record.refresh_id}" + (f" resumed (attempt {record.attempts})" if record.resumed else ""))
            try:
                job.sources(ws, record, report)
                needed = _needs_run(ws)
            except BaseException as exc:
                _fail(ws, record, report, exc)
                raise
        try:
            job.run(record, report, needed)
        except BaseException as exc:
            with Workspace.open(root) as ws:
                _fail(ws, record, report, exc)
            raise
        with Workspace.open(root) as ws:
            try:
                if report.run_id is not None:
                    refresh_log.save(ws, record, run_id=report.run_id)
                latest, previous = latest_and_previous(ws)
                job.compare(latest, previous, report)
                job.alerts(ws, record, report, latest, previous)
                job.digests(ws, report, latest, previous)
            except BaseException as exc:
                _fail(ws, record, report, exc)
                raise
            failed_sources = any(s["status"] in ("failed", "partial") for s in report.sources)
            failed_deliveries = any(
                x.get("now") and x["status"] == "failed" for a in report.alerts for x in a["deliveries"]
            ) or any(x.get("now") and x["status"] == "failed" for x in report.digests)
            report.status = refresh_log.PARTIAL if failed_sources or failed_deliveries else refresh_log.OK
            report.seconds = round(time.perf_counter() - started, 1)
            record.steps["seconds"] = report.seconds
            refresh_log.finish(ws, record, report.status)
    log.info(
        "refresh %s: %s, %d sources, run %s, %d alerts fired, %.1fs",
        record.refresh_id, report.status, len(report.sources), report.run_id or "-",
        sum(1 for a in report.alerts if a["matched"]), report.seconds,
    )  # fmt: skip
    say(f"refresh {record.refresh_id}: {report.status} in {report.seconds:.1f}s")
    return report


def _fail(ws: Workspace, record: refresh_log.RefreshRecord, report: RefreshReport, exc: BaseException) -> None:
    """A UserError ends the refresh as failed (the next one starts afresh); anything else — a kill, a bug —
    leaves it running, so that the next refresh resumes it."""
    if isinstance(exc, UserError):
        report.status, report.error = refresh_log.FAILED, str(exc)
        refresh_log.finish(ws, record, refresh_log.FAILED, str(exc))


def last_refresh_started(ws: Workspace) -> dt.datetime | None:
    """When the latest finished refresh started (the schedule's "was this slot done")."""
    t = ws.table("refreshes")
    started: dt.datetime | None = t.filter(t.status != refresh_log.RUNNING).started_at.max().to_pyarrow().as_py()
    return started
