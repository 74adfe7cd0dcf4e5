"""The dashboard's read cache (tierwise.web.cache) and what makes a customer's page a few index lookups: the
cached answers must equal the uncached computations, a new run must be seen at once, and a value bound into a
prepared query must find exactly the rows it names, whatever characters it holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIRST_AS_OF = dt.date(2024, 7, 1)


@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 generated customers, customers and orders loaded, one run as of 2024-07-01."""
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("cache")
    data, ws_dir = root / "data", root / "ws"
    generate(data, customers=300, seed=5)
    ws = Workspace.init(ws_dir)
    try:
        for table in ("customers", "orders"):
            ingest_file(ws, table, data / f"{table}.csv")
        run(ws, FIRST_AS_OF)
    finally:
        ws.close()
    return ws_dir


@pytest.fixture(scope="module")
def ws(ws_dir: Path) -> Any:
    from tierwise.workspace import Workspace

    w = Workspace.open(ws_dir)
    yield w
    w.close()


def _indexed(ws: Any) -> set[str]:
    return {r[0] for r in ws.con.con.execute("SELECT table_name FROM duckdb_indexes()").fetchall()}


def test_a_run_indexes_its_snapshot_and_the_server_indexes_customers(ws: Any) -> None:
    from tierwise.store.runs import list_runs
    from tierwise.web.services.customers import index_lookups

    snapshot = str(list_runs(ws)[-1]["snapshot_table"])
    assert snapshot in _indexed(ws) and "customers" not in _indexed(ws)
    index_lookups(ws)
    index_lookups(ws)  # a second time changes nothing
    assert {snapshot, "customers"} <= _indexed(ws)


def test_customer_detail_equals_the_uncached_computations(ws: Any) -> None:
    from tierwise.history.trends import timeline
    from tierwise.store.runs import list_runs
    from tierwise.strategy.cross_sell import cross_sell
    from tierwise.web.services.customers import customer_detail

    meta = list_runs(ws)[-1]
    snap = ws.table(str(meta["snapshot_table"]))
    frame = snap.to_pandas().set_index("customer_id")
    buyers = frame[frame.recency_days.notna()]
    ids = list(frame.sort_values("priority_rank").index[:3]) + list(buyers.index[-2:])
    for cid in ids:
        d = customer_detail(ws, cid, language="en")
        expected = frame.loc[cid]
        assert d["scores"]["monetary"] == pytest.approx(expected.monetary)
        assert d["scores"]["grade"] == expected.grade and d["scores"]["priority_rank"] == expected.priority_rank
        # the eight classes' dividing line is the buyers' mean by default, kept once per run
        mean_r = buyers.recency_days.mean()
        assert any(f"vs {mean_r:.1f} days" in r for r in d["reasons"])
        assert d["timeline"] == timeline(ws, cid, "en")
        direct = cross_sell(
            snap, ws.table("orders"), 3, "rfm_segment" if "cluster" not in frame else None,
            as_of=FIRST_AS_OF, targets=snap.filter(snap.customer_id == cid).select("customer_id"),
        ).order_by("rank").to_pandas()  # fmt: skip
        assert [s["category"] for s in d["cross_sell"]] == list(direct.category)
        assert [s["support"] for s in d["cross_sell"]] == pytest.approx(list(direct.support))
        profile = ws.table("customers").filter(ws.table("customers").customer_id == cid).to_pandas().iloc[0]
        assert d["profile"]["name"] == profile["name"]


def test_a_page_does_not_wait_while_the_runs_cross_sell_is_made(ws: Any) -> None:
    """While one thread makes a run's cross-sell table (the server, after a run), a customer's page answers at
    once with a note and no suggestions; once made, the suggestions are there."""
    import threading

    from tierwise.store.runs import list_runs
    from tierwise.web.cache import BUILDING, cache_for
    from tierwise.web.services.customers import customer_detail

    meta = list_runs(ws)[-1]
    s = ws.config.strategy
    key = ("cross_sell", str(meta["run_id"]), (s.cross_sell_top, s.cross_sell_by, s.cross_sell_min_support))
    cache = cache_for(ws)
    cache.forget(key)
    started, release = threading.Event(), threading.Event()
    real = "cross_sell_being_made"

    def slow() -> str:
        started.set()
        release.wait(30)
        return real

    builder = threading.Thread(target=cache.value, args=(key, slow))
    builder.start()
    assert started.wait(30)
    try:
        assert cache.value(key, slow, wait=False) is BUILDING
        cid = str(ws.table(str(meta["snapshot_table"])).order_by("priority_rank").limit(1).to_pandas().customer_id[0])
        d = customer_detail(ws, cid, language="en")
        assert d["cross_sell"] == []
        assert any("being prepared" in n for n in d["notes"])
    finally:
        release.set()
        builder.join(30)
    assert cache.value(key, slow, wait=False) == real
    cache.forget(key)  # the stand-in name must not reach later tests


def test_stored_cross_sell_is_the_whole_runs_suggestions(ws: Any) -> None:
    from tierwise.store.runs import list_runs
    from tierwise.strategy.cross_sell import cross_sell, similarity_column, stored_cross_sell

    meta = list_runs(ws)[-1]
    snap = ws.table(str(meta["snapshot_table"]))
    name = stored_cross_sell(ws, meta, 2, None, 0.1)
    assert stored_cross_sell(ws, meta, 2, None, 0.1) == name  # made once
    assert stored_cross_sell(ws, meta, 3, None, 0.1) != name  # other settings, another table
    stored = ws.table(name).to_pandas().sort_values(["customer_id", "rank"]).reset_index(drop=True)
    by = similarity_column(snap)
    direct = cross_sell(snap, ws.table("orders"), 2, by, min_support=0.1, as_of=FIRST_AS_OF).to_pandas()
    direct = direct.sort_values(["customer_id", "rank"]).reset_index(drop=True)
    assert set(stored.similar_by) == {by}
    pd.testing.assert_frame_equal(stored.drop(columns="similar_by"), direct, check_dtype=False)
    assert len(stored) > 0 and stored["rank"].max() == 2


def test_list_counts_are_kept_per_condition(ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    frame = ws.table(str(_latest(ws)["snapshot_table"])).to_pandas()
    for where, expected in (
        ("monetary > 500", (frame.monetary > 500).sum()),
        ("grade = 'A'", (frame.grade == "A").sum()),
    ):
        for page in (1, 2):
            assert list_customers(ws, where=where, page=page, page_size=10)["total"] == expected
    assert list_customers(ws, search="C00001")["total"] == frame.customer_id.str.lower().str.contains("c00001").sum()


def _latest(ws: Any) -> dict[str, Any]:
    from tierwise.store.runs import list_runs

    return list_runs(ws)[-1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12),
                    min_size=1, max_size=6, unique=True), pick=st.integers(0, 5))  # fmt: skip
def test_a_bound_value_finds_exactly_its_rows(ws: Any, ids: list[str], pick: int) -> None:
    import ibis

    from tierwise.web.cache import cache_for

    ws.con.create_table(
        "snapshot_probe", ibis.memtable({"customer_id": ids, "n": list(range(len(ids)))}), overwrite=True
    )
    t = ws.con.table("snapshot_probe")  # not Workspace.table: this test replaces the table each time
    wanted = ids[pick % len(ids)]
    cache = cache_for(ws)
    for probe in (wanted, wanted + "'", "' OR '1'='1"):
        found = cache.rows(ws, ("probe", tuple(ids)), lambda key: t.filter(t.customer_id == key), probe)
        assert [r["n"] for r in found] == [i for i, v in enumerate(ids) if v == probe]


def test_a_new_run_is_seen_at_once(ws_dir: Path, tmp_path: Path) -> None:
    import shutil

    from tierwise.pipeline.execute import run
    from tierwise.web.cache import cache_for
    from tierwise.web.services.overview import overview
    from tierwise.workspace import Workspace

    copy = tmp_path / "ws"
    shutil.copytree(ws_dir, copy)
    ws = Workspace.open(copy)
    try:
        first = overview(ws, language="en")
        assert first["run"]["previous_run"] is None
        assert overview(ws, language="en") == first  # kept
        report = run(ws)
        second = overview(ws, language="en")
        assert second["run"]["run_id"] == report.run_id != first["run"]["run_id"]
        assert second["run"]["previous_run"]["run_id"] == first["run"]["run_id"]
        assert cache_for(ws).meta(ws)["run_id"] == report.run_id
        assert overview(ws, language="zh")["kpis"][0]["label"] == "客户总数"
    finally:
        ws.close()


def test_api_tokens_are_checked_without_a_write_per_request(tmp_path: Path) -> None:
    import sqlite3

    from tierwise.web.accounts import AUTH_FILE, Accounts

    accounts = Accounts(tmp_path)
    accounts.add_user("ana", "analyst", "a long password")
    token_id, token = accounts.create_token("ana")
    user = accounts.verify_token(token)
    assert user is not None and (user.username, user.role) == ("ana", "analyst")
    db = sqlite3.connect(tmp_path / AUTH_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    used = db.execute("SELECT last_used_at FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()[0]
    assert used is not None
    db.execute("UPDATE api_tokens SET last_used_at = '2000-01-01T00:00:00+00:00' WHERE token_id = ?", (token_id,))
    db.commit()
    accounts.verify_token(token)
    again = db.execute("SELECT last_used_at FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()[0]
    assert again > "2000-01-01T00:00:00+00:00"  # older than a minute: written again
    assert accounts.verify_token(token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    accounts.revoke_token(token_id)
    assert accounts.verify_token(token) is None
