"""The main job through the Python API: atomic runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tierwise.ingest.pipeline import ingest_file
from tierwise.pipeline.execute import run
from tierwise.store.runs import list_runs
from tierwise.workspace import Workspace


def _temporary_tables(ws: Workspace) -> list[str]:
    return [n for (n,) in ws.con.raw_sql("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()]


def test_a_failed_run_leaves_the_previous_run_latest(ws: Workspace, tmp_path: Path, monkeypatch) -> None:
    from tierwise.pipeline import execute as run_module

    src = tmp_path / "o.csv"
    src.write_text("customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-02-03,20\nC1,2024-03-04,5\n")
    ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
    first = run(ws)
    assert first.as_of == dt.date(2024, 3, 5) and first.customers == 2
    tables_before = set(ws.con.list_tables())
    assert _temporary_tables(ws) == []  # the run's scratch is gone

    def fail(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(run_module, "register", fail)
    with pytest.raises(RuntimeError):
        run(ws, dt.date(2024, 6, 1))
    assert [r["run_id"] for r in list_runs(ws)] == [first.run_id]
    assert set(ws.con.list_tables()) == tables_before  # the half-written snapshot is gone too
    assert _temporary_tables(ws) == []
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


@pytest.fixture(scope="module")
def generated_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with 800 generated B2B customers (orders, payments, interactions) and one run."""
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("gen")
    data, ws_dir = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "800", "--seed", "5").code == 0
    assert run_cli("init", ws_dir).code == 0
    for table in ("customers", "orders", "payments", "interactions"):
        assert run_cli("ingest", table, data / f"{table}.csv", "-w", ws_dir).code == 0
    assert run_cli("run", "-w", ws_dir).code == 0
    return ws_dir


def test_run_clusters_every_buyer_and_keeps_the_profiles(generated_ws: Path) -> None:
    import json

    from tierwise.store.runs import latest_snapshot

    ws = Workspace.open(generated_ws)
    try:
        meta, snap = latest_snapshot(ws)
        df = snap.select("customer_id", "purchases", "monetary", "cluster", "cluster_name").to_pandas()
    finally:
        ws.close()
    clusters = json.loads(meta["models"])["clusters"]
    buyers = df["purchases"].fillna(0) > 0
    # Every buyer is in a cluster, no prospect is (include_prospects = false by default).
    assert df.loc[buyers, "cluster"].notna().all() and df.loc[~buyers, "cluster"].isna().all()
    assert clusters["k"] == df["cluster"].nunique() and 2 <= clusters["k"] <= 8
    assert clusters["clustered"] == int(buyers.sum())
    # The stored profiles agree with the snapshot, counted again here; cluster 1 brings the most revenue.
    sizes = df.groupby("cluster").size().to_dict()
    revenue = df.groupby("cluster")["monetary"].sum()
    for p in clusters["profiles"]:
        assert p["size"] == sizes[p["cluster"]]
        assert p["revenue_share"] == pytest.approx(revenue[p["cluster"]] / df.loc[buyers, "monetary"].sum())
        names = set(df.loc[df["cluster"] == p["cluster"], "cluster_name"])
        assert names == {p["name_zh"]}  # the workspace speaks Chinese
    assert revenue.idxmax() == 1
    assert len(clusters["projection"]["x"]) == len(clusters["projection"]["cluster"]) > 0


def test_show_customer_names_the_cluster_and_a_run_without_clustering_has_none(
    generated_ws: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from tests.conftest import run_cli

    detail = run_cli("show", "customer", "C0000001", "-w", generated_ws, "--json").json()
    if detail["customer"]["cluster"] is not None:
        assert any(r.startswith(f"cluster {detail['customer']['cluster']} of ") for r in detail["reasons"])
    summary = run_cli("show", "-w", generated_ws, "--json").json()["summaries"]["cluster_name"]
    assert sum(r["customers"] for r in summary) == 800

    copy = tmp_path / "ws"
    shutil.copytree(generated_ws, copy)
    cfg = copy / "tierwise.toml"
    text = cfg.read_text()
    block = "[cluster]\n# Cluster customers in every run / 每次运行时进行聚类\nenabled = true"
    assert block in text
    cfg.write_text(text.replace(block, block.replace("true", "false")))
    assert run_cli("run", "-w", copy).code == 0
    ws = Workspace.open(copy)
    try:
        from tierwise.store.runs import latest_snapshot

        meta, snap = latest_snapshot(ws)
    finally:
        ws.close()
    assert "cluster" not in snap.columns and json.loads(meta["models"])["clusters"] is None


def test_the_snapshot_is_stored_in_priority_order(ws: Workspace, tmp_path: Path) -> None:
    """Lists read the first rows of a snapshot (docs/web.md, "Speed"): its rows are stored by priority_rank, then
    customer_id — checked in storage order (rowid), on more rows than one DuckDB vector."""
    import random

    rng = random.Random(3)
    lines = ["customer_id,order_date,amount"]
    for i in range(5000):
        for _ in range(rng.randint(1, 3)):
            day = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 500))
            lines.append(f"K{rng.randint(0, 3000):05d}-{i % 7},{day},{rng.choice([10, 20, 20, 35.5, 100])}")
    src = tmp_path / "o.csv"
    src.write_text("\n".join(lines) + "\n")
    ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
    report = run(ws)
    stored = ws.con.con.execute(
        f'SELECT priority_rank, customer_id FROM "{report.snapshot_table}" ORDER BY rowid'
    ).fetchall()
    assert len(stored) == report.customers > 2048
    assert stored == sorted(stored)
