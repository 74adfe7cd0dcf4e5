"""Lifecycle stages against hand-worked cases, judged by each customer's own rhythm."""

from __future__ import annotations

import ibis
import pytest

from tierwise.classify.lifecycle import LifecycleSettings, add_lifecycle


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def stages(con, rows: list[tuple], settings: LifecycleSettings | None = None) -> dict[str, tuple]:
    cols = ["id", "recency_days", "tenure_days", "frequency", "ipt_mean_days"]
    t = ibis.memtable(
        {c: [r[i] for r in rows] for i, c in enumerate(cols)},
        schema={
            "id": "string",
            "recency_days": "int64",
            "tenure_days": "int64",
            "frequency": "int64",
            "ipt_mean_days": "float64",
        },
    )
    out = con.to_pyarrow(add_lifecycle(t, settings)).to_pylist()
    return {r["id"]: (r["lifecycle_stage"], r["expected_gap_days"]) for r in out}


def test_own_rhythm_decides(con) -> None:
    got = stages(
        con,
        [
            # id, recency, tenure, frequency, mean gap
            ("weekly", 100, 400, 2, 20.0),  # 100 > 3 × 20 → churned
            ("bimonthly", 100, 400, 2, 60.0),  # 100 > 1.5 × 60 = 90, not > 180 → at risk
            ("yearly", 100, 800, 5, 120.0),  # 100 ≤ 180 → fine; tenure ≥ 365 and frequency ≥ 4 → mature
            ("steady", 10, 200, 6, 30.0),  # tenure between 90 and 365 → active
            ("newbie", 20, 60, 1, None),  # single purchase: median gap of repeat buyers (60) → new
            ("quiet_one", 200, 200, 0, None),  # single purchase long ago: 200 > 3 × 60 → churned
            ("prospect", None, None, 0, None),
        ],
    )
    assert {k: v[0] for k, v in got.items()} == {
        "weekly": "churned",
        "bimonthly": "at_risk",
        "yearly": "mature",
        "steady": "active",
        "newbie": "new",
        "quiet_one": "churned",
        "prospect": "prospect",
    }
    # Median of 20, 60, 120, 30 = 45: the fallback gap for customers without a rhythm of their own.
    assert got["newbie"][1] == pytest.approx(45.0)


def test_boundaries_and_settings(con) -> None:
    rows = [("exactly_at_risk_line", 90, 400, 2, 60.0), ("just_over", 91, 400, 2, 60.0), ("new_edge", 5, 90, 1, 60.0)]
    got = stages(con, rows)
    assert got["exactly_at_risk_line"][0] == "active"  # 90 is not beyond 1.5 × 60
    assert got["just_over"][0] == "at_risk"
    assert got["new_edge"][0] == "new"  # tenure 90 ≤ new_days
    strict = stages(con, rows, LifecycleSettings(at_risk_multiple=1.0, churned_multiple=1.5))
    assert strict["exactly_at_risk_line"][0] == "at_risk" and strict["just_over"][0] == "churned"


def test_no_repeat_buyers_uses_the_default_gap(con) -> None:
    got = stages(con, [("a", 140, 140, 1, None), ("b", 300, 300, 1, None)])  # 1.5 × 90 = 135, 3 × 90 = 270
    assert got["a"] == ("at_risk", 90.0) and got["b"] == ("churned", 90.0)
