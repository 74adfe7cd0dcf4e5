"""The workspace store: a DuckDB file (runs on Spark read and write through it too; tierwise.spark_run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa
from ibis.backends.duckdb import Backend as DuckDBBackend

from tierwise import access, cancel
from tierwise.config import EngineSettings
from tierwise.errors import note_temp_limit

# Told of every connection made here: tierwise.cli.remote keeps a served command's connections, to interrupt its
# queries when its client goes away.
connect_hooks: list[Callable[[DuckDBBackend], None]] = []


def connect(
    settings: EngineSettings, workspace_dir: Path, *, read_only: bool = False, wait_seconds: float = 0.0
) -> DuckDBBackend:
    """The workspace database, opened by tierwise.access: waits up to `wait_seconds` while another process holds
    it, tells a lock conflict from a damaged file, shares one database per process. Close it with
    `access.close_database`."""
    path = workspace_dir / settings.database
    # Row order in stored tables carries no meaning here (every reader sorts), and keeping it costs memory.
    config: dict[str, Any] = {"preserve_insertion_order": False}
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    if settings.threads:
        config["threads"] = settings.threads
    con = access.open_database(path, workspace_dir, config, read_only=read_only, wait_seconds=wait_seconds)
    limit_temp_disk(con, settings)
    for hook in connect_hooks:
        hook(con)
    return cancel.track(con)  # interruptible: a job's cancel button, the server's shutdown


def limit_temp_disk(con: DuckDBBackend, settings: EngineSettings) -> None:
    """Bound what DuckDB may spill to <database>.tmp ([engine] max_temp_gb): a spill beyond it ends the query with
    an error (errors.temp_disk_full says what to do) instead of filling the disk. Set after opening: DuckDB 1.5
    shows the value but does not enforce it when it is given as an option of connect."""
    size = int(settings.max_temp_gb * 1024**3)
    # Refused when lowered below what another connection of this process (the server) has spilled just now: the
    # bound then stays as it was, and the next open applies it.
    with suppress(Exception):
        con.raw_sql(f"SET max_temp_directory_size = '{size}B'" if size > 0 else "RESET max_temp_directory_size")
        note_temp_limit(settings.max_temp_gb if size > 0 else None)


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
