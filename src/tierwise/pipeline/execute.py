"""The main job: canonical tables → one snapshot row per customer, stored atomically as a run.

Each run gets its own table `snapshot_<run id>` (so later runs may add columns without touching earlier
ones) and a row in `runs`; both are written in one transaction, so a failed run leaves the previous one as
the latest. The stages: the CLV models, the measures (pipeline.measures), the classes (pipeline.classes),
clusters when [cluster] is on, the playbook, then the stored snapshot (pipeline.snapshot) and its Pareto curve.

Runs are ordered by (as_of, created_at) (tierwise.store.runs): the latest run is the one with the latest as-of
date, and among runs of the same date the one made last, so that backfilled history never hides the current
picture. One run at a time per workspace (a lock file, `run_lock`); with [stability] enabled the grade is held
against the previous run (tierwise.history.stability).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.access import wait_for
from tierwise.checks import check_as_of
from tierwise.classify.abc import pareto_curve
from tierwise.clv.predict import empty as no_predictions
from tierwise.clv.predict import predict, scores_on_engine
from tierwise.config import CONFIG_FILE, load_config
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.features.orders import default_as_of, purchase_occasions
from tierwise.mining.in_run import cluster_snapshot
from tierwise.pipeline import spark
from tierwise.pipeline.scratch import Scratch
from tierwise.pipeline.snapshot import build_snapshot, spark_snapshot
from tierwise.store.lock import run_lock
from tierwise.store.runs import canonical_tables, previous_runs, register, snapshot_suffix
from tierwise.strategy.playbook import apply_playbook, check_playbook
from tierwise.workspace import Workspace


@dataclass
class RunReport:
    run_id: str
    as_of: dt.date
    snapshot_table: str
    customers: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_params: dict[str, dict[str, float]] = field(default_factory=dict)
    stability: dict[str, object] | None = None
    backfill: bool = False
    engine: str = "duckdb"

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def run(
    ws: Workspace,
    as_of: dt.date | None = None,
    on_stage: Callable[[str], None] | None = None,
    *,
    tables: dict[str, ir.Table] | None = None,
    backfill: bool = False,
    wait_seconds: float | None = None,
    engine: str | None = None,
) -> RunReport:
    """Build and store a snapshot. Stages: measures (a temporary table), classes (the snapshot table), the
    Pareto curve, then the `runs` row that makes it visible — all in one transaction.

    `tables` replaces the canonical tables (backfill passes them cut at `as_of`); `backfill` marks the run
    as such in its `models` JSON. Only one run at a time per workspace: another one waits up to
    `wait_seconds` ([schedule] wait_seconds by default) and then fails with a clear message. `engine`
    (default: [engine] kind) is duckdb or spark: on Spark the snapshot is computed there, written as Parquet
    ([engine.spark] output) and stored in the workspace like any other run (docs/spark.md)."""
    if wait_seconds is None:
        wait_seconds = wait_for(ws.config.schedule.wait_seconds)
    wait = wait_seconds
    engine = engine or ws.config.engine.kind
    if engine not in ("duckdb", "spark"):
        raise UserError(f"engine '{engine}': use duckdb or spark")
    with run_lock(ws.root, wait):
        return _run(ws, as_of, on_stage, tables, backfill, engine)


def _run(
    ws: Workspace,
    as_of: dt.date | None,
    on_stage: Callable[[str], None] | None,
    given: dict[str, ir.Table] | None,
    backfill: bool,
    engine: str = "duckdb",
) -> RunReport:
    tables = given if given is not None else canonical_tables(ws)
    if as_of is not None and given is None:  # a backfill's dates are checked by the backfill
        check_as_of(tables["orders"], as_of)
    spark_con = None
    if engine == "spark":
        spark_con = _spark_connection(ws)
        tables = spark.run_tables(spark_con, tables, ws.config.engine.spark, ws.root)
    orders = tables["orders"]
    if int(orders.count().execute()) == 0:
        if given is not None and as_of is not None:
            raise UserError(f"there are no orders before {as_of}; choose a later date")
        raise UserError("there are no orders in this workspace; load them first with 'tierwise ingest orders FILE'")
    as_of = as_of or default_as_of(orders)
    run_id = dt.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    suffix = snapshot_suffix(run_id)
    name = f"snapshot_{suffix}"
    input_rows = {table: int(t.count().execute()) for table, t in tables.items()}
    batches = ws.table("batches").select("batch_id").to_pyarrow()["batch_id"].to_pylist()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    stability = ws.config.stability
    with Scratch(ws.con, spark_con, suffix) as scratch:
        earlier = previous_runs(ws, as_of, max(stability.confirm_runs - 1, 1)) if stability.enabled else []
        previous = [ws.table(str(r["snapshot_table"])) for r in earlier]
        if spark_con is not None:  # the earlier snapshots the grade is held against, copied to Spark
            previous = [scratch.copy_to_spark(f"tierwise_previous_{i}", p) for i, p in enumerate(previous)]

        clustering = ws.config.cluster.enabled
        stages = iter(["measures", "classes", *(["clusters"] if clustering else []), "pareto", "saving"])

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round(now - clock, 3)
            clock = now
            if on_stage is not None:
                on_stage(next(stages, stage))

        def checkpoint(stage: str, t: ir.Table) -> ir.Table:
            kept = scratch.checkpoint(stage, t)
            lap(stage)
            return kept

        # Every rule and indicator is checked against the full snapshot's columns before any data is read.
        pre = build_snapshot(tables, ws.config, as_of, predictions=ibis.memtable(no_predictions()), previous=previous)
        # Playbook rules may read the cluster columns, which exist only after clustering.
        cluster_columns = {"cluster": "int64", "cluster_name": "string"} if clustering else {}
        check_playbook(ws.config.playbook, ibis.schema({**dict(pre.schema().items()), **cluster_columns}))
        if on_stage is not None:
            on_stage("models")
        # The order lines grouped by customer and day, once for the models' summary and the features.
        occasions = scratch.hold("occasions", purchase_occasions(tables["orders"], as_of))
        forecast = predict(tables["orders"], ws.config.clv, as_of, score=spark_con is None, occasions=occasions)
        lap("models")
        notes = [forecast.note] if forecast.note else []
        if spark_con is not None and forecast.scorer is not None:  # scored on the executors
            scores = scores_on_engine(tables["orders"], ws.config.clv, as_of, forecast.scorer, occasions)
            spark.register_udfs(spark_con, scores)
        else:
            scores = scratch.on_engine(tables["orders"], forecast.table)
        snapshot = build_snapshot(tables, ws.config, as_of, checkpoint, scores, previous, scratch.keep, occasions)
        clusters: dict[str, object] | None = None
        if clustering:
            # Clusters are fitted on the finished classes (profiles name their dominant segment and grade).
            classified = checkpoint("classes", snapshot)
            labels, clusters = cluster_snapshot(classified, ws.config.cluster, ws.config.workspace.language)
            labelled = scratch.on_engine(classified, labels)
            snapshot = classified.left_join(labelled, "customer_id").drop("customer_id_right")
        snapshot = apply_playbook(
            snapshot,
            ws.config.playbook,
            budget=ws.config.strategy.budget,
            language=ws.config.workspace.language,
        )
        snapshot = snapshot.mutate(run_id=ibis.literal(run_id), as_of=ibis.literal(as_of))
        if spark_con is not None:
            snapshot = spark_snapshot(ws, spark_con, snapshot, run_id, scratch)
        with transaction(ws.con):
            # Stored in priority order: the dashboard's default list reads its first rows, and the other sorts'
            # top-N skip most row groups because value columns follow the priority (half the time of an unordered
            # table). (preserve_insertion_order is off for the workspace, so the sort holds only with it on here)
            ws.con.raw_sql("SET preserve_insertion_order = true")
            try:
                ws.con.create_table(name, snapshot.order_by(["priority_rank", "customer_id"]))
            finally:
                ws.con.raw_sql("SET preserve_insertion_order = false")
            # One customer's row is what the dashboard and `show customer` read most: an index makes that a lookup.
            ws.con.raw_sql(f'CREATE INDEX "{name}_customer" ON "{name}" (customer_id)')
            lap("clusters" if clustering else "classes")
            stored = ws.table(name)
            curve = pareto_curve(stored, value=ws.config.abc.by, points=100)
            ws.con.create_table(f"pareto_{suffix}", ibis.memtable(curve))
            n = int(stored.count().execute())
            lap("pareto")
            timings["total"] = round(sum(timings.values()), 3)
            report = RunReport(
                run_id, as_of, name, n, timings, notes, forecast.params, backfill=backfill, engine=engine
            )
            if stability.enabled:
                report.stability = _stability_summary(stored, earlier, stability.margin, stability.confirm_runs)
                if report.stability["held"]:
                    report.notes.append(
                        f"stability: {report.stability['held']:,} customers kept their grade of run "
                        f"{report.stability['previous_run']} (grade changes not yet clear; grade_raw has the "
                        "score's grade)"
                    )
            if clusters and clusters.get("warning"):
                report.notes.append(str(clusters["warning"]))
            register(
                ws,
                run_id=report.run_id,
                as_of=report.as_of,
                snapshot_table=report.snapshot_table,
                customers=report.customers,
                batches=batches,
                input_rows=input_rows,
                models={
                    "params": report.model_params,
                    "notes": report.notes,
                    "clusters": clusters,
                    "stability": report.stability,
                    "backfill": report.backfill,
                    "engine": report.engine,
                },
                timings=report.timings,
            )
    return report


def _spark_connection(ws: Workspace) -> Any:
    """The Ibis connection of [engine.spark]'s session, or a clear message when Spark cannot start here."""
    try:
        return spark.connect(spark.session_for(ws.config.engine.spark))
    except ImportError as exc:
        raise UserError("the Spark engine needs PySpark: pip install 'tierwise[spark]' (and Java 17+)") from exc
    except Exception as exc:  # the JVM did not start: no Java, a wrong master URL …
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"Spark did not start ({first}); check Java 17+ (JAVA_HOME) and [engine.spark] master "
            f"'{ws.config.engine.spark.master}'"
        ) from exc


def _stability_summary(
    stored: ir.Table, earlier: list[dict[str, object]], margin: float, confirm_runs: int
) -> dict[str, object]:
    held = int(stored.filter(stored.grade_held).count().execute()) if "grade_held" in stored.columns else 0
    return {
        "enabled": True,
        "margin": margin,
        "confirm_runs": confirm_runs,
        "previous_run": earlier[0]["run_id"] if earlier else None,
        "held": held,
    }


def run_in_workspace(
    root: Path | str,
    as_of: dt.date | None = None,
    on_stage: Callable[[str], None] | None = None,
    wait_seconds: float | None = None,
    engine: str | None = None,
) -> RunReport:
    """Open the workspace and run, waiting for a run or another process holding the database (cron-safe).

    The lock is taken before the database is opened, so a second `tierwise run` waits for the first rather
    than failing on DuckDB's single-writer lock."""
    root = Path(root).resolve()
    if not (root / CONFIG_FILE).is_file():
        Workspace.open(root)  # raises the usual "not a workspace" message
    if wait_seconds is None:
        wait_seconds = wait_for(load_config(root / CONFIG_FILE).schedule.wait_seconds)
    wait = wait_seconds
    started = time.monotonic()
    # the database is opened once the run lock is held, with what is left of the wait
    with run_lock(root, wait), Workspace.open(root, wait_seconds=max(wait - (time.monotonic() - started), 0.0)) as ws:
        return run(ws, as_of, on_stage, engine=engine)
