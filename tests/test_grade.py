"""The weighted composite grade against scores worked out by hand."""

from __future__ import annotations

import ibis
import pytest

from tierwise.classify.grade import GradeSettings, Indicator, add_grade

# id, recency_days, tenure_days, monetary, a (order amount), p (prospect)
ROWS = [
    ("C1", 5, 400, 100.0, 10.0, 1.0),
    ("C2", 5, 400, 200.0, 20.0, 2.0),
    ("C3", 5, 400, 300.0, 20.0, 3.0),
    ("C4", 5, 400, 400.0, 40.0, 4.0),
    ("C5", 5, 30, 50.0, None, 5.0),  # short history: no amount yet → takes its prospect score
    ("C6", 5, 400, 60.0, None, 2.5),  # long history, amount unknown → left out, weights rescaled
    ("P", None, None, 0.0, None, None),  # never bought: not graded
]
INDICATORS = [
    Indicator("amount", lambda t: t.a, 3.0),
    Indicator("prospect", lambda t: t.p, 1.0),
]


def _table() -> ibis.Table:
    cols = ["customer_id", "recency_days", "tenure_days", "monetary", "a", "p"]
    return ibis.memtable({c: [r[i] for r in ROWS] for i, c in enumerate(cols)})


def _grade(settings: GradeSettings) -> dict[str, dict]:
    rows = add_grade(_table(), INDICATORS, settings).to_pyarrow().to_pylist()
    return {r["customer_id"]: r for r in rows}


def test_percentile_scores_contributions_and_composite() -> None:
    g = _grade(GradeSettings(quotas=(0.2, 0.3, 0.3)))
    # amount among known values 10, 20, 20, 40 → share at most: .25, .75, .75, 1
    assert [g[c]["score_amount"] for c in ("C1", "C2", "C3", "C4")] == pytest.approx([25, 75, 75, 100])
    # prospect among 1, 2, 2.5, 3, 4, 5
    expected_p = {"C1": 100 / 6, "C2": 200 / 6, "C3": 400 / 6, "C4": 500 / 6, "C5": 100.0, "C6": 50.0}
    assert {c: g[c]["score_prospect"] for c in expected_p} == pytest.approx(expected_p)
    assert g["C5"]["score_amount"] == pytest.approx(100.0)  # the prospect score stands in
    assert g["C6"]["score_amount"] is None and g["C6"]["contrib_amount"] is None
    composite = {
        "C1": (3 * 25 + 100 / 6) / 4,
        "C2": (3 * 75 + 200 / 6) / 4,
        "C3": (3 * 75 + 400 / 6) / 4,
        "C4": (3 * 100 + 500 / 6) / 4,
        "C5": (3 * 100 + 100) / 4,
        "C6": 50.0,
    }
    assert {c: g[c]["composite_score"] for c in composite} == pytest.approx(composite)
    for c in composite:  # the contributions add up to the score: the report can say why
        assert (g[c]["contrib_amount"] or 0) + g[c]["contrib_prospect"] == pytest.approx(composite[c])
    assert g["C1"]["contrib_amount"] == pytest.approx(18.75)
    assert [c for c, _ in sorted(((c, g[c]["priority_rank"]) for c in composite), key=lambda x: x[1])] == [
        "C5",
        "C4",
        "C3",
        "C2",
        "C6",
        "C1",
    ]
    assert sorted(g[c]["priority_rank"] for c in composite) == [1, 2, 3, 4, 5, 6]
    # quotas .2/.3/.3 of 6 graded: positions 1/6 → A; 2/6, 3/6 → B; 4/6 → C; 5/6, 1 → D
    assert {c: g[c]["grade"] for c in composite} == {"C5": "A", "C4": "B", "C3": "B", "C2": "C", "C6": "D", "C1": "D"}
    p = g["P"]
    assert (p["grade"], p["priority_rank"], p["composite_score"], p["score_amount"]) == (None, None, None, None)


def test_cutoffs_and_min_max() -> None:
    g = _grade(GradeSettings(method="cutoffs", cutoffs=(80, 60, 40)))
    assert {c: g[c]["grade"] for c in ("C1", "C2", "C3", "C4", "C5", "C6")} == {
        "C5": "A",  # 100
        "C4": "A",  # 95.8
        "C3": "B",  # 72.9
        "C2": "B",  # 64.6
        "C6": "C",  # 50 — exactly on a cut-off counts
        "C1": "D",  # 22.9
    }
    m = _grade(GradeSettings(normalise="minmax"))
    assert [m[c]["score_amount"] for c in ("C1", "C2", "C3", "C4")] == pytest.approx([0, 100 / 3, 100 / 3, 100])
    assert m["C6"]["score_prospect"] == pytest.approx(100 * 1.5 / 4)


def test_ties_share_a_grade_whatever_the_row_order() -> None:
    t = ibis.memtable(
        {
            "customer_id": [f"K{i}" for i in range(10)],
            "recency_days": [1] * 10,
            "tenure_days": [400] * 10,
            "monetary": [1.0] * 10,
            "a": [5.0, 5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0],
            "p": [1.0] * 10,
        }
    )
    rows = add_grade(t, [Indicator("amount", lambda x: x.a, 1.0)], GradeSettings()).to_pyarrow().to_pylist()
    by_id = {r["customer_id"]: r["grade"] for r in rows}
    assert by_id["K0"] == by_id["K1"]
    assert [r["customer_id"] for r in rows if r["grade"] == "A"] == ["K9"]  # top 10% of 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="quotas"):
        add_grade(_table(), INDICATORS, GradeSettings(quotas=(0.5, 0.4, 0.3)))
    with pytest.raises(ValueError, match="cut-offs"):
        add_grade(_table(), INDICATORS, GradeSettings(method="cutoffs", cutoffs=(40, 60, 80)))
    with pytest.raises(ValueError, match="indicator"):
        add_grade(_table(), [], GradeSettings())
