"""The whole main job through the command line: CDNOW against plain Python, export, rule tags."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import ibis
import pytest
from python_calamine import CalamineWorkbook
from tests.conftest import CDNOW_MASTER, run_cli

WINDOW = 365


def _snapshot(ws: Path, run_id: str | None = None) -> list[dict]:
    con = ibis.duckdb.connect(str(ws / "tierwise.duckdb"), read_only=True)
    try:
        runs = con.table("runs").to_pyarrow().to_pylist()
        meta = next(r for r in runs if r["run_id"] == run_id) if run_id else max(runs, key=lambda r: r["created_at"])
        return con.table(meta["snapshot_table"]).to_pyarrow().to_pylist()
    finally:
        con.disconnect()


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    ws = tmp_path_factory.mktemp("cdnow") / "ws"
    assert run_cli("init", ws).code == 0
    r = run_cli("ingest", "orders", CDNOW_MASTER, "-w", ws, "--keep-duplicates")
    assert r.code == 0, r.stderr
    r = run_cli("run", "-w", ws, "--json")
    assert r.code == 0, r.stderr
    return ws, r.json()


def _cdnow_plain() -> tuple[dt.date, dict[str, dict]]:
    lines = []
    with CDNOW_MASTER.open() as fh:
        for line in fh:
            cid, day, _, value = line.split()
            if not day.isdigit():
                continue  # a header line, if any
            lines.append((cid, dt.datetime.strptime(day, "%Y%m%d").date(), float(value)))
    as_of = max(d for _, d, _ in lines) + dt.timedelta(days=1)
    start = as_of - dt.timedelta(days=WINDOW)
    people: dict[str, dict] = defaultdict(lambda: {"last": None, "days": set(), "monetary": 0.0})
    for cid, day, value in lines:
        p = people[cid]
        p["last"] = day if p["last"] is None else max(p["last"], day)
        if day >= start:
            p["days"].add(day)
            p["monetary"] += value
    for p in people.values():
        p["monetary"] = round(p["monetary"], 4)  # as tierwise does: the same amounts in any order, one figure
        p["recency"] = (as_of - p["last"]).days
        p["frequency"] = len(p["days"])
    return as_of, dict(people)


def _scores(values: dict[str, float]) -> dict[str, int]:
    """Score = ceil(5 × share of customers whose value is at most this one), at least 1."""
    ordered = sorted(values.values())
    n = len(ordered)
    at_most: dict[float, int] = {}
    for i, v in enumerate(ordered, start=1):
        at_most[v] = i
    return {c: max(1, math.ceil(at_most[v] / n * 5)) for c, v in values.items()}


def test_cdnow_cells_and_abc_match_plain_python(cdnow: tuple[Path, dict]) -> None:
    ws, report = cdnow
    as_of, people = _cdnow_plain()
    assert report["as_of"] == as_of.isoformat() and report["customers"] == len(people) == 23570
    r = _scores({c: -p["recency"] for c, p in people.items()})
    f = _scores({c: p["frequency"] for c, p in people.items()})
    cells: Counter[tuple[int, int]] = Counter((r[c], f[c]) for c in people)
    revenue: dict[tuple[int, int], float] = defaultdict(float)
    for c, p in people.items():
        revenue[(r[c], f[c])] += p["monetary"]

    snap = _snapshot(ws)
    got_cells = Counter((s["r_score"], s["f_score"]) for s in snap)
    assert got_cells == cells
    got_revenue: dict[tuple[int, int], float] = defaultdict(float)
    for s in snap:
        got_revenue[(s["r_score"], s["f_score"])] += s["monetary"]
    assert got_revenue == pytest.approx(revenue)

    # ABC by windowed revenue; customers with equal revenue share one cumulative figure.
    positive = {c: p["monetary"] for c, p in people.items() if p["monetary"] > 0}
    total = sum(positive.values())
    per_value: dict[float, float] = defaultdict(float)
    for v in positive.values():
        per_value[v] += v
    cum, running = {}, 0.0
    for v in sorted(per_value, reverse=True):
        running += per_value[v]
        cum[v] = running / total
    expected = Counter(
        "C" if c not in positive else "A" if cum[positive[c]] <= 0.8 + 1e-12 else
        "B" if cum[positive[c]] <= 0.95 + 1e-12 else "C"
        for c in people
    )  # fmt: skip
    assert Counter(s["abc_class"] for s in snap) == expected


def test_cdnow_grades_everyone_who_bought_once(cdnow: tuple[Path, dict]) -> None:
    ws, _ = cdnow
    snap = _snapshot(ws)
    ranks = sorted(s["priority_rank"] for s in snap)
    assert ranks == list(range(1, len(snap) + 1))  # every CDNOW customer bought: all graded, ranks 1..n
    # No payments and no cost in CDNOW: credit and profit are missing, so amount and prospect carry it all.
    assert all(s["score_credit"] is None and s["score_profit"] is None for s in snap)
    for s in snap:
        assert s["contrib_amount"] + s["contrib_prospect"] == pytest.approx(s["composite_score"])
    by_rank = sorted(snap, key=lambda s: s["priority_rank"])
    scores = [s["composite_score"] for s in by_rank]
    assert scores == sorted(scores, reverse=True)
    grades = Counter(s["grade"] for s in snap)
    # Quotas 10/20/30/40% with ties kept together: each grade at most its quota plus one group of ties.
    assert grades["A"] <= 0.10 * len(snap) + 50 and grades["A"] + grades["B"] <= 0.30 * len(snap) + 50
    runs = run_cli("runs", "-w", ws, "--json").json()
    assert set(runs[-1]["timings"] if isinstance(runs[-1]["timings"], dict) else json.loads(runs[-1]["timings"])) >= {
        "measures",
        "classes",
        "pareto",
        "total",
    }
    assert json.loads(runs[-1]["input_rows"])["orders"] == 69659


def test_grade_indicators_may_name_classes_and_any_measure(cdnow: tuple[Path, dict], tmp_path: Path) -> None:
    """Indicators over a class (r_score, computed in the same run) and a measure the classes do not read
    (p_alive): each score is a buyer's share of the buyers that have the value at most as high, and the composite
    is the weighted mean of the scores a buyer has, as in plain Python."""
    import re
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(cdnow[0], ws)
    config = ws / "tierwise.toml"
    text = re.sub(r"\[\[grade\.indicators\]\]\n(?:[^\[\n][^\n]*\n)*", "", config.read_text(encoding="utf-8"))
    text += '\n[[grade.indicators]]\nname = "recent"\nexpression = "r_score"\nweight = 3.0\n'
    text += '\n[[grade.indicators]]\nname = "alive"\nexpression = "p_alive"\nweight = 1.0\n'
    config.write_text(text, encoding="utf-8")
    r = run_cli("run", "-w", ws, "--json")
    assert r.code == 0, r.stderr
    snap = _snapshot(ws, r.json()["run_id"])
    buyers = [s for s in snap if s["recency_days"] is not None]
    assert len(buyers) == len(snap) > 20000

    def share(values: list[float]) -> dict[float, float]:
        counts = Counter(values)
        out, running = {}, 0
        for v in sorted(counts):
            running += counts[v]
            out[v] = 100.0 * running / len(values)
        return out

    recent = share([s["r_score"] for s in buyers])
    alive = share([s["p_alive"] for s in buyers if s["p_alive"] is not None])
    for s in buyers:
        assert s["score_recent"] == pytest.approx(recent[s["r_score"]])
        if s["p_alive"] is None:
            assert s["score_alive"] is None and s["composite_score"] == pytest.approx(s["score_recent"])
        else:
            assert s["score_alive"] == pytest.approx(alive[s["p_alive"]])
            assert s["composite_score"] == pytest.approx((3 * s["score_recent"] + s["score_alive"]) / 4)
    by_rank = sorted(buyers, key=lambda s: s["priority_rank"])
    assert [s["priority_rank"] for s in by_rank] == list(range(1, len(buyers) + 1))
    keys = [(-s["composite_score"], -s["monetary"], s["customer_id"]) for s in by_rank]
    assert keys == sorted(keys)


def test_export_formats_filters_and_formula_safety(cdnow: tuple[Path, dict], tmp_path: Path) -> None:
    ws, _ = cdnow
    snap = _snapshot(ws)
    out = tmp_path / "a.csv"
    r = run_cli("export", out, "-w", ws, "--where", "grade = 'A' and frequency >= 3", "--json")
    assert r.code == 0, r.stderr
    expected = sorted(s["customer_id"] for s in snap if s["grade"] == "A" and s["frequency"] >= 3)
    assert r.json()["rows"] == len(expected)
    text = out.read_text(encoding="utf-8-sig").splitlines()
    assert text[0].split(",")[0] == '"customer_id"'
    assert [line.split(",")[0].strip('"') for line in text[1:]] == expected

    xlsx = tmp_path / "few.xlsx"
    r = run_cli("export", xlsx, "-w", ws, "--columns", "grade,monetary", "--where", "priority_rank <= 5")
    assert r.code == 0, r.stderr
    rows = CalamineWorkbook.from_path(str(xlsx)).get_sheet_by_index(0).to_python()
    assert rows[0] == ["customer_id", "grade", "monetary"] and len(rows) == 6

    pq_file = tmp_path / "all.parquet"
    assert run_cli("export", pq_file, "-w", ws).code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(pq_file)
    assert table.num_rows == len(snap) and table.column_names[0] == "customer_id"
    assert set(table.column_names) == set(snap[0])

    bad = run_cli("export", tmp_path / "x.csv", "-w", ws, "--where", "grade = 'A' and frequncy > 2")
    assert bad.code == 2 and "--where" in bad.stderr and "column 17" in bad.stderr and "frequency" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()
    bad = run_cli("export", tmp_path / "x.csv", "-w", ws, "--columns", "grades")
    assert bad.code == 2 and "'grades'" in bad.stderr and "grade" in bad.stderr
    bad = run_cli("export", tmp_path / "x.txt", "-w", ws)
    assert bad.code == 2 and "--format" in bad.stderr


def test_rule_tags_and_formula_neutralised_names(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    customers = tmp_path / "customers.csv"
    customers.write_text(
        '客户编号,客户名称,省份\nK1,=HYPERLINK("http://x"),浙江\nK2,普通公司,广东\nK3,@SUM(A1),浙江\n',
        encoding="utf-8",
    )
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "客户编号,下单日期,金额\nK1,2024-01-05,60000\nK1,2024-03-01,100\nK2,2024-02-01,70000\nK3,2024-02-02,10\n",
        encoding="utf-8",
    )
    assert run_cli("ingest", "customers", customers, "-w", ws).code == 0
    assert run_cli("ingest", "orders", orders, "-w", ws).code == 0
    config = ws / "tierwise.toml"
    base = config.read_text(encoding="utf-8")
    config.write_text(
        base
        + '\n[[rules]]\nname = "浙江大客户"\nexpression = "province = \'浙江\' and monetary > 50000"\n'
        + '\n[[rules]]\nname = "大客户"\nexpression = "monetary > 50000"\n'
        # rules may use every snapshot column, classes included: K2's 70,000 of 130,110 is the first 80% → A
        + "\n[[rules]]\nname = \"关键\"\nexpression = \"abc_class = 'A' and lifecycle_stage != 'prospect'\"\n",
        encoding="utf-8",
    )
    r = run_cli("run", "-w", ws, "--json")
    assert r.code == 0, r.stderr
    tags = {s["customer_id"]: s["tags"] for s in _snapshot(ws)}
    assert tags == {"K1": "浙江大客户; 大客户", "K2": "大客户; 关键", "K3": None}

    out = tmp_path / "tagged.csv"
    assert run_cli("export", out, "-w", ws, "--columns", "name,tags", "--where", "tags like '%大客户%'").code == 0
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert lines[1].startswith('"K1","\'=HYPERLINK(') and len(lines) == 3

    runs_before = run_cli("runs", "-w", ws, "--json").json()
    config.write_text(base + '\n[[rules]]\nname = "坏规则"\nexpression = "monetary > > 5"\n', encoding="utf-8")
    bad = run_cli("run", "-w", ws)
    assert bad.code == 2 and "rule '坏规则'" in bad.stderr and "column 10" in bad.stderr
    assert run_cli("runs", "-w", ws, "--json").json() == runs_before
