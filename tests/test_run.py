"""The main job through the Python API: atomic runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tierwise.ingest.pipeline import ingest_file
from tierwise.run import list_runs, run
from tierwise.workspace import Workspace


def test_a_failed_run_leaves_the_previous_run_latest(ws: Workspace, tmp_path: Path, monkeypatch) -> None:
    from tierwise import run as run_module

    src = tmp_path / "o.csv"
    src.write_text("customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-02-03,20\nC1,2024-03-04,5\n")
    ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
    first = run(ws)
    assert first.as_of == dt.date(2024, 3, 5) and first.customers == 2
    tables_before = set(ws.con.list_tables())

    def fail(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(run_module, "_register", fail)
    with pytest.raises(RuntimeError):
        run(ws, dt.date(2024, 6, 1))
    assert [r["run_id"] for r in list_runs(ws)] == [first.run_id]
    assert set(ws.con.list_tables()) == tables_before  # the half-written snapshot is gone too
    snap = {r["customer_id"]: r for r in ws.table(first.snapshot_table).to_pyarrow().to_pylist()}
    assert (snap["C1"]["recency_days"], snap["C1"]["frequency"], snap["C1"]["monetary"]) == (1, 2, 15.0)


def test_run_without_orders_says_what_to_do(ws: Workspace) -> None:
    from tierwise.errors import UserError

    with pytest.raises(UserError, match="tierwise ingest orders"):
        run(ws)
