"""What the dashboard reads again and again, kept in memory so a request costs a lookup, not a rebuild.

A stored run never changes: its row in `runs`, its settings, its snapshot and everything derived from them
(the overview's figures, the eight classes' dividing line, the compiled form of a query) can be kept. What can
change is the set of runs and learned models, so every read first asks the workspace for a cheap *version*
(how many runs and models there are, the newest) and drops what it kept when that moved.

Queries are still written in Ibis. A query that differs between requests only by one value (the customer id)
is compiled once with a placeholder, which each request replaces by the value as a quoted SQL literal — Ibis's
compilation takes longer than DuckDB needs to find one customer among millions.

One cache per workspace folder (`cache_for`), shared by the threads of a server; the service functions use
it, so the CLI and tests get the same answers through the same code.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import sqlglot

from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.store.runs import list_runs, run_config
from tierwise.workspace import Workspace

# A string no customer id is: compiled into a query as a literal, then replaced by the quoted value asked for.
PLACEHOLDER = "tierwise\x1fparameter\x1f1"
_QUOTED = "'" + PLACEHOLDER + "'"
MAX_VALUES = 256  # kept values (overviews, references …) per workspace, least recently used dropped first
# What ReadCache.value(..., wait=False) answers while another thread computes the value.
BUILDING = object()
MAX_STATEMENTS = 1024

_VERSION_SQL = (
    "SELECT (SELECT count(*) FROM runs), (SELECT max(created_at) FROM runs), (SELECT max(run_id) FROM runs), "
    "(SELECT count(*) FROM learned_models), (SELECT max(created_at) FROM learned_models)"
)


class ReadCache:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._version: tuple[Any, ...] | None = None
        self._runs: list[dict[str, Any]] = []
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._statements: OrderedDict[Hashable, str] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}

    # --- what is stored ---------------------------------------------------------------------------------------

    def runs(self, ws: Workspace) -> list[dict[str, Any]]:
        """Every run, oldest first (run.list_runs): the last one is the latest."""
        version = tuple(ws.con.con.execute(_VERSION_SQL).fetchone() or ())
        with self._lock:
            if version != self._version:
                self._runs = list_runs(ws)
                self._values.clear()
                self._version = version
            return self._runs

    def meta(
        self, ws: Workspace, run_id: str | None = None, runs: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The run's row of `runs` (without its settings), the latest run by default (show.latest_snapshot);
        `runs`: what self.runs gave earlier in the same request."""
        runs = self.runs(ws) if runs is None else runs
        if run_id:
            for r in runs:
                if r["run_id"] == run_id:
                    return r
            raise UserError(f"no run '{run_id}'; list them with 'tierwise runs'")
        if not runs:
            raise UserError("no run yet; run the main job first with 'tierwise run'")
        return runs[-1]

    def snapshot(
        self, ws: Workspace, run_id: str | None = None, runs: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], ir.Table]:
        meta = self.meta(ws, run_id, runs)
        return meta, ws.table(str(meta["snapshot_table"]))

    def config(self, ws: Workspace, run_id: str) -> Config:
        """The settings the run was made with."""
        return self.value(("config", run_id), lambda: run_config(ws, run_id))

    # --- kept values and prepared queries ---------------------------------------------------------------------

    def value(self, key: Hashable, compute: Callable[[], Any], wait: bool = True) -> Any:
        """compute(), kept under `key` until the runs change. Two threads asking for the same missing value
        compute it once: the second waits for the first — or, with `wait=False`, gets BUILDING at once."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            building = self._building.setdefault(key, threading.Lock())
        if not building.acquire(blocking=wait):
            return BUILDING
        try:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            found = compute()
            with self._lock:
                self._values[key] = found
                while len(self._values) > MAX_VALUES:
                    self._values.popitem(last=False)
                self._building.pop(key, None)
            return found
        finally:
            building.release()

    def forget(self, key: Hashable) -> None:
        """Drop one kept value (the next ask computes it again)."""
        with self._lock:
            self._values.pop(key, None)

    def statement(self, ws: Workspace, key: Hashable, build: Callable[[], ir.Expr]) -> str:
        """The SQL of build(), compiled once per `key` (which must name everything the query depends on)."""
        with self._lock:
            sql = self._statements.get(key)
            if sql is not None:
                self._statements.move_to_end(key)
                return sql
        sql = str(ws.con.compile(build()))
        with self._lock:
            self._statements[key] = sql
            while len(self._statements) > MAX_STATEMENTS:
                self._statements.popitem(last=False)
        return sql

    def rows(
        self, ws: Workspace, key: Hashable, build: Callable[[ir.Value], ir.Table], value: str
    ) -> list[dict[str, Any]]:
        """The rows of build(value), the query compiled once per `key` and run with the value inserted."""

        def prepared() -> ir.Expr:
            return build(ibis.literal(PLACEHOLDER))

        sql = self.statement(ws, ("rows", key), prepared)
        if _QUOTED not in sql:
            raise RuntimeError(f"query {key!r}: the placeholder did not survive compilation")
        # The value goes in as a quoted literal, not a bound parameter: DuckDB uses an index (a snapshot's on
        # customer_id) only for a constant, and a parameter makes it scan the whole table.
        literal = sqlglot.exp.Literal.string(value).sql(dialect="duckdb")
        return ws.con.con.execute(sql.replace(_QUOTED, literal)).to_arrow_table().to_pylist()

    def page(
        self,
        ws: Workspace,
        key: Hashable | None,
        build: Callable[[], ir.Table],
        *,
        order: Sequence[tuple[str, bool]],
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        """Rows `offset` to `offset + limit` of build() ordered by `order` ([(column, descending)], empty values
        last either way). build() is compiled once per `key`; the order is added around it, so every sort of one
        condition shares that compilation; with no key it is compiled every time."""
        sql = self.statement(ws, key, build) if key is not None else str(ws.con.compile(build()))
        keys = []
        for column, descending in order:
            name = sqlglot.exp.to_identifier(column, quoted=True).sql(dialect="duckdb")
            keys.append(f"{name} {'DESC' if descending else 'ASC'} NULLS LAST")
        # Plain column keys and a constant limit let DuckDB's top-N push its running bound into the scan, which
        # `x IS NULL, x` keys or a bound LIMIT parameter prevent.
        ordered = f"SELECT * FROM ({sql}) AS page ORDER BY {', '.join(keys)} LIMIT {int(limit)} OFFSET {int(offset)}"
        return ws.con.con.execute(ordered).to_arrow_table().to_pylist()


_caches: dict[Path, ReadCache] = {}
_caches_lock = threading.Lock()


def cache_for(ws: Workspace) -> ReadCache:
    """The cache of the workspace's folder."""
    with _caches_lock:
        found = _caches.get(ws.root)
        if found is None:
            found = _caches[ws.root] = ReadCache()
        return found
