"""The [ingest] section of tierwise.toml: how source files are read, cleaned and checked (docs/ingest.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tierwise.checks import only_tables


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    date_order: Literal["auto", "ymd", "dmy", "mdy"] = Field(
        "auto",
        description="Order of day and month in dates like 03/04/2024: auto decides from the data, or ymd/dmy/mdy",
    )
    remove_exact_duplicates: bool = Field(
        True, description="Remove rows identical in every column (false for sources where such rows are real)"
    )
    two_digit_year_pivot: int = Field(
        70, ge=0, le=99, description="Two-digit years below this are 20xx, the others 19xx"
    )
    future_tolerance_days: int = Field(
        1, ge=0, description="Dates more than this many days after today are quarantined as FUTURE_DATE"
    )
    outlier_iqr_factor: float = Field(
        3.0, gt=0, description="Amounts beyond Q3 + factor × IQR (or below Q1 − factor × IQR) are flagged as outliers"
    )
    cancel_prefixes: list[str] = Field(
        ["C"], description="Order numbers starting with one of these are cancellations (negative revenue)"
    )
    cancel_statuses: list[str] = Field(
        [
            "cancelled",
            "canceled",
            "returned",
            "refunded",
            "return",
            "refund",
            "已取消",
            "取消",
            "退货",
            "已退货",
            "退款",
            "已退款",
        ],
        description="Order statuses (case-insensitive) that mean a return or cancellation",
    )
    missing_values: list[str] = Field(
        ["NA", "N/A", "NULL", "None", "nan", "NaN", "-", "--", "#N/A", "无", "空", "暂无"],
        description="Cell values (besides empty ones) that mean 'no value'",
    )
    online_channels: list[str] = Field(
        [
            "online",
            "web",
            "app",
            "ecommerce",
            "e-commerce",
            "wechat",
            "mini program",
            "线上",
            "网店",
            "官网",
            "小程序",
            "天猫",
            "京东",
            "淘宝",
            "微信",
            "app商城",
        ],
        description="Channel values (case-insensitive) that count as online",
    )

    incremental: dict[str, str] = Field(
        {},
        description="Database sources: per table (orders, payments …), the column whose greater values are new "
        "rows, e.g. {orders = 'updated_at'}; each load then reads only rows after the last one's greatest",
    )

    keys: dict[str, list[str]] = Field(
        {},
        description="Record identity per table: the fields that identify a record, e.g. {orders = ['order_id', "
        "'line_number']}; a record whose key is already stored is skipped when identical and replaced when changed "
        "(docs/ingest.md, 'Record identity'); [] turns identity off for that table. Unset tables use the defaults",
    )
    max_sheet_rows: int = Field(
        1_048_576, ge=1, description="Spreadsheets with more rows than this in a sheet are refused before parsing"
    )
    max_expansion_ratio: float = Field(
        100.0,
        gt=1,
        description="Spreadsheets (XLSX, ODS …) whose sheets expand to more than this many times their compressed "
        "size are refused before parsing (decompression bombs)",
    )

    @field_validator("incremental")
    @classmethod
    def _known_tables(cls, value: dict[str, str]) -> dict[str, str]:
        return only_tables("incremental", value)

    @field_validator("keys")
    @classmethod
    def _known_key_tables(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return only_tables("keys", value)

    @field_validator("cancel_statuses", "online_channels")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]
