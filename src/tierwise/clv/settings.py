"""The [clv] section of tierwise.toml: historical CLV's discounting and the predictive models (docs/clv.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClvSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    discount_rate: float = Field(0.10, gt=-1, description="Discount rate d per period in CLV = Σ (R_t − C_t)/(1+d)^t")
    period_days: int = Field(365, ge=1, description="Length of one CLV period t in days (365: yearly)")
    missing_cost_margin: float = Field(
        1.0, ge=0, le=1, description="Margin assumed for order lines without cost (1.0: their whole revenue)"
    )
    model: Literal["bgnbd", "mbgnbd", "pnbd", "none"] = Field(
        "bgnbd",
        description="Predictive model of purchases: bgnbd (BG/NBD), mbgnbd (MBG/NBD), pnbd (Pareto/NBD) or none",
    )
    time_unit_days: float = Field(7.0, gt=0, description="Time unit of the predictive models in days (7: weeks)")
    horizon_months: int = Field(12, ge=1, description="Months ahead that expected_purchases and clv_predicted cover")
    discount_rate_monthly: float = Field(0.01, gt=-1, description="Monthly discount rate of clv_predicted")
    min_customers: int = Field(50, ge=1, description="Fewer buyers than this: no predictive columns")
