"""The [[sources]], [[alerts]] and [delivery] sections of tierwise.toml (docs/refresh.md)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tierwise.checks import settings_name
from tierwise.schema import ORDER_CUSTOMER_FIELDS, TABLES

SOURCE_TABLES = ("customers", "orders", "payments", "interactions", "campaigns")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceSettings(_Section):
    name: str = Field(min_length=1, description="Name of the source, shown in the refresh log")
    table: Literal["customers", "orders", "payments", "interactions", "campaigns"] = Field(
        description="Canonical table the source fills"
    )
    folder: str | None = Field(
        None,
        min_length=1,
        description="A folder (relative: inside the workspace): files dropped there are loaded in name order, then "
        "moved to processed/ or, when refused, to failed/ with the error beside them",
    )
    url: str | None = Field(
        None, description="A database URL without password (the password from PGPASSWORD or ~/.pgpass)"
    )
    url_env: str | None = Field(None, description="Name of the environment variable holding the database URL")
    from_table: str | None = Field(None, description="With a database: the table (or schema.table) to read")
    since_column: str | None = Field(
        None, description="With a database: read only rows above the last load's greatest value in this column"
    )
    min_age_seconds: float = Field(
        10.0, ge=0, description="A folder's files younger than this are left for the next refresh (still being copied)"
    )
    sep: str | None = Field(None, description="Separator of text files (default: sniffed)")
    encoding: str | None = Field(None, description="Text encoding, e.g. gbk (default: detected)")
    sheet: str | None = Field(None, description="Spreadsheets: a sheet name, its number or 'all'")
    header_row: int | None = Field(None, ge=1, description="Spreadsheets: the row holding the header")
    no_header: bool = Field(False, description="The files have no header line")
    key: list[str] | None = Field(None, description="Fields identifying a record (default: [ingest.keys])")
    map: dict[str, str] = Field({}, description="Source column = canonical field (or 'ignore'), as ingest --map")
    date_format: Literal["dmy", "mdy", "ymd"] | None = Field(None, description="Order of day and month in dates")
    keep_duplicates: bool | None = Field(None, description="Keep rows identical in every column")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return settings_name(value, "source name")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # A password in the query (?password=…) is as stored as one before the host.
        if value is not None and (
            urlsplit(value).password or "password" in {k.lower() for k in parse_qs(urlsplit(value).query)}
        ):
            raise ValueError(
                "the URL holds a password; put the whole URL in an environment variable and name it in url_env "
                "(or use PGPASSWORD / ~/.pgpass), so no secret is stored in tierwise.toml"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSettings:
        database = self.url is not None or self.url_env is not None
        if (self.folder is not None) == database:
            raise ValueError(f"source '{self.name}': give either folder, or url/url_env with from_table")
        if self.url is not None and self.url_env is not None:
            raise ValueError(f"source '{self.name}': give url or url_env, not both")
        if database and not self.from_table:
            raise ValueError(f"source '{self.name}': a database source needs from_table")
        if not database and (self.from_table or self.since_column):
            raise ValueError(f"source '{self.name}': from_table and since_column belong to database sources")
        # Checked here, not at the first file: a file refused for a typo in the map would be moved to failed/.
        fields = TABLES[self.table].names
        allowed = {*fields, "ignore", *(ORDER_CUSTOMER_FIELDS if self.table == "orders" else ())}
        for column, target in self.map.items():
            if target not in allowed:
                raise ValueError(
                    f'source \'{self.name}\': map "{column}" = "{target}": {target} is not a field of {self.table}; '
                    f"the fields are: {', '.join(fields)} (or ignore)"
                )
        return self

    @property
    def kind(self) -> str:
        return "folder" if self.folder is not None else "database"


AlertKind = Literal["customers", "source_failed", "quarantine_rate", "share_shift"]


class AlertSettings(_Section):
    name: str = Field(min_length=1, description="Name of the rule (its key in the alert history)")
    label_zh: str | None = Field(None, description="Chinese title shown in mails and the dashboard (default: name)")
    label_en: str | None = Field(None, description="English title (default: name)")
    kind: AlertKind = Field(
        "customers",
        description="customers (the `where` rule over the latest run and the previous one), source_failed, "
        "quarantine_rate (a batch above `limit`) or share_shift (a class's revenue share moved by `points`)",
    )
    where: str | None = Field(
        None,
        description="kind = customers: a rule (docs/rules.md) over the latest run's columns, previous_<column> "
        "for the previous run's and is_new",
    )
    limit: float = Field(0.05, ge=0, le=1, description="kind = quarantine_rate: share of a batch's rows")
    column: str = Field("grade", description="kind = share_shift: the class column whose revenue shares are compared")
    points: float = Field(5.0, gt=0, description="kind = share_shift: percentage points a share must move")
    webhook: str | None = Field(None, description="URL receiving a signed JSON POST when the rule fires")
    email: list[str] = Field([], description="Addresses receiving a mail when the rule fires")
    per_owner: bool = Field(
        False, description="Each customer's owner ([delivery.owners]) also gets a mail with their own customers"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return settings_name(value, "alert name")

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError(
                f"webhook '{value}': give an http:// or https:// URL with a host, e.g. https://crm.example.com/hooks"
            )
        return value

    @field_validator("email")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @model_validator(mode="after")
    def _rule(self) -> AlertSettings:
        if self.kind == "customers" and not (self.where or "").strip():
            raise ValueError(f"alert '{self.name}': kind = customers needs a `where` rule")
        if self.kind != "customers" and self.where:
            raise ValueError(f"alert '{self.name}': `where` belongs to kind = customers")
        return self

    def label(self, language: str) -> str:
        return (self.label_zh if language == "zh" else self.label_en) or self.name


def _check_address(address: str) -> str:
    local, at, domain = address.partition("@")
    if not (local and at and domain) or any(c.isspace() or c in '<>,;"' for c in address):
        raise ValueError(f"'{address}' is not an e-mail address like name@example.com")
    return address


def default_alerts() -> list[AlertSettings]:
    """The alerts every workspace has until it writes its own [[alerts]]: they fire into the dashboard's alert
    history; adding webhook/email targets (by writing them out) sends them too."""
    gap = "coalesce(expected_gap_days, 0)"
    previous_gap = "coalesce(previous_expected_gap_days, 0)"
    return [
        AlertSettings(
            name="new_grade_a",
            label_zh="新晋A级客户",
            label_en="New grade-A customers",
            where="grade = 'A' and (previous_grade is null or previous_grade <> 'A')",
        ),
        AlertSettings(
            name="key_customers_slipping",
            label_zh="A/B级客户转为风险或流失",
            label_en="A/B customers now at risk or churned",
            where="coalesce(previous_grade, grade) in ('A', 'B') and lifecycle_stage in ('at_risk', 'churned') "
            "and (previous_lifecycle_stage is null or previous_lifecycle_stage not in ('at_risk', 'churned'))",
        ),
        AlertSettings(
            name="top_customers_silent",
            label_zh="前100名客户久未下单",
            label_en="Top-100 customers silent for twice their usual interval",
            where=f"priority_rank <= 100 and {gap} > 0 and recency_days > 2 * {gap} "
            f"and (is_new or not (coalesce(previous_recency_days, 0) > 2 * {previous_gap} and {previous_gap} > 0))",
        ),
        AlertSettings(
            name="quarantine_above_5pct",
            label_zh="隔离行超过5%",
            label_en="Quarantine above 5%",
            kind="quarantine_rate",
            limit=0.05,
        ),
        AlertSettings(name="source_failed", label_zh="数据源失败", label_en="A source failed", kind="source_failed"),
    ]


class DeliverySettings(_Section):
    dashboard_url: str = Field(
        "", description="Link to the dashboard in mails, e.g. https://tierwise.example.com (default: [web] address)"
    )
    sender: str = Field("tierwise@localhost", description="From address of alert and digest mails")
    smtp_host: str = Field("localhost", description="SMTP server")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 TLS, 25 none)")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls, tls (implicit, port 465) or none (a relay on this machine only)"
    )
    smtp_user_env: str = Field("TIERWISE_SMTP_USER", description="Environment variable holding the SMTP user")
    smtp_password_env: str = Field(
        "TIERWISE_SMTP_PASSWORD", description="Environment variable holding the SMTP password"
    )
    webhook_secret_env: str = Field(
        "TIERWISE_WEBHOOK_SECRET",
        description="Environment variable holding the key of the webhooks' HMAC-SHA256 signature",
    )
    attempts: int = Field(4, ge=1, le=20, description="Tries per delivery before it is recorded as failed")
    backoff_seconds: float = Field(2.0, ge=0, description="Wait before the second try, doubled before each next one")
    timeout_seconds: float = Field(10.0, gt=0, description="Seconds a webhook or SMTP server may take to answer")
    owners: dict[str, str] = Field(
        {}, description="Owner (客户经理, as in the customers' owner column) = their e-mail address"
    )
    digest: bool = Field(False, description="After each refresh that made a run, mail every owner their digest")
    digest_top: int = Field(20, ge=1, le=500, description="Customers listed in a digest, by priority")

    @field_validator("owners")
    @classmethod
    def _owner_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value.values():
            _check_address(address)
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _check_address(value)
