"""A run's scratch work, kept outside its transaction and cleared however the run ends (the dashboard's
settings preview uses it too, for what it computes on the server's long-lived connection).

DuckDB: temporary tables (purchase occasions, CLV scores, measures, the chains of classes). Rows a transaction
adds are held in its local storage until it commits, and reading them back there made the classes and the
sorted write twice as slow at 10 million customers, so scratch never goes inside the transaction.
Spark: cached checkpoints and temporary views. And on Spark, the Parquet partition the snapshot is written to:
it is the run's output once the run is stored, and is removed when the run fails.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa

from tierwise.pipeline import spark


def on_engine(like: ir.Table, data: pa.Table) -> ir.Table:
    """A small Arrow table as a temporary table of the engine holding `like` (Spark cannot see Ibis memtables
    inside cached or stored expressions)."""
    backend = like._find_backend()
    name = f"_tierwise_rows_{uuid.uuid4().hex[:12]}"
    if backend.name == "pyspark":  # no temporary tables through Ibis: a temporary view of a Spark DataFrame
        return spark.copy_table(backend, name, data)
    return backend.create_table(name, data, temp=True)


class Scratch:
    """What one run (`suffix`, unique to it) creates on the workspace connection `con` and on Spark (`spark_con`,
    None on DuckDB). Use as a context manager: on leaving, every scratch table, cache and view is dropped, and on
    failure the run's Spark output too."""

    def __init__(self, con: Any, spark_con: Any | None, suffix: str) -> None:
        self.con = con
        self.spark_con = spark_con
        self.suffix = suffix
        self.tables: list[str] = []  # DuckDB temporary tables
        self.cached: list[ir.Table] = []  # Spark cached checkpoints
        self.views: list[str] = []  # Spark temporary views
        self.outputs: list[str] = []  # Spark output folders, kept only if the run succeeds

    def temporary(self, name: str, t: ir.Table | pa.Table) -> ir.Table:
        """A DuckDB temporary table of the workspace."""
        self.tables.append(name)
        return self.con.create_table(name, t, temp=True)

    def keep(self, part: str, t: ir.Table) -> ir.Table:
        """A chain of classes (`run.classes`): a temporary table on DuckDB; on Spark the expression as it is."""
        return t if self.spark_con is not None else self.temporary(f"_tierwise_classes_{part}_{self.suffix}", t)

    def hold(self, stage: str, t: ir.Table) -> ir.Table:
        """`t` computed now (so that a stage's time is its own) and kept for the stages after it."""
        if self.spark_con is not None:
            kept = spark.cache_checkpoint(stage, t)
            kept.count().execute()
            self.cached.append(kept)
            return kept
        return self.temporary(f"_tierwise_{stage}_{self.suffix}", t)

    def checkpoint(self, stage: str, t: ir.Table) -> ir.Table:
        """Like `hold`, then free the temporary tables made before it: what `t` was computed from is in it now
        (the measures hold the occasions and scores, the classes the measures and chains), and that memory goes
        to the later stages."""
        behind = list(self.tables)
        kept = self.hold(stage, t)
        for table in behind:
            self.con.drop_table(table, force=True)
            self.tables.remove(table)
        return kept

    def on_engine(self, like: ir.Table, data: pa.Table) -> ir.Table:
        """A small Arrow table on the engine of `like` (`on_engine` above), dropped with the rest."""
        kept = on_engine(like, data)
        (self.views if self.spark_con is not None else self.tables).append(kept.op().name)  # drop_table's form
        return kept

    def copy_to_spark(self, name: str, data: ir.Table) -> ir.Table:
        """A table of another engine as a Spark temporary view called `name` (spark.copy_table)."""
        self.views.append(name)
        return spark.copy_table(self.spark_con, name, data)

    def output(self, folder: str) -> None:
        """`folder` is being written by Spark for this run: remove it if the run fails."""
        self.outputs.append(folder)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for table in self.tables:
            self.con.drop_table(table, force=True)
        for kept in self.cached:
            kept.release()
        for view in self.views:
            spark.drop_view(self.spark_con, view)
        if kind is not None:
            for folder in self.outputs:
                spark.remove_output(self.spark_con, folder)
