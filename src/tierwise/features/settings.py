"""The [features] section of tierwise.toml: the window and counting of the per-customer measures."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeaturesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    window_days: int = Field(365, ge=1, description="Days counted for frequency, monetary, profit and preferences")
    frequency_by: Literal["days", "orders"] = Field(
        "days", description="A purchase occasion is a distinct order day (days) or a distinct order (orders)"
    )
    industry_priority: list[str] = Field(
        default_factory=list,
        description="Industry codes in order of priority: settle equal revenue shares and multi-code records",
    )
