"""A workspace: a folder with tierwise.toml and the DuckDB store holding the canonical tables."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from ibis.backends.duckdb import Backend as DuckDBBackend
from ibis.backends.sql.datatypes import DuckDBType

from tierwise import access, engine
from tierwise.config import CONFIG_FILE, Config, load_config, render_default_config
from tierwise.errors import UserError
from tierwise.money import MONEY
from tierwise.schema import TABLES, FieldKind, TableSpec

# Money is stored as exact decimals (tierwise.money): a float sum of 2,816,389.49 came back as 2816389.489999999.
IBIS_TYPES: dict[FieldKind, dt.DataType] = {
    "text": dt.string,
    "amount": MONEY,
    "number": dt.float64,
    "integer": dt.int64,
    "date": dt.date,
    "timestamp": dt.timestamp,
    "boolean": dt.boolean,
}

# Tables whose columns never change once made — what a run writes (snapshot_<run>, pareto_<run>, the web's
# cross_sell_<run>), learned_<model>, and the canonical and system tables: their Ibis handles (name and
# schema, not data) are kept per connection, because reading a schema costs more than most point queries.
RUN_TABLE_PREFIXES = ("snapshot_", "pareto_", "cross_sell_", "learned_", "replaced_")

# Columns every canonical table carries besides its fields: where each row came from.
LINEAGE = {"batch_id": dt.string, "source_line": dt.int64}

# Columns ingest adds to particular tables.
EXTRA_COLUMNS: dict[str, dict[str, dt.DataType]] = {
    "customers": {"attributes": dt.Map(dt.string, dt.string), "is_minimal": dt.boolean},
    "orders": {"is_return": dt.boolean, "is_outlier": dt.boolean},
}

BATCHES_SCHEMA = ibis.schema(
    {
        "batch_id": "string",
        "table_name": "string",
        "file": "string",
        "fingerprint": "string",
        "loaded_at": "timestamp",
        "file_format": "string",
        "encoding": "string",
        "delimiter": "string",
        "sheet": "string",
        "rows_read": "int64",
        "rows_loaded": "int64",
        "rows_quarantined": "int64",
        "duplicates_removed": "int64",
        "values_blanked": "int64",
        "outliers_flagged": "int64",
        "returns": "int64",
        "customers_created": "int64",
        "customers_updated": "int64",
        "mapping": "string",
        "date_orders": "string",
        # Record identity (docs/ingest.md): rows_loaded = rows_new + rows_updated; rows_unchanged were skipped;
        # rows_replaced is how many stored rows the updates moved to replaced_<table>.
        "rows_new": "int64",
        "rows_updated": "int64",
        "rows_unchanged": "int64",
        "rows_replaced": "int64",
        "record_key": "string",
        "warnings": "string",
    }
)

# Columns added to a system table after workspaces were made with it: how to fill them in older rows.
BACKFILL = {"batches": {"rows_new": "rows_loaded", "rows_updated": "0", "rows_unchanged": "0", "rows_replaced": "0"}}

# Old versions of records a later batch replaced (record identity): the canonical columns plus who replaced them.
# `tierwise unload` puts them back.
REPLACED_PREFIX = "replaced_"
REPLACED_COLUMNS = {"replaced_by": dt.string, "replaced_at": dt.timestamp}

QUARANTINE_SCHEMA = ibis.schema(
    {
        "batch_id": "string",
        "table_name": "string",
        "file": "string",
        "line": "int64",
        "column": "string",
        "reason_code": "string",
        "message": "string",
        "value": "string",
        "record": "string",
    }
)

# Values that could not be read in optional fields: the row is loaded with the field empty, and the
# value is kept here so nothing disappears without a trace.
BLANKED_SCHEMA = ibis.schema(
    {
        "batch_id": "string",
        "file": "string",
        "line": "int64",
        "column": "string",
        "field": "string",
        "value": "string",
    }
)


# One row per completed run of the main job; its snapshot lives in the table named here.
RUNS_SCHEMA = ibis.schema(
    {
        "run_id": "string",
        "as_of": "date",
        "created_at": "timestamp",
        "snapshot_table": "string",
        "customers": "int64",
        "config": "string",
        "input_batches": "string",
        "input_rows": "string",
        "models": "string",
        "timings": "string",
    }
)


def canonical_schema(spec: TableSpec) -> ibis.Schema:
    columns: dict[str, dt.DataType] = {f.name: IBIS_TYPES[f.kind] for f in spec.fields}
    columns.update(EXTRA_COLUMNS.get(spec.name, {}))
    columns.update(LINEAGE)
    return ibis.schema(columns)


def replaced_schema(spec: TableSpec) -> ibis.Schema:
    return ibis.schema({**dict(canonical_schema(spec).items()), **REPLACED_COLUMNS})


# One row per `tierwise backtest`: its whole result as JSON (the report's model page reads the latest).
BACKTESTS_SCHEMA = ibis.schema(
    {
        "backtest_id": "string",
        "created_at": "timestamp",
        "calibration_end": "date",
        "holdout_end": "date",
        "result": "string",
    }
)


# One row per `tierwise classify`: the model learned, the run it was applied to, and the table holding its
# predictions (customer_id, learned_class, learned_confidence); payload is the result as JSON (docs/classification.md).
LEARNED_MODELS_SCHEMA = ibis.schema(
    {
        "model_id": "string",
        "run_id": "string",
        "created_at": "timestamp",
        "target": "string",
        "model": "string",
        "calibration_end": "date",
        "holdout_end": "date",
        "predictions_table": "string",
        "payload": "string",
    }
)


# One row per `tierwise campaign plan` (docs/campaigns.md): the selection, how the control group was drawn,
# and the group sizes; strata is JSON {stratum: {customers, treatment, control}}.
CAMPAIGN_PLANS_SCHEMA = ibis.schema(
    {
        "name": "string",
        "run_id": "string",
        "where_expr": "string",
        "control_share": "float64",
        "seed": "int64",
        "stratify": "string",
        "cost_per_contact": "float64",
        "created_at": "timestamp",
        "customers": "int64",
        "treatment": "int64",
        "control": "int64",
        "strata": "string",
    }
)

# The customers of each plan: group treatment or control, and the stratum (segment) the draw was made in.
CAMPAIGN_MEMBERS_SCHEMA = ibis.schema(
    {"name": "string", "customer_id": "string", "group": "string", "stratum": "string"}
)


# One row per incremental load of a database table: the greatest value of its incremental column loaded so far;
# the next load reads only rows above it (docs/ingest.md, "Databases").
SOURCE_MARKS_SCHEMA = ibis.schema(
    {
        "source": "string",
        "table_name": "string",
        "column": "string",
        "mark": "string",
        "batch_id": "string",
        "loaded_at": "timestamp",
    }
)


# The refresh log (docs/refresh.md): one row per refresh, updated as its steps finish, so that a refresh killed
# half-way resumes under the same id; what each alert rule found; each delivery's outcome.
REFRESHES_SCHEMA = ibis.schema(
    {
        "refresh_id": "string",
        "trigger": "string",
        "started_at": "timestamp",
        "finished_at": "timestamp",
        "status": "string",
        "attempts": "int64",
        "run_id": "string",
        "steps": "string",
        "error": "string",
    }
)
ALERT_EVENTS_SCHEMA = ibis.schema(
    {
        "event_id": "string",
        "refresh_id": "string",
        "run_id": "string",
        "previous_run_id": "string",
        "rule": "string",
        "kind": "string",
        "fired_at": "timestamp",
        "matched": "int64",
        "details": "string",
    }
)
DELIVERIES_SCHEMA = ibis.schema(
    {
        "event_id": "string",
        "channel": "string",
        "target": "string",
        "part": "string",
        "status": "string",
        "attempts": "int64",
        "detail": "string",
        "customers": "int64",
        "sent_at": "timestamp",
    }
)


SYSTEM_TABLES = {
    "batches": BATCHES_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "blanked_values": BLANKED_SCHEMA,
    "runs": RUNS_SCHEMA,
    "backtests": BACKTESTS_SCHEMA,
    "learned_models": LEARNED_MODELS_SCHEMA,
    "campaign_plans": CAMPAIGN_PLANS_SCHEMA,
    "campaign_members": CAMPAIGN_MEMBERS_SCHEMA,
    "source_marks": SOURCE_MARKS_SCHEMA,
    "refreshes": REFRESHES_SCHEMA,
    "alert_events": ALERT_EVENTS_SCHEMA,
    "deliveries": DELIVERIES_SCHEMA,
}


def float_money(con: DuckDBBackend, existing: set[str]) -> list[tuple[str, str]]:
    """The money columns (table, column) still stored as DOUBLE/FLOAT (see money_to_decimal)."""
    money = {
        (spec.name, f.name)
        for spec in TABLES.values()
        if spec.name in existing
        for f in spec.fields
        if f.kind == "amount"
    }
    if not money:
        return []
    floats = con.raw_sql(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND data_type IN ('DOUBLE', 'FLOAT')"
    ).fetchall()
    return sorted(money & {(str(t), str(c)) for t, c in floats})


def money_to_decimal(con: DuckDBBackend, existing: set[str]) -> list[str]:
    """Workspaces made before money was exact store amounts as DOUBLE: convert those columns to MONEY, all of
    them in one transaction (a failure leaves every table as it was). Returns the columns converted
    (`table.column`); when there are none, one query of the catalogue is all it costs (every open runs it).

    DuckDB rounds each double to the nearest value with 4 places, which is the amount as it was read (a double
    holds 15 significant digits exactly)."""
    todo = float_money(con, existing)
    if not todo:
        return []
    target = f"DECIMAL({MONEY.precision},{MONEY.scale})"
    try:
        with engine.transaction(con):
            for table, column in todo:
                con.raw_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {target}')
    except duckdb.Error as exc:  # a stored value beyond the decimal's range (or NaN/infinity): nothing changed
        raise UserError(
            f"cannot convert the amounts of this workspace to exact decimals ({str(exc).splitlines()[0]}); "
            "the workspace is unchanged. Amounts must lie within ±99,999,999,999,999.9999: ingest the files "
            "again into a new workspace (tierwise init), which quarantines such values"
        ) from exc
    kept = getattr(con, "_tierwise_tables", None)
    if kept is not None:  # handles made before the change carry the old schema
        for table, _ in todo:
            kept.pop(table, None)
    return [f"{table}.{column}" for table, column in todo]


@dataclass
class Workspace:
    """A workspace opened (`open`, `init`); `with Workspace.open(root) as ws:` closes it at the end of the block."""

    root: Path
    config: Config
    con: DuckDBBackend = field(repr=False)

    @classmethod
    def open(cls, root: Path | str = ".", *, read_only: bool = False, wait_seconds: float | None = None) -> Workspace:
        """Open the workspace, waiting up to `wait_seconds` (default: `--wait`, else [workspace] wait_seconds)
        while another process holds its database (tierwise.access). `read_only`: a reader's connection, which
        DuckDB grants to many processes at once; a workspace whose tables need upgrading is opened read-write
        once, and a process that already has it open for writing keeps using that."""
        root = Path(root).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise UserError(
                f"{root}: not a tierwise workspace (no {CONFIG_FILE}); run 'tierwise init {root}' first "
                "or pass --workspace DIR"
            )
        config = load_config(root / CONFIG_FILE)
        wait = access.wait_for(config.workspace.wait_seconds) if wait_seconds is None else wait_seconds
        started = time.monotonic()
        ws = cls(
            root=root, config=config, con=engine.connect(config.engine, root, read_only=read_only, wait_seconds=wait)
        )
        try:
            if access.is_read_only(ws.con):
                if not ws.needs_upgrade():
                    return ws
                # Tables to add or convert: a reader cannot, so this open becomes a writer's, once.
                ws.close()
                left = max(wait - (time.monotonic() - started), 0.0)
                ws = cls(root=root, config=config, con=engine.connect(config.engine, root, wait_seconds=left))
            ws.ensure_tables()
        except BaseException:
            ws.close()
            raise
        return ws

    @classmethod
    def init(cls, root: Path | str) -> Workspace:
        root = Path(root).resolve()
        if root.exists() and not root.is_dir():
            raise UserError(f"{root}: exists and is not a folder; choose another path")
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            config_path.write_text(render_default_config(), encoding="utf-8")
        return cls.open(root)

    def _wanted(self) -> dict[str, ibis.Schema]:
        wanted: dict[str, ibis.Schema] = dict(SYSTEM_TABLES)
        for spec in TABLES.values():
            wanted[spec.name] = canonical_schema(spec)
            wanted[REPLACED_PREFIX + spec.name] = replaced_schema(spec)
        return wanted

    def _columns(self) -> dict[str, set[str]]:
        """One look at the catalogue (every open runs this): which columns each stored table has."""
        have: dict[str, set[str]] = {}
        for table, column in self.con.raw_sql(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall():
            have.setdefault(str(table), set()).add(str(column))
        return have

    def needs_upgrade(self) -> bool:
        """Whether ensure_tables would change anything (a table or column to add, money to convert): a
        read-only open cannot, so it opens read-write instead."""
        existing = set(self.con.list_tables())
        have = self._columns()
        for name, schema in self._wanted().items():
            if name not in existing or any(c not in have.get(name, set()) for c in schema.names):
                return True
        return bool(float_money(self.con, existing))

    def ensure_tables(self) -> None:
        existing = set(self.con.list_tables())
        have = self._columns()
        for name, schema in self._wanted().items():
            if name not in existing:
                self.con.create_table(name, schema=schema)
            else:
                self._add_missing_columns(name, schema, have.get(name, set()))
        money_to_decimal(self.con, existing)

    def _add_missing_columns(self, name: str, schema: ibis.Schema, have: set[str]) -> None:
        """Fields added by a newer version (product_id, the batches' identity counts …) join older workspaces
        as empty columns, or as BACKFILL says, so a workspace never needs rebuilding for them."""
        missing = [c for c in schema.names if c not in have]
        if not missing:
            return

        # DuckDB cannot alter a table and then update it in one transaction: each column is added on its own, and
        # the backfill (idempotent: only empty values) follows.
        for column in missing:
            sql_type = DuckDBType.to_string(schema[column])
            self.con.raw_sql(f'ALTER TABLE "{name}" ADD COLUMN "{column}" {sql_type}')
        for column, fill in BACKFILL.get(name, {}).items():
            self.con.raw_sql(f'UPDATE "{name}" SET "{column}" = {fill} WHERE "{column}" IS NULL')

    def table(self, name: str) -> ir.Table:
        if not (name.startswith(RUN_TABLE_PREFIXES) or name in SYSTEM_TABLES or name in TABLES):
            return self.con.table(name)
        # kept on the connection object itself: Ibis backends of one file compare equal, so no dict keyed by them
        kept: dict[str, ir.Table] | None = getattr(self.con, "_tierwise_tables", None)
        if kept is None:
            kept = {}
            self.con._tierwise_tables = kept
        found = kept.get(name)
        if found is None:
            found = kept[name] = self.con.table(name)
        return found

    def close(self) -> None:
        access.close_database(self.con)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
