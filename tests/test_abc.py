"""ABC classification and the Pareto curve: by hand, and on CDNOW against a plain-Python computation."""

from __future__ import annotations

from collections import defaultdict

import ibis
import pytest
from tests.conftest import CDNOW_MASTER

from tierwise.classify.abc import add_abc, pareto_curve


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def test_hand_computed(con) -> None:
    t = ibis.memtable({"id": list("abcdefg"), "monetary": [500.0, 300.0, 100.0, 50.0, 50.0, 0.0, None]})
    got = {r["id"]: r for r in con.to_pyarrow(add_abc(t)).to_pylist()}
    # Total 1000: 500 → 50% A; 300 → 80% A (the boundary is inclusive); 100 → 90% B; the two 50s share 100% → C.
    assert {k: v["abc_class"] for k, v in got.items()} == {
        "a": "A",
        "b": "A",
        "c": "B",
        "d": "C",
        "e": "C",
        "f": "C",
        "g": "C",
    }
    assert got["b"]["abc_cum_share"] == pytest.approx(0.8)
    assert got["d"]["abc_cum_share"] == pytest.approx(1.0) and got["f"]["abc_cum_share"] is None
    other = {r["id"]: r["abc_class"] for r in con.to_pyarrow(add_abc(t, a_cutoff=0.5, b_cutoff=0.8)).to_pylist()}
    assert (other["a"], other["b"], other["c"]) == ("A", "B", "C")
    with pytest.raises(ValueError, match="cut-offs"):
        add_abc(t, a_cutoff=0.9, b_cutoff=0.8)


def test_pareto_curve(con) -> None:
    t = ibis.memtable({"monetary": [60.0, 30.0, 10.0, 0.0]})
    curve = pareto_curve(t, points=4)
    assert [p["customer_share"] for p in curve] == [0, 0.25, 0.5, 0.75, 1.0]
    assert [p["value_share"] for p in curve] == pytest.approx([0, 0.6, 0.9, 1.0, 1.0])


def test_cdnow_matches_plain_python(con) -> None:
    spend: dict[str, float] = defaultdict(float)
    with CDNOW_MASTER.open() as fh:
        next(fh)
        for line in fh:
            cid, _, _, value = line.split()
            spend[cid] += float(value)
    total = sum(v for v in spend.values() if v > 0)
    by_value: dict[float, float] = defaultdict(float)
    for v in spend.values():
        if v > 0:
            by_value[v] += v
    cum, running = {}, 0.0
    for v in sorted(by_value, reverse=True):
        running += by_value[v]
        cum[v] = running / total
    expected = {
        c: ("C" if v <= 0 else "A" if cum[v] <= 0.8 + 1e-12 else "B" if cum[v] <= 0.95 + 1e-12 else "C")
        for c, v in spend.items()
    }
    t = ibis.memtable({"customer_id": list(spend), "monetary": list(spend.values())})
    got = {r["customer_id"]: r["abc_class"] for r in con.to_pyarrow(add_abc(t)).to_pylist()}
    assert got == expected
    shares = {k: sum(1 for c in expected.values() if c == k) / len(expected) for k in "ABC"}
    assert 0.15 < shares["A"] < 0.45  # CDNOW is strongly skewed: a minority brings 80% of revenue
