"""The snapshot of a run as Ibis expressions: measures → classes over the canonical tables, on whichever engine
holds them; the naming of a run's tables; and a snapshot computed on Spark written as Parquet and read back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.config import Config
from tierwise.pipeline import spark
from tierwise.pipeline.classes import Checkpoint, classify, unchanged
from tierwise.pipeline.measures import measures
from tierwise.pipeline.scratch import Scratch
from tierwise.store.runs import snapshot_suffix
from tierwise.workspace import Workspace


def build_snapshot(
    tables: dict[str, ir.Table],
    cfg: Config,
    as_of: dt.date,
    checkpoint: Checkpoint = unchanged,
    predictions: ir.Table | None = None,
    previous: Sequence[ir.Table] = (),
    keep: Checkpoint = unchanged,
    occasions: ir.Table | None = None,
    scratch: Scratch | None = None,
) -> ir.Table:
    """The snapshot as Ibis expressions over the canonical tables, on whichever engine holds them.

    `checkpoint` may materialise the measures before classification (the run does, to time the stages and
    so that the many windows over them read a table rather than recompute the joins). `predictions` are the
    predictive-CLV scores (clv.predict) as a table on the same engine; without them the models are fitted
    here, which runs queries. `previous` are earlier snapshots, most recent first, for [stability]. `keep` may
    materialise each chain of classes (see `classes`). `occasions` are the orders' purchase occasions
    (features.purchase_occasions), when the caller holds them. `scratch` keeps the scores fitted without
    `predictions` (see `measures`).
    """
    t = measures(tables, cfg, as_of, predictions, occasions, scratch)
    return classify(checkpoint("measures", t), cfg, previous, keep)


def spark_snapshot(ws: Workspace, con: Any, snapshot: ir.Table, run_id: str, scratch: Scratch) -> ir.Table:
    """Write a snapshot computed on Spark as Parquet under [engine.spark] output, in its `run_id=<run>`
    partition (removed again if the run fails), and return it as a DuckDB table expression over those files
    (with run_id, as the data had it)."""
    folder = f"{spark.resolve(ws.root, ws.config.engine.spark.output).rstrip('/')}/run_id={run_id}"
    scratch.output(folder)
    con.to_parquet(snapshot.drop("run_id"), folder, mode="overwrite")
    if "://" in folder:  # a cluster's file system: the rows come back through Spark
        batches = con.read_parquet(folder).to_pyarrow_batches()
        written = scratch.temporary(f"_tierwise_spark_{snapshot_suffix(run_id)}", batches.read_all())
    else:
        written = ws.con.read_parquet(f"{folder}/*.parquet")
    return written.mutate(run_id=ibis.literal(run_id)).select(*snapshot.columns)
