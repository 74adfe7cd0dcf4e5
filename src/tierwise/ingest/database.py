"""Database tables as an ingest source: PostgreSQL (and MySQL) read through Ibis.

A table is read like a file: its columns are mapped, cleaned, quarantined and reconciled by the same pipeline
(`pipeline.ingest_database`). `_line` is the row's position in the read, which is ordered by the incremental
column when there is one. Only the URL without its password is ever shown or stored.

Incremental loads: with a column such as `updated_at` or an increasing id, a load reads only rows whose value
is greater than the greatest value of the last load of the same table (kept in the `source_marks` table,
written in the same transaction as the batch).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tierwise.errors import UserError
from tierwise.ingest.readers import plain_column
from tierwise.ingest.source import LINE, Source

# URL scheme → Ibis backend, and the Python driver each needs (with how to install it).
BACKENDS = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql"}
DRIVERS = {
    "postgres": ("psycopg", "pip install 'psycopg[binary]'"),
    "mysql": ("MySQLdb", "pip install 'ibis-framework[mysql]' (needs the MySQL client library)"),
}
CHUNK_ROWS = 100_000


def safe_url(url: str) -> str:
    """The URL with no password and no query (which may carry one): what reports, batches and logs show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(url: str) -> Any:
    """An Ibis connection to the database of `url` (postgresql://user@host:5432/db[/schema], mysql://…)."""
    shown = safe_url(url)
    scheme = urlsplit(url).scheme.lower()
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise UserError(
            f"--from '{shown}': not a database URL; use postgresql://user@host:5432/database "
            "or mysql://user@host:3306/database"
        )
    module, install = DRIVERS[backend]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"--from '{shown}': the {backend} driver is not installed; {install}") from exc
    try:
        return ibis.connect(urlunsplit((backend, *urlsplit(url)[1:])))
    except Exception as exc:  # the drivers' own errors: refused, unknown host, bad password, no database
        raise UserError(
            f"cannot connect to {shown}: {_first_line(exc)}; check the host, port, database, user and password "
            "(PGPASSWORD or ~/.pgpass keep a password out of the command line)"
        ) from exc


def open_table(con: Any, name: str, url: str) -> ir.Table:
    """The table `name` (or `schema.name`) of the database, refused with the tables there if missing."""
    schema, _, table = name.rpartition(".")
    try:
        return con.table(table, database=schema or None)
    except Exception as exc:
        try:
            known = sorted(con.list_tables(database=schema or None))
        except Exception:
            known = []
        listed = f"; tables there: {', '.join(known[:20])}" if known else ""
        raise UserError(f"--table '{name}': no such table in {safe_url(url)}{listed}") from exc


_PLAIN_TYPES = ("is_string", "is_numeric", "is_boolean", "is_date", "is_timestamp")


def readable(t: ir.Table) -> ir.Table:
    """Columns of types the pipeline reads as they are; anything else (JSON, arrays, UUIDs, intervals …) as text."""
    return t.mutate(
        **{
            c: t[c].cast("string")
            for c, kind in t.schema().items()
            if not any(getattr(kind, test)() for test in _PLAIN_TYPES)
        }
    )


def arrow_schema(t: ir.Table) -> pa.Schema:
    """The Arrow types the rows arrive in (text as plain strings, as from files), with `_line`."""
    fields = []
    for f in t.schema().to_pyarrow():
        kind = pa.string() if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f.type
        fields.append(pa.field(f.name, kind))
    return pa.schema([*fields, pa.field(LINE, pa.int64())])


@dataclass
class DatabaseRead:
    """What one load reads: the rows (after the watermark, in order) and how to describe them."""

    source: Source
    key: str  # the table's name in batches and marks: safe URL + '#' + table
    since_column: str | None
    rows: int
    digest: Callable[[], str]  # the content hash of what was streamed, once it has been read
    progress: Callable[[int], None] | None = None  # told the rows read so far, as they arrive


def read_rows(
    url: str,
    table: str,
    *,
    since_column: str | None,
    after: str | None,
) -> DatabaseRead:
    """The rows to load from `table`: all, or with `since_column` greater than `after` (the last load's mark)."""
    con = connect(url)
    t = open_table(con, table, url)
    if since_column is not None and since_column not in t.columns:
        raise UserError(
            f"incremental column '{since_column}' is not a column of {table}; columns: {', '.join(t.columns)}",
            column=since_column,
        )
    if since_column is not None:
        if after is not None:
            t = t.filter(t[since_column] > ibis.literal(after).cast(t[since_column].type()))
        t = t.order_by(since_column)
    t = readable(t)
    rows = int(t.count().execute())
    columns = list(t.columns)
    if LINE in columns:
        raise UserError(f"--table '{table}': a column is named {LINE}, which tierwise keeps for row numbers; rename it")
    schema = arrow_schema(t)
    hasher = hashlib.sha256(f"{table}\x1f{since_column}\x1f{after}".encode())

    def batches() -> Iterator[pa.RecordBatch]:
        line = 1
        for batch in t.to_pyarrow_batches(chunk_size=CHUNK_ROWS):
            n = batch.num_rows
            if not n:
                continue
            out = pa.RecordBatch.from_arrays(
                [*(plain_column(c) for c in batch.columns), pa.array(range(line, line + n), type=pa.int64())],
                schema=schema,
            )
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, out.schema) as writer:
                writer.write_batch(out)
            hasher.update(sink.getvalue())
            line += n
            if read.progress is not None:
                read.progress(line - 1)
            yield out
        con.disconnect()

    key = f"{safe_url(url)}#{table}"
    source = Source(Path(table), "database", columns, batches(), rows, name=key, schema=schema)
    read = DatabaseRead(source, key, since_column, rows, hasher.hexdigest)
    return read
