"""A run's snapshot for its readers: `select_customers` (the rows a rule-language filter picks, with the columns
asked for) and the class columns `tierwise show` summarises. The summaries people read are built in
report/summaries.py and report/explain.py; the words in tierwise.i18n."""

from __future__ import annotations

import difflib

import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.rules import compile_expression

SUMMARIES = [
    "grade",
    "rfm_segment",
    "rfm_class8",
    "abc_class",
    "value_tier",
    "lifecycle_stage",
    "loyalty",
    "cluster_name",
]


def select_customers(snapshot: ir.Table, *, where: str | None = None, columns: list[str] | None = None) -> ir.Table:
    """The snapshot rows matching `where` (the rule language) with `columns` (default: all), customer_id first."""
    if where:
        snapshot = snapshot.filter(compile_expression(where, snapshot.schema(), what="--where")(snapshot))
    wanted = columns or list(snapshot.columns)
    unknown = [c for c in wanted if c not in snapshot.columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], snapshot.columns, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'tierwise export --list-columns'"
        raise UserError(f"--columns: no column '{unknown[0]}' in this run; {hint}")
    ordered = ["customer_id", *[c for c in wanted if c != "customer_id"]]
    return snapshot.select(*ordered).order_by("customer_id")
