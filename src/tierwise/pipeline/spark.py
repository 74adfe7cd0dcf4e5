"""Spark (PySpark, local mode) as a second engine: a session for tests and laptops, and the canonical tables
copied into it from DuckDB or Arrow with their types intact.

Spark runs the same Ibis expressions as DuckDB (see docs/engines.md). PySpark is imported lazily: DuckDB users
never need Java.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from tierwise.money import MONEY
from tierwise.schema import TABLES

if TYPE_CHECKING:
    from ibis.backends.pyspark import Backend as SparkBackend
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

    from tierwise.config import SparkSettings

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "1g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Loopback only: local mode must work on machines without a resolvable host name or network.
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


# Spark's default log4j profile prints INFO lines while the JVM starts, before setLogLevel can act. The root
# stays at WARN, the level PySpark (a shell to Spark) expects, or Spark prints a banner saying it changed it;
# local_session lowers it to ERROR once the session is up.
_LOG4J2 = """\
rootLogger.level = warn
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""


def java_major_version() -> int | None:
    """The major version of the Java PySpark would start (JAVA_HOME first, then PATH); None if there is none."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    # `version "17.0.15"`, `version "1.8.0_392"` (Java 8 and older), `version "21"`
    match = re.search(r'version "(?:1\.)?(\d+)', out)
    return int(match.group(1)) if match else None


def local_session(app_name: str = "tierwise", *, cores: int = 2, conf: dict[str, str] | None = None) -> SparkSession:
    """A local Spark session (`local[cores]`) sized for tests and laptops, logging errors only.

    If a Spark session already runs in this process, Spark reuses it: settings fixed when the JVM starts
    (memory, logging) then stay as they were.
    """
    # lazy: PySpark (and the JVM behind it) is loaded only when Spark is used; DuckDB users never need Java.
    from pyspark.sql import SparkSession

    # Spark otherwise looks up the machine's host name, warns when it resolves to loopback and fails when
    # it does not resolve at all.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (pandas UDFs: CLV scoring) run this interpreter, which has tierwise and its libraries, not
    # whatever `python3` is first on PATH (PySpark reads the variable when the context starts).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    fd, log_config = tempfile.mkstemp(prefix="tierwise-log4j2-", suffix=".properties")
    with os.fdopen(fd, "w") as f:
        f.write(_LOG4J2)
    settings = {
        **LOCAL_CONF,
        # Spark's default of 200 shuffle partitions means 200 tiny tasks per shuffle on small data.
        "spark.sql.shuffle.partitions": str(cores),
        "spark.default.parallelism": str(cores),
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log_config}",
    }
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name)
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    finally:
        os.unlink(log_config)  # read once, when the JVM starts
    session.sparkContext.setLogLevel("ERROR")
    return session


def connect(session: SparkSession | None = None) -> SparkBackend:
    """An Ibis connection over `session` (a new local one by default)."""
    return ibis.pyspark.connect(session or local_session())


def cache_checkpoint(stage: str, t: ir.Table) -> ir.Table:
    """A `build_snapshot` checkpoint for Spark: keep the measures in memory. The classifications read them more
    than once, and Spark would otherwise recompute every join of the features each time."""
    return t.cache()


def _spark_type(dtype: dt.DataType) -> DataType:
    # lazy: PySpark (and the JVM behind it) is loaded only when Spark is used; DuckDB users never need Java.
    from ibis.backends.pyspark.datatypes import PySparkType
    from pyspark.sql import types as st

    # Ibis maps naive timestamps to Spark's TIMESTAMP (session-zone local time); TIMESTAMP_NTZ keeps the
    # wall-clock value whatever the session time zone, like DuckDB's TIMESTAMP.
    if dtype.is_timestamp() and dtype.timezone is None:
        return st.TimestampNTZType()
    if dtype.is_map():
        return st.MapType(_spark_type(dtype.key_type), _spark_type(dtype.value_type), dtype.value_type.nullable)
    if dtype.is_array():
        return st.ArrayType(_spark_type(dtype.value_type), dtype.value_type.nullable)
    return PySparkType.from_ibis(dtype)


def spark_schema(schema: ibis.Schema) -> StructType:
    # lazy: PySpark (and the JVM behind it) is loaded only when Spark is used; DuckDB users never need Java.
    from pyspark.sql import types as st

    return st.StructType([st.StructField(name, _spark_type(dtype), True) for name, dtype in schema.items()])


def copy_table(con: SparkBackend, name: str, data: ir.Table | pa.Table) -> ir.Table:
    """Copy a table (an Ibis table on another engine, or Arrow) into a Spark temporary view called `name`."""
    if isinstance(data, pa.Table):
        arrow, schema = data, ibis.Schema.from_pyarrow(data.schema)
    else:
        arrow, schema = data.to_pyarrow(), data.schema()
    session: SparkSession = con._session
    frame = session.createDataFrame(arrow, schema=spark_schema(schema))
    frame.createOrReplaceTempView(name)
    return con.table(name)


def copy_tables(con: SparkBackend, tables: dict[str, ir.Table]) -> dict[str, ir.Table]:
    """`canonical_tables(ws)` (or any tables) as Spark tables with the same names, columns and types."""
    return {name: copy_table(con, name, t) for name, t in tables.items()}


# --- `tierwise run` on Spark ([engine] kind = "spark" or `run --engine spark`; docs/spark.md) ---------------------


def session_for(settings: SparkSettings) -> SparkSession:
    """The session `[engine.spark]` describes: local mode sized by local_session, or a cluster's master URL.

    Under spark-submit (or when the caller made a session first) Spark hands back the running session, whose
    master and JVM settings win over these."""
    match = re.fullmatch(r"local(?:\[(\*|\d+)\])?", settings.master.strip())
    if match:
        cores = match.group(1) or "1"
        count = (os.cpu_count() or 1) if cores == "*" else int(cores)
        return local_session(cores=count, conf=settings.conf)
    # lazy: PySpark (and the JVM behind it) is loaded only when Spark is used; DuckDB users never need Java.
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("tierwise")
    if settings.master.strip():  # empty: the master spark-submit or spark-defaults.conf gives
        builder = builder.master(settings.master.strip())
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def resolve(root: Path, location: str) -> str:
    """A configured path relative to the workspace, or an absolute path or URI (hdfs://, s3a:// …) as it is."""
    if "://" in location or Path(location).is_absolute():
        return location
    return str(root / location)


def run_tables(
    con: SparkBackend, duck_tables: dict[str, ir.Table], settings: SparkSettings, root: Path
) -> dict[str, ir.Table]:
    """The canonical tables on Spark: those named in [engine.spark] tables read where they are (Parquet or the
    catalog), the others exported from the workspace to Parquet (`spark/input/`) and read from there."""
    out = {}
    for name, table in duck_tables.items():
        where = settings.tables.get(name)
        if where is None:
            folder = root / "spark" / "input"
            folder.mkdir(parents=True, exist_ok=True)
            where = str(folder / f"{name}.parquet")
            table.to_parquet(where)
        if "/" in where or where.endswith(".parquet"):
            read = con.read_parquet(resolve(root, where), table_name=f"tierwise_{name}")
        else:
            database, _, table_name = where.rpartition(".")
            read = con.table(table_name, database=database or None)
        out[name] = _exact_money(name, read)
    return out


def _exact_money(name: str, t: ir.Table) -> ir.Table:
    """Money columns as the workspace stores them (decimal(18,4)): a table named in [engine.spark] tables may
    hold doubles or other decimals, and the sums must be exact, and the same as DuckDB's, either way."""
    spec = TABLES.get(name)
    if spec is None:
        return t
    money = [f.name for f in spec.fields if f.kind == "amount" and f.name in t.columns and t[f.name].type() != MONEY]
    return t.mutate(**{c: t[c].cast(MONEY) for c in money}) if money else t


def drop_view(con: SparkBackend, name: str) -> None:
    con._session.catalog.dropTempView(name)


def remove_output(con: SparkBackend, location: str) -> None:
    """Delete a folder Spark wrote, on whichever file system Spark wrote it (local, HDFS, S3 …)."""
    session: SparkSession = con._session
    jvm: Any = session._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(session._jsc.hadoopConfiguration()).delete(path, True)


def register_udfs(con: SparkBackend, expr: ir.Expr) -> None:
    """Make the expression's Python UDFs known to the session. Ibis registers them only when it runs an
    expression itself, not when a cached expression that contains one (the measures) is computed."""
    con._register_udfs(expr)
