"""Predictive CLV in the main job: fit the configured models on the history before the as-of date and score
every buyer: p_alive, expected_purchases (next horizon), expected_spend and clv_predicted.

The models fit on arrays pulled from the engine (the RFM summary: one row per customer, compressed to unique
rows inside the fit); the scores go back as a small table joined to the measures, so the snapshot stays one
expression on DuckDB and on Spark alike.

Explicit cases:
- customers who never bought (prospects) get no prediction (NULL), not zero;
- spend is fitted on repeat customers whose repeat purchases average more than zero; everyone else — one-off
  buyers, customers whose repeat purchases net to zero or less after returns — gets the population mean
  spend the Gamma-Gamma model implies;
- with fewer than `min_customers` buyers, or when a model cannot be fitted, the columns stay empty and the
  run says why (`PredictionResult.note`); a run never fails because a forecast is impossible.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from tierwise.clv.summary import rfm_summary
from tierwise.clv.value import DAYS_PER_MONTH, customer_lifetime_value
from tierwise.config import ClvSettings
from tierwise.errors import UserError

SCHEMA = ibis.schema(
    {
        "customer_id": "string",
        "p_alive": "float64",
        "expected_purchases": "float64",
        "expected_spend": "float64",
        "clv_predicted": "float64",
    }
)


@dataclass
class PredictionResult:
    table: pa.Table
    params: dict[str, dict[str, float]]
    note: str = ""
    transaction_model: Any = None  # the fitted BG/NBD or Pareto/NBD model, when it could be fitted


def empty() -> pa.Table:
    return pa.table({name: pa.array([], type=SCHEMA[name].to_pyarrow()) for name in SCHEMA.names})


def _margin(orders: ir.Table, as_of: dt.date) -> float:
    """Share of revenue kept as margin, over order lines that have a cost; 1.0 when none has."""
    lines = orders.filter((orders.order_date.date() < ibis.date(as_of.isoformat())) & orders.cost.notnull())
    row = lines.aggregate(revenue=lines.amount.sum(), cost=lines.cost.sum()).to_pyarrow().to_pylist()[0]
    if not row["revenue"] or row["revenue"] <= 0:
        return 1.0
    return float(min(max((row["revenue"] - row["cost"]) / row["revenue"], 0.0), 1.0))


def predict(orders: ir.Table, settings: ClvSettings, as_of: dt.date) -> PredictionResult:
    from tierwise.clv.bgnbd import BetaGeoModel
    from tierwise.clv.gamma_gamma import GammaGammaModel
    from tierwise.clv.pareto_nbd import ParetoNBDModel

    if settings.model == "none":
        return PredictionResult(empty(), {}, "predictive CLV is switched off ([clv] model = \"none\")")
    sales = orders.filter(~orders.is_return.fill_null(False))
    summary = rfm_summary(
        sales,
        amount_col="amount",
        calibration_end=as_of - dt.timedelta(days=1),
        time_unit_days=settings.time_unit_days,
    ).to_pyarrow().sort_by("customer_id")  # the same rows in the same order on every engine: the same fit
    n = summary.num_rows
    if n < settings.min_customers:
        return PredictionResult(
            empty(), {}, f"predictive CLV skipped: {n} buyers, the models need at least {settings.min_customers}"
        )
    f = summary["frequency"].to_numpy().astype(np.float64)
    r = summary["recency"].to_numpy()
    age = summary["T"].to_numpy()
    # Engines add amounts in different orders; rounding makes their last bits, and so the fit, the same.
    m = np.round(summary["monetary_value"].to_numpy(), 6)
    r, age = np.round(r, 9), np.round(age, 9)
    model = BetaGeoModel() if settings.model == "bgnbd" else ParetoNBDModel()
    repeat = (f > 0) & (m > 0)
    failures = (UserError, ValueError, FloatingPointError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(f, r, age)
        except failures as exc:
            return PredictionResult(empty(), {}, f"predictive CLV skipped: the models could not be fitted ({exc})")
        try:
            spend_model = GammaGammaModel().fit(f[repeat], m[repeat])
        except failures as exc:
            note = f"predictive CLV skipped: the spend model could not be fitted ({exc})"
            return PredictionResult(empty(), {"transactions": dict(model.params_)}, note, model)
    horizon = settings.horizon_months * DAYS_PER_MONTH / settings.time_unit_days
    spend_f, spend_m = np.where(repeat, f, 0.0), np.where(repeat, m, 0.0)
    clv = customer_lifetime_value(
        model,
        spend_model,
        f,
        r,
        age,
        spend_m,
        horizon_months=settings.horizon_months,
        discount_rate_monthly=settings.discount_rate_monthly,
        time_unit_days=settings.time_unit_days,
        margin=_margin(orders, as_of),
    )
    table = pa.table(
        {
            "customer_id": summary["customer_id"],
            "p_alive": np.asarray(model.probability_alive(f, r, age), dtype=np.float64),
            "expected_purchases": np.asarray(model.expected_purchases(horizon, f, r, age), dtype=np.float64),
            "expected_spend": np.asarray(spend_model.expected_spend(spend_f, spend_m), dtype=np.float64),
            "clv_predicted": np.asarray(clv, dtype=np.float64),
        }
    )
    note = "; ".join(str(w.message) for w in caught)
    params = {"transactions": dict(model.params_), "spend": dict(spend_model.params_)}
    return PredictionResult(table, params, note, model)
