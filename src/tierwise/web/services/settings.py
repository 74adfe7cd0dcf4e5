"""The settings page: read the weights, cut-offs, rules and playbook; preview what a change would do to the
latest run; save it to tierwise.toml.

Changes are a JSON object of the sections that may be changed here, e.g.

    {"grade": {"weights": {"credit": 0.4, "amount": 0.2}, "method": "cutoffs", "cutoffs": [85, 65, 40]},
     "abc": {"a_cutoff": 0.7}, "rules": [{"name": "vip", "expression": "monetary > 100000"}],
     "playbook": [{...}, ...]}

Sections: grade (weights by indicator name, or the whole `indicators` list, method, quotas, cutoffs,
normalise, short_history_days, prospect_indicator), abc, value, lifecycle, strategy (their keys as in
tierwise.toml), rules and playbook (each replaces the whole list). Everything is validated as tierwise.toml is
(one message naming the key), and every rule, playbook condition and indicator is compiled against the columns
of the snapshot before anything is previewed or written.

Saving edits tierwise.toml in place so that the user's comments and layout survive: changed keys are rewritten
on their own line inside their section, and a replaced [[rules]], [[playbook]] or [[grade.indicators]] list is
written where the old one was. The edited text must load back to exactly the new settings; when it does not
(an unusual layout, e.g. inline tables), the whole file is rewritten from the settings instead (comments are
then lost; the previous file is kept as tierwise.toml.bak either way). The write is atomic.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
import shutil
import threading
import tomllib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, ValidationError

from tierwise.cancel import checkpoint
from tierwise.config import CONFIG_FILE, Config, load_config, toml_value
from tierwise.errors import UserError
from tierwise.i18n import label, strategy_label
from tierwise.web.services._common import jsonable, language_of, parse_json
from tierwise.workspace import Workspace

if TYPE_CHECKING:
    from tierwise.pipeline.scratch import Scratch

SECTIONS = ("grade", "abc", "value", "lifecycle", "strategy", "rules", "playbook")
BACKUP_SUFFIX = ".bak"
COMPARED = ("grade", "tags", "next_action", "strategy")  # what preview_settings counts changes of
# COMPARED → (English, Chinese): how the preview names them
COMPARED_LABELS: dict[str, tuple[str, str]] = {
    "grade": ("Grade", "等级"),
    "tags": ("Tags (rules)", "标签（规则）"),
    "next_action": ("Next action", "下一步行动"),
    "strategy": ("Strategy", "策略"),
}
_save_lock = threading.Lock()


class GradeChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | None = None
    indicators: list[dict[str, Any]] | None = None
    method: Any = None
    normalise: Any = None
    quotas: Any = None
    cutoffs: Any = None
    short_history_days: Any = None
    prospect_indicator: Any = None


class SettingsChanges(BaseModel):
    """The parts of tierwise.toml the dashboard may change (values are checked by Config itself)."""

    model_config = ConfigDict(extra="forbid")

    grade: GradeChanges | None = None
    abc: dict[str, Any] | None = None
    value: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None
    strategy: dict[str, Any] | None = None
    rules: list[dict[str, Any]] | None = None
    playbook: list[dict[str, Any]] | None = None


def _first_error(exc: ValidationError, prefix: str = "") -> UserError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        top = str(first["loc"][0]) if first["loc"] else key
        if not prefix and top not in SECTIONS:
            return UserError(
                f"settings: '{top}' cannot be changed here; change one of {', '.join(SECTIONS)} "
                f"(other settings: edit {CONFIG_FILE})"
            )
        return UserError(f"settings '{prefix}{key}': unknown setting; check the name")
    return UserError(f"settings '{prefix}{key}': {first['msg']}")


# --- reading ------------------------------------------------------------------------------------------------


def config_path(ws: Workspace) -> Path:
    return ws.root / CONFIG_FILE


def current_config(ws: Workspace) -> Config:
    """The settings as tierwise.toml holds them now (the workspace's copy may be older)."""
    return load_config(config_path(ws))


def version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _sections(cfg: Config) -> dict[str, Any]:
    grade = cfg.grade.model_dump()
    grade["weights"] = {i.name: i.weight for i in cfg.grade.indicators}
    return {
        "grade": grade,
        "abc": cfg.abc.model_dump(),
        "value": cfg.value.model_dump(),
        "lifecycle": cfg.lifecycle.model_dump(),
        "strategy": cfg.strategy.model_dump(),
        "rules": [r.model_dump() for r in cfg.rules],
        "playbook": [r.model_dump() for r in cfg.playbook],
    }


def read_settings(ws: Workspace) -> dict[str, Any]:
    """{path (tierwise.toml, relative to the workspace: no server folders), version (changes when the file does),
    language, currency, grade (with `weights` by indicator), abc, value, lifecycle, strategy, rules, playbook,
    choices (allowed codes and their labels)}."""
    from tierwise.strategy.settings import ACTIONS, CHANNELS, SERVICE_LEVELS

    path = config_path(ws)
    text = path.read_text(encoding="utf-8")
    cfg = current_config(ws)
    lang = cfg.workspace.language

    def codes(kind: str, allowed: Sequence[str]) -> list[dict[str, str]]:
        return [{"code": k, "label": strategy_label(kind, k, lang)} for k in allowed]

    return jsonable(
        {
            "path": CONFIG_FILE,  # relative to the workspace: the server's folders are not shown to clients
            "version": version(text),
            "language": lang,
            "currency": cfg.workspace.currency,
            **_sections(cfg),
            "choices": {
                "grade.method": ["quotas", "cutoffs"],
                "grade.normalise": ["percentile", "minmax"],
                "abc.by": ["monetary", "profit"],
                "value.by": ["monetary", "profit", "clv_predicted"],
                "playbook.action": codes("action", ACTIONS),
                "playbook.service_level": codes("service_level", SERVICE_LEVELS),
                "playbook.channel": codes("channel", CHANNELS),
            },
        }
    )


# --- validating ---------------------------------------------------------------------------------------------


def apply_changes(base: Config, changes: dict[str, Any] | SettingsChanges) -> Config:
    """`base` with `changes` applied, validated as tierwise.toml is (UserError naming the first bad key)."""
    if isinstance(changes, SettingsChanges):
        parsed = changes
    else:
        if not isinstance(changes, dict):
            raise UserError('settings: send a JSON object like {"grade": {"weights": {"credit": 0.3}}}')
        try:
            parsed = SettingsChanges.model_validate(changes)
        except ValidationError as exc:
            raise _first_error(exc) from None
    data = base.model_dump()
    if parsed.grade is not None:
        grade = data["grade"]
        grade.update(parsed.grade.model_dump(exclude_none=True, exclude={"weights"}))
        for name, weight in (parsed.grade.weights or {}).items():
            # The indicators may have just been replaced by the change and are only checked below: no key is sure.
            found = [i for i in grade["indicators"] if isinstance(i, dict) and i.get("name") == name]
            if not found:
                known = [str(i.get("name")) for i in grade["indicators"] if isinstance(i, dict)]
                raise UserError(
                    f"settings 'grade.weights.{name}': no indicator '{name}'; the indicators are {', '.join(known)}"
                )
            found[0]["weight"] = weight
    for section in ("abc", "value", "lifecycle", "strategy"):
        values = getattr(parsed, section)
        if values:
            data[section].update(values)
    if parsed.rules is not None:
        data["rules"] = parsed.rules
    if parsed.playbook is not None:
        data["playbook"] = parsed.playbook
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, "") from None


def _as_of(ws: Workspace, meta: dict[str, Any] | None) -> dt.date | None:
    if meta is not None:
        return meta["as_of"]
    from tierwise.features.orders import default_as_of

    orders = ws.table("orders")
    if int(orders.count().execute()) == 0:
        return None
    return default_as_of(orders)


def _latest(ws: Workspace) -> tuple[dict[str, Any], ir.Table] | None:
    from tierwise.store.runs import latest_snapshot

    try:
        return latest_snapshot(ws)
    except UserError:
        return None


def _candidate(
    ws: Workspace,
    cfg: Config,
    as_of: dt.date,
    latest: tuple[dict[str, Any], ir.Table] | None,
    scratch: Scratch | None = None,
) -> ir.Table:
    """The snapshot a run as of `as_of` with settings `cfg` would store (Ibis expressions, nothing stored).

    The predictive-CLV scores and the clusters are taken from the latest run when it has them (and the CLV
    settings are unchanged): the settings changed here do not affect them, and refitting would take longer.
    Otherwise (tierwise.toml's [clv] edited since) the models are fitted again and their scores kept in `scratch`,
    so that they do not stay on the dashboard's connection."""
    from tierwise.clv.predict import SCHEMA as PREDICTIONS
    from tierwise.clv.predict import empty as no_predictions
    from tierwise.pipeline.snapshot import build_snapshot
    from tierwise.store.runs import canonical_tables, previous_runs, run_config
    from tierwise.strategy.playbook import apply_playbook, check_playbook

    tables = canonical_tables(ws)
    old = latest[1] if latest is not None else None
    predictions: ir.Table | None = None
    if latest is not None and old is not None and set(PREDICTIONS.names) <= set(old.columns):
        if run_config(ws, str(latest[0]["run_id"])).clv == cfg.clv:
            predictions = old.select(*PREDICTIONS.names)
    elif latest is None:
        predictions = ibis.memtable(no_predictions())
    previous: list[ir.Table] = []
    if cfg.stability.enabled:
        earlier = previous_runs(ws, as_of, max(cfg.stability.confirm_runs - 1, 1))
        previous = [ws.table(str(r["snapshot_table"])) for r in earlier]
    t = build_snapshot(tables, cfg, as_of, predictions=predictions, previous=previous, scratch=scratch)
    if old is not None and {"cluster", "cluster_name"} <= set(old.columns):
        t = t.left_join(old.select("customer_id", "cluster", "cluster_name"), "customer_id").drop("customer_id_right")
    elif cfg.cluster.enabled:
        t = t.mutate(cluster=ibis.null("int64"), cluster_name=ibis.null("string"))
    check_playbook(cfg.playbook, t.schema())
    return apply_playbook(t, cfg.playbook, budget=cfg.strategy.budget, language=cfg.workspace.language)


def check_settings(ws: Workspace, cfg: Config) -> list[str]:
    """Compile every indicator, rule and playbook condition of `cfg` against the snapshot's columns (UserError
    naming the first bad one). Returns notes (e.g. nothing to check against yet)."""
    latest = _latest(ws)
    as_of = _as_of(ws, latest[0] if latest else None)
    if as_of is None:
        return ["no orders loaded yet: the rules and indicators were not checked against the data's columns"]
    _candidate(ws, cfg, as_of, None)  # builds the expressions only: every expression is compiled, nothing runs
    return []


# --- preview ------------------------------------------------------------------------------------------------


def preview_settings(
    ws: Workspace,
    changes: dict[str, Any],
    *,
    examples: int = 20,
    language: str | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """How the latest run would differ had it been made with the changed settings (nothing is stored).

    The snapshot is rebuilt from the canonical tables as of the latest run's date and compared customer by
    customer with the stored one. {run_id, as_of, customers (in both), only_before, only_after, data_changed
    (data were loaded since the run, so differences are not all due to the settings), changed: {grade, tags,
    next_action, strategy}: customers whose value differs, grade_matrix: [{from, to, from_label, to_label,
    customers}] (every pair, unchanged included; the labels in `language`, default the workspace's),
    changed_labels: {grade, tags, next_action, strategy: their names in `language`}, grade_counts: {before:
    {grade: n}, after: {grade: n}}, examples: up to `examples` customers whose grade changes, by revenue,
    settings_changed: [{key, before, after}]}. Grades of customers without one are null ("—"). `progress`, a
    background job's progress(stage, fraction), hears of the stages "rebuilding" and "comparing"."""
    from tierwise.pipeline.scratch import Scratch

    base = current_config(ws)
    cfg = apply_changes(base, changes)
    latest = _latest(ws)
    if latest is None:
        raise UserError("no run yet to preview against; run the main job first ('tierwise run' or the Run button)")
    meta, old = latest
    as_of = meta["as_of"]
    if progress is not None:
        progress("rebuilding", 0.0)
    with Scratch(ws.con, None, uuid.uuid4().hex[:12]) as scratch:
        new = _candidate(ws, cfg, as_of, latest, scratch)
        checkpoint()  # building the expressions takes seconds of Python, which no DuckDB interrupt reaches

        def keep(t: ir.Table, suffix: str, **extra: Any) -> ir.Table:
            picked = {
                f"{c}_{suffix}": (t[c].cast("string") if c in t.columns else ibis.null("string")) for c in COMPARED
            }
            score = t.composite_score.cast("float64") if "composite_score" in t.columns else ibis.null("float64")
            return t.select("customer_id", **picked, **{f"score_{suffix}": score}, **extra)

        name_column = old.name.cast("string") if "name" in old.columns else ibis.null("string")
        before = keep(old, "before", name=name_column, monetary=old.monetary)
        after = keep(new, "after")
        j = scratch.temporary(f"_tierwise_preview_{scratch.suffix}", before.join(after, "customer_id"))
        if progress is not None:
            progress("comparing", 0.8)
        changed = {c: j.count(where=~j[f"{c}_before"].identical_to(j[f"{c}_after"])) for c in COMPARED}
        totals = j.aggregate(customers=j.count(), **changed).to_pyarrow().to_pylist()[0]
        cells = (
            j.group_by(**{"from": j.grade_before, "to": j.grade_after})
            .aggregate(customers=j.count())
            .to_pyarrow()
            .to_pylist()
        )
        moved = j.filter(~j.grade_before.identical_to(j.grade_after))
        sample = (
            moved.order_by([ibis.desc(moved.monetary), moved.customer_id])
            .select("customer_id", "name", "monetary", "grade_before", "grade_after", "score_before", "score_after")
            .limit(examples)
            .to_pyarrow()
            .to_pylist()
            if examples > 0
            else []
        )
        n_old = int(old.count().execute())
        n_new = int(new.count().execute())
    lang = language_of(ws, language) if language else base.workspace.language
    if lang not in ("zh", "en"):
        lang = "zh"
    order = {g: i for i, g in enumerate(["A", "B", "C", "D"])}
    cells.sort(key=lambda c: (order.get(c["from"], 9), order.get(c["to"], 9)))
    grade_counts: dict[str, dict[str, int]] = {"before": {}, "after": {}}
    for c in cells:
        grade_counts["before"][str(c["from"])] = grade_counts["before"].get(str(c["from"]), 0) + int(c["customers"])
        grade_counts["after"][str(c["to"])] = grade_counts["after"].get(str(c["to"]), 0) + int(c["customers"])
    batches = sorted(ws.table("batches").select("batch_id").to_pyarrow()["batch_id"].to_pylist())
    stored = parse_json(meta.get("input_batches"))
    return jsonable(
        {
            "run_id": meta["run_id"],
            "as_of": as_of,
            "customers": int(totals["customers"]),
            "only_before": n_old - int(totals["customers"]),
            "only_after": n_new - int(totals["customers"]),
            "data_changed": stored is not None and sorted(stored) != batches,
            "changed": {c: int(totals[c]) for c in changed},
            "changed_labels": {c: COMPARED_LABELS[c][1 if lang == "zh" else 0] for c in changed},
            "grade_matrix": [
                {
                    "from": c["from"],
                    "to": c["to"],
                    "from_label": label("grade", c["from"], lang),
                    "to_label": label("grade", c["to"], lang),
                    "customers": int(c["customers"]),
                }
                for c in cells
            ],
            "grade_counts": grade_counts,
            "examples": sample,
            "settings_changed": settings_diff(base, cfg),
        }
    )


def settings_diff(before: Config, after: Config) -> list[dict[str, Any]]:
    """[{key, before, after}] for every leaf setting (of SECTIONS) that differs, e.g. grade.indicators.0.weight."""
    a, b = _flatten(_sections(before)), _flatten(_sections(after))
    return [
        {"key": k, "before": a.get(k), "after": b.get(k)}
        for k in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0], k))
        if a.get(k) != b.get(k) and not k.startswith("grade.weights.")
    ]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):  # [] too: a list of tables, empty
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


# --- saving -------------------------------------------------------------------------------------------------


def save_settings(ws: Workspace, changes: dict[str, Any], *, expected_version: str | None = None) -> dict[str, Any]:
    """Validate `changes` (as preview_settings does, expressions included) and write them to tierwise.toml.

    `expected_version`: the `version` of read_settings the user edited; when the file has changed since, nothing
    is written (UserError: reload and try again). {path (relative to the workspace), version (new), rewritten
    (True when the whole file had to be rewritten), backup (its name, beside it), settings_changed: [{key,
    before, after}], diff (unified diff of the file)}.
    The workspace object gets the new settings (ws.config)."""
    path = config_path(ws)
    with _save_lock:
        original = path.read_text(encoding="utf-8")
        if expected_version is not None and expected_version != version(original):
            raise UserError(
                f"{CONFIG_FILE} has changed since the settings were read; reload them and apply the change again"
            )
        base = load_config(path)
        cfg = apply_changes(base, changes)
        notes = check_settings(ws, cfg)
        text, rewritten = edited_text(original, base, cfg)
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        shutil.copyfile(path, backup)
        from tierwise.config import write_config_text

        write_config_text(path, text)
    ws.config = cfg
    diff = "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True), text.splitlines(keepends=True), CONFIG_FILE, CONFIG_FILE + " (new)"
        )
    )
    return jsonable(
        {
            "path": CONFIG_FILE,  # relative to the workspace, as read_settings
            "version": version(text),
            "rewritten": rewritten,
            "backup": backup.name,
            "settings_changed": settings_diff(base, cfg),
            "diff": diff,
            "notes": notes,
        }
    )


def edited_text(original: str, before: Config, after: Config) -> tuple[str, bool]:
    """The new text of tierwise.toml: `original` edited in place, or rendered whole when the edit does not
    load back to `after`. Returns (text, rewritten)."""
    try:
        text = _edit(original, before, after)
        if _loads(text) == after:
            return text, False
    except (ValueError, KeyError, tomllib.TOMLDecodeError, ValidationError):
        pass
    text = render_config(after)
    if _loads(text) != after:  # pragma: no cover - render_config writes every setting
        raise UserError(f"{CONFIG_FILE}: the new settings could not be written; nothing was changed")
    return text, True


def _loads(text: str) -> Config:
    return Config.model_validate(tomllib.loads(text))


# A line-based editor of TOML: enough for files written by `tierwise init` and edited by hand.
_HEADER = re.compile(r"^\s*\[")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]\s*(#.*)?$")


def _block_end(lines: list[str], start: int) -> int:
    """End (exclusive) of the table starting at header `start`, without its trailing blank and comment lines."""
    j = start + 1
    while j < len(lines) and not _HEADER.match(lines[j]):
        j += 1
    while j > start + 1 and (not lines[j - 1].strip() or lines[j - 1].lstrip().startswith("#")):
        j -= 1
    return j


def _tables(lines: list[str], name: str) -> list[int]:
    return [
        i for i, line in enumerate(lines) if (m := _TABLE.match(line)) and not _ARRAY.match(line) and m.group(1) == name
    ]


def _arrays(lines: list[str], name: str) -> list[int]:
    return [i for i, line in enumerate(lines) if (m := _ARRAY.match(line)) and m.group(1) == name]


def _assignment_span(lines: list[str], i: int) -> int:
    """End (exclusive) of the key = value starting at line i (arrays may span lines)."""
    depth = 0
    for j in range(i, len(lines)):
        code = re.sub(r'"(?:\\.|[^"\\])*"|\'[^\']*\'', '""', lines[j]).split("#", 1)[0]
        depth += code.count("[") - code.count("]")
        if depth <= 0:
            return j + 1
    raise ValueError("unbalanced brackets")


def _set_keys(lines: list[str], start: int, end: int, values: dict[str, Any]) -> list[str]:
    """Within lines[start+1:end] (one table's body), set each key to its value (replaced where it is, else added
    after the last key line)."""
    body = lines[start + 1 : end]
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        new_line = f"{key} = {toml_value(value)}"
        for i, line in enumerate(body):
            if pattern.match(line):
                stop = _assignment_span(body, i)
                body[i:stop] = [new_line]
                break
        else:
            last = max(
                (i for i, line in enumerate(body) if line.strip() and not line.lstrip().startswith("#")), default=-1
            )
            body.insert(last + 1, new_line)
    return [*lines[: start + 1], *body, *lines[end:]]


def _set_section(lines: list[str], section: str, values: dict[str, Any]) -> list[str]:
    if not values:
        return lines
    found = _tables(lines, section)
    if not found:
        return [*lines, "", f"[{section}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    start = found[0]
    return _set_keys(lines, start, _block_end(lines, start), values)


def _array_lines(name: str, items: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.append(f"[[{name}]]")
        out += [f"{k} = {toml_value(v)}" for k, v in item.items() if v is not None]
        out.append("")
    return out[:-1]


def _replace_arrays(lines: list[str], name: str, items: list[dict[str, Any]]) -> list[str]:
    """Every [[name]] table removed; the new ones written where the first was (else at the end)."""
    found = _arrays(lines, name)
    if not found:
        return [*lines, "", *_array_lines(name, items)] if items else lines
    spans = [(i, _block_end(lines, i)) for i in found]
    first = spans[0][0]
    for start, end in reversed(spans):
        del lines[start:end]
        if start < len(lines) and start > 0 and not lines[start - 1].strip() and not lines[start].strip():
            del lines[start]  # no growing gaps
    return [*lines[:first], *_array_lines(name, items), *lines[first:]]


def _edit(original: str, before: Config, after: Config) -> str:
    lines = original.splitlines()
    grade_b, grade_a = before.grade.model_dump(), after.grade.model_dump()
    scalars = {k: v for k, v in grade_a.items() if k != "indicators" and grade_b[k] != v}
    lines = _set_section(lines, "grade", scalars)
    old_ind, new_ind = grade_b["indicators"], grade_a["indicators"]
    if old_ind != new_ind:
        same_shape = [{**i, "weight": 0} for i in old_ind] == [{**i, "weight": 0} for i in new_ind]
        blocks = _arrays(lines, "grade.indicators")
        if same_shape and len(blocks) == len(new_ind):  # only weights: edit each weight line in place
            for start, (o, n) in reversed(list(zip(blocks, zip(old_ind, new_ind, strict=True), strict=True))):
                if o["weight"] != n["weight"]:
                    lines = _set_keys(lines, start, _block_end(lines, start), {"weight": n["weight"]})
        else:
            lines = _replace_arrays(lines, "grade.indicators", new_ind)
    for section in ("abc", "value", "lifecycle", "strategy"):
        b, a = getattr(before, section).model_dump(), getattr(after, section).model_dump()
        lines = _set_section(lines, section, {k: v for k, v in a.items() if b[k] != v})
    for name in ("rules", "playbook"):
        b_items = [r.model_dump() for r in getattr(before, name)]
        a_items = [r.model_dump() for r in getattr(after, name)]
        if b_items != a_items:
            lines = _replace_arrays(lines, name, a_items)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_config(cfg: Config) -> str:
    """Every setting of `cfg` as TOML (no comments): the fallback when the file cannot be edited in place."""
    lines = [f"# tierwise workspace settings, rewritten by the dashboard on {dt.date.today()}.", ""]
    tables: list[str] = []
    for name in Config.model_fields:
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            lines.append(f"[{name}]")
            for key in type(value).model_fields:
                v = getattr(value, key)
                if v is None:
                    continue
                if isinstance(v, BaseModel):
                    tables += [f"[{name}.{key}]", *(f"{k} = {toml_value(x)}" for k, x in v.model_dump().items()), ""]
                elif isinstance(v, list) and v and isinstance(v[0], BaseModel):
                    tables += [*_array_lines(f"{name}.{key}", [x.model_dump() for x in v]), ""]
                else:
                    lines.append(f"{key} = {toml_value(v)}")
            lines += ["", *tables]
            tables = []
        elif name == "mapping":
            for table, pairs in value.items():
                lines.append(f"[mapping.{table}]")
                lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in pairs.items()]
                lines.append("")
        else:  # rules, playbook
            items = [x.model_dump() for x in value]
            if items:
                lines += [*_array_lines(name, items), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
