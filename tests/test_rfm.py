"""RFM scores, the R×F grid and the eight-class scheme against hand-computed cases."""

from __future__ import annotations

import math

import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierwise.classify.rfm import CLASS8, GRID, PROSPECTS, add_class8, add_scores, segment
from tierwise.i18n import LABELS


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def by_id(con, t) -> dict[str, dict]:
    return {r["id"]: r for r in con.to_pyarrow(t).to_pylist()}


# Expected segment of every one of the 25 cells, written out from DESIGN §8.
EXPECTED_GRID = {
    (1, 1): "hibernating",
    (1, 2): "hibernating",
    (2, 1): "hibernating",
    (2, 2): "hibernating",
    (1, 3): "at_risk",
    (1, 4): "at_risk",
    (2, 3): "at_risk",
    (2, 4): "at_risk",
    (1, 5): "cant_lose_them",
    (2, 5): "cant_lose_them",
    (3, 1): "about_to_sleep",
    (3, 2): "about_to_sleep",
    (3, 3): "need_attention",
    (3, 4): "loyal_customers",
    (3, 5): "loyal_customers",
    (4, 4): "loyal_customers",
    (4, 5): "loyal_customers",
    (4, 1): "promising",
    (5, 1): "new_customers",
    (4, 2): "potential_loyalists",
    (4, 3): "potential_loyalists",
    (5, 2): "potential_loyalists",
    (5, 3): "potential_loyalists",
    (5, 4): "champions",
    (5, 5): "champions",
}


def test_every_grid_cell(con) -> None:
    cells = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    t = ibis.memtable(
        {"r": [c[0] for c in cells] + [None], "f": [c[1] for c in cells] + [None]}, schema={"r": "int64", "f": "int64"}
    )
    got = con.to_pyarrow(t.mutate(s=segment(t.r, t.f)))["s"].to_pylist()
    assert got[:-1] == [EXPECTED_GRID[c] for c in cells]
    assert got[-1] == PROSPECTS
    assert len(EXPECTED_GRID) == 25
    covered = [(r, f) for rs, fs, _ in GRID for r in rs for f in fs]
    assert sorted(covered) == sorted(cells)  # a partition: every cell exactly once
    assert all(code in LABELS["rfm_segment"] for _, _, code in GRID)


def test_scores_by_cumulative_share_keep_ties_together(con) -> None:
    # Ten buyers and one prospect. Frequency 1,1,1,1,2,2,3,4,5,9: cume_dist of 1 is 4/10 → ceil(2.0) = 2 for
    # all four ties; 2 → 6/10 → 3; 3 → 7/10 → ceil(3.5) = 4; 4 → 8/10 → 4; 5 → 9/10 → ceil(4.5) = 5; 9 → 5.
    freq = [1, 1, 1, 1, 2, 2, 3, 4, 5, 9, 0]
    rec = [300, 200, 100, 50, 40, 30, 20, 10, 5, 1, None]
    mon = [10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100, None]
    t = ibis.memtable({"id": [f"c{i}" for i in range(11)], "recency_days": rec, "frequency": freq, "monetary": mon})
    got = by_id(con, add_scores(t))
    assert [got[f"c{i}"]["f_score"] for i in range(10)] == [2, 2, 2, 2, 3, 3, 4, 4, 5, 5]
    # Recency reversed: 300 days is the worst (cume_dist of −300 = 1/10 → 1), 1 day the best (10/10 → 5).
    assert [got[f"c{i}"]["r_score"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [got[f"c{i}"]["m_score"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert (got["c10"]["r_score"], got["c10"]["f_score"], got["c10"]["m_score"]) == (None, None, None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=60))
def test_scores_match_a_plain_python_definition(con, freq: list[int]) -> None:
    t = ibis.memtable(
        {
            "id": [str(i) for i in range(len(freq))],
            "recency_days": freq,
            "frequency": freq,
            "monetary": [float(f) for f in freq],
        }
    )
    got = by_id(con, add_scores(t))
    n = len(freq)
    for i, f in enumerate(freq):
        expected = max(1, math.ceil(5 * sum(1 for g in freq if g <= f) / n))
        assert got[str(i)]["f_score"] == expected
        assert got[str(i)]["r_score"] == max(1, math.ceil(5 * sum(1 for g in freq if g >= f) / n))
    # Ties never split; a larger value never scores lower.
    for i, a in enumerate(freq):
        for j, b in enumerate(freq):
            if a <= b:
                assert got[str(i)]["f_score"] <= got[str(j)]["f_score"]


def test_every_eight_class_combination(con) -> None:
    # Means: recency 50, frequency 5, monetary 500 (the two anchors balance each other out).
    rows = []
    for (recent, high_f, high_m), name in CLASS8.items():
        rows.append(
            {
                "id": name,
                "recency_days": 10 if recent else 90,
                "frequency": 8 if high_f else 2,
                "monetary": 900.0 if high_m else 100.0,
            }
        )
    t = ibis.memtable(rows)
    got = by_id(con, add_class8(t))
    assert {k: v["rfm_class8"] for k, v in got.items()} == {name: name for name in CLASS8.values()}


def test_long_inactive_big_spender_is_never_important_value(con) -> None:
    t = ibis.memtable(
        {
            "id": ["whale", "a", "b", "c", "prospect"],
            "recency_days": [700, 10, 20, 30, None],
            "frequency": [50, 2, 3, 4, 0],
            "monetary": [1_000_000.0, 100.0, 200.0, 300.0, None],
        }
    )
    got = by_id(con, add_class8(t))
    assert got["whale"]["rfm_class8"] == "重要保持客户"  # frequent, big, but not recent
    assert got["prospect"]["rfm_class8"] is None
    median = by_id(con, add_class8(t, basis="median"))
    assert median["whale"]["rfm_class8"] != "重要价值客户"


def test_lapsed_customer_is_scored_not_a_prospect(con) -> None:
    t = ibis.memtable(
        {
            "id": ["lapsed", "a", "b"],
            "recency_days": [500, 10, 20],
            "frequency": [0, 3, 1],
            "monetary": [0.0, 300.0, 100.0],
        }
    )
    got = by_id(con, add_scores(t).mutate(seg=lambda x: segment(x.r_score, x.f_score)))
    # cume_dist of −500 among three buyers = 1/3 → ceil(5/3) = 2; frequency 0 → 1/3 → 2.
    assert (got["lapsed"]["r_score"], got["lapsed"]["f_score"], got["lapsed"]["seg"]) == (2, 2, "hibernating")


def test_fixed_thresholds_with_boundaries(con) -> None:
    t = ibis.memtable(
        {
            "id": ["a", "b", "c", "d", "e", "p"],
            "recency_days": [30, 31, 90, 365, 366, None],
            "frequency": [0, 1, 2, 5, 8, 0],
            "monetary": [0.0, 99.99, 100.0, 1000.0, 5000.0, 0.0],
        }
    )
    cuts = {"recency": [30, 90, 180, 365], "frequency": [2, 3, 5, 8], "monetary": [100, 500, 1000, 5000]}
    got = by_id(con, add_scores(t, thresholds=cuts))
    # recency ≤ 30 → 5, ≤ 90 → 4, ≤ 180 → 3, ≤ 365 → 2, above → 1; F and M: at or above a cut-off moves up
    assert {k: (v["r_score"], v["f_score"], v["m_score"]) for k, v in got.items()} == {
        "a": (5, 1, 1),
        "b": (4, 1, 1),
        "c": (4, 2, 2),
        "d": (2, 4, 4),
        "e": (1, 5, 5),
        "p": (None, None, None),
    }
    three = by_id(con, add_scores(t, bins=3, thresholds={"frequency": [2, 5]}))
    assert [three[k]["f_score"] for k in "abcde"] == [1, 1, 2, 3, 3]
    assert all(1 <= three[k]["r_score"] <= 3 for k in "abcde")
    with pytest.raises(ValueError, match="ascending"):
        add_scores(t, thresholds={"frequency": [5, 2, 3, 8]})
    with pytest.raises(ValueError, match="4 ascending"):
        add_scores(t, thresholds={"monetary": [1, 2]})
