"""DuckDB/Spark parity: the whole main job on a generated data set gives the same snapshot on both engines.

PySpark's local mode needs Java 17+. Without it these tests are skipped, unless TIERWISE_REQUIRE_SPARK=1 (set
by .ci/run, which installs Java), so CI cannot pass by skipping them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt_
import pyarrow as pa
import pytest

from tierwise.config import Config
from tierwise.generate import generate
from tierwise.ingest.pipeline import ingest_file
from tierwise.money import MONEY
from tierwise.pipeline import spark
from tierwise.pipeline.snapshot import build_snapshot
from tierwise.store.runs import canonical_tables
from tierwise.workspace import Workspace

pytestmark = [
    pytest.mark.slow,
    # PySpark 4.0's pandas conversions pass an argument pandas 3 deprecates; nothing tierwise can change.
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def _why_no_spark() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "PySpark is not installed (the spark extra)"
    if (spark.java_major_version() or 0) < 17:
        return "Java 17 or later not found (.ci/run installs it)"
    return None


if (reason := _why_no_spark()) is not None:
    if os.environ.get("TIERWISE_REQUIRE_SPARK") == "1":
        pytest.fail(f"TIERWISE_REQUIRE_SPARK=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

AS_OF = dt.date(2024, 10, 1)  # inside the generated history (2023–2024): later orders must be left out
REL_TOL = 1e-9
ABS_TOL = 1e-9  # sums that cancel out: 0.0 on one engine may be 1e-12 on the other

RULES = [
    {"name": "big", "expression": "monetary > 100000"},
    {"name": "east", "expression": "province IN ('江苏', '浙江', '上海') AND lower(owner) LIKE '%a%'"},
    {"name": "recent", "expression": "last_order_date >= DATE '2024-07-01' OR frequency >= 10"},
]
# The other branch of every setting that picks one, and rules so that `tags` is not all NULL.
ALTERNATIVES: dict[str, Any] = {
    "features": {"frequency_by": "orders"},
    "rfm": {"class8_basis": "median", "monetary": "average"},
    "abc": {"by": "profit"},
    "value": {"by": "profit"},
    "grade": {"normalise": "minmax", "method": "cutoffs"},
    "rules": RULES,
}


@pytest.fixture(scope="module")
def spark_con() -> Iterator[spark.SparkBackend]:
    con = spark.connect(spark.local_session("tierwise-tests"))
    yield con
    con.disconnect()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("parity")
    data = root / "data"
    generate(data, customers=300, seed=11, profile="b2b", fmt="parquet")
    ws = Workspace.init(root / "ws")
    for table in ("customers", "orders", "payments", "interactions"):
        ingest_file(ws, table, data / f"{table}.parquet", today=dt.date(2025, 1, 1))
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def spark_tables(spark_con: spark.SparkBackend, workspace: Workspace) -> dict[str, ibis.Table]:
    return spark.copy_tables(spark_con, canonical_tables(workspace))


def _types(schema: ibis.Schema) -> dict[str, dt_.DataType]:
    # Spark timestamps declare no precision; DuckDB's say microseconds, which is what Spark's are too.
    return {n: dt_.Timestamp(timezone=t.timezone) if t.is_timestamp() else t for n, t in schema.items()}


def _differences(name: str, ids: list[Any], left: pa.ChunkedArray, right: pa.ChunkedArray) -> list[str]:
    floating = pa.types.is_floating(left.type)
    out = []
    for key, a, b in zip(ids, left.to_pylist(), right.to_pylist(), strict=True):
        if floating and a is not None and b is not None:
            same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        else:
            same = a == b and type(a) is type(b)
        if not same:
            out.append(f"{name} of {key}: duckdb {a!r}, spark {b!r}")
    return out


def assert_same_snapshot(duck: pa.Table, other: pa.Table, key: str = "customer_id") -> None:
    """Same columns and types, same rows, same values: floats within REL_TOL/ABS_TOL, everything else exact."""
    assert other.schema.names == duck.schema.names
    types = [(f.name, f.type, g.type) for f, g in zip(duck.schema, other.schema, strict=True) if f.type != g.type]
    assert not types, f"types differ (column, duckdb, other): {types}"
    duck, other = duck.sort_by(key), other.sort_by(key)
    ids = duck[key].to_pylist()
    assert other[key].to_pylist() == ids
    problems = [p for name in duck.column_names for p in _differences(name, ids, duck[name], other[name])]
    assert not problems, f"{len(problems)} values differ, e.g.:\n" + "\n".join(problems[:20])


def test_the_comparison_sees_real_differences() -> None:
    base = pa.table({"customer_id": ["C1", "C2"], "x": [0.1 + 0.2, 0.0], "d": [dt.date(2024, 1, 1), None]})
    assert_same_snapshot(base, pa.table({"customer_id": ["C2", "C1"], "x": [1e-13, 0.3], "d": base["d"][::-1]}))
    for changed in ({"x": [0.3000001, 0.0]}, {"x": [0.3, None]}, {"d": [dt.date(2024, 1, 2), None]}):
        with pytest.raises(AssertionError):
            assert_same_snapshot(base, base.drop_columns(list(changed)).append_column(*_column(base, changed)))


def _column(t: pa.Table, changed: dict[str, list[Any]]) -> tuple[str, pa.Array]:
    ((name, values),) = changed.items()
    return name, pa.array(values, t.schema.field(name).type)


def test_copied_tables_keep_their_types(
    spark_con: spark.SparkBackend, workspace: Workspace, spark_tables: dict[str, ibis.Table]
) -> None:
    for name, t in canonical_tables(workspace).items():
        assert _types(spark_tables[name].schema()) == _types(t.schema()), name
        assert spark_tables[name].count().execute() == t.count().execute(), name
        if name == "orders":
            first = t.order_by("source_line").limit(3).to_pyarrow().to_pylist()
            assert spark_tables[name].order_by("source_line").limit(3).to_pyarrow().to_pylist() == first

    data = pa.table(
        {
            "customer_id": ["C1", "C2"],
            "attributes": pa.array([[("region", "华东"), ("vip", None)], None], pa.map_(pa.string(), pa.string())),
            "signup_date": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
            "seen_at": pa.array([dt.datetime(2024, 3, 31, 23, 30), None], pa.timestamp("us")),
        }
    )
    copied = spark.copy_table(spark_con, "types_check", data)
    # Ibis brings PySpark results back through pandas, which cannot hold maps: look inside them in Spark.
    back = copied.mutate(region=copied.attributes["region"], keys=copied.attributes.keys().sort()).drop("attributes")
    assert back.order_by("customer_id").to_pyarrow().to_pylist() == [
        {"customer_id": "C1", "signup_date": dt.date(2024, 2, 29), "seen_at": dt.datetime(2024, 3, 31, 23, 30)}
        | {"region": "华东", "keys": ["region", "vip"]},
        {"customer_id": "C2", "signup_date": None, "seen_at": None, "region": None, "keys": None},
    ]


# Money figures of the snapshot: exact decimal sums made floats once (tierwise.money), so they are not merely
# close on both engines but equal.
MONEY_COLUMNS = ("monetary", "profit", "overdue_amount", "open_amount", "credit_limit")


def test_money_is_stored_and_added_up_exactly_on_both_engines(
    workspace: Workspace, spark_tables: dict[str, ibis.Table]
) -> None:
    """Decimal money on Spark: the same type, and every sum (overall and per customer) the same exact decimal."""
    duck_tables = canonical_tables(workspace)
    for name, column in (
        ("orders", "amount"),
        ("orders", "cost"),
        ("payments", "amount"),
        ("customers", "credit_limit"),
    ):
        duck, other = duck_tables[name], spark_tables[name]
        assert duck.schema()[column] == other.schema()[column] == MONEY, (name, column)
        totals = [t.aggregate(total=t[column].sum()).to_pyarrow().to_pylist()[0]["total"] for t in (duck, other)]
        assert isinstance(totals[0], Decimal) and totals[0] != 0 and totals[0] == totals[1], (name, column, totals)
        per = [
            {
                r["customer_id"]: r["total"]
                for r in t.group_by("customer_id").aggregate(total=t[column].sum()).to_pyarrow().to_pylist()
            }
            for t in (duck, other)
        ]
        assert per[0] == per[1], (name, column)
        # and the stored values are those of the source: whole cents (the generator writes cents)
        assert all(v is None or v == v.quantize(Decimal("0.01")) for v in per[0].values()), (name, column)


def test_spark_reads_money_as_decimals_from_tables_named_in_the_settings(
    spark_con: spark.SparkBackend, workspace: Workspace, tmp_path: Path
) -> None:
    """A Parquet file named in [engine.spark] tables may hold amounts as doubles: Spark reads them as MONEY,
    so its sums are exact and equal to DuckDB's over the same values."""
    import pyarrow.parquet as pq

    from tierwise.config import SparkSettings

    orders = canonical_tables(workspace)["orders"]
    arrow = orders.to_pyarrow()
    doubles = arrow.set_column(arrow.schema.get_field_index("amount"), "amount", arrow["amount"].cast(pa.float64()))
    path = tmp_path / "orders_double.parquet"
    pq.write_table(doubles, path)
    read = spark.run_tables(spark_con, {"orders": orders}, SparkSettings(tables={"orders": str(path)}), tmp_path)
    on_spark = read["orders"]
    assert on_spark.schema()["amount"] == MONEY
    spark_total = on_spark.aggregate(t=on_spark.amount.sum()).to_pyarrow().to_pylist()[0]["t"]
    assert spark_total == orders.amount.sum().execute()


@pytest.mark.parametrize("settings", [{}, ALTERNATIVES], ids=["defaults", "alternatives"])
def test_snapshot_is_the_same_on_duckdb_and_spark(
    workspace: Workspace, spark_tables: dict[str, ibis.Table], settings: dict[str, Any]
) -> None:
    base = workspace.config.model_dump()
    cfg = Config.model_validate(
        {**base, **{k: v if isinstance(v, list) else {**base[k], **v} for k, v in settings.items()}}
    )
    duck = build_snapshot(canonical_tables(workspace), cfg, AS_OF).to_pyarrow()
    on_spark = build_snapshot(spark_tables, cfg, AS_OF, spark.cache_checkpoint).to_pyarrow()
    assert duck.num_rows == 300
    assert_same_snapshot(duck, on_spark)
    for column in MONEY_COLUMNS:
        assert duck[column].type == pa.float64(), column
        assert duck.sort_by("customer_id")[column] == on_spark.sort_by("customer_id")[column], column


def test_a_whole_run_on_spark_is_stored_like_one_on_duckdb(spark_con: spark.SparkBackend, workspace: Workspace) -> None:
    """`tierwise run --engine spark`: the whole job (CLV models, clusters, composite grade, playbook) computed on
    Spark from Parquet, written as Parquet in its run's partition and stored in the workspace like a DuckDB run."""
    import pyarrow.compute as pc

    from tierwise.pipeline.execute import run

    assert workspace.config.cluster.enabled  # clusters are part of the default run
    duck = run(workspace, AS_OF)
    on_spark = run(workspace, AS_OF, engine="spark")
    assert (duck.engine, on_spark.engine) == ("duckdb", "spark")
    assert on_spark.customers == duck.customers == 300
    a = workspace.table(duck.snapshot_table).drop("run_id").to_pyarrow()
    b = workspace.table(on_spark.snapshot_table).drop("run_id").to_pyarrow()
    assert_same_snapshot(a, b)
    # what the comparison covers is really there: several clusters, predicted CLV, every grade
    assert len(set(a["cluster"].to_pylist())) >= 2
    assert pc.count(a["clv_predicted"]).as_py() > 0 and pc.count(a["p_alive"]).as_py() > 0
    assert {"A", "B", "C", "D"} <= set(a["grade"].to_pylist())
    # the CLV models were fitted to the same parameters from the engine's summaries
    assert duck.model_params and duck.model_params.keys() == on_spark.model_params.keys()
    for model, params in duck.model_params.items():
        for name, value in params.items():
            assert math.isclose(on_spark.model_params[model][name], value, rel_tol=REL_TOL), (model, name)
    # the Parquet output, read back as a partitioned data set, holds this run
    written = spark_con.read_parquet(str(workspace.root / "spark" / "snapshots"))
    counts = written.group_by("run_id").aggregate(n=written.count()).to_pyarrow().to_pylist()
    assert counts == [{"run_id": on_spark.run_id, "n": 300}]


def test_the_command_line_runs_on_spark_from_the_settings(tmp_path: Path) -> None:
    """A user's path: [engine] kind = "spark" with the snapshot written where [engine.spark] output says; the
    run is listed and shown like any other. A wrong engine name is one clear line."""
    from tests.conftest import run_cli

    data, ws_dir = tmp_path / "data", tmp_path / "ws"
    generate(data, customers=120, seed=5, profile="b2c", fmt="parquet")
    assert run_cli("init", ws_dir).code == 0
    config = ws_dir / "tierwise.toml"
    text = config.read_text().replace('kind = "duckdb"', 'kind = "spark"')
    config.write_text(text.replace('output = "spark/snapshots"', f'output = "{tmp_path / "lake"}"'))
    for table in ("customers", "orders"):
        assert run_cli("ingest", table, data / f"{table}.parquet", "-w", ws_dir).code == 0
    result = run_cli("run", "-w", ws_dir, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["engine"] == "spark" and report["customers"] == 120  # type: ignore[index]
    assert list((tmp_path / "lake").glob(f"run_id={report['run_id']}/*.parquet"))  # type: ignore[index]
    shown = run_cli("show", "-w", ws_dir, "--json")
    assert shown.code == 0 and shown.json()["run_id"] == report["run_id"]  # type: ignore[index]
    wrong = run_cli("run", "-w", ws_dir, "--engine", "sparc")
    assert wrong.code == 2 and "engine 'sparc': use duckdb or spark" in wrong.stderr


def _scratch_left(spark_con: spark.SparkBackend, workspace: Workspace) -> list[str]:
    temporary = workspace.con.raw_sql("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    views = [t.name for t in spark_con._session.catalog.listTables() if t.isTemporary]
    return [n for (n,) in temporary if n.startswith("_tierwise_")] + [
        n for n in views if n.startswith(("_tierwise_", "tierwise_previous_"))
    ]


@pytest.mark.parametrize("uri", [False, True], ids=["local-path", "file-uri"])
def test_a_failed_run_on_spark_leaves_no_output_and_no_scratch(
    spark_con: spark.SparkBackend,
    workspace: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    uri: bool,
) -> None:
    """A Spark run that fails after writing its Parquet (here: storing its `runs` row fails) removes its
    partition, its temporary tables and views; the earlier run and its partition stay. A URI output (file://,
    the way to a cluster's file system) reads the rows back through Spark into a temporary table, dropped too.
    With [stability] the earlier snapshots are copied to Spark as views, which are dropped as well."""
    import tierwise.pipeline.execute as run_module
    from tierwise.pipeline.execute import run
    from tierwise.store.runs import list_runs

    lake = tmp_path / "lake"
    monkeypatch.setattr(workspace.config.engine.spark, "output", f"file://{lake}" if uri else str(lake))
    monkeypatch.setattr(workspace.config.stability, "enabled", True)
    before = _scratch_left(spark_con, workspace)  # other tests' build_snapshot calls leave theirs
    stored = run(workspace, AS_OF, engine="spark")
    runs = list_runs(workspace)
    assert [p.name for p in lake.iterdir()] == [f"run_id={stored.run_id}"]
    assert _scratch_left(spark_con, workspace) == before

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(run_module, "register", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run(workspace, AS_OF, engine="spark")
    assert [p.name for p in lake.iterdir()] == [f"run_id={stored.run_id}"]
    assert list_runs(workspace) == runs
    assert _scratch_left(spark_con, workspace) == before
    snapshots = sorted(t for t in workspace.con.list_tables() if t.startswith("snapshot_"))
    assert snapshots == sorted(str(r["snapshot_table"]) for r in runs)
