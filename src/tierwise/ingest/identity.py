"""Record identity: which stored record a new row is, so overlapping exports count every record once.

Each canonical table has a natural key (docs/ingest.md, "Record identity"). A batch's record whose key is already
stored is *unchanged* (identical: skipped) or *changed* (the stored version moves to `replaced_<table>` and the new
one is loaded: the later batch wins). Keys are either per row (one row per key; two rows of one file with the same
key conflict) or per group (an order's lines: a batch holding order O1 replaces every stored line of O1 with its
own). `unload` takes a batch out again and puts back what it replaced.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
from ibis.backends.duckdb import Backend as DuckDBBackend

from tierwise import access
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.schema import CUSTOMERS, TABLES, TableSpec
from tierwise.workspace import REPLACED_COLUMNS, REPLACED_PREFIX, Workspace, canonical_schema

# Table → candidate keys, the first whose fields the source maps is used. False: the key names a group of rows
# (an order's lines, an invoice's payment lines) that is replaced as a whole.
DEFAULT_KEYS: dict[str, list[tuple[tuple[str, ...], bool]]] = {
    "customers": [(("customer_id",), True)],
    "orders": [(("order_id", "line_number"), True), (("order_id",), False)],
    "payments": [(("payment_id",), True), (("invoice_id",), False)],
    "interactions": [(("interaction_id",), True)],
    "campaigns": [(("campaign_id", "customer_id"), True)],
}
GROUP_KEYS = {(t, fields) for t, keys in DEFAULT_KEYS.items() for fields, per_row in keys if not per_row}

# Columns that say where a row came from or were judged against its batch (outliers): not part of the record.
NOT_IN_RECORD = {"batch_id", "source_line", "is_outlier"}

NONE = "none"


@dataclass(frozen=True)
class RecordKey:
    fields: tuple[str, ...]
    per_row: bool

    def as_json(self) -> dict[str, object]:
        return {"fields": list(self.fields), "per_row": self.per_row}

    def describe(self) -> str:
        return " + ".join(self.fields) + ("" if self.per_row else " (all lines of one)")


def resolve_key(
    table_key: str, mapped: set[str], configured: dict[str, list[str]], option: list[str] | None, *, file: str
) -> RecordKey | None:
    """The key of this source: `--key` first, then [ingest.keys], then the table's defaults; None: no identity."""
    spec = TABLES[table_key]
    chosen = option if option is not None else configured.get(table_key)
    if chosen is not None and [c.lower() for c in chosen] in ([], [NONE]):
        if table_key == "customers":
            raise UserError("customers are always identified by customer_id; remove the customers key setting")
        return None
    if chosen is not None:
        fields = tuple(chosen)
        unknown = [f for f in fields if f not in spec.names]
        if unknown:
            raise UserError(
                f"the record key names {', '.join(unknown)}, not a field of {spec.name}; "
                f"the fields are: {', '.join(spec.names)}",
                file=file,
            )
        if table_key == "customers" and fields != ("customer_id",):
            raise UserError("customers are always identified by customer_id; remove the customers key setting")
        absent = [f for f in fields if f not in mapped]
        if absent:
            raise UserError(
                f"the record key needs {', '.join(absent)}, which no column of this file maps to; map it with "
                f"--map COLUMN={absent[0]}, or pass --key none to load without record identity",
                file=file,
                line=1,
            )
        return RecordKey(fields, (table_key, fields) not in GROUP_KEYS)
    for fields, per_row in DEFAULT_KEYS[table_key]:
        if all(f in mapped for f in fields):
            return RecordKey(fields, per_row)
    return None


def record_columns(spec: TableSpec) -> list[str]:
    return [c for c in canonical_schema(spec).names if c not in NOT_IN_RECORD]


def _row_hashes(t: ir.Table, columns: list[str]) -> tuple[ir.IntegerValue, ir.IntegerValue]:
    """Two independent 64-bit hashes of a record's values (maps compared as text)."""

    def value(c: str) -> ir.Value:
        return t[c].cast("string") if t[c].type().is_map() else t[c]

    first = ibis.struct({c: value(c) for c in columns}).hash()
    second = ibis.struct({"_": ibis.literal("tierwise"), **{c: value(c) for c in reversed(columns)}}).hash()
    return first, second


def _has_key(t: ir.Table, key: RecordKey) -> ir.BooleanValue:
    found: ir.BooleanValue = ibis.literal(True)
    for f in key.fields:
        found = found & t[f].notnull()
    return found


def _signatures(t: ir.Table, key: RecordKey, columns: list[str]) -> ir.Table:
    """Per key: how many rows and the sums of their hashes — equal for the same multiset of records."""
    h1, h2 = _row_hashes(t, columns)
    return t.group_by(list(key.fields)).aggregate(_n=t.count(), _s1=h1.sum(), _s2=h2.sum())


@dataclass
class Stored:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    replaced: int = 0
    repeating: int = 0  # keyless tables: rows identical to rows already stored (loaded again, with a warning)


@contextmanager
def _scratch(con: DuckDBBackend) -> Iterator[list[str]]:
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            con.drop_table(name, force=True)


def _temp(con: DuckDBBackend, names: list[str], expr: ir.Table) -> ir.Table:
    name = f"_identity_{uuid.uuid4().hex[:12]}"
    con.create_table(name, expr, temp=True)
    names.append(name)
    return con.table(name)


def _on(key: RecordKey, left: str, right: str) -> str:
    return " AND ".join(f'{left}."{f}" = {right}."{f}"' for f in key.fields)


def store(ws: Workspace, spec: TableSpec, rows: ir.Table, key: RecordKey | None, batch_id: str, total: int) -> Stored:
    """Store a batch's accepted `rows` (`total` of them) in `spec`'s table, inside the caller's transaction."""
    con = ws.con
    table = ws.table(spec.name)
    columns = record_columns(spec)
    if not int(table.count().execute()):
        con.insert(spec.name, rows)
        return Stored(new=total)
    if key is None:
        repeating = 0
        if spec.name != CUSTOMERS.name:
            mine, _ = _row_hashes(rows, columns)
            theirs, _ = _row_hashes(table, columns)
            repeating = int(rows.select(_h=mine).semi_join(table.select(_h=theirs), "_h").count().execute())
        con.insert(spec.name, rows)
        return Stored(new=total, repeating=repeating)

    keys = list(key.fields)
    # The usual weekly file brings only new records: one look at the stored keys settles it.
    if not int(table.semi_join(rows.select(*keys), keys).count().execute()):
        con.insert(spec.name, rows)
        return Stored(new=total)

    with _scratch(con) as scratch:
        new = _temp(con, scratch, rows)
        keyed = new.filter(_has_key(new, key))
        mine = _signatures(keyed, key, columns)
        theirs = _signatures(table.semi_join(keyed.select(*keys), keys), key, columns)
        pairs = mine.join(theirs, keys)
        same = (pairs._n == pairs._n_right) & (pairs._s1 == pairs._s1_right) & (pairs._s2 == pairs._s2_right)
        verdict = _temp(con, scratch, pairs.select(*keys, _same=same))
        changed = verdict.filter(~verdict._same)
        counts = (
            new.left_join(verdict, keys)
            .aggregate(
                unchanged=ibis._._same.fill_null(False).sum(),
                updated=(~ibis._._same.fill_null(True)).sum(),
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        result = Stored(unchanged=int(counts["unchanged"] or 0), updated=int(counts["updated"] or 0))
        result.new = total - result.unchanged - result.updated
        if result.updated:
            old = table.semi_join(changed.select(*keys), keys)
            replaced_at = _dt.datetime.now().replace(microsecond=0)
            history = old.mutate(replaced_by=ibis.literal(batch_id), replaced_at=ibis.literal(replaced_at))
            result.replaced = int(old.count().execute())
            con.insert(REPLACED_PREFIX + spec.name, history.select(*ws.table(REPLACED_PREFIX + spec.name).columns))
            changed_name = verdict.get_name()
            con.raw_sql(
                f'DELETE FROM "{spec.name}" AS t USING "{changed_name}" AS c WHERE NOT c._same AND {_on(key, "t", "c")}'
            )
        unchanged = verdict.filter(verdict._same).select(*keys)
        con.insert(spec.name, new.anti_join(unchanged, keys).select(*table.columns))
    return result


# ---------------------------------------------------------------- unload


@dataclass
class Unloaded:
    batch_id: str
    table: str
    file: str
    rows_removed: int
    rows_restored: int
    customers_removed: int
    quarantine_removed: int

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def batch_key(ws: Workspace, batch_id: str) -> tuple[str, str, RecordKey | None]:
    b = ws.table("batches")
    found = b.filter(b.batch_id == batch_id).select("table_name", "file", "record_key").to_pyarrow().to_pylist()
    if not found:
        recent = b.order_by(ibis.desc("loaded_at")).limit(5).select("batch_id").to_pyarrow().to_pylist()
        listed = ", ".join(r["batch_id"] for r in recent) or "none"
        raise UserError(f"no batch '{batch_id}'; the latest batches are: {listed} (tierwise batches lists all)")
    row = found[0]
    key = json.loads(row["record_key"]) if row["record_key"] else None
    return row["table_name"], row["file"], RecordKey(tuple(key["fields"]), bool(key["per_row"])) if key else None


def unload(ws: Workspace, batch_id: str) -> Unloaded:
    """Remove a batch and put back the records it replaced, in one transaction: the workspace is as if the batch
    had never been loaded (records a later batch replaced stay replaced, now by that later batch). Under the
    workspace's write lock, like every load (tierwise.access)."""
    with access.write_lock(ws.root, access.wait_for(ws.config.workspace.wait_seconds)):
        return _unload(ws, batch_id)


def _unload(ws: Workspace, batch_id: str) -> Unloaded:
    table_name, file, key = batch_key(ws, batch_id)
    spec = next(s for s in TABLES.values() if s.name == table_name)
    con = ws.con
    replaced_name = REPLACED_PREFIX + table_name
    history_cols = ws.table(replaced_name).columns
    canonical = [c for c in history_cols if c not in REPLACED_COLUMNS]
    b = ibis.literal(batch_id)
    with transaction(con):
        table = ws.table(table_name)
        removed = int(table.filter(table.batch_id == b).count().execute())
        con.raw_sql(f"DELETE FROM \"{table_name}\" WHERE batch_id = '{_sql_text(batch_id)}'")
        # This batch's records that a later batch replaced are gone for good with it.
        con.raw_sql(f"DELETE FROM \"{replaced_name}\" WHERE batch_id = '{_sql_text(batch_id)}'")
        restored = 0
        if key is not None:
            keys = list(key.fields)
            on = _on(key, "h", "t")
            # Records this batch replaced whose key a later batch now holds: that batch replaced them instead.
            held = ", ".join(f'"{k}"' for k in keys)
            con.raw_sql(
                f'UPDATE "{replaced_name}" AS h SET replaced_by = t.batch_id FROM '
                f'(SELECT DISTINCT {held}, batch_id FROM "{table_name}") AS t '
                f"WHERE h.replaced_by = '{_sql_text(batch_id)}' AND {on}"
            )
            history = ws.table(replaced_name)
            back = history.filter(history.replaced_by == b)
            restored = int(back.count().execute())
            if restored:
                con.insert(table_name, back.select(*canonical))
                con.raw_sql(f"DELETE FROM \"{replaced_name}\" WHERE replaced_by = '{_sql_text(batch_id)}'")
        customers_removed = _remove_orphan_minimal_customers(ws, batch_id) if spec is not CUSTOMERS else 0
        if spec is CUSTOMERS:
            _recreate_minimal_customers(ws)
        q = ws.table("quarantine")
        quarantined = int(q.filter(q.batch_id == b).count().execute())
        for system in ("quarantine", "blanked_values", "source_marks", "batches"):
            con.raw_sql(f"DELETE FROM \"{system}\" WHERE batch_id = '{_sql_text(batch_id)}'")
    return Unloaded(batch_id, table_name, file, removed, restored, customers_removed, quarantined)


TRANSACTION_TABLES = [s.name for s in TABLES.values() if s is not CUSTOMERS]


def _remove_orphan_minimal_customers(ws: Workspace, batch_id: str) -> int:
    """Minimal customer records this batch created, unless other loaded rows still name those customers."""
    con = ws.con
    b = _sql_text(batch_id)
    used = " UNION ".join(f'SELECT customer_id FROM "{t}" WHERE customer_id IS NOT NULL' for t in TRANSACTION_TABLES)
    where = f"batch_id = '{b}' AND is_minimal AND customer_id NOT IN ({used})"
    n = int(con.raw_sql(f"SELECT count(*) FROM customers WHERE {where}").fetchone()[0])
    if n:
        con.raw_sql(f"DELETE FROM customers WHERE {where}")
    # Its minimal records that a customers file completed since: that history ends with the batch.
    con.raw_sql(f"DELETE FROM {REPLACED_PREFIX}customers WHERE batch_id = '{b}'")
    return n


def minimal_records(missing: ir.Table) -> ir.Table:
    """Customer records for customers seen only in transactions: `missing` has customer_id, batch_id,
    source_line and any customer fields an orders export carried (name, country …)."""
    target = canonical_schema(CUSTOMERS)
    row: dict[str, ir.Value] = {}
    for name in target.names:
        if name in missing.columns:
            row[name] = missing[name].cast(target[name])
        elif name == "is_minimal":
            row[name] = ibis.literal(True)
        elif name == "customer_kind":
            row[name] = ibis.literal("customer")
        else:
            row[name] = ibis.null(target[name])
    return missing.select(**row)


def _recreate_minimal_customers(ws: Workspace) -> None:
    """After a customers batch is unloaded, customers still named by orders (or payments …) keep a minimal record,
    as they would have had if that file had never been loaded."""
    customers = ws.table("customers")
    named = ibis.union(*[ws.table(t).select("customer_id", "batch_id", "source_line") for t in TRANSACTION_TABLES])
    orphans = named.anti_join(customers, "customer_id")
    first = orphans.group_by("customer_id").aggregate(
        batch_id=orphans.batch_id.min(), source_line=orphans.source_line.min()
    )
    if int(first.count().execute()):
        ws.con.insert("customers", minimal_records(first))


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
