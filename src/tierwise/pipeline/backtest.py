"""`tierwise backtest`: split the history at a date, fit on the calibration part, predict the holdout, compare.

Customers are those who bought by the calibration end (the models say nothing about customers not yet
acquired). Predicted repeat purchases come from the configured transaction model over the holdout's length;
the rankings compared are the ones a user would act on, all computed as of the day after the calibration end:
predicted CLV, the composite score of the weighted grade, monetary alone and the RFM score (R + F + M).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import ibis
import numpy as np

from tierwise.clv import metrics
from tierwise.clv.predict import predict
from tierwise.clv.summary import rfm_summary
from tierwise.engine import transaction
from tierwise.errors import UserError
from tierwise.pipeline.scratch import on_engine
from tierwise.pipeline.snapshot import build_snapshot
from tierwise.store.runs import canonical_tables
from tierwise.workspace import Workspace

RANKINGS = ("clv_predicted", "composite_score", "monetary", "rfm_score")


def backtest(ws: Workspace, calibration_end: dt.date, holdout_end: dt.date | None = None) -> dict[str, Any]:
    cfg = ws.config
    tables = canonical_tables(ws)
    orders = tables["orders"]
    last = orders.order_date.max().execute()
    if last is None:
        raise UserError("there are no orders in this workspace; load them first with 'tierwise ingest orders FILE'")
    holdout_end = holdout_end or last.date()
    if holdout_end <= calibration_end:
        raise UserError(f"--holdout-end {holdout_end} must come after --calibration-end {calibration_end}")
    unit = cfg.clv.time_unit_days
    sales = orders.filter(~orders.is_return.fill_null(False))
    summary = (
        rfm_summary(
            sales,
            amount_col="amount",
            calibration_end=calibration_end,
            observation_end=holdout_end,
            time_unit_days=unit,
        )
        .to_pyarrow()
        .sort_by("customer_id")
    )
    if summary.num_rows < cfg.clv.min_customers:
        raise UserError(
            f"{summary.num_rows} customers bought by {calibration_end}; a backtest needs at least "
            f"{cfg.clv.min_customers} ([clv] min_customers) — choose a later --calibration-end"
        )
    f = summary["frequency"].to_numpy().astype(np.float64)
    r, age = summary["recency"].to_numpy(), summary["T"].to_numpy()
    actual = summary["frequency_holdout"].to_numpy().astype(np.float64)
    duration = float(summary["duration_holdout"][0].as_py())
    settings = cfg.clv if cfg.clv.model != "none" else cfg.clv.model_copy(update={"model": "bgnbd"})
    # The models as the main job would fit them on the day after the calibration end (the same customers and
    # history): their transaction model also predicts the holdout, so nothing is fitted twice.
    as_of = calibration_end + dt.timedelta(days=1)
    forecast = predict(orders, settings, as_of)
    if forecast.transaction_model is None:
        raise UserError(f"no backtest: {forecast.note}")
    predicted = np.asarray(forecast.transaction_model.expected_purchases(duration, f, r, age), dtype=np.float64)
    snapshot = build_snapshot(tables, cfg, as_of, predictions=on_engine(orders, forecast.table))
    scores = snapshot.select(
        "customer_id",
        "composite_score",
        "monetary",
        "clv_predicted",
        rfm_score=(snapshot.r_score + snapshot.f_score + snapshot.m_score).cast("float64"),
    )
    end_lit = ibis.date(holdout_end.isoformat())
    day = orders.order_date.date()
    holdout = orders.filter((day > ibis.date(calibration_end.isoformat())) & (day <= end_lit))
    revenue = holdout.group_by("customer_id").aggregate(holdout_revenue=holdout.amount.sum().cast("float64"))
    ids = ibis.memtable(summary.select(["customer_id"]))
    joined = ids.left_join(scores, "customer_id").drop("customer_id_right")
    joined = joined.left_join(revenue, "customer_id").drop("customer_id_right").to_pyarrow().sort_by("customer_id")

    def column(name: str) -> np.ndarray:
        return joined[name].to_numpy(zero_copy_only=False).astype(np.float64)

    holdout_revenue = np.nan_to_num(column("holdout_revenue"))
    captures = [metrics.capture(name, column(name), holdout_revenue) for name in RANKINGS]
    return {
        "calibration_end": calibration_end.isoformat(),
        "holdout_end": holdout_end.isoformat(),
        "time_unit_days": unit,
        "holdout_length": duration,
        "customers": summary.num_rows,
        "model": settings.model,
        "params": dict(forecast.transaction_model.params_),
        "purchases": metrics.accuracy(predicted, actual),
        "buckets": metrics.as_dicts(metrics.purchase_buckets(f, predicted, actual)),
        "rankings": metrics.as_dicts(captures),
        "notes": [forecast.note] if forecast.note else [],
    }


def store(ws: Workspace, result: dict[str, Any]) -> str:
    """Keep a backtest's result in the workspace (table `backtests`) for the report's model page."""

    backtest_id = dt.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    row = {
        "backtest_id": backtest_id,
        "created_at": dt.datetime.now().replace(microsecond=0),
        "calibration_end": dt.date.fromisoformat(result["calibration_end"]),
        "holdout_end": dt.date.fromisoformat(result["holdout_end"]),
        "result": json.dumps(result, ensure_ascii=False),
    }
    with transaction(ws.con):
        ws.con.insert("backtests", ibis.memtable([row], schema=ws.table("backtests").schema()))
    return backtest_id
