"""The one reader of the classification models `tierwise classify` stored: a row of `learned_models` per model,
its predictions in `learned_<model id>` (written by mining.commands)."""

from __future__ import annotations

import json
from typing import Any

from tierwise.store.runs import latest_run_id
from tierwise.workspace import Workspace

# Row fields the payload is given (as text) when it has none of its own.
ROW_FIELDS = ("model_id", "target", "model", "predictions_table", "calibration_end", "holdout_end", "created_at")


def latest_learned(ws: Workspace, run_id: str | None = None) -> dict[str, Any] | None:
    """The latest model `tierwise classify` stored for a run (default: the latest run), or None.

    {"model_id", "run_id", "created_at", "target", "model", "calibration_end", "holdout_end" (dates or None),
     "predictions_table" (customer_id, learned_class, learned_confidence), "payload": the parsed JSON (see
     docs/classification.md: models → metrics/importances, rules with text_en/text_zh/expression, applied …)}"""
    if run_id is None:
        run_id = latest_run_id(ws)
        if run_id is None:
            return None
    t = ws.table("learned_models")
    rows = (
        t.filter(t.run_id == run_id)
        .order_by([t.created_at.desc(), t.model_id.desc()])
        .limit(1)
        .to_pyarrow()
        .to_pylist()
    )
    if not rows:
        return None
    row = rows[0]
    row["payload"] = json.loads(row["payload"])
    return row


def learned_payload(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    """The newest learned model of a run as its stored payload (LearnResult in both languages: target, model,
    models → metrics and importances, rules with text_en / text_zh, notes) with the row's model_id,
    predictions_table and periods added; None when none was learned for the run or it kept neither models nor
    rules."""
    row = latest_learned(ws, run_id)
    if row is None:
        return None
    payload = row.get("payload")
    if not isinstance(payload, dict):
        return None
    payload = dict(payload)
    for key in ROW_FIELDS:
        if row.get(key) is not None:
            payload.setdefault(key, str(row[key]))
    if not (payload.get("models") or payload.get("rules")):
        return None
    return payload
