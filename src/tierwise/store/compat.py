"""Runs made by older versions: which snapshot columns came later, and what a run made before them meant.

Each stored run keeps the snapshot its version wrote (runs are never rewritten), so a reader that compares or lists
runs across versions asks here for the columns it needs instead of checking each one itself.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

# column → its value in a snapshot made before the column existed
ADDED_LATER: dict[str, Callable[[ir.Table], ir.Value]] = {
    "grade_raw": lambda t: t.grade,  # before grade hysteresis (issue 6) the grade was the scored grade
    "grade_held": lambda t: ibis.literal(False),
    "composite_score": lambda t: ibis.null("float64"),
    "priority_rank": lambda t: ibis.null("int64"),
    "name": lambda t: ibis.null("string"),
    "owner": lambda t: ibis.null("string"),
    "loyalty": lambda t: ibis.null("string"),
    "satisfaction_level": lambda t: ibis.null("string"),
    "value_tier": lambda t: ibis.null("string"),
    "lifecycle_stage": lambda t: ibis.null("string"),
    "rfm_class8": lambda t: ibis.null("string"),
    "abc_class": lambda t: ibis.null("string"),
    "rfm_segment": lambda t: ibis.null("string"),
    "grade": lambda t: ibis.null("string"),
}


def with_columns(snapshot: ir.Table, *columns: str) -> ir.Table:
    """`snapshot` with every one of `columns`: its own, or the value older runs imply (ADDED_LATER)."""
    missing = {c: ADDED_LATER[c](snapshot) for c in columns if c not in snapshot.columns}
    return snapshot.mutate(**missing) if missing else snapshot
