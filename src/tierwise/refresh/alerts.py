"""Alert rules: which customers (or which sources, batches, shares) an [[alerts]] rule finds after a refresh.

A customer rule is a condition in the rule language (docs/rules.md) over the latest run joined to the run before
it (the one `tierwise compare` compares with): every snapshot column as it is now, `previous_<column>` as it was
(NULL for a customer the previous run did not have), and `is_new`. Run-level rules look at what the refresh read
(a source that failed, a batch whose quarantine share is above a limit) or at the two runs (a class whose revenue
share moved by more than some points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.history.compare import RunView
from tierwise.refresh.settings import AlertSettings
from tierwise.refresh.sources import SourceResult
from tierwise.rules import columns_in, compile_expression
from tierwise.store.compat import with_columns

PREVIOUS = "previous_"
# Shown for every matched customer when they changed, besides the columns the rule names.
WATCHED = ("grade", "lifecycle_stage")
CUSTOMER_FIELDS = ("customer_id", "name", "owner", "grade", "priority_rank")


@dataclass
class Finding:
    """What one rule found: customers (kind customers) or sentences (run-level kinds)."""

    rule: AlertSettings
    customers: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.customers) if self.rule.kind == "customers" else len(self.findings)


def joined(latest: ir.Table, previous: ir.Table) -> ir.Table:
    """The latest run's rows with the previous run's values as previous_<column> and is_new."""
    latest = with_columns(latest, *CUSTOMER_FIELDS)
    prev = previous.select(
        *(previous[c].name(PREVIOUS + c) for c in previous.columns if c in latest.columns and c != "customer_id"),
        _previous_id=previous.customer_id,
    )
    j = latest.left_join(prev, latest.customer_id == prev._previous_id)
    # A column the previous run lacks (made by an older version) is unknown there, not an error in the rule.
    missing = {
        PREVIOUS + c: ibis.null(latest[c].type())
        for c in latest.columns
        if c != "customer_id" and PREVIOUS + c not in prev.columns
    }
    return j.mutate(is_new=j._previous_id.isnull(), **missing).drop("_previous_id")


def rule_schema(latest: ir.Table, previous: ir.Table) -> ibis.Schema:
    return joined(latest, previous).schema()


def check_rules(alerts: list[AlertSettings], latest: ir.Table, previous: ir.Table) -> None:
    """UserError naming the first customer rule that does not compile against these runs."""
    schema = rule_schema(latest, previous)
    for alert in alerts:
        if alert.kind == "customers":
            compile_expression(str(alert.where), schema, what=f"alert '{alert.name}' (where)")


def customers_matching(alert: AlertSettings, latest: RunView, previous: RunView) -> list[dict[str, Any]]:
    """The customers the rule matches, best priority first, each with the changed columns and their previous
    values."""
    t = joined(latest.snapshot, previous.snapshot)
    keep = compile_expression(str(alert.where), t.schema(), what=f"alert '{alert.name}' (where)")
    named = columns_in(str(alert.where), t.columns)
    base = {c.removeprefix(PREVIOUS) for c in named} - {"is_new", "customer_id"}
    watched = [c for c in dict.fromkeys([*WATCHED, *sorted(base)]) if c in latest.snapshot.columns]
    fields = list(dict.fromkeys([*CUSTOMER_FIELDS, *watched]))
    hits = t.filter(keep(t)).order_by([ibis.asc("priority_rank", nulls_first=False), "customer_id"])
    rows = hits.select(*fields, *(PREVIOUS + c for c in watched), "is_new").to_pyarrow().to_pylist()
    out = []
    for row in rows:
        changes = {
            c: {"previous": row[PREVIOUS + c], "now": row[c]}
            for c in watched
            if not row["is_new"] and row[PREVIOUS + c] != row[c]
        }
        out.append({**{c: row[c] for c in CUSTOMER_FIELDS}, "is_new": row["is_new"], "changes": changes})
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def failed_sources(results: list[SourceResult], language: str) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if r.error:
            what = f"数据源 {r.name} 失败：{r.error}" if language == "zh" else f"source {r.name} failed: {r.error}"
            out.append({"what": what, "source": r.name})
        for f in r.files_failed:
            what = (
                f"数据源 {r.name} 的文件 {f['file']} 被拒绝并移至 failed/：{f['error']}"
                if language == "zh"
                else f"source {r.name}: file {f['file']} refused and moved to failed/: {f['error']}"
            )
            out.append({"what": what, "source": r.name, "file": f["file"]})
    return out


def quarantine_above(results: list[SourceResult], limit: float, language: str) -> list[dict[str, Any]]:
    out = []
    for r in results:
        for b in r.batches:
            read, held = int(b["rows_read"] or 0), int(b["rows_quarantined"] or 0)
            if read and held / read > limit:
                what = (
                    f"数据源 {r.name} 的批次 {b['batch_id']}：{held:,}/{read:,} 行被隔离（{_pct(held / read)}，"
                    f"上限 {_pct(limit)}），见 tierwise quarantine --batch {b['batch_id']}"
                    if language == "zh"
                    else f"source {r.name}, batch {b['batch_id']}: {held:,} of {read:,} rows quarantined "
                    f"({_pct(held / read)}, limit {_pct(limit)}); see tierwise quarantine --batch {b['batch_id']}"
                )
                out.append({"what": what, "source": r.name, "batch_id": b["batch_id"], "share": held / read})
    return out


def revenue_shares(snapshot: ir.Table, column: str) -> dict[str, float]:
    t = snapshot.filter(snapshot[column].notnull())
    rows = t.group_by(cls=t[column].cast("string")).aggregate(revenue=t.monetary.sum()).to_pyarrow().to_pylist()
    total = sum(float(r["revenue"] or 0) for r in rows)
    return {r["cls"]: float(r["revenue"] or 0) / total for r in rows} if total else {}


def share_shifts(alert: AlertSettings, latest: RunView, previous: RunView, language: str) -> list[dict[str, Any]]:
    column = alert.column
    if column not in latest.snapshot.columns or column not in previous.snapshot.columns:
        return []
    now, before = revenue_shares(latest.snapshot, column), revenue_shares(previous.snapshot, column)
    out = []
    for cls in sorted(set(now) | set(before)):
        moved = (now.get(cls, 0.0) - before.get(cls, 0.0)) * 100
        if abs(moved) > alert.points:
            what = (
                f"{column} = {cls} 的收入占比从 {_pct(before.get(cls, 0.0))} 变为 {_pct(now.get(cls, 0.0))}"
                f"（{moved:+.1f} 个百分点）"
                if language == "zh"
                else f"{column} = {cls}: revenue share {_pct(before.get(cls, 0.0))} → {_pct(now.get(cls, 0.0))} "
                f"({moved:+.1f} points)"
            )
            out.append({"what": what, "class": cls, "points": round(moved, 2)})
    return out


def evaluate(
    alert: AlertSettings,
    *,
    latest: RunView | None,
    previous: RunView | None,
    sources: list[SourceResult],
    language: str,
) -> Finding:
    found = Finding(alert)
    if alert.kind == "customers":
        if latest is not None and previous is not None:
            found.customers = customers_matching(alert, latest, previous)
    elif alert.kind == "source_failed":
        found.findings = failed_sources(sources, language)
    elif alert.kind == "quarantine_rate":
        found.findings = quarantine_above(sources, alert.limit, language)
    elif latest is not None and previous is not None:
        found.findings = share_shifts(alert, latest, previous, language)
    return found


def per_refresh(alert: AlertSettings) -> bool:
    """Rules about what a refresh read are keyed by the refresh; rules about runs by the run."""
    return alert.kind in ("source_failed", "quarantine_rate")
