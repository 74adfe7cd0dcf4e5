"""tierwise.toml as pydantic models: every setting, its default and a one-line description.

Each area owns the sections it reads, in its own settings module (features/, classify/, clv/, strategy/,
ingest/, mining/, history/, web/ settings.py); `Config` composes them, with the sections that belong to no one
area ([workspace], [engine], [rules], [mapping]). Settings modules import no logic, so reading the configuration
stays light. The description of each field is also the comment written above it by `tierwise init`, so the
file a user edits and the validation here cannot drift apart.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tierwise.checks import only_tables, settings_name
from tierwise.classify.settings import (
    AbcSettings,
    GradeSettings,
    LifecycleSettings,
    LoyaltySettings,
    RfmSettings,
    ValueSettings,
)
from tierwise.clv.settings import ClvSettings
from tierwise.errors import UserError
from tierwise.features.settings import FeaturesSettings
from tierwise.history.settings import ScheduleSettings, StabilitySettings
from tierwise.ingest.settings import IngestSettings
from tierwise.mining.settings import ClassifySettings, ClusterSettings
from tierwise.refresh.settings import AlertSettings, DeliverySettings, SourceSettings, default_alerts
from tierwise.schema import TABLES
from tierwise.strategy.settings import ACTIONS, Playbook, StrategySettings, default_playbook
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
        return only_tables("engine.spark.tables", value)


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
    value: ValueSettings = ValueSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    clv: ClvSettings = ClvSettings()
    grade: GradeSettings = GradeSettings()
    loyalty: LoyaltySettings = LoyaltySettings()
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
    # [[sources]], [[alerts]], [delivery]: what `tierwise refresh` reads, checks and sends (docs/refresh.md).
    sources: list[SourceSettings] = Field(default_factory=list)
    alerts: list[AlertSettings] = Field(default_factory=default_alerts)
    delivery: DeliverySettings = DeliverySettings()

    @field_validator("sources", "alerts")
    @classmethod
    def _unique_names(cls, items: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"two entries are named '{item.name}'; give each its own name")
            seen.add(item.name)
        return items

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


def _alert_tables(alerts: list[AlertSettings]) -> list[str]:
    out: list[str] = []
    for alert in alerts:
        out.append("[[alerts]]")
        out += [f"{name} = {toml_value(value)}" for name, value in alert.model_dump(exclude_defaults=True).items()]
        out.append("")
    return out


def render_default_config() -> str:
    """The commented tierwise.toml that `tierwise init` writes: every setting at its default."""
    lines = ["# tierwise workspace settings. Every key is shown at its default; edit and re-run.", ""]
    defaults = Config()
    for section_name in Config.model_fields:
        if section_name in ("mapping", "rules", "playbook", "sources", "alerts"):
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
        "# Sources (数据源) read by `tierwise refresh`, in this order (see docs/refresh.md). A folder:",
        "# [[sources]]",
        '# name = "erp_exports"',
        '# table = "orders"',
        '# folder = "inbox/orders"',
        "# … or a database table, its URL (with any password) in an environment variable:",
        "# [[sources]]",
        '# name = "crm"',
        '# table = "customers"',
        '# url_env = "CRM_DATABASE_URL"',
        '# from_table = "public.customers"',
        '# since_column = "updated_at"',
        "",
        "# Alerts (预警): checked after each refresh. kind = customers takes a `where` rule over the latest run,",
        "# previous_<column> (the previous run) and is_new; the others: source_failed, quarantine_rate (limit),",
        '# share_shift (column, points). Add webhook = "https://…", email = ["…"], per_owner = true to send them.',
        "# Writing any [[alerts]] rule replaces this whole list.",
        "",
        *_alert_tables(defaults.alerts),
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
