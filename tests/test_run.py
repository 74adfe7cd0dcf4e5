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


def test_show_summaries_add_up_and_speak_both_languages(ws_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    src = tmp_path / "o.csv"
    src.write_text(
        "customer_id,order_date,amount\nC1,2024-01-02,700\nC2,2024-02-03,200\nC1,2024-03-04,50\nC3,2024-03-01,50\n"
    )
    assert run_cli("ingest", "orders", src, "-w", ws_dir).code == 0
    assert run_cli("run", "-w", ws_dir).code == 0
    data = run_cli("show", "-w", ws_dir, "--json").json()
    for rows in data["summaries"].values():
        assert sum(r["customers"] for r in rows) == 3
        assert sum(r["revenue_share"] for r in rows) == pytest.approx(1.0)
    abc = {r["code"]: r for r in data["summaries"]["abc_class"]}
    # C1 750 of 1000 → 75% → A; C2 200 → 95% → B; C3 50 → 100% → C.
    assert {k: v["customers"] for k, v in abc.items()} == {"A": 1, "B": 1, "C": 1}
    assert abc["A"]["label"] == "关键客户"
    assert [r["customer_id"] for r in data["top_customers"]] == ["C1", "C2", "C3"]
    cfg = ws_dir / "tierwise.toml"
    cfg.write_text(cfg.read_text().replace('language = "zh"', 'language = "en"'))
    english = run_cli("show", "-w", ws_dir, "--json").json()
    assert {r["code"]: r["label"] for r in english["summaries"]["abc_class"]}["A"] == "Key"
    human = run_cli("show", "-w", ws_dir)
    assert human.code == 0 and "ABC classes" in human.stdout and "Key" in human.stdout
    missing = run_cli("show", "-w", ws_dir, "--run", "nope")
    assert missing.code == 2 and "no run 'nope'" in missing.stderr


def test_show_customer_explains_with_the_runs_thresholds(ws_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    src = tmp_path / "o.csv"
    src.write_text(
        "customer_id,order_date,amount\nC1,2024-01-02,700\nC2,2024-02-03,200\nC1,2024-03-04,50\nC3,2024-03-01,50\n"
    )
    run_cli("ingest", "orders", src, "-w", ws_dir)
    run_cli("run", "-w", ws_dir)
    cfg = ws_dir / "tierwise.toml"  # changed after the run: the explanation must use the run's settings
    cfg.write_text(cfg.read_text().replace("a_cutoff = 0.8", "a_cutoff = 0.5"))
    detail = run_cli("show", "customer", "C1", "-w", ws_dir, "--json").json()
    assert detail["customer"]["abc_class"] == "A"
    reasons = " | ".join(detail["reasons"])
    assert "cumulative share 75.0% vs cut-offs 80%/95%" in reasons
    assert "grid cell R5×F5" in reasons and "recency 1 vs" in reasons
    # C1: last purchase 2024-03-04, as of 2024-03-05; purchase days 2024-01-02 and 2024-03-04 → gap 62 days.
    assert "usual gap of 62.0 days" in reasons
    for args, message in (
        (["show", "customer"], "needs the customer id"),
        (["show", "customer", "ZZ"], "no customer 'ZZ'"),
        (["show", "everything"], "tierwise show customer ID"),
    ):
        r = run_cli(*args, "-w", ws_dir)
        assert r.code == 2 and message in r.stderr
