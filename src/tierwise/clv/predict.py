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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from tierwise.clv._fit import fit_notes
from tierwise.clv.bgnbd import BetaGeoModel
from tierwise.clv.gamma_gamma import GammaGammaModel
from tierwise.clv.mbgnbd import ModifiedBetaGeoModel
from tierwise.clv.pareto_nbd import ParetoNBDModel
from tierwise.clv.settings import ClvSettings
from tierwise.clv.summary import rfm_summary, summary_from_occasions
from tierwise.clv.value import DAYS_PER_MONTH, customer_lifetime_value
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


SCORES = ("p_alive", "expected_purchases", "expected_spend", "clv_predicted")

# [clv] model → the transaction model fitted on (frequency, recency, T)
TRANSACTION_MODELS: dict[str, type[BetaGeoModel | ModifiedBetaGeoModel | ParetoNBDModel]] = {
    "bgnbd": BetaGeoModel,
    "mbgnbd": ModifiedBetaGeoModel,
    "pnbd": ParetoNBDModel,
}


@dataclass
class Scorer:
    """The fitted models and what scoring needs, so that a customer gets the same numbers wherever it is scored:
    on the driver (`predict`) or on Spark's executors (`scores_on_engine`)."""

    model: Any
    spend_model: Any
    settings: ClvSettings
    margin: float

    def score(
        self, frequency: Any, recency: Any, age: Any, monetary: Any, columns: Sequence[str] = SCORES
    ) -> dict[str, np.ndarray]:
        """`columns` (of SCORES) for these buyers."""
        f = np.asarray(frequency, dtype=np.float64)
        # Engines add amounts in different orders; rounding makes their last bits, and so the scores, the same.
        r = np.round(np.asarray(recency, np.float64), 9)
        age = np.round(np.asarray(age, np.float64), 9)
        m = np.round(np.asarray(monetary, np.float64), 6)
        repeat = (f > 0) & (m > 0)
        s = self.settings
        spend_f, spend_m = np.where(repeat, f, 0.0), np.where(repeat, m, 0.0)
        compute: dict[str, Callable[[], Any]] = {
            "p_alive": lambda: self.model.probability_alive(f, r, age),
            "expected_purchases": lambda: self.model.expected_purchases(
                s.horizon_months * DAYS_PER_MONTH / s.time_unit_days, f, r, age
            ),
            "expected_spend": lambda: self.spend_model.expected_spend(spend_f, spend_m),
            "clv_predicted": lambda: customer_lifetime_value(
                self.model,
                self.spend_model,
                f,
                r,
                age,
                spend_m,
                horizon_months=s.horizon_months,
                discount_rate_monthly=s.discount_rate_monthly,
                time_unit_days=s.time_unit_days,
                margin=self.margin,
            ),
        }
        return {c: np.asarray(compute[c](), dtype=np.float64) for c in columns}


@dataclass
class PredictionResult:
    table: pa.Table
    params: dict[str, dict[str, float]]
    note: str = ""
    transaction_model: Any = None  # the fitted BG/NBD or Pareto/NBD model, when it could be fitted
    scorer: Scorer | None = None  # when both models could be fitted


def empty() -> pa.Table:
    return pa.table({name: pa.array([], type=SCHEMA[name].to_pyarrow()) for name in SCHEMA.names})


def _margin(orders: ir.Table, as_of: dt.date) -> float:
    """Share of revenue kept as margin, over order lines that have a cost; 1.0 when none has."""
    lines = orders.filter((orders.order_date.date() < ibis.date(as_of.isoformat())) & orders.cost.notnull())
    # exact sums, as floats for the ratio (tierwise.money)
    revenue, cost = lines.amount.sum().cast("float64"), lines.cost.sum().cast("float64")
    row = lines.aggregate(revenue=revenue, cost=cost).to_pyarrow().to_pylist()[0]
    if not row["revenue"] or row["revenue"] <= 0:
        return 1.0
    return float(min(max((row["revenue"] - row["cost"]) / row["revenue"], 0.0), 1.0))


def predict(
    orders: ir.Table, settings: ClvSettings, as_of: dt.date, *, score: bool = True, occasions: ir.Table | None = None
) -> PredictionResult:
    """Fit the models on the buyers' summary pulled from the engine; with `score`, also score every buyer here
    (`table`); without, leave that to `scores_on_engine` with the result's `scorer`. `occasions` may be the
    orders' `purchase_occasions` as of `as_of` (see `buyer_summary`)."""
    if settings.model == "none":
        return PredictionResult(empty(), {}, 'predictive CLV is switched off ([clv] model = "none")')
    # the same rows in the same order on every engine: the same fit
    summary = buyer_summary(orders, settings, as_of, occasions).to_pyarrow().sort_by("customer_id")
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
    model = TRANSACTION_MODELS[settings.model]()
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
    scorer = Scorer(model, spend_model, settings, _margin(orders, as_of))
    table = pa.table({"customer_id": summary["customer_id"], **scorer.score(f, r, age, m)}) if score else empty()
    note = "; ".join(fit_notes(caught))
    params = {"transactions": dict(model.params_), "spend": dict(spend_model.params_)}
    return PredictionResult(table, params, note, model, scorer)


def buyer_summary(
    orders: ir.Table, settings: ClvSettings, as_of: dt.date, occasions: ir.Table | None = None
) -> ir.Table:
    """The models' input per buyer (frequency, recency, T, monetary_value), returns left out, before `as_of`;
    read from `occasions` (tierwise.features.orders.purchase_occasions of `orders` as of `as_of`) when given."""
    calibration_end = as_of - dt.timedelta(days=1)
    if occasions is not None:
        return summary_from_occasions(occasions, calibration_end, settings.time_unit_days)
    sales = orders.filter(~orders.is_return.fill_null(False))
    return rfm_summary(
        sales, amount_col="amount", calibration_end=calibration_end, time_unit_days=settings.time_unit_days
    )


def scores_on_engine(
    orders: ir.Table, settings: ClvSettings, as_of: dt.date, scorer: Scorer, occasions: ir.Table | None = None
) -> ir.Table:
    """The scores of `predict` as an expression on the engine holding `orders`, computed where the rows are (on
    Spark: pandas UDFs on the executors) instead of on the driver and sent back."""
    summary = buyer_summary(orders, settings, as_of, occasions)
    inputs = [summary.frequency.cast("float64"), summary.recency, summary["T"], summary.monetary_value]
    return summary.select("customer_id", **{name: _score_udf(scorer, name)(*inputs) for name in SCORES})


def _score_udf(scorer: Scorer, column: str) -> Callable[..., ir.Value]:
    def score(frequency: Any, recency: Any, age: Any, monetary: Any) -> Any:
        return pd.Series(scorer.score(frequency, recency, age, monetary, [column])[column], index=frequency.index)

    return ibis.udf.scalar.pandas(
        score, name=f"tierwise_{column}", signature=(("float64", "float64", "float64", "float64"), "float64")
    )
