"""The Python API (tierwise.Workspace): the tour in docs/python.md runs as written, and what it prints agrees with
the data files and with the command line on the same workspace."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.conftest import run_cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def _tour() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/python.md has no python example"
    return "\n".join(blocks)


def _csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def test_the_documented_tour_runs_and_agrees_with_the_cli(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _tour()], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    data, ws = tmp_path / "data", tmp_path / "shop"

    loaded = dict(re.findall(r"^(customers|orders|payments) (\d+)$", out, re.M))
    assert int(loaded["customers"]) == _csv_rows(data / "customers.csv") == 400
    # generated data without --messy has no duplicates or bad rows: every line is stored
    assert int(loaded["orders"]) == _csv_rows(data / "orders.csv")
    assert int(loaded["payments"]) == _csv_rows(data / "payments.csv")

    runs = json.loads(run_cli("runs", "-w", ws, "--json").stdout)
    assert re.search(r"^runs: \['2024-07-01', '(\d{4}-\d\d-\d\d)'\]$", out, re.M)
    assert [str(r["as_of"]) for r in runs] == re.findall(r"'(\d{4}-\d\d-\d\d)'", out.split("runs:")[1].splitlines()[0])
    assert f"customers: {runs[-1]['customers']}" in out

    # the grade table the notebook printed is the latest run's, as the CLI exports it
    export = tmp_path / "latest.parquet"
    assert run_cli("export", export, "-w", ws, "--columns", "customer_id,grade").code == 0
    grades = Counter(pq.read_table(export).column("grade").to_pylist())
    printed = dict(re.findall(r"^\s+([ABCD])\s+(\d+)$", out, re.M))
    assert {g: int(n) for g, n in printed.items()} == {g: n for g, n in grades.items() if g is not None}

    # the comparison the notebook printed is the CLI's for the same two runs
    cmp = json.loads(run_cli("compare", "-w", ws, runs[0]["run_id"], runs[1]["run_id"], "--json").stdout)
    assert f"upgraded: {cmp['totals']['upgrade']} downgraded: {cmp['totals']['downgrade']}" in out

    report = tmp_path / "shop-report.html"
    assert report.stat().st_size > 10_000 and "<html" in report.read_text(encoding="utf-8")[:500].lower()


def test_the_workspace_closes_at_the_end_of_the_block(tmp_path: Path) -> None:
    import tierwise

    with tierwise.Workspace.init(tmp_path / "ws") as ws:
        assert ws.runs() == []
        with pytest.raises(tierwise.errors.UserError, match="no run yet"):
            ws.snapshot()
    # closed: another process may now write the workspace without waiting
    assert run_cli("status", "-w", tmp_path / "ws", "--wait", "0").code == 0
