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
from dataclasses import asdict, dataclass, field

import ibis
import ibis.expr.types as ir

from tierwise.classify.abc import add_abc
from tierwise.classify.lifecycle import LifecycleSettings, add_lifecycle
from tierwise.classify.rfm import add_class8, add_scores, segment
from tierwise.classify.value import add_value_tier
from tierwise.config import Config
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.features import FeatureSettings, customer_features, default_as_of
from tierwise.schema import TABLES
from tierwise.workspace import Workspace


@dataclass
class RunReport:
    run_id: str
    as_of: dt.date
    snapshot_table: str
    customers: int
    timings: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def build_snapshot(tables: dict[str, ir.Table], cfg: Config, as_of: dt.date) -> ir.Table:
    """The snapshot as one Ibis expression over the canonical tables, on whichever engine holds them."""
    feats = customer_features(
        tables["customers"],
        tables["orders"],
        as_of,
        FeatureSettings(
            window_days=cfg.features.window_days,
            frequency_by=cfg.features.frequency_by,
            online_channels=cfg.ingest.online_channels,
        ),
    )
    t = add_scores(feats)
    t = t.mutate(rfm_segment=segment(t.r_score, t.f_score))
    t = add_class8(t, basis=cfg.rfm.class8_basis)
    t = add_abc(t, value=cfg.abc.by, a_cutoff=cfg.abc.a_cutoff, b_cutoff=cfg.abc.b_cutoff)
    t = add_value_tier(t, value=cfg.value.by, high_share=cfg.value.high_share, medium_share=cfg.value.medium_share)
    return add_lifecycle(t, LifecycleSettings(**cfg.lifecycle.model_dump()))


def canonical_tables(ws: Workspace) -> dict[str, ir.Table]:
    return {spec.name: ws.table(spec.name) for spec in TABLES.values()}


def run(ws: Workspace, as_of: dt.date | None = None) -> RunReport:
    orders = ws.table("orders")
    if int(orders.count().execute()) == 0:
        raise UserError("there are no orders in this workspace; load them first with 'tierwise ingest orders FILE'")
    as_of = as_of or default_as_of(orders)
    run_id = dt.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    name = f"snapshot_{run_id.replace('-', '_')}"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    snapshot = build_snapshot(canonical_tables(ws), ws.config, as_of)
    runs = ws.table("runs")
    batches = ws.table("batches").select("batch_id").to_pyarrow()["batch_id"].to_pylist()
    with transaction(ws.con):
        ws.con.create_table(name, snapshot.mutate(run_id=ibis.literal(run_id), as_of=ibis.literal(as_of)))
        n = int(ws.table(name).count().execute())
        timings["snapshot"] = round(time.perf_counter() - start, 3)
        report = RunReport(run_id, as_of, name, n, timings)
        _register(ws, runs, report, batches)
    return report


def _register(ws: Workspace, runs: ir.Table, report: RunReport, batches: list[str]) -> None:
    """The run becomes visible with this row, written in the same transaction as its snapshot."""
    row = {
        "run_id": report.run_id,
        "as_of": report.as_of,
        "created_at": dt.datetime.now().replace(microsecond=0),
        "snapshot_table": report.snapshot_table,
        "customers": report.customers,
        "config": ws.config.model_dump_json(),
        "input_batches": json.dumps(sorted(batches)),
        "timings": json.dumps(report.timings),
    }
    ws.con.insert("runs", ibis.memtable([row], schema=runs.schema()))


def list_runs(ws: Workspace) -> list[dict[str, object]]:
    runs = ws.table("runs")
    return runs.order_by("created_at").drop("config").to_pyarrow().to_pylist()
