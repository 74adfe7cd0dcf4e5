"""`tierwise cluster` and `tierwise classify` on a workspace: what the commands compute, store and return.

cluster: explore clustering on a run's snapshot with the [cluster] settings overridden; stores nothing.
classify: learn a target (a label column, or a future outcome from history), apply the model to every customer
of a run and store it: a row in `learned_models` and the predictions in `learned_<model id>`, in one
transaction; optionally the tree's rules appended to tierwise.toml as [[rules]] tags. The stored model is read
back by store/learned.py (for `show`, the report and the dashboard).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
import tempfile
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import ibis
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from tierwise.config import CONFIG_FILE, load_config, write_config_text
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.i18n import FUTURE_CLASS_WORDS
from tierwise.mining.cluster import fit_clusters
from tierwise.mining.in_run import CONTEXT, summary
from tierwise.mining.learn import apply_learned, learn_classes
from tierwise.mining.rule_text import rules_toml
from tierwise.mining.settings import ClassifySettings, ClusterSettings
from tierwise.pipeline.targets import (
    FUTURE_CLASSES,
    FUTURE_KINDS,
    FutureKind,
    default_periods,
    future_target,
    holdout_length,
    label_target,
)
from tierwise.rules import check_rules
from tierwise.store.learned import latest_learned
from tierwise.store.runs import canonical_tables, latest_snapshot
from tierwise.workspace import Workspace

if TYPE_CHECKING:  # scikit-learn takes a second to import: only when something is fitted, not for quick errors
    from tierwise.mining.learn import LearnResult
    from tierwise.mining.rule_text import LeafRule

Step = Callable[[str], None]

MIN_LABELLED = 20  # fewest labelled customers a classifier is fitted on
MAX_CLASSES = 50  # more distinct labels than this: the column is not a class (an id, a name, an amount)
RULE_PREFIX = "learned"


def _quiet(_: str) -> None:
    return None


def _validated(model: type[BaseModel], base: BaseModel, updates: dict[str, Any], command: str) -> Any:
    """`base` with `updates` applied and checked as if they came from tierwise.toml."""
    try:
        return model.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        where = f" ({key.replace('_', '-')})" if key else ""
        raise UserError(f"{command}: {first['msg'].removeprefix('Value error, ')}{where}") from exc


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers, tuples lists, dates text."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _close(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# --- cluster ------------------------------------------------------------------------------------------------


def cluster_settings(
    base: ClusterSettings,
    *,
    k: int | None = None,
    k_min: int | None = None,
    k_max: int | None = None,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    sample_size: int | None = None,
    seed: int | None = None,
) -> ClusterSettings:
    """The [cluster] settings with the command's options on top. A k range given without --k means: choose k."""
    updates: dict[str, Any] = {}
    if k is not None:
        updates["k"] = k
    elif k_min is not None or k_max is not None:
        updates["k"] = None
    for key, value in (
        ("k_min", k_min),
        ("k_max", k_max),
        ("features", features),
        ("categorical", categorical),
        ("sample_size", sample_size),
        ("seed", seed),
    ):
        if value is not None:
            updates[key] = value
    return _validated(ClusterSettings, base, updates, "cluster")


def explore_clusters(
    ws: Workspace,
    settings: ClusterSettings,
    *,
    run_id: str | None = None,
    language: str | None = None,
    strict: tuple[list[str], list[str]] = ([], []),
    on_step: Step = _quiet,
) -> dict[str, Any]:
    """Cluster a run's snapshot (default: the latest) with `settings`; nothing is stored.

    `strict`: (numeric, categorical) column names the user typed on the command line; unlike names in
    tierwise.toml (skipped with a note when absent), these must exist and be of the right kind."""
    lang = language or ws.config.workspace.language
    meta, snap = latest_snapshot(ws, run_id)
    schema = snap.schema()
    numeric, categorical = strict
    for name in numeric:
        if name not in schema.names:
            raise UserError(f"cluster: the snapshot has no column '{name}'{_close(name, list(schema.names))}")
        if not (schema[name].is_numeric() or schema[name].is_boolean()):
            raise UserError(f"cluster: '{name}' is not a number; give it with --categorical instead of --features")
    for name in categorical:
        if name not in schema.names:
            raise UserError(f"cluster: the snapshot has no column '{name}'{_close(name, list(schema.names))}")
    on_step("reading the snapshot")
    wanted = [*CONTEXT, *settings.features, *settings.categorical]
    df = snap.select(*dict.fromkeys(c for c in wanted if c in schema.names)).to_pandas()
    on_step(f"fitting k-means on {len(df):,} customers")
    result = fit_clusters(df, settings)
    out = summary(result)
    out.pop("projection", None)
    for p in out["profiles"]:
        p["name"] = p["name_zh"] if lang == "zh" else p["name_en"]
    return _clean(
        {
            "run_id": meta["run_id"],
            "as_of": meta["as_of"],
            "language": lang,
            "settings": settings.model_dump(),
            **out,
        }
    )


# --- classify -----------------------------------------------------------------------------------------------


@dataclass
class SavedRules:
    path: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # same name as a new rule: the new one takes its place
    removed: list[str] = field(default_factory=list)  # left from an earlier save for the same classes
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "added": self.added, "replaced": self.replaced, "removed": self.removed,
                "note": self.note}  # fmt: skip


@dataclass
class Learned:
    model_id: str
    run_id: str
    predictions_table: str
    result: LearnResult
    rules: list[LeafRule]  # the tree's rules rendered on the run's snapshot
    payload: dict[str, Any]
    saved: SavedRules | None = None

    def as_json(self, language: str) -> dict[str, Any]:
        """What `tierwise classify --json` prints: the stored payload, per model its metrics and rules, the rule
        text in `language`, and where the predictions are."""
        out = dict(self.payload)
        out["rules"] = [{**r, "text": r["text_zh" if language == "zh" else "text_en"]} for r in out["rules"]]
        out["models"] = {
            kind: {**m, "rules": out["rules"] if kind == self.result.model else []} for kind, m in out["models"].items()
        }
        out["model_id"] = self.model_id
        out["predictions_table"] = self.predictions_table
        out["saved_rules"] = self.saved.as_json() if self.saved else None
        return out


def classify_settings(
    base: ClassifySettings, *, target: str | None = None, model: str | None = None, holdout_days: int | None = None
) -> ClassifySettings:
    updates: dict[str, Any] = {}
    for key, value in (("target", target), ("model", model), ("holdout_days", holdout_days)):
        if value is not None:
            updates[key] = value
    return _validated(ClassifySettings, base, updates, "classify")


def learn_and_store(
    ws: Workspace,
    settings: ClassifySettings,
    *,
    compare: bool = False,
    calibration_end: dt.date | None = None,
    holdout_days_given: bool = False,
    run_id: str | None = None,
    save_rules: bool = False,
    on_step: Step = _quiet,
) -> Learned:
    """Learn `settings.target`, apply the model to every customer of a run (default: the latest) and store it.

    Nothing is stored when anything fails: the checks come first, and the stored rows, the predictions table
    and the rewritten tierwise.toml are written together at the end (the file last, inside the transaction)."""
    target = settings.target
    future = target in FUTURE_KINDS
    if save_rules and settings.model != "tree":
        raise UserError(f"classify: --save-rules needs the tree's rules; use --model tree, not {settings.model}")
    if not future and (calibration_end is not None or holdout_days_given):
        raise UserError(
            f"classify: --calibration-end and --holdout-days are for {' / '.join(FUTURE_KINDS)}, not a label column"
        )
    if future:
        orders = ws.table("orders")
        if int(orders.count().execute()) == 0:
            raise UserError(
                f"classify: {target} is learned from orders and there are none; "
                "load them first with 'tierwise ingest orders FILE'"
            )
    meta, snap = latest_snapshot(ws, run_id)
    schema = snap.schema()
    keep = ["customer_id", *settings.features] + ([] if future else [target])
    on_step("reading the snapshot")
    today = snap.select(*dict.fromkeys(c for c in keep if c in schema.names)).to_pandas()
    today = today.sort_values("customer_id", kind="stable").reset_index(drop=True)

    notes: list[str] = []
    positive = None
    periods: tuple[dt.date | None, dt.date | None] = (None, None)
    if future:
        start, end, period_notes = _periods(ws, settings, calibration_end)
        notes += period_notes
        on_step(f"building the snapshot as of {start}")
        kind = cast(FutureKind, target)
        got = future_target(canonical_tables(ws), ws.config, start, end, kind, settings.high_value_share)
        x, y, positive, periods = got.features, got.labels, got.positive, (start, end)
        notes += got.notes
        if "purchases" in schema.names:
            prospects = int(snap.filter(snap.purchases.fill_null(0) <= 0).count().execute())
            if prospects:
                notes.append(
                    f"{prospects:,} customers of the run without purchases are classified too, although the model "
                    "learned from customers who had bought"
                )
    else:
        x, y = label_target(today, target, _customers_frame(ws, target, set(schema.names)))
    _check_labels(target, y, future)

    on_step(f"fitting {'the models' if compare else settings.model} on {int(y.notna().sum()):,} customers")
    result = learn_classes(x, y, settings, compare=compare, positive=positive)
    missing = [f for f in result.features if f not in today.columns]
    if missing:
        raise UserError(
            f"classify: run {meta['run_id']} has no column {', '.join(missing)}; "
            "make a new run with 'tierwise run' and classify again"
        )
    on_step(f"applying the model to {len(today):,} customers")
    predictions, rules = apply_learned(result, today)

    model_id = dt.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    table = f"learned_{model_id.replace('-', '_')}"
    payload = _payload(result, rules, predictions, meta, periods, notes, y, future)
    learned = Learned(model_id, str(meta["run_id"]), table, result, rules, payload)

    new_text = None
    if save_rules:
        new_text, learned.saved = _rules_file(ws, rules, result, future, schema)

    on_step("saving")
    rows = pa.table(
        {
            "customer_id": pa.array(today["customer_id"].astype(str).tolist(), pa.string()),
            "learned_class": pa.array(predictions["learned_class"].astype(str).tolist(), pa.string()),
            "learned_confidence": pa.array(predictions["learned_confidence"].astype(float).tolist(), pa.float64()),
        }
    )
    row = {
        "model_id": model_id,
        "run_id": str(meta["run_id"]),
        "created_at": dt.datetime.now(),  # to the microsecond: two models of one second still have an order
        "target": target,
        "model": result.model,
        "calibration_end": periods[0],
        "holdout_end": periods[1],
        "predictions_table": table,
        "payload": json.dumps(payload, ensure_ascii=False),
    }
    with transaction(ws.con):
        ws.con.create_table(table, ibis.memtable(rows))
        ws.con.insert("learned_models", ibis.memtable([row], schema=ws.table("learned_models").schema()))
        if new_text is not None:
            write_config_text(ws.root / CONFIG_FILE, new_text)
    return learned


def _periods(
    ws: Workspace, settings: ClassifySettings, calibration_end: dt.date | None
) -> tuple[dt.date, dt.date, list[str]]:
    """(calibration end, holdout end, notes): the default periods, or the holdout after a given calibration end,
    cut at the day after the last order (later days have no outcome yet)."""
    days = holdout_length(settings.holdout_days, ws.config)
    orders = ws.table("orders")
    last_start, last_end = default_periods(orders, days)
    if calibration_end is None:
        return last_start, last_end, []
    if calibration_end >= last_end:
        raise UserError(
            f"classify: --calibration-end {calibration_end} leaves no orders to learn the outcome from "
            f"(the last order is on {last_end - dt.timedelta(days=1)}); choose an earlier date"
        )
    end = calibration_end + dt.timedelta(days=days)
    notes = []
    if end > last_end:
        notes.append(
            f"the holdout is cut at the last order: {(last_end - calibration_end).days} days instead of {days}"
        )
        end = last_end
    return calibration_end, end, notes


def _customers_frame(ws: Workspace, target: str, snapshot_columns: set[str]) -> pd.DataFrame | None:
    """The customers table as labels can come from it: its fields, and the extra columns of the customers
    file (kept in `attributes`) as columns. Only what is needed for `target` is read."""
    if target in snapshot_columns:
        return None
    customers = ws.table("customers")
    fields = [c for c in customers.columns if c not in ("attributes", "batch_id", "source_line", "is_minimal")]
    if target in fields:
        df = customers.select("customer_id", target).to_pandas()
        df[target] = df[target].map(lambda v: None if v is None or pd.isna(v) else str(v))
        return df
    pairs = customers.select("customer_id", "attributes").to_pyarrow().to_pylist()
    keys = sorted({k for r in pairs for k, _ in (r["attributes"] or [])})
    if target not in keys:
        # nothing to read: label_target says the column is unknown and lists the names it could be
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object), **{k: [] for k in keys + fields}})
    values = [dict(r["attributes"] or []).get(target) for r in pairs]
    return pd.DataFrame({"customer_id": [r["customer_id"] for r in pairs], target: values})


def _check_labels(target: str, y: pd.Series, future: bool) -> None:
    labelled = y.dropna()
    counts = labelled.value_counts()
    where = "customers with a purchase before the calibration end" if future else f"customers with a '{target}' value"
    if len(labelled) < MIN_LABELLED:
        fix = "choose a later --calibration-end" if future else "fill in more labels in the customers file"
        raise UserError(
            f"classify: only {len(labelled)} {where}; at least {MIN_LABELLED} are needed to learn from ({fix})"
        )
    if len(counts) < 2:
        only = f" ('{counts.index[0]}')" if len(counts) else ""
        fix = (
            "choose another --calibration-end or --holdout-days"
            if future
            else "a classifier needs customers of at least two classes"
        )
        raise UserError(f"classify: every one of the {len(labelled):,} {where} has the same class{only}; {fix}")
    if not future and len(counts) > min(MAX_CLASSES, len(labelled) // 5):
        raise UserError(
            f"classify: '{target}' has {len(counts):,} different values among {len(labelled):,} customers; "
            "a target must be a class (e.g. a grade A/B/C), not an id, a name or an amount"
        )


def _class_word(cls: str, language: str, future: bool) -> str | None:
    """A future target's class in words; a label column's classes are the user's own words."""
    if not future or cls not in FUTURE_CLASS_WORDS:
        return None
    en, zh = FUTURE_CLASS_WORDS[cls]
    return zh if language == "zh" else en


def _payload(
    result: LearnResult,
    rules: list[LeafRule],
    predictions: pd.DataFrame,
    meta: dict[str, Any],
    periods: tuple[dt.date | None, dt.date | None],
    notes: list[str],
    y: pd.Series,
    future: bool,
) -> dict[str, Any]:
    """What is stored with the model (both languages) and printed by --json."""
    data = result.as_json("en")
    models = {r.model: {**data["models"][r.model], "fit_seconds": r.fit_seconds} for r in result.comparison}
    return _clean(
        {
            "target": result.target,
            "model": result.model,
            "run_id": meta["run_id"],
            "as_of": meta["as_of"],
            "calibration_end": periods[0],
            "holdout_end": periods[1],
            "positive_class": result.report.positive,
            "labelled": int(y.notna().sum()),
            "class_counts": {str(k): int(v) for k, v in y.dropna().value_counts().sort_index().items()},
            "features": result.features,
            "models": models,
            "rules": [
                {
                    "class": rule.predicted,
                    "confidence": rule.confidence,
                    "support": rule.support,
                    "customers": rule.customers,
                    "distribution": rule.distribution,
                    "expression": rule.expression(),
                    "text_en": rule.text("en", _class_word(rule.predicted, "en", future)),
                    "text_zh": rule.text("zh", _class_word(rule.predicted, "zh", future)),
                }
                for rule in rules
            ],
            "applied": {
                "customers": len(predictions),
                "classes": {
                    str(k): int(v) for k, v in predictions["learned_class"].value_counts().sort_index().items()
                },
            },
            "notes": [*notes, *result.notes],
        }
    )


# --- saving the rules as tags -------------------------------------------------------------------------------

_SAVED_BY = "# learned by 'tierwise classify"
_HEADER = re.compile(r"^\s*\[")
_RULES_HEADER = re.compile(r"^\s*\[\[\s*rules\s*\]\]\s*(#.*)?$")


def _rule_blocks(lines: list[str]) -> list[tuple[int, int, str | None]]:
    """(first line, last line + 1, name) of every [[rules]] table: its header and key lines, without the blank
    and comment lines after it (they may belong to what follows)."""
    blocks = []
    i = 0
    while i < len(lines):
        if not _RULES_HEADER.match(lines[i]):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _HEADER.match(lines[j]):
            j += 1
        end = j
        while end > i + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        try:
            name = tomllib.loads("\n".join(lines[i:end])).get("rules", [{}])[0].get("name")
        except (tomllib.TOMLDecodeError, IndexError, AttributeError):
            name = None
        blocks.append((i, end, name if isinstance(name, str) else None))
        i = j
    return blocks


def _rules_file(
    ws: Workspace, rules: list[LeafRule], result: LearnResult, future: bool, schema: ibis.Schema
) -> tuple[str | None, SavedRules]:
    """The new text of tierwise.toml with the tree's rules as [[rules]] tags, checked (the whole file as
    settings, the new expressions against the snapshot's columns) before anything is written.

    A future target saves the rules of its positive class (who will be high value / churn); a label column the
    rules of every class. A rule with the name of one already in the file replaces it; rules left from an
    earlier save for the same classes (same prefix and class, a number no longer used) are removed."""
    path = ws.root / CONFIG_FILE
    saved = SavedRules(str(path))
    classes = [FUTURE_CLASSES[result.target][0]] if future else None
    text = rules_toml(rules, prefix=RULE_PREFIX, classes=classes)
    new = tomllib.loads(text).get("rules", []) if text else []
    if not new:
        saved.note = f"no rule of the tree predicts {', '.join(classes or [])}; tierwise.toml is unchanged"
        return None, saved
    new_names = [r["name"] for r in new]
    labels = {re.sub(r"[^\w.\-]+", "_", c.strip()) for c in (classes or result.report.classes)}
    ours = re.compile(rf"^{re.escape(RULE_PREFIX)}_(?:{'|'.join(re.escape(c) for c in sorted(labels))})_\d+$")
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines()
    drop: list[tuple[int, int]] = []
    for start, end, name in _rule_blocks(lines):
        if name is None:
            continue
        if name in new_names:
            saved.replaced.append(name)
            drop.append((start, end))
        elif ours.match(name):
            saved.removed.append(name)
            drop.append((start, end))
    for start, end in reversed(drop):
        while start > 0 and lines[start - 1].startswith(_SAVED_BY):  # the comment an earlier save wrote
            start -= 1
        if start > 0 and not lines[start - 1].strip() and (end >= len(lines) or not lines[end].strip()):
            start -= 1  # one blank line less, so that saving again does not leave a growing gap
        del lines[start:end]
    kept = "\n".join(lines).rstrip("\n")
    header = f"{_SAVED_BY} --target {result.target}' ({result.model}) on {dt.date.today()}"
    new_text = f"{kept}\n\n{header}\n{text.rstrip()}\n"
    saved.added = [n for n in new_names if n not in saved.replaced]

    # The edit must leave every other setting and rule as it was, and the result must load.
    before = tomllib.loads(original)
    after = tomllib.loads(new_text)
    gone = set(saved.replaced) | set(saved.removed)
    expected = [r for r in before.get("rules", []) if r.get("name") not in gone] + new
    others_kept = {k: v for k, v in after.items() if k != "rules"} == {k: v for k, v in before.items() if k != "rules"}
    if not others_kept or after.get("rules") != expected:
        raise UserError(
            f"{path}: could not add the learned rules without changing other settings; remove the [[rules]] "
            f"named {', '.join(sorted(gone))} by hand and run again"
        )
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / CONFIG_FILE
        probe.write_text(new_text, encoding="utf-8")
        config = load_config(probe)
    check_rules([(r.name, r.expression) for r in config.rules if r.name in new_names], schema)
    return new_text, saved


# --- reading back -------------------------------------------------------------------------------------------


def learned_for_customer(ws: Workspace, run_id: str, customer_id: str) -> dict[str, Any] | None:
    """The latest learned model's class for one customer of a run: model, target, class, confidence (or None)."""
    model = latest_learned(ws, run_id)
    if model is None:
        return None
    found: dict[str, Any] = {}
    table = str(model.get("predictions_table") or "")
    if table and table in ws.con.list_tables():
        p = ws.table(table)
        hits = p.filter(p.customer_id == customer_id).limit(1).to_pyarrow().to_pylist()
        found = hits[0] if hits else {}
    return {
        "model_id": model.get("model_id"),
        "target": model.get("target"),
        "model": model.get("model"),
        "class": found.get("learned_class"),
        "confidence": found.get("learned_confidence"),
    }
