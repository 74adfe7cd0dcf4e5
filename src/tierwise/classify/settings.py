"""The sections of tierwise.toml read by the classifiers: [rfm], [abc], [value], [lifecycle], [grade] (with its
indicators) and [loyalty]. Each classifier takes its section as it is (docs/classification.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tierwise.errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RfmThresholds(_Section):
    recency: list[float] = Field(default_factory=list, description="Day cut-offs, ascending (most recent first)")
    frequency: list[float] = Field(default_factory=list, description="Purchase-count cut-offs, ascending")
    monetary: list[float] = Field(default_factory=list, description="Revenue cut-offs, ascending")


class RfmSettings(_Section):
    bins: int = Field(5, ge=2, le=10, description="Scores run from 1 to this (5: quintiles)")
    monetary: Literal["total", "average"] = Field(
        "total", description="M scores total net revenue in the window, or the average order value"
    )
    class8_basis: Literal["mean", "median"] = Field(
        "mean", description="The eight classes compare each customer with the buyers' mean or median"
    )
    thresholds: RfmThresholds = Field(
        default_factory=RfmThresholds,
        description="Fixed cut-offs instead of quantiles, per measure: bins − 1 ascending values; empty = quantiles",
    )

    @field_validator("thresholds")
    @classmethod
    def _cut_offs(cls, value: RfmThresholds) -> RfmThresholds:
        for key, cuts in value.model_dump().items():
            if cuts and cuts != sorted(cuts):
                raise ValueError(f"thresholds.{key} must be ascending, got {cuts}")
        return value

    def fixed_thresholds(self) -> dict[str, list[float]]:
        cuts = {k: v for k, v in self.thresholds.model_dump().items() if v}
        for key, values in cuts.items():
            if len(values) != self.bins - 1:
                raise UserError(
                    f"tierwise.toml [rfm.thresholds] {key}: give {self.bins - 1} cut-offs for {self.bins} bins, "
                    f"got {len(values)}"
                )
        return cuts


class AbcSettings(_Section):
    by: Literal["monetary", "profit"] = Field("monetary", description="Classify by revenue (monetary) or profit")
    a_cutoff: float = Field(0.80, gt=0, lt=1, description="Cumulative share of value up to which customers are A")
    b_cutoff: float = Field(0.95, gt=0, le=1, description="Cumulative share of value up to which customers are B")


class ValueSettings(_Section):
    by: Literal["monetary", "profit", "clv_predicted"] = Field(
        "monetary", description="Value tiers by revenue (monetary), profit or predicted CLV (clv_predicted)"
    )
    high_share: float = Field(0.20, gt=0, lt=1, description="Share of buyers in the high-value tier (the top)")
    medium_share: float = Field(0.30, ge=0, lt=1, description="Share of buyers in the medium-value tier (the next)")


class LifecycleSettings(_Section):
    at_risk_multiple: float = Field(
        1.5, gt=0, description="At risk when days since last purchase exceed this many of the customer's usual gaps"
    )
    churned_multiple: float = Field(3.0, gt=0, description="Churned when they exceed this many usual gaps")
    new_days: int = Field(90, ge=0, description="New while the first purchase is at most this many days ago")
    mature_days: int = Field(365, ge=0, description="Mature needs a first purchase at least this many days ago")
    mature_min_frequency: int = Field(4, ge=1, description="... and at least this many purchases in the window")
    default_gap_days: float = Field(90.0, gt=0, description="Usual gap assumed when no customer has bought twice")


DEFAULT_INDICATORS: list[dict[str, Any]] = [
    {
        "name": "credit",
        "label": "信用状况 / Credit status",
        "expression": "on_time_rate * 100 - least(avg_days_late, 60)"
        " - least(100 * coalesce(overdue_amount, 0) / greatest(monetary, 1), 40)",
        "weight": 0.3,
    },
    {"name": "amount", "label": "下单金额 / Order amount", "expression": "monetary", "weight": 0.3},
    {
        "name": "prospect",
        "label": "发展前景 / Development prospect",
        "expression": "monetary * 365.0 / least(greatest(tenure_days, 30), 365)"
        " * (1 + least(greatest(coalesce(revenue_trend, 0), -1), 1))",
        "weight": 0.2,
    },
    {"name": "profit", "label": "利润贡献 / Profit contribution", "expression": "profit", "weight": 0.2},
]


class IndicatorSettings(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short name: score_<name>, contrib_<name> columns")
    label: str = Field("", description="Label shown in reports")
    expression: str = Field(description="Value over snapshot columns, larger is better (same syntax as rules)")
    weight: float = Field(ge=0, description="Weight in the composite score (weights are rescaled to add to 1)")


class GradeSettings(_Section):
    normalise: Literal["percentile", "minmax"] = Field(
        "percentile", description="Indicator scores 0–100 by percentile among buyers or by min–max"
    )
    method: Literal["quotas", "cutoffs"] = Field(
        "quotas", description="Grades A/B/C/D by quotas (shares of customers) or by composite score cut-offs"
    )
    quotas: list[float] = Field([0.10, 0.20, 0.30], min_length=3, max_length=3, description="Shares of A, B, C")
    cutoffs: list[float] = Field(
        [80.0, 60.0, 40.0], min_length=3, max_length=3, description="Lowest composite score of A, B, C"
    )
    short_history_days: int = Field(
        180, ge=0, description="Customers younger than this take the prospect score for indicators they lack"
    )
    prospect_indicator: str = Field("prospect", description="The indicator that stands in for short histories")
    indicators: list[IndicatorSettings] = Field(
        default_factory=lambda: [IndicatorSettings(**d) for d in DEFAULT_INDICATORS],
        description="The indicators of the composite score",
    )

    @field_validator("indicators")
    @classmethod
    def _distinct(cls, indicators: list[IndicatorSettings]) -> list[IndicatorSettings]:
        names = [i.name for i in indicators]
        if not names or len(set(names)) != len(names) or sum(i.weight for i in indicators) <= 0:
            raise ValueError("give at least one indicator, each name once, weights adding up to more than 0")
        return indicators


class LoyaltySettings(_Section):
    loyal_min_purchases: int = Field(4, ge=1, description="Loyal needs at least this many purchase occasions")
    loyal_min_tenure_days: int = Field(180, ge=0, description="... and a first purchase at least this long ago")
    satisfied_min: float = Field(4.0, description="Satisfaction score from which a customer counts as satisfied")
    dissatisfied_max: float = Field(2.5, description="Satisfaction score up to which a customer is dissatisfied")
