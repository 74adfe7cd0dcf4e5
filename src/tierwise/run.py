"""The main job: canonical tables → one snapshot row per customer, stored atomically as a run.

Each run gets its own table `snapshot_<run id>` (so later runs may add columns without touching earlier
ones) and a row in `runs`; both are written in one transaction, so a failed run leaves the previous one as
the latest. This first version computes features, RFM (scores, segment, eight classes), ABC, value tier
and lifecycle stage; the other classifiers of issue 3 join the same pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tierwise.classify.abc import add_abc, pareto_curve
from tierwise.classify.grade import GradeSettings, Indicator, add_grade
from tierwise.classify.lifecycle import LifecycleSettings, add_lifecycle
from tierwise.classify.loyalty import LoyaltySettings, add_loyalty
from tierwise.classify.rfm import add_class8, add_scores, segment
from tierwise.classify.value import add_value_tier, historical_clv
from tierwise.clv.predict import empty as no_predictions
from tierwise.clv.predict import predict
from tierwise.config import Config
from tierwise.credit import payment_features
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.features import FeatureSettings, customer_features, default_as_of
from tierwise.industry import main_industry
from tierwise.mining.in_run import cluster_snapshot
from tierwise.rules import add_tags, columns_in, compile_value
from tierwise.satisfaction import satisfaction_features
from tierwise.schema import TABLES
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

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


Checkpoint = Callable[[str, ir.Table], ir.Table]


def _keep(stage: str, t: ir.Table) -> ir.Table:
    return t


def measures(
    tables: dict[str, ir.Table], cfg: Config, as_of: dt.date, predictions: ir.Table | None = None
) -> ir.Table:
    """Every feature of DESIGN §5 per customer: orders, payments, satisfaction, industry, historical CLV."""
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
    )
    parts = [
        customers.select("customer_id", "country", "customer_kind", "credit_limit", customer_type="type"),
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
        predictions if predictions is not None else on_engine(orders, predict(orders, cfg.clv, as_of).table),
    ]
    for part in parts:
        t = t.left_join(part, "customer_id").drop("customer_id_right")
    return t


def on_engine(like: ir.Table, data: pa.Table) -> ir.Table:
    """A small Arrow table as a temporary table of the engine holding `like` (Spark cannot see Ibis memtables
    inside cached or stored expressions)."""
    backend = like._find_backend()
    name = f"_tierwise_rows_{uuid.uuid4().hex[:12]}"
    if backend.name == "pyspark":  # no temporary tables through Ibis: a temporary view of a Spark DataFrame
        from tierwise.spark import copy_table

        return copy_table(backend, name, data)
    return backend.create_table(name, data, temp=True)


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


def classes(t: ir.Table, cfg: Config) -> ir.Table:
    """RFM, ABC, value tier, lifecycle, loyalty and the composite grade, added to the measures in `t`."""
    rfm = cfg.rfm
    m_column = "monetary" if rfm.monetary == "total" else "avg_order_value"
    t = add_scores(t, monetary=m_column, bins=rfm.bins, thresholds=rfm.fixed_thresholds())
    if rfm.bins == 5:
        t = t.mutate(rfm_segment=segment(t.r_score, t.f_score))
    else:  # the named grid is defined on 5×5: place other scales on it
        on_five = [(t[c] * 5 / rfm.bins).ceil().cast("int64") for c in ("r_score", "f_score")]
        t = t.mutate(rfm_segment=segment(on_five[0], on_five[1]))
    t = add_class8(t, basis=rfm.class8_basis)
    t = add_abc(t, value=cfg.abc.by, a_cutoff=cfg.abc.a_cutoff, b_cutoff=cfg.abc.b_cutoff)
    t = add_value_tier(t, value=cfg.value.by, high_share=cfg.value.high_share, medium_share=cfg.value.medium_share)
    t = add_lifecycle(t, LifecycleSettings(**cfg.lifecycle.model_dump()))
    t = add_loyalty(t, LoyaltySettings(**cfg.loyalty.model_dump()))
    g = cfg.grade
    return add_grade(
        t,
        indicators(cfg, t.schema()),
        GradeSettings(
            normalise=g.normalise,
            method=g.method,
            quotas=(g.quotas[0], g.quotas[1], g.quotas[2]),
            cutoffs=(g.cutoffs[0], g.cutoffs[1], g.cutoffs[2]),
            short_history_days=g.short_history_days,
            prospect_indicator=g.prospect_indicator,
        ),
    )


def classify(t: ir.Table, cfg: Config) -> ir.Table:
    """Every class, the composite grade and priority, and the user's rule tags, on top of the measures."""
    used = {c for i in cfg.grade.indicators for c in columns_in(i.expression, t.columns)}
    narrow = t.select(*[c for c in t.columns if c in set(CLASS_INPUTS) | used])
    added = classes(narrow, cfg)
    added = added.select("customer_id", *[c for c in added.columns if c not in narrow.columns])
    snapshot = t.join(added, "customer_id")
    return add_tags(snapshot, [(r.name, r.expression) for r in cfg.rules])


def build_snapshot(
    tables: dict[str, ir.Table],
    cfg: Config,
    as_of: dt.date,
    checkpoint: Checkpoint = _keep,
    predictions: ir.Table | None = None,
) -> ir.Table:
    """The snapshot as Ibis expressions over the canonical tables, on whichever engine holds them.

    `checkpoint` may materialise the measures before classification (the run does, to time the stages and
    so that the many windows over them read a table rather than recompute the joins). `predictions` are the
    predictive-CLV scores (clv.predict) as a table on the same engine; without them the models are fitted
    here, which runs queries.
    """
    return classify(checkpoint("measures", measures(tables, cfg, as_of, predictions)), cfg)


def canonical_tables(ws: Workspace) -> dict[str, ir.Table]:
    return {spec.name: ws.table(spec.name) for spec in TABLES.values()}


def snapshot_suffix(run_id: str) -> str:
    return run_id.replace("-", "_")


def run(ws: Workspace, as_of: dt.date | None = None, on_stage: Callable[[str], None] | None = None) -> RunReport:
    """Build and store a snapshot. Stages: measures (a temporary table), classes (the snapshot table), the
    Pareto curve, then the `runs` row that makes it visible — all in one transaction."""
    orders = ws.table("orders")
    if int(orders.count().execute()) == 0:
        raise UserError("there are no orders in this workspace; load them first with 'tierwise ingest orders FILE'")
    as_of = as_of or default_as_of(orders)
    run_id = dt.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    suffix = snapshot_suffix(run_id)
    name = f"snapshot_{suffix}"
    tables = canonical_tables(ws)
    input_rows = {table: int(t.count().execute()) for table, t in tables.items()}
    batches = ws.table("batches").select("batch_id").to_pyarrow()["batch_id"].to_pylist()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

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
        kept = ws.con.create_table(f"_tierwise_{stage}_{suffix}", t, temp=True)
        lap(stage)
        return kept

    # Every rule and indicator is checked against the full snapshot's columns before any data is read.
    build_snapshot(tables, ws.config, as_of, predictions=ibis.memtable(no_predictions()))
    if on_stage is not None:
        on_stage("models")
    forecast = predict(tables["orders"], ws.config.clv, as_of)
    lap("models")
    notes = [forecast.note] if forecast.note else []
    with transaction(ws.con):
        scores = on_engine(tables["orders"], forecast.table)
        snapshot = build_snapshot(tables, ws.config, as_of, checkpoint, scores)
        clusters: dict[str, object] | None = None
        if clustering:
            # Clusters are fitted on the finished classes (profiles name their dominant segment and grade).
            classified = checkpoint("classes", snapshot)
            labels, clusters = cluster_snapshot(classified, ws.config.cluster, ws.config.workspace.language)
            labelled = on_engine(classified, labels)
            snapshot = classified.left_join(labelled, "customer_id").drop("customer_id_right")
        snapshot = snapshot.mutate(run_id=ibis.literal(run_id), as_of=ibis.literal(as_of))
        ws.con.create_table(name, snapshot)
        lap("clusters" if clustering else "classes")
        stored = ws.table(name)
        curve = pareto_curve(stored, value=ws.config.abc.by, points=100)
        ws.con.create_table(f"pareto_{suffix}", ibis.memtable(curve))
        n = int(stored.count().execute())
        lap("pareto")
        timings["total"] = round(sum(timings.values()), 3)
        report = RunReport(run_id, as_of, name, n, timings, notes, forecast.params)
        if clusters and clusters.get("warning"):
            report.notes.append(str(clusters["warning"]))
        _register(ws, report, batches, input_rows, clusters)
        for stage in ("measures", "classes"):
            ws.con.drop_table(f"_tierwise_{stage}_{suffix}", force=True)
        if clustering:
            ws.con.drop_table(labelled.get_name(), force=True)
        ws.con.drop_table(scores.get_name(), force=True)
    return report


def _register(
    ws: Workspace,
    report: RunReport,
    batches: list[str],
    input_rows: dict[str, int],
    clusters: dict[str, object] | None = None,
) -> None:
    """The run becomes visible with this row, written in the same transaction as its snapshot."""
    row = {
        "run_id": report.run_id,
        "as_of": report.as_of,
        "created_at": dt.datetime.now().replace(microsecond=0),
        "snapshot_table": report.snapshot_table,
        "customers": report.customers,
        "config": ws.config.model_dump_json(),
        "input_batches": json.dumps(sorted(batches)),
        "input_rows": json.dumps(input_rows),
        "models": json.dumps(
            {"params": report.model_params, "notes": report.notes, "clusters": clusters}, ensure_ascii=False
        ),
        "timings": json.dumps(report.timings),
    }
    ws.con.insert("runs", ibis.memtable([row], schema=ws.table("runs").schema()))


def list_runs(ws: Workspace) -> list[dict[str, object]]:
    runs = ws.table("runs")
    return runs.order_by("created_at").drop("config").to_pyarrow().to_pylist()
