"""The main job: canonical tables → one snapshot row per customer, stored atomically as a run.

Each run gets its own table `snapshot_<run id>` (so later runs may add columns without touching earlier
ones) and a row in `runs`; both are written in one transaction, so a failed run leaves the previous one as
the latest. This first version computes features, RFM (scores, segment, eight classes), ABC, value tier
and lifecycle stage; the other classifiers of issue 3 join the same pipeline.

Runs are ordered by (as_of, created_at): the latest run is the one with the latest as-of date, and among
runs of the same date the one made last, so that backfilled history never hides the current picture. One
run at a time per workspace (a lock file, `run_lock`); with [stability] enabled the grade is held against
the previous run (tierwise.history.stability).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.checks import check_as_of
from tierwise.classify.abc import add_abc, pareto_curve
from tierwise.classify.grade import GradeSettings, Indicator, add_grade
from tierwise.classify.lifecycle import LifecycleSettings, add_lifecycle
from tierwise.classify.loyalty import LoyaltySettings, add_loyalty
from tierwise.classify.rfm import add_class8, add_scores, segment
from tierwise.classify.value import add_value_tier, historical_clv
from tierwise.clv.predict import empty as no_predictions
from tierwise.clv.predict import predict, scores_on_engine
from tierwise.config import Config
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.features.credit import payment_features
from tierwise.features.industry import main_industry
from tierwise.features.orders import FeatureSettings, customer_features, default_as_of, purchase_occasions
from tierwise.features.satisfaction import satisfaction_features
from tierwise.history.stability import apply_stability
from tierwise.mining.in_run import cluster_snapshot
from tierwise.pipeline import spark
from tierwise.pipeline.scratch import Scratch, on_engine
from tierwise.rules import add_tags, columns_in, compile_value
from tierwise.store.lock import open_waiting, run_lock
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


Checkpoint = Callable[[str, ir.Table], ir.Table]


def _keep(stage: str, t: ir.Table) -> ir.Table:
    return t


def measures(
    tables: dict[str, ir.Table],
    cfg: Config,
    as_of: dt.date,
    predictions: ir.Table | None = None,
    occasions: ir.Table | None = None,
    scratch: Scratch | None = None,
) -> ir.Table:
    """Every feature of DESIGN §5 per customer: orders, payments, satisfaction, industry, historical CLV.
    `occasions` may be the orders' purchase_occasions as of `as_of`, computed once for these and the models.
    Without `predictions` the CLV models are fitted here; their scores go to `scratch` when given (dropped with
    it), else to a temporary table that lasts as long as the connection."""
    customers, orders = tables["customers"], tables["orders"]
    window = cfg.features.window_days
    t = customer_features(
        customers,
        orders,
        as_of,
        FeatureSettings(
            window_days=window,
            frequency_by=cfg.features.frequency_by,
            online_channels=cfg.ingest.online_channels,
        ),
        occasions,
        # the customer's own fields, without joining the customers a second time
        carry={
            "country": "country",
            "customer_kind": "customer_kind",
            "credit_limit": "credit_limit",
            "customer_type": "type",
        },
    )
    parts = [
        main_industry(customers, orders, as_of, window, cfg.features.industry_priority),
        payment_features(tables["payments"], customers, as_of, window),
        satisfaction_features(tables["interactions"], as_of, window),
        historical_clv(
            orders,
            as_of,
            discount_rate=cfg.clv.discount_rate,
            period_days=cfg.clv.period_days,
            missing_cost_margin=cfg.clv.missing_cost_margin,
        ),
        predictions
        if predictions is not None
        else (scratch.on_engine if scratch is not None else on_engine)(
            orders, predict(orders, cfg.clv, as_of, occasions=occasions).table
        ),
    ]
    for part in parts:
        t = t.left_join(part, "customer_id").drop("customer_id_right")
    return t


def indicators(cfg: Config, schema: ibis.Schema) -> list[Indicator]:
    out = []
    for i in cfg.grade.indicators:
        value = compile_value(i.expression, schema, what=f"grade indicator '{i.name}'")
        out.append(Indicator(i.name, value, i.weight))
    return out


# The measures the classifiers read. Classes are computed on these columns only and joined back: every
# ranking window sorts its rows, and carrying the wide measures (names, cities, dates…) through a dozen
# sorts cost most of the run's time on millions of customers.
CLASS_INPUTS = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "profit",
    "tenure_days",
    "ipt_mean_days",
    "purchases",
    "satisfaction",
    "clv_predicted",
)


def classes(t: ir.Table, cfg: Config, previous: Sequence[ir.Table] = (), keep: Checkpoint = _keep) -> ir.Table:
    """customer_id and the classes of the measures in `t`: RFM, ABC, value tier, lifecycle, loyalty and the
    composite grade.

    With [stability] enabled, the grade is held against `previous` snapshots (most recent first), and the
    grade the score alone gives is kept as grade_raw.

    The classifiers run in three short chains, each over only the columns of `t` it reads (RFM, lifecycle and
    loyalty; ABC and value tier; the grade), joined on customer_id: every ranking window sorts whatever its
    input carries, and one chain of a dozen windows carried every class added before it (strings included)
    through each sort, which spilled to disk at 10 million customers. Three chains rather than one per
    classifier: each join holds a hash table of every customer, and many at once exhausted small memory
    limits. The classes are the same either way. `keep` may materialise each chain's classes: the run does on
    DuckDB, where one statement ran the three chains' sorts side by side and spilled (60 s against 50 s in
    parts at 10 million customers)."""
    key = "customer_id"

    def columns(*names: str) -> ir.Table:
        return t.select(key, *dict.fromkeys(n for n in names if n != key))

    rfm = cfg.rfm
    m_column = "monetary" if rfm.monetary == "total" else "avg_order_value"
    life = ("tenure_days", "ipt_mean_days", "purchases", "satisfaction")
    scored = add_scores(
        columns("recency_days", "frequency", "monetary", m_column, *life),
        monetary=m_column,
        bins=rfm.bins,
        thresholds=rfm.fixed_thresholds(),
    )
    if rfm.bins == 5:
        scored = scored.mutate(rfm_segment=segment(scored.r_score, scored.f_score))
    else:  # the named grid is defined on 5×5: place other scales on it
        on_five = [(scored[c] * 5 / rfm.bins).ceil().cast("int64") for c in ("r_score", "f_score")]
        scored = scored.mutate(rfm_segment=segment(on_five[0], on_five[1]))
    scored = add_class8(scored, basis=rfm.class8_basis)
    rfm_columns = [c for c in scored.columns if c not in t.columns]
    scored = add_lifecycle(scored, LifecycleSettings(**cfg.lifecycle.model_dump()))
    scored = add_loyalty(scored, LoyaltySettings(**cfg.loyalty.model_dump()))
    ranked = add_abc(
        columns(cfg.abc.by, cfg.value.by, "recency_days"),
        value=cfg.abc.by,
        a_cutoff=cfg.abc.a_cutoff,
        b_cutoff=cfg.abc.b_cutoff,
    )
    ranked = add_value_tier(
        ranked, value=cfg.value.by, high_share=cfg.value.high_share, medium_share=cfg.value.medium_share
    )
    scored_new = [c for c in scored.columns if c not in t.columns]
    ranked_new = [c for c in ranked.columns if c not in t.columns]
    scored = keep("rfm", scored.select(key, *scored_new))
    ranked = keep("abc", ranked.select(key, *ranked_new))

    # The grade reads the measures its indicators name (and any class they name, joined from its chain).
    named = {c for i in cfg.grade.indicators for c in columns_in(i.expression, [*t.columns, *scored_new, *ranked_new])}
    graded_in = columns("recency_days", "tenure_days", "monetary", *sorted(named & set(t.columns)))
    for part, new in ((scored, scored_new), (ranked, ranked_new)):
        wanted = [c for c in new if c in named]
        if wanted:
            graded_in = graded_in.join(part.select(key, *wanted), key)
    g = cfg.grade
    graded = add_grade(
        graded_in,
        indicators(cfg, graded_in.schema()),
        GradeSettings(
            normalise=g.normalise,
            method=g.method,
            quotas=(g.quotas[0], g.quotas[1], g.quotas[2]),
            cutoffs=(g.cutoffs[0], g.cutoffs[1], g.cutoffs[2]),
            short_history_days=g.short_history_days,
            prospect_indicator=g.prospect_indicator,
        ),
    )
    if cfg.stability.enabled:
        graded = apply_stability(graded, previous, cfg.stability, method=g.method, cutoffs=g.cutoffs)

    graded_new = [c for c in graded.columns if c not in graded_in.columns]
    graded = keep("grade", graded.select(key, *graded_new))
    out = scored.join(ranked, key).join(graded, key)
    life_columns = [c for c in scored_new if c not in rfm_columns]
    return out.select(key, *rfm_columns, *ranked_new, *life_columns, *graded_new)


def classify(t: ir.Table, cfg: Config, previous: Sequence[ir.Table] = (), keep: Checkpoint = _keep) -> ir.Table:
    """Every class, the composite grade and priority, and the user's rule tags, on top of the measures."""
    used = {c for i in cfg.grade.indicators for c in columns_in(i.expression, t.columns)}
    narrow = t.select(*[c for c in t.columns if c in set(CLASS_INPUTS) | used])
    snapshot = t.join(classes(narrow, cfg, previous, keep), "customer_id")
    return add_tags(snapshot, [(r.name, r.expression) for r in cfg.rules])


def build_snapshot(
    tables: dict[str, ir.Table],
    cfg: Config,
    as_of: dt.date,
    checkpoint: Checkpoint = _keep,
    predictions: ir.Table | None = None,
    previous: Sequence[ir.Table] = (),
    keep: Checkpoint = _keep,
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
        from tierwise.access import wait_for

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
    from tierwise.config import CONFIG_FILE, load_config

    root = Path(root).resolve()
    if not (root / CONFIG_FILE).is_file():
        Workspace.open(root)  # raises the usual "not a workspace" message
    if wait_seconds is None:
        from tierwise.access import wait_for

        wait_seconds = wait_for(load_config(root / CONFIG_FILE).schedule.wait_seconds)
    wait = wait_seconds
    started = time.monotonic()
    with run_lock(root, wait):
        ws = open_waiting(root, max(wait - (time.monotonic() - started), 0.0))
        try:
            return run(ws, as_of, on_stage, engine=engine)
        finally:
            ws.close()
