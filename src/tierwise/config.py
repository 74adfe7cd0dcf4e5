"""tierwise.toml as pydantic models: every setting, its default and a one-line description.

The description of each field is also the comment written above it by `tierwise init`, so the file a user
edits and the validation here cannot drift apart.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tierwise.checks import settings_name
from tierwise.errors import UserError
from tierwise.history.settings import ScheduleSettings, StabilitySettings
from tierwise.mining.settings import ClassifySettings, ClusterSettings
from tierwise.schema import TABLES
from tierwise.strategy.playbook import ACTIONS, Playbook, StrategySettings, default_playbook
from tierwise.web.settings import WebSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkspaceSettings(_Section):
    language: Literal["zh", "en"] = Field("zh", description="Language of labels in reports and the dashboard: zh or en")
    currency: str = Field("CNY", description="Currency of amounts, shown in reports")
    wait_seconds: int = Field(
        300,
        ge=0,
        description="How long a command waits while another tierwise process holds the workspace (--wait overrides)",
    )


def _only_tables(setting: str, value: dict[str, Any]) -> dict[str, Any]:
    from tierwise.schema import TABLES

    unknown = sorted(set(value) - set(TABLES))
    if unknown:
        raise ValueError(f"{setting}: unknown table {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    return value


class SparkSettings(_Section):
    master: str = Field(
        "local[*]",
        description="Spark master: local[*] (every core of this machine), local[4], spark://host:7077, yarn …; "
        "empty under spark-submit (its --master is used)",
    )
    conf: dict[str, str] = Field(
        {}, description="Spark settings for the session, e.g. {'spark.executor.memory' = '8g'} (docs/spark.md)"
    )
    tables: dict[str, str] = Field(
        {},
        description="Where Spark reads the canonical tables: per table a Parquet path (file, folder or URI) or a "
        "catalog table (db.table); tables not named are exported from the workspace to Parquet first",
    )
    output: str = Field(
        "spark/snapshots",
        description="Folder or URI where each Spark run writes its snapshot as Parquet, in run_id=<run> partitions "
        "(relative: inside the workspace)",
    )

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: dict[str, str]) -> dict[str, str]:
        return _only_tables("engine.spark.tables", value)


class EngineSettings(_Section):
    kind: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Engine of `tierwise run`: duckdb, or spark ([engine.spark]); the workspace itself stays a DuckDB "
        "file",
    )
    database: str = Field("tierwise.duckdb", description="DuckDB file, relative to the workspace")
    memory_limit: str = Field(
        "3GB", description="DuckDB memory limit; beyond it DuckDB spills to disk. Empty = 80% of RAM"
    )
    threads: int = Field(0, ge=0, description="Worker threads for DuckDB; 0 = one per core")
    max_temp_gb: float = Field(
        50,
        ge=0,
        description="Temporary disk DuckDB may use beside the database (<database>.tmp) when memory_limit is not "
        "enough; beyond it the work stops with a message instead of filling the disk. 0 = DuckDB's default (90% of "
        "the free disk) / 内存不足时可用的临时磁盘空间上限（GB）",
    )
    spark: SparkSettings = Field(
        default_factory=SparkSettings, description="Spark, for `tierwise run` with kind = spark or --engine spark"
    )


class IngestSettings(_Section):
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
        return _only_tables("incremental", value)

    @field_validator("keys")
    @classmethod
    def _known_key_tables(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return _only_tables("keys", value)

    @field_validator("cancel_statuses", "online_channels")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]


class FeaturesSettings(_Section):
    window_days: int = Field(365, ge=1, description="Days counted for frequency, monetary, profit and preferences")
    frequency_by: Literal["days", "orders"] = Field(
        "days", description="A purchase occasion is a distinct order day (days) or a distinct order (orders)"
    )
    industry_priority: list[str] = Field(
        default_factory=list,
        description="Industry codes in order of priority: settle equal revenue shares and multi-code records",
    )


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


class ValueConfig(_Section):
    by: Literal["monetary", "profit", "clv_predicted"] = Field(
        "monetary", description="Value tiers by revenue (monetary), profit or predicted CLV (clv_predicted)"
    )
    high_share: float = Field(0.20, gt=0, lt=1, description="Share of buyers in the high-value tier (the top)")
    medium_share: float = Field(0.30, ge=0, lt=1, description="Share of buyers in the medium-value tier (the next)")


class LifecycleConfig(_Section):
    at_risk_multiple: float = Field(
        1.5, gt=0, description="At risk when days since last purchase exceed this many of the customer's usual gaps"
    )
    churned_multiple: float = Field(3.0, gt=0, description="Churned when they exceed this many usual gaps")
    new_days: int = Field(90, ge=0, description="New while the first purchase is at most this many days ago")
    mature_days: int = Field(365, ge=0, description="Mature needs a first purchase at least this many days ago")
    mature_min_frequency: int = Field(4, ge=1, description="... and at least this many purchases in the window")
    default_gap_days: float = Field(90.0, gt=0, description="Usual gap assumed when no customer has bought twice")


class ClvSettings(_Section):
    discount_rate: float = Field(0.10, gt=-1, description="Discount rate d per period in CLV = Σ (R_t − C_t)/(1+d)^t")
    period_days: int = Field(365, ge=1, description="Length of one CLV period t in days (365: yearly)")
    missing_cost_margin: float = Field(
        1.0, ge=0, le=1, description="Margin assumed for order lines without cost (1.0: their whole revenue)"
    )
    model: Literal["bgnbd", "pnbd", "none"] = Field(
        "bgnbd", description="Predictive model of purchases: bgnbd (BG/NBD), pnbd (Pareto/NBD) or none"
    )
    time_unit_days: float = Field(7.0, gt=0, description="Time unit of the predictive models in days (7: weeks)")
    horizon_months: int = Field(12, ge=1, description="Months ahead that expected_purchases and clv_predicted cover")
    discount_rate_monthly: float = Field(0.01, gt=-1, description="Monthly discount rate of clv_predicted")
    min_customers: int = Field(50, ge=1, description="Fewer buyers than this: no predictive columns")


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


class LoyaltyConfig(_Section):
    loyal_min_purchases: int = Field(4, ge=1, description="Loyal needs at least this many purchase occasions")
    loyal_min_tenure_days: int = Field(180, ge=0, description="... and a first purchase at least this long ago")
    satisfied_min: float = Field(4.0, description="Satisfaction score from which a customer counts as satisfied")
    dissatisfied_max: float = Field(2.5, description="Satisfaction score up to which a customer is dissatisfied")


class RuleSettings(_Section):
    name: str = Field(min_length=1, description="Tag given to the customers the rule matches")
    expression: str = Field(min_length=1, description="Boolean expression over snapshot columns (SQL syntax)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return settings_name(value, "rule name")


class Config(_Section):
    workspace: WorkspaceSettings = WorkspaceSettings()
    engine: EngineSettings = EngineSettings()
    ingest: IngestSettings = IngestSettings()
    features: FeaturesSettings = FeaturesSettings()
    rfm: RfmSettings = RfmSettings()
    abc: AbcSettings = AbcSettings()
    value: ValueConfig = ValueConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    clv: ClvSettings = ClvSettings()
    grade: GradeSettings = GradeSettings()
    loyalty: LoyaltyConfig = LoyaltyConfig()
    cluster: ClusterSettings = ClusterSettings()
    classify: ClassifySettings = ClassifySettings()
    stability: StabilitySettings = StabilitySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()
    rules: list[RuleSettings] = Field(default_factory=list)
    strategy: StrategySettings = StrategySettings()
    # [[playbook]]: ordered strategy rules, the first whose `when` holds decides (docs/strategy.md).
    playbook: Playbook = Field(default_factory=default_playbook)
    # [mapping.orders] "源列名" = "field": per table, source header → canonical field (or "ignore").
    mapping: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("mapping")
    @classmethod
    def _known_tables(cls, mapping: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for table, pairs in mapping.items():
            if table not in TABLES:
                raise ValueError(f"unknown table '{table}'; allowed: {', '.join(TABLES)}")
            allowed = {*TABLES[table].names, "ignore"}
            for source, target in pairs.items():
                if target not in allowed:
                    raise ValueError(
                        f"'{source}' maps to unknown field '{target}' of {table}; allowed: {', '.join(sorted(allowed))}"
                    )
        return mapping


CONFIG_FILE = "tierwise.toml"


def load_config(path: Path) -> Config:
    """Read and validate tierwise.toml; every problem becomes one line naming the key."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no tierwise.toml here; create a workspace with 'tierwise init DIR'") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the file or recreate it with 'tierwise init'") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: setting '{key}': {first['msg']}") from exc


def toml_value(value: Any) -> str:
    """A setting's value as TOML (strings through JSON, whose escapes are valid in TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"no TOML form for {type(value).__name__}")


def _array_of_tables(key: str, items: list[BaseModel]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.append(f"[[{key}]]")
        out += [f"{name} = {toml_value(getattr(item, name))}" for name in type(item).model_fields]
        out.append("")
    return out


def render_default_config() -> str:
    """The commented tierwise.toml that `tierwise init` writes: every setting at its default."""
    lines = ["# tierwise workspace settings. Every key is shown at its default; edit and re-run.", ""]
    defaults = Config()
    for section_name in Config.model_fields:
        if section_name in ("mapping", "rules", "playbook"):
            continue
        section = getattr(defaults, section_name)
        lines.append(f"[{section_name}]")
        tables: list[str] = []
        for name, info in type(section).model_fields.items():
            value = getattr(section, name)
            if isinstance(value, list) and value and isinstance(value[0], BaseModel):
                tables += [f"# {info.description}", *_array_of_tables(f"{section_name}.{name}", value)]
                continue
            if isinstance(value, BaseModel):
                tables += [f"# {info.description}", f"[{section_name}.{name}]"]
                for sub, sub_info in type(value).model_fields.items():
                    tables += [f"# {sub_info.description}", f"{sub} = {toml_value(getattr(value, sub))}"]
                tables.append("")
                continue
            lines.append(f"# {info.description}")
            # TOML has no null: an unset optional setting is written commented out. So is an empty table, so that
            # the user may write it as a [section.name] table of its own without declaring it twice.
            if value is None:
                lines.append(f"# {name} = (unset)")
            elif isinstance(value, dict) and not value:
                lines.append(f"# {name} = {{}}")
            else:
                lines.append(f"{name} = {toml_value(value)}")
        lines += ["", *tables]
    lines += [
        "# Playbook (策略手册): the first rule, in this order, whose `when` holds gives a customer its strategy.",
        "# action: " + ", ".join(ACTIONS) + ".",
        "# budget_share: share of [strategy] budget, split evenly over the customers the rule matches (sum <= 1).",
        '# reason_zh / reason_en: why, {column} inserts the customer\'s value. Keep a last rule with when = "true".',
        "# Writing any [[playbook]] rule replaces this whole list (see docs/strategy.md).",
        "",
        *_array_of_tables("playbook", list[BaseModel](defaults.playbook)),
    ]
    lines += [
        "# Rules: tag customers matching a condition over snapshot columns (see docs/rules.md).",
        "# [[rules]]",
        '# name = "浙江大客户"',
        "# expression = \"province = '浙江' and monetary > 50000\"",
        "",
    ]
    lines += [
        '# Column mapping, per table: source header = canonical field (or "ignore"). Headers are',
        "# recognised automatically in Chinese and English; add lines only where that guess is wrong.",
        "# [mapping.orders]",
        '# "实收款" = "amount"',
        "",
    ]
    return "\n".join(lines)


def write_config_text(path: Path, text: str) -> None:
    """Replace tierwise.toml (or any text file) atomically: a reader sees the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
