"""The [stability] and [schedule] sections of tierwise.toml (docs/history.md)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(
        False, description="Hysteresis on grades: a customer keeps last run's grade unless the change is clear"
    )
    margin: float = Field(
        3.0, ge=0, description="Score points beyond a grade cut-off needed to change grade at once (0 = no margin)"
    )
    confirm_runs: int = Field(
        2, ge=0, description="A new grade also sticks after holding this many runs in a row (0 or 1 = off)"
    )


class ScheduleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cadence: Literal["monthly", "weekly", "daily", "off"] = Field(
        "off", description="How often 'tierwise serve' runs the main job: monthly, weekly, daily or off"
    )
    day: int = Field(
        1, ge=1, le=31, description="Day of the month (monthly; 31 = the last day) or weekday 1=Monday..7 (weekly)"
    )
    time: str = Field("02:00", description="Local time of day to run, HH:MM")
    wait_seconds: int = Field(
        600, ge=0, description="How long a run waits for another run of this workspace to finish before giving up"
    )

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        try:
            dt.time.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a time of day like 02:00") from exc
        return value

    @model_validator(mode="after")
    def _weekday(self) -> ScheduleSettings:
        if self.cadence == "weekly" and self.day > 7:
            raise ValueError(f"day = {self.day}: for a weekly cadence give the weekday, 1 = Monday … 7 = Sunday")
        return self

    def at(self) -> dt.time:
        return dt.time.fromisoformat(self.time)
