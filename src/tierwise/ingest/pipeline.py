"""One file → one batch: read, stage, map, parse, de-duplicate, quarantine, load — all or nothing.

Reconciliation holds for every batch: rows_read = rows_new + rows_updated + rows_unchanged + rows_quarantined +
duplicates_removed (docs/ingest.md, "Reconciliation"); rows_loaded = rows_new + rows_updated.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tierwise import access
from tierwise.engine import stream_into_table, transaction
from tierwise.errors import UserError
from tierwise.ingest import database, identity, parse, report_rows
from tierwise.ingest.identity import minimal_records
from tierwise.ingest.mapping import Mapping, header_score, resolve_mapping
from tierwise.ingest.readers import open_source
from tierwise.ingest.source import LINE, SHEET, ReadLimits, Source
from tierwise.schema import TABLES, Field, TableSpec
from tierwise.workspace import IBIS_TYPES, Workspace, canonical_schema

# Reason codes of quarantined rows (docs/ingest.md explains each).
MISSING_CUSTOMER_ID = "MISSING_CUSTOMER_ID"
MISSING_VALUE = "MISSING_VALUE"
BAD_DATE = "BAD_DATE"
BAD_AMOUNT = "BAD_AMOUNT"
BAD_VALUE = "BAD_VALUE"
FUTURE_DATE = "FUTURE_DATE"
DUPLICATE_ID = "DUPLICATE_ID"
CONFLICTING_KEY = "CONFLICTING_KEY"
TOTAL_ROW = "TOTAL_ROW"

# Date fields that cannot lie in the future (a due date can).
NO_FUTURE = {"order_date", "date", "contacted_at", "invoice_date", "paid_date"}

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class BatchReport:
    file: str
    table: str
    batch_id: str
    status: str  # loaded | already_loaded
    rows_read: int = 0
    rows_loaded: int = 0  # written: rows_new + rows_updated
    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0  # records already stored as they are: skipped
    rows_replaced: int = 0  # stored rows the updates replaced (kept in replaced_<table>)
    rows_quarantined: int = 0
    duplicates_removed: int = 0
    values_blanked: int = 0
    outliers_flagged: int = 0
    returns: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    file_format: str = ""
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    mapping: dict[str, object] = field(default_factory=dict)
    date_orders: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    record_key: dict[str, object] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 3)


def fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def ingest_file(
    ws: Workspace,
    table_key: str,
    path: Path,
    *,
    sep: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    header: bool = True,
    maps: dict[str, str] | None = None,
    date_format: str | None = None,
    progress: ProgressFactory | None = None,
    today: _dt.date | None = None,
    keep_duplicates: bool | None = None,
    header_row: int | None = None,
    key: list[str] | None = None,
) -> BatchReport:
    spec = TABLES[table_key]
    file = str(path)
    if not path.is_file():
        # Checked before hashing so the message is the reader's, not an OS error.
        open_source(path)
    fp = fingerprint(path)
    if sheet is not None or header_row is not None:
        # Another sheet, or another header row, of a workbook already loaded is another batch.
        fp = hashlib.sha256(f"{fp}|sheet={sheet}|header_row={header_row}".encode()).hexdigest()
    batch_id = f"{spec.name}-{fp[:16]}"
    if already_loaded(ws, batch_id):
        return BatchReport(file, table_key, batch_id, "already_loaded")

    tick = progress(file, path.stat().st_size) if progress else None
    settings = ws.config.ingest
    source = open_source(
        path,
        sep=sep,
        encoding=encoding,
        sheet=sheet,
        header=header,
        progress=tick,
        header_row=header_row,
        header_score=header_score(spec, {**ws.config.mapping.get(table_key, {}), **(maps or {})}),
        limits=ReadLimits(settings.max_sheet_rows, settings.max_expansion_ratio),
    )
    try:
        mapping = resolve_mapping(source.columns, spec, ws.config.mapping.get(table_key, {}), maps or {}, file=file)
        timings: dict[str, float] = {}
        with _timed(timings, "read"):
            raw, cleanup = _stage(ws, source)
        try:
            report = _load(
                ws, spec, table_key, source, mapping, raw, batch_id, fp, date_format, today, keep_duplicates, timings,
                key=key,
            )  # fmt: skip
        except _LoadedMeanwhile:
            return BatchReport(file, table_key, batch_id, "already_loaded")
        finally:
            cleanup()
        report.timings = timings
        return report
    finally:
        source.close()


def ingest_database(
    ws: Workspace,
    table_key: str,
    url: str,
    table: str,
    *,
    since_column: str | None = None,
    maps: dict[str, str] | None = None,
    date_format: str | None = None,
    progress: ProgressFactory | None = None,
    today: _dt.date | None = None,
    keep_duplicates: bool | None = None,
    key: list[str] | None = None,
) -> BatchReport:
    """One database table (or its rows newer than the last load's, by `since_column` or the table's
    [ingest] incremental column) → one batch, cleaned like a file (docs/ingest.md, "Databases")."""
    spec = TABLES[table_key]
    column = since_column or ws.config.ingest.incremental.get(table_key)
    source_key = f"{database.safe_url(url)}#{table}"
    after = last_mark(ws, source_key, column) if column else None
    read = database.read_rows(url, table, since_column=column, after=after)
    if read.rows == 0:
        return BatchReport(source_key, table_key, "", "up_to_date", file_format="database")
    if progress is not None:
        read.progress = progress(source_key, read.rows)
    source = read.source
    mapping = resolve_mapping(source.columns, spec, ws.config.mapping.get(table_key, {}), maps or {}, file=source_key)
    timings: dict[str, float] = {}
    with _timed(timings, "read"):
        raw, cleanup = _stage(ws, source)
    try:
        fp = read.digest()
        batch_id = f"{spec.name}-{fp[:16]}"
        if already_loaded(ws, batch_id):
            return BatchReport(source_key, table_key, batch_id, "already_loaded", file_format="database")
        mark = None
        if column is not None:
            mark = raw.aggregate(mark=raw[column].max().cast("string")).to_pyarrow().to_pylist()[0]["mark"]

        def store_mark() -> None:
            if column is None or mark is None:
                return
            row = {"source": source_key, "column": column, "mark": mark, "batch_id": batch_id}
            # microseconds kept: the latest mark is the greatest (each load reads only rows above the one before)
            stored = {**row, "table_name": spec.name, "loaded_at": _dt.datetime.now()}
            ws.con.insert("source_marks", ibis.memtable([stored], schema=ws.table("source_marks").schema()))

        report = _load(
            ws, spec, table_key, source, mapping, raw, batch_id, fp, date_format, today, keep_duplicates, timings,
            store_mark, key=key,
        )  # fmt: skip
    except _LoadedMeanwhile:
        return BatchReport(source_key, table_key, batch_id, "already_loaded", file_format="database")
    finally:
        cleanup()
    report.timings = timings
    return report


class _LoadedMeanwhile(Exception):
    """The same batch was stored by another writer while this one was being read (found under the write lock)."""


def already_loaded(ws: Workspace, batch_id: str) -> bool:
    batches = ws.table("batches")
    return bool(batches.filter(batches.batch_id == batch_id).count().execute())


def last_mark(ws: Workspace, key: str, column: str) -> str | None:
    """The greatest `column` value loaded so far from the source table `key` (None: nothing loaded yet)."""
    marks = ws.table("source_marks")
    found = (
        marks.filter((marks.source == key) & (marks.column == column))
        .order_by(ibis.desc("loaded_at"))
        .limit(1)
        .to_pyarrow()
        .to_pylist()
    )
    return str(found[0]["mark"]) if found else None


def _stage(ws: Workspace, source: Source) -> tuple[ir.Table, Callable[[], None]]:
    """The raw rows with their line numbers, as a table in the engine."""
    name = f"_stage_{uuid.uuid4().hex[:12]}"
    if source.file_format == "parquet":
        # The engine scans Parquet in parallel where it lies; nothing is copied.
        view = ws.con.read_parquet(str(source.path), table_name=name, file_row_number=True)
        raw = view.mutate(**{LINE: view.file_row_number + 1}).drop("file_row_number")
        cleanup: Callable[[], None] = lambda: ws.con.drop_view(name, force=True)  # noqa: E731
    else:
        schema = source.schema or pa.schema([*((c, pa.string()) for c in source.columns), (LINE, pa.int64())])
        stream_into_table(ws.con, name, pa.RecordBatchReader.from_batches(schema, source.batches))
        raw = ws.con.table(name)
        cleanup = lambda: ws.con.drop_table(name, force=True)  # noqa: E731
    if raw.count().execute() == 0:
        cleanup()
        raise UserError(
            "the file has a header but no data rows; export it again with its rows", file=source.label, line=2
        )
    return raw, cleanup


def _dedup(raw: ir.Table, source_cols: list[str]) -> tuple[ir.Table, bool]:
    """Exact duplicates collapse to their first line, with `_copies` counting them; True when some did.

    Grouping ten million rows by every column takes about 11 s here; counting repeated row hashes takes 2 s.
    Most files have no duplicates, so the hashes are checked first and the exact grouping (which a hash
    collision cannot fool) runs only when some hash repeats.
    """
    row_hash = ibis.struct({c: raw[c] for c in source_cols}).hash()
    hashed = raw.select(_h=row_hash)
    repeats = hashed.group_by("_h").aggregate(_n=hashed.count()).filter(ibis._._n > 1).count().execute()
    if not repeats:
        return raw.mutate(_copies=ibis.literal(1, "int64")), False
    # Line numbers restart in each sheet of a workbook: a row's sheet stays with it.
    keys = [*source_cols, *([SHEET] if SHEET in raw.columns else [])]
    return raw.group_by(keys).aggregate(**{LINE: raw[LINE].min(), "_copies": raw.count()}), True


@dataclass
class _FieldPlan:
    field: Field
    source: str | None  # the source column, as the user knows it

    @property
    def raw(self) -> str:  # column with the cleaned text (NULL for empty cells and missing-value tokens)
        return f"_r_{self.field.name}"

    @property
    def value(self) -> str:  # column with the parsed value, NULL where it could not be read
        return f"_v_{self.field.name}"


@dataclass
class _Check:
    failed: ir.BooleanValue
    code: str
    message: str
    column: str  # the source column, as the user knows it
    value: ir.Value


def _blank_to_null(col: ir.StringValue, missing: list[str]) -> ir.StringValue:
    s = parse.strip(col)
    tokens = [m.upper() for m in missing]
    # Only short values can be a token: the upper-casing and lookup run for those alone.
    is_token = ibis.ifelse(
        s.length() <= max((len(m) for m in tokens), default=0), parse.one_of(s.upper(), tokens), False
    )
    return ibis.ifelse((s == "") | is_token, ibis.null("string"), s)


def _parser(t: ir.Table, plan: _FieldPlan, order: str, pivot: int) -> list[parse.Stage]:
    f, raw, out = plan.field, plan.raw, plan.value
    target = IBIS_TYPES[f.kind]
    col_type = t[raw].type()
    if f.kind == "text":
        return [lambda t: {out: t[raw].cast("string")}]
    if col_type.is_string():
        return parse.stages_for(f.kind, raw, out, order, pivot)  # type: ignore[arg-type]
    # Typed columns (Parquet): dates stored as numbers (20240305, Excel serials) still need reading.
    if f.kind in ("date", "timestamp") and col_type.is_numeric():
        text = f"{raw}__text"
        return [lambda t: {text: t[raw].cast("string")}, *parse.stages_for(f.kind, text, out, order, pivot)]  # type: ignore[arg-type]
    if f.kind == "date" and col_type.is_timestamp():
        return [lambda t: {out: t[raw].date()}]
    return [lambda t: {out: t[raw].try_cast(target)}]


# The largest float amount read as money (within DECIMAL(18,4), whatever the cast rounds).
_FLOAT_MONEY_LIMIT = 99999999999999.99


def _unread(text: ir.Value, value: ir.Value) -> ir.BooleanValue:
    """`value` is NULL. For a float column read as money (Parquet, databases) this is said from the float: the
    engine evaluates the decimal cast again at each place that reads it, and every pass over Parquet reads these
    checks (a tenth of the time of ingesting 10 million Parquet lines). Stricter than the cast, never looser."""
    if value.type().is_decimal() and text.type().is_floating():
        return ibis.ifelse(text.isnull(), value.isnull(), ~(text.abs() <= _FLOAT_MONEY_LIMIT))
    return value.isnull()


def _date_orders(
    ws: Workspace, t: ir.Table, spec: TableSpec, mapping: Mapping, date_format: str | None, file: str
) -> dict[str, str]:
    configured = date_format or ws.config.ingest.date_order
    if configured not in ("auto", "ymd", "dmy", "mdy"):
        raise UserError(f"--date-format '{configured}' is not one of auto, ymd, dmy, mdy", file=file)
    orders: dict[str, str] = {}
    for name, source in mapping.fields.items():
        f = spec.field(name)
        if f.kind not in ("date", "timestamp") or not t[source].type().is_string():
            continue
        evidence = parse.date_order_evidence(t, source)
        decided = parse.decide_date_order(evidence, configured)  # type: ignore[arg-type]
        if isinstance(decided, parse.DateOrderProblem):
            example = decided.example or ""
            line = t.filter(t[source] == example)[LINE].min().execute() if example else None
            if decided.kind == "conflict":
                what = f"some dates are day-first and others month-first (e.g. '{example}')"
            else:
                what = f"dates like '{example}' could be day-first or month-first"
            raise UserError(
                f"{what}; say which with --date-format dmy or --date-format mdy "
                "(or [ingest] date_order in tierwise.toml)",
                file=file,
                line=int(line) if line is not None else None,
                column=source,
            )
        orders[source] = decided
    return orders


def _load(
    ws: Workspace,
    spec: TableSpec,
    table_key: str,
    source: Source,
    mapping: Mapping,
    raw: ir.Table,
    batch_id: str,
    fp: str,
    date_format: str | None,
    today: _dt.date | None,
    keep_duplicates: bool | None,
    timings: dict[str, float],
    on_commit: Callable[[], None] | None = None,
    *,
    key: list[str] | None = None,
) -> BatchReport:
    con = ws.con
    settings = ws.config.ingest
    file = source.label
    source_cols = [c for c in raw.columns if c not in (LINE, SHEET)]
    record_key = identity.resolve_key(table_key, set(mapping.fields), settings.keys, key, file=file)
    with _timed(timings, "date order"):
        orders = _date_orders(ws, raw, spec, mapping, date_format, file)

    # Exact duplicates: identical in every source column; the first occurrence is kept.
    remove = settings.remove_exact_duplicates if keep_duplicates is None else not keep_duplicates
    with _timed(timings, "duplicates"):
        dedup, grouped = _dedup(raw, source_cols) if remove else (raw.mutate(_copies=ibis.literal(1, "int64")), False)

    plans = {f.name: _FieldPlan(f, mapping.fields.get(f.name)) for f in spec.fields}
    mapped = [p for p in plans.values() if p.source is not None]
    t = dedup.mutate(
        **{
            p.raw: _blank_to_null(dedup[p.source], settings.missing_values)
            if dedup[p.source].type().is_string()
            else dedup[p.source]
            for p in mapped
            if p.source is not None
        }
    )
    pivot = settings.two_digit_year_pivot
    t = parse.apply_stages(t, [_parser(t, p, orders.get(p.source or "", "ymd"), pivot) for p in mapped])
    t = t.mutate(
        **{
            p.value: (t[p.value] if p.source is not None else ibis.null(IBIS_TYPES[p.field.kind])).cast(
                IBIS_TYPES[p.field.kind]
            )
            for p in plans.values()
        }
    )

    # amount = quantity × unit price where the amount column is missing or empty.
    if spec.name == "orders":
        qty, price, amount = plans["quantity"], plans["unit_price"], plans["amount"]
        if qty.source and price.source:
            # In decimal, so 3 × 19.99 is 59.97 exactly; the quantity (a float: 2.5 kg) is taken to 8 places. In
            # 38 digits, where any quantity below 10^12 times any price fits (in 18, DuckDB raises on overflow).
            q = t[qty.value]
            exact_qty = ibis.ifelse(q.abs() < 1e12, q.try_cast("decimal(38,8)"), ibis.null("decimal(38,8)"))
            product = (exact_qty * t[price.value]).round(2).try_cast(parse.MONEY)
            if amount.source is None:
                # The source text of a derived amount is its factors: a product beyond MONEY is BAD_AMOUNT, named.
                factors = t[qty.raw].cast("string") + "×" + t[price.raw].cast("string")
                t = t.mutate(**{amount.value: product, amount.raw: factors})
                amount.source = f"{qty.source}×{price.source}"
            elif t[amount.raw].type().is_string() or grouped or bool(t[amount.raw].isnull().any().execute()):
                # (Parquet with every amount given has nothing to fill: its statistics say so at no cost, and the
                # product, in 38-digit decimals, would be worked out again on each pass over it.)
                filled = t[amount.value].coalesce(ibis.ifelse(t[amount.raw].isnull(), product, ibis.null(parse.MONEY)))
                t = t.mutate(**{amount.value: filled})

    if spec.name == "orders":
        t = t.mutate(_cancelled=_cancellation(t, settings.cancel_statuses, settings.cancel_prefixes))
        t = t.mutate(
            _is_return=t._cancelled | (t._v_amount < 0).fill_null(False) | (t._v_quantity < 0).fill_null(False)
        )

    today = today or _dt.date.today()
    latest = ibis.timestamp((today + _dt.timedelta(days=settings.future_tolerance_days + 1)).isoformat())

    checks: list[_Check] = []
    if source.file_format != "parquet":
        # Totals rows of report-style exports (合计, 小计, Total): in an id or name column, or the first column.
        labels: dict[str, ir.StringValue] = {}
        for name in ("customer_id", "order_id", "name", "campaign_id"):
            p = plans.get(name)
            if p is not None and p.source is not None and t[p.raw].type().is_string():
                labels.setdefault(p.source, t[p.raw])
        carried_name = mapping.carried.get("name")
        for col in ([carried_name] if carried_name else []) + source_cols[:1]:
            if col not in labels and t[col].type().is_string():
                labels[col] = parse.strip(t[col])
        for col, text in labels.items():
            checks.append(_Check(report_rows.is_total_label(text), TOTAL_ROW, "a totals row, not a record", col, text))
    for f in spec.fields:
        p = plans[f.name]
        if p.source is None:
            continue
        label = f"{f.name} ({f.label_zh})"
        text, value = t[p.raw], t[p.value]
        raw_text = text.cast("string")
        if f.required:
            code = MISSING_CUSTOMER_ID if f.name == "customer_id" else MISSING_VALUE
            # A value without source text was derived (amount = quantity × unit price): not missing.
            unread = _unread(text, value)
            checks.append(_Check(text.isnull() & unread, code, f"{label} is empty", p.source, raw_text))
            if f.kind != "text":
                bad = BAD_DATE if f.kind in ("date", "timestamp") else BAD_AMOUNT if f.kind == "amount" else BAD_VALUE
                checks.append(_Check(unread, bad, f"cannot read {label}", p.source, raw_text))
        if f.name in NO_FUTURE and f.kind in ("date", "timestamp"):
            ts = value.cast("timestamp")
            checks.append(
                _Check(ts.notnull() & (ts >= latest), FUTURE_DATE, f"{label} is in the future", p.source, raw_text)
            )

    if spec.name == "customers":
        # The same customer twice in one file with different details: the first line wins.
        t = t.mutate(_id_rank=ibis.row_number().over(group_by=t["_v_customer_id"], order_by=t[LINE]))
        checks.append(
            _Check(
                t["_v_customer_id"].notnull() & (t["_id_rank"] > 0),
                DUPLICATE_ID,
                "customer_id appears earlier in this file with other details",
                plans["customer_id"].source or "customer_id",
                t["_v_customer_id"],
            )
        )

    # The first failing check, by number; its code, message, column and value are then looked up, so each
    # check is evaluated once per row.
    none = ibis.null("int64")
    t = t.mutate(_check=ibis.cases(*[(c.failed, i) for i, c in enumerate(checks)], else_=none) if checks else none)

    def lookup(pick: Callable[[_Check], ir.Value]) -> ir.Value:
        if not checks:
            return ibis.null("string")
        return ibis.cases(*[(t._check == i, pick(c)) for i, c in enumerate(checks)], else_=ibis.null("string"))

    t = t.mutate(
        _reason=lookup(lambda c: ibis.literal(c.code)),
        _message=lookup(lambda c: ibis.literal(c.message)),
        _column=lookup(lambda c: ibis.literal(c.column)),
        _bad_value=lookup(lambda c: c.value.cast("string")),
    )
    # Only what loading needs is materialised: parsed values, the text of optional typed fields (to report
    # unreadable ones), the source columns kept as attributes or carried to customers, and the verdict.
    keep_raw = [
        p.raw for p in plans.values() if p.source is not None and not p.field.required and p.field.kind != "text"
    ]
    passthrough = list(
        dict.fromkeys((mapping.unmapped if spec.name == "customers" else []) + list(mapping.carried.values()))
    )
    columns = [
        *(["_cancelled", "_is_return"] if spec.name == "orders" else []),
        LINE,
        *([SHEET] if SHEET in t.columns else []),
        "_copies",
        *[p.value for p in plans.values()],
        *keep_raw,
        *passthrough,
        "_reason",
        "_message",
        "_column",
        "_bad_value",
    ]
    parsed = t.select(*columns)

    def commit(clean: ir.Table) -> BatchReport:
        return _commit(
            ws,
            spec,
            table_key,
            source,
            mapping,
            plans,
            clean,
            raw,
            batch_id,
            fp,
            orders,
            source_cols,
            timings,
            on_commit,
            record_key,
        )

    conflicts_possible = record_key is not None and record_key.per_row and spec.name != "customers"
    if source.file_format == "parquet" and not grouped and not conflicts_possible:
        # Parquet is typed and scanned in parallel where it lies: parsing it again for each of the few passes
        # below costs less than writing every parsed row to a temporary table first (which spills to disk at
        # 100 million rows). Text sources, and rows collapsed as duplicates, are parsed once and kept.
        return commit(parsed)
    clean_name = f"_clean_{uuid.uuid4().hex[:12]}"
    with _timed(timings, "clean"):
        con.create_table(clean_name, parsed, temp=True)
    try:
        with _timed(timings, "report rows"):
            if "amount" in plans and "customer_id" in plans and source.file_format != "parquet":
                report_rows.mark_sum_totals(con, clean_name, MISSING_CUSTOMER_ID, TOTAL_ROW)
            if conflicts_possible and record_key is not None:
                column = " + ".join(plans[f].source or f for f in record_key.fields)
                report_rows.mark_conflicting_keys(con, clean_name, record_key.fields, column, CONFLICTING_KEY)
        return commit(con.table(clean_name))
    finally:
        con.drop_table(clean_name, force=True)


def _commit(
    ws: Workspace,
    spec: TableSpec,
    table_key: str,
    source: Source,
    mapping: Mapping,
    plans: dict[str, _FieldPlan],
    clean: ir.Table,
    raw: ir.Table,
    batch_id: str,
    fp: str,
    orders: dict[str, str],
    source_cols: list[str],
    timings: dict[str, float],
    on_commit: Callable[[], None] | None = None,
    record_key: identity.RecordKey | None = None,
) -> BatchReport:
    """Store the batch in one transaction; `on_commit` writes what must be stored with it (a source's mark)."""
    con = ws.con
    file = source.label
    good = clean.filter(clean._reason.isnull())
    bad = clean.filter(clean._reason.notnull())

    optional = [p for p in plans.values() if p.source is not None and not p.field.required and p.field.kind != "text"]

    def unreadable(p: _FieldPlan) -> ir.BooleanValue:
        return clean._reason.isnull() & clean[p.raw].notnull() & clean[p.value].isnull()

    # One pass for every count, and for the orders the quartiles of sales amounts (the outlier fences).
    sums: dict[str, ir.Value] = {}
    if spec.name == "orders":
        # Quartiles of the decimals themselves: DuckDB sorts them as integers, faster than doubles.
        sale_amount = ibis.ifelse(clean._reason.isnull() & ~clean._is_return, clean._v_amount, ibis.null(parse.MONEY))
        sums = {  # both quartiles from one sort of the amounts (a third faster than two quantiles)
            "quartiles": sale_amount.quantile([0.25, 0.75]),
            "returns": (clean._reason.isnull() & clean._is_return).sum(),
        }
    with _timed(timings, "check"):
        counts = (
            clean.aggregate(
                distinct_rows=clean.count(),
                copies=clean._copies.sum(),
                quarantined=clean._reason.notnull().sum(),
                **{f"blank_{p.field.name}": unreadable(p).sum() for p in optional},
                **sums,
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        rows_read = int(counts["copies"])
        duplicates = rows_read - int(counts["distinct_rows"])
        quarantined = int(counts["quarantined"] or 0)
        by_reason = bad.group_by("_reason").aggregate(n=bad.count())
        reasons = {r["_reason"]: int(r["n"]) for r in by_reason.to_pyarrow().to_pylist()} if quarantined else {}

        report = BatchReport(
            file=file,
            table=table_key,
            batch_id=batch_id,
            status="loaded",
            rows_read=rows_read,
            rows_quarantined=quarantined,
            duplicates_removed=duplicates,
            file_format=source.file_format,
            encoding=source.encoding,
            delimiter=source.delimiter,
            sheet=source.sheet,
            mapping=mapping.as_json(),
            date_orders=orders,
            reasons=reasons,
            record_key=record_key.as_json() if record_key else None,
            warnings=list(source.warnings),
        )
        accepted = rows_read - duplicates - quarantined

        # Values in optional fields that could not be read: the row loads with the field empty.
        blanked_parts = []
        for p in optional:
            n = int(counts[f"blank_{p.field.name}"] or 0)
            if not n:
                continue
            report.values_blanked += n
            rows = clean.filter(unreadable(p))
            blanked_parts.append(
                rows.select(
                    batch_id=ibis.literal(batch_id),
                    file=_file_of(rows, file),
                    line=rows[LINE],
                    column=ibis.literal(p.source),
                    field=ibis.literal(p.field.name),
                    value=rows[p.raw].cast("string"),
                )
            )

        target = canonical_schema(spec)
        loaded = _canonical_rows(ws, spec, good, plans, batch_id, target, mapping, _quartiles(counts))
        report.returns = int(counts.get("returns") or 0)

    # Writers take turns (tierwise.access.write_lock), and the batch is looked for again under the lock: an
    # identical file loaded meanwhile (two uploads of one file at once) makes this one "already loaded".
    wait = access.wait_for(ws.config.workspace.wait_seconds)
    with _timed(timings, "store"), access.write_lock(ws.root, wait), transaction(con):
        if already_loaded(ws, batch_id):
            raise _LoadedMeanwhile(batch_id)
        if quarantined:
            # The whole source line is rebuilt for rejected rows only, from the raw rows by line number.
            sep = source.delimiter if source.delimiter not in ("", "whitespace") else " | "
            place = [LINE, *([SHEET] if SHEET in raw.columns else [])]
            lines = raw.semi_join(bad, place)
            record = ibis.literal(sep).join([lines[c].cast("string").fill_null("") for c in source_cols])
            records = lines.select(*place, _record=record)
            rejected = bad.join(records, place)
            con.insert(
                "quarantine",
                rejected.select(
                    batch_id=ibis.literal(batch_id),
                    table_name=ibis.literal(spec.name),
                    file=_file_of(rejected, file),
                    line=rejected[LINE],
                    column=rejected._column,
                    reason_code=rejected._reason,
                    message=rejected._message,
                    value=rejected._bad_value,
                    record=rejected._record,
                ),
            )
        for part in blanked_parts:
            con.insert("blanked_values", part)
        with _timed(timings, "identity"):
            stored = identity.store(ws, spec, loaded, record_key, batch_id, accepted)
        report.rows_new, report.rows_updated = stored.new, stored.updated
        report.rows_unchanged, report.rows_replaced = stored.unchanged, stored.replaced
        report.rows_loaded = stored.new + stored.updated
        if stored.repeating:
            report.warnings.append(
                f"{stored.repeating:,} of {accepted:,} rows are identical to rows already stored, and {spec.name} "
                "here has no record key (no order number), so they were added again; if this file overlaps an "
                f"earlier one, take it out with 'tierwise unload {batch_id}' and load only the new rows"
            )
        if spec.name == "customers":
            report.customers_updated = stored.updated
        else:
            if spec.name == "orders":  # counted from the stored rows: the fences were only known after the pass
                stored = con.table(spec.name)
                flagged = stored.filter((stored.batch_id == batch_id) & stored.is_outlier).count()
                report.outliers_flagged = int(flagged.execute())
        if spec.name != "customers":
            with _timed(timings, "customers"):
                report.customers_created = _create_minimal_customers(ws, spec, good, mapping, batch_id)
        con.insert("batches", ibis.memtable([_batch_row(report, fp)], schema=ws.table("batches").schema()))
        if on_commit is not None:
            on_commit()
    return report


def _quartiles(counts: dict[str, Any]) -> tuple[float | None, float | None]:
    """(Q1, Q3) of the sales amounts from the check pass; (None, None) without orders or sales."""
    q = counts.get("quartiles")
    # decimals from the engine; the fences are statistics, compared as floats
    return (float(q[0]), float(q[1])) if q and q[0] is not None and q[1] is not None else (None, None)


def _cancellation(t: ir.Table, statuses: list[str], prefixes: list[str]) -> ir.BooleanValue:
    """A cancelled status or an order number with a cancellation prefix (Online Retail's 'C536379').

    Both values are already stripped (text) or were never text. A prefix is matched with ILIKE, a quarter of the
    cost of upper-casing every order number, unless it holds one of ILIKE's wildcards (or
    non-ASCII letters, whose case folding may differ)."""
    cancelled: ir.BooleanValue = ibis.literal(False)
    if statuses:
        cancelled = cancelled | parse.one_of(t._v_status.lower(), statuses).fill_null(False)
    order_id = t._v_order_id
    for prefix in prefixes:
        if not prefix.isascii() or any(c in prefix for c in "%_\\"):
            starts = order_id.upper().startswith(prefix.upper())
        else:
            starts = order_id.ilike(f"{prefix}%")
        cancelled = cancelled | starts.fill_null(False)
    return cancelled


def _canonical_rows(
    ws: Workspace,
    spec: TableSpec,
    good: ir.Table,
    plans: dict[str, _FieldPlan],
    batch_id: str,
    target: ibis.Schema,
    mapping: Mapping,
    quartiles: tuple[float | None, float | None] = (None, None),
) -> ir.Table:
    """The canonical rows of `good`; for orders, amounts beyond the fences of the sales amounts' `quartiles`
    (Q1, Q3) are outliers."""
    settings = ws.config.ingest
    cols: dict[str, ir.Value] = {name: good[f"_v_{name}"] for name in plans}
    if spec.name == "orders":
        cancelled, is_return = good._cancelled, good._is_return
        amount, qty, cost = cols["amount"], cols["quantity"], cols["cost"]
        cols["amount"] = ibis.ifelse(cancelled, -amount.abs(), amount)
        cols["quantity"] = ibis.ifelse(cancelled & qty.notnull(), -qty.abs(), qty)
        cols["cost"] = ibis.ifelse(cancelled & cost.notnull(), -cost.abs(), cost)
        q1, q3 = quartiles
        if q1 is not None and q3 is not None and q3 > q1:
            iqr = q3 - q1
            hi = q3 + settings.outlier_iqr_factor * iqr
            lo = q1 - settings.outlier_iqr_factor * iqr
            outlier = (~is_return) & ((amount > hi) | (amount < lo))
        else:
            outlier = ibis.literal(False)
        cols["is_return"] = is_return
        cols["is_outlier"] = outlier
    if spec.name == "customers":
        if mapping.unmapped:
            keys = ibis.array([ibis.literal(c) for c in mapping.unmapped])
            vals = ibis.array([good[c].cast("string") for c in mapping.unmapped])
            cols["attributes"] = ibis.map(keys, vals)
        else:
            cols["attributes"] = ibis.null(target["attributes"])
        cols["is_minimal"] = ibis.literal(False)
    cols["batch_id"] = ibis.literal(batch_id)
    cols["source_line"] = good[LINE]
    return good.select(**{name: cols[name].cast(target[name]) for name in target.names})


def _create_minimal_customers(ws: Workspace, spec: TableSpec, good: ir.Table, mapping: Mapping, batch_id: str) -> int:
    """Customers seen in transactions but not in `customers` get a minimal, flagged record."""
    con = ws.con
    customers = con.table("customers")
    # The rows of unknown customers first (usually none), then one row per customer: grouping every order line
    # by customer before looking them up cost a pass over 10 million groups at 100 million lines.
    unknown = good.anti_join(customers, good["_v_customer_id"] == customers.customer_id)
    if not int(unknown.count().execute()):
        return 0
    extra: dict[str, ir.Value] = {
        fname: unknown[src].strip().nullif("").first(order_by=unknown[LINE]) for fname, src in mapping.carried.items()
    }
    missing = unknown.group_by(customer_id=unknown["_v_customer_id"]).aggregate(
        source_line=unknown[LINE].min(), **extra
    )
    n = int(missing.count().execute())
    con.insert("customers", minimal_records(missing.mutate(batch_id=ibis.literal(batch_id))))
    return n


def _batch_row(report: BatchReport, fp: str) -> dict[str, object]:
    return {
        "batch_id": report.batch_id,
        "table_name": TABLES[report.table].name,
        "file": report.file,
        "fingerprint": fp,
        "loaded_at": _dt.datetime.now().replace(microsecond=0),
        "file_format": report.file_format,
        "encoding": report.encoding,
        "delimiter": report.delimiter,
        "sheet": report.sheet,
        "rows_read": report.rows_read,
        "rows_loaded": report.rows_loaded,
        "rows_quarantined": report.rows_quarantined,
        "duplicates_removed": report.duplicates_removed,
        "values_blanked": report.values_blanked,
        "outliers_flagged": report.outliers_flagged,
        "returns": report.returns,
        "customers_created": report.customers_created,
        "customers_updated": report.customers_updated,
        "mapping": json.dumps(report.mapping, ensure_ascii=False),
        "date_orders": json.dumps(report.date_orders, ensure_ascii=False),
        "rows_new": report.rows_new,
        "rows_updated": report.rows_updated,
        "rows_unchanged": report.rows_unchanged,
        "rows_replaced": report.rows_replaced,
        "record_key": json.dumps(report.record_key) if report.record_key else None,
        "warnings": json.dumps(report.warnings, ensure_ascii=False) if report.warnings else None,
    }


def _file_of(rows: ir.Table, file: str) -> ir.StringValue:
    """The file a quarantined value is in; with several sheets, `book.xlsx#Sheet`."""
    if SHEET in rows.columns:
        return ibis.literal(file + "#") + rows[SHEET]
    return ibis.literal(file)
