"""Value tiers by hand."""

from __future__ import annotations

import ibis
import pytest

from tierwise.classify.value import add_value_tier


def test_tiers_by_share_of_buyers() -> None:
    con = ibis.duckdb.connect()
    ids = [f"c{i}" for i in range(10)] + ["p"]
    money = [10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100, None]
    rec = [5] * 10 + [None]
    t = ibis.memtable({"id": ids, "monetary": money, "recency_days": rec})
    got = {r["id"]: r["value_tier"] for r in con.to_pyarrow(add_value_tier(t)).to_pylist()}
    # cume_dist: c9 = 1.0, c8 = 0.9 → above 0.8 → high; c7 .. c5 (0.8, 0.7, 0.6) → above 0.5 → medium; rest low.
    assert [got[f"c{i}"] for i in range(10)] == ["low"] * 5 + ["medium"] * 3 + ["high"] * 2
    assert got["p"] == "prospect"
    ties = ibis.memtable({"id": list("abcd"), "monetary": [5.0, 5.0, 5.0, 5.0], "recency_days": [1, 1, 1, 1]})
    assert {r["value_tier"] for r in con.to_pyarrow(add_value_tier(ties)).to_pylist()} == {"high"}
    with pytest.raises(ValueError, match="add up"):
        add_value_tier(t, high_share=0.8, medium_share=0.5)
    con.disconnect()
