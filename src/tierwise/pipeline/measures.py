"""The measures of a run: every per-customer feature of DESIGN §5 (orders, payments, satisfaction, industry,
historical and predicted CLV) joined into one table, and the grade's indicators compiled over its columns."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from tierwise.classify.grade import Indicator
from tierwise.clv.predict import predict
from tierwise.config import Config
from tierwise.features.credit import payment_features
from tierwise.features.historical_clv import historical_clv
from tierwise.features.industry import main_industry
from tierwise.features.orders import customer_features
from tierwise.features.satisfaction import satisfaction_features
from tierwise.pipeline.scratch import Scratch, on_engine
from tierwise.rules import compile_value


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
        cfg.features,
        occasions,
        # the customer's own fields, without joining the customers a second time
        carry={
            "country": "country",
            "customer_kind": "customer_kind",
            "credit_limit": "credit_limit",
            "customer_type": "type",
        },
        ingest=cfg.ingest,
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
