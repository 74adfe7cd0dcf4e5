"""The workspace store: a DuckDB file (runs on Spark read and write through it too; tierwise.spark_run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
from ibis.backends.duckdb import Backend as DuckDBBackend

from tierwise.config import EngineSettings
from tierwise.errors import UserError

# Told of every connection made here: tierwise.remote keeps a served command's connections, to interrupt its
# queries when its client goes away.
connect_hooks: list[Callable[[DuckDBBackend], None]] = []


def connect(settings: EngineSettings, workspace_dir: Path) -> DuckDBBackend:
    path = workspace_dir / settings.database
    # Row order in stored tables carries no meaning here (every reader sorts), and keeping it costs memory.
    config: dict[str, Any] = {"preserve_insertion_order": False}
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    if settings.threads:
        config["threads"] = settings.threads
    try:
        con = ibis.duckdb.connect(str(path), **config)
    except Exception as exc:  # duckdb raises IOException for locked or corrupt files
        raise UserError(
            f"{path}: cannot open the workspace database ({str(exc).splitlines()[0]}); "
            "close other tierwise processes using it, or restore the file"
        ) from exc
    for hook in connect_hooks:
        hook(con)
    return con


def stream_into_table(con: DuckDBBackend, name: str, reader: pa.RecordBatchReader) -> None:
    """Create a temporary table from a stream of Arrow batches without holding them all in memory.

    Ibis only takes whole in-memory tables; inserting batch by batch doubled both the time and the peak
    memory of a ten-million-line CSV ingest. DuckDB consumes a registered reader as it goes.
    """
    view = f"{name}_reader"
    con.con.register(view, reader)
    try:
        con.create_table(name, con.table(view), temp=True)
    finally:
        con.con.unregister(view)


@contextmanager
def transaction(con: DuckDBBackend) -> Iterator[None]:
    """All-or-nothing: a batch or a run is either wholly stored or leaves the store as it was.

    Transaction control is the one place we talk to DuckDB below Ibis, because Ibis has no API for it.
    """
    con.raw_sql("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.raw_sql("ROLLBACK")
        raise
    else:
        con.raw_sql("COMMIT")
