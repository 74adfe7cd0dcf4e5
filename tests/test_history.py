"""History: compare and reasons, trends and timelines, backfill, stability (hysteresis), schedule, run lock."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import ibis
import pytest
from tests.conftest import run_cli

D = dt.date(2024, 4, 1)  # a backfilled date of the module workspace


def _no_clusters(ws_dir: Path) -> None:
    cfg = ws_dir / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    text = re.sub(r"(\[cluster\]\n(?:#[^\n]*\n)*)enabled = true", r"\1enabled = false", text)
    cfg.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(workspace, data folder): 300 generated customers, three backfilled quarters and one current run."""
    root = tmp_path_factory.mktemp("hist")
    data, ws_dir = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "300", "--seed", "3").code == 0
    assert run_cli("init", ws_dir).code == 0
    _no_clusters(ws_dir)
    for table in ("customers", "orders", "payments", "interactions"):
        assert run_cli("ingest", table, data / f"{table}.csv", "-w", ws_dir).code == 0
    assert run_cli("run", "-w", ws_dir).code == 0
    filled = run_cli("backfill", "--from", "2024-01-01", "--to", "2024-07-01", "--every", "quarter", "-w", ws_dir,
                     "--json")  # fmt: skip
    assert filled.code == 0, filled.stderr
    return ws_dir, data


# ---------------------------------------------------------------- compare, trends, timeline (CLI, --json)


def test_migration_counts_add_up(hist: tuple[Path, Path]) -> None:
    from tierwise.history.compare import compare
    from tierwise.store.runs import list_runs
    from tierwise.workspace import Workspace

    ws_dir, _ = hist
    ws = Workspace.open(ws_dir)
    try:
        runs = list_runs(ws)
        assert [r["as_of"] for r in runs] == sorted(r["as_of"] for r in runs)  # listed in as-of order
        first, second = runs[0], runs[1]
        a = set(ws.table(str(first["snapshot_table"])).customer_id.to_pyarrow().to_pylist())
        b = set(ws.table(str(second["snapshot_table"])).customer_id.to_pyarrow().to_pylist())
        for column in ("grade", "rfm_segment", "lifecycle_stage", "abc_class", "loyalty"):
            data = compare(ws, str(first["run_id"]), str(second["run_id"]), column, "en", top=5)
            both = sum(c["customers"] for c in data["matrix"] if c["kind"] not in ("entry", "exit"))
            assert both == data["in_both"] == len(a & b)
            entries = sum(c["customers"] for c in data["matrix"] if c["kind"] == "entry")
            assert entries == len(b - a) == data["totals"]["entry"]
            assert sum(c["customers"] for c in data["matrix"] if c["kind"] == "exit") == len(a - b)
            t = data["totals"]
            assert t["stayed"] + t["upgrade"] + t["downgrade"] + t["changed"] == len(a & b)
            assert data["moved_customers"] and all(m["reasons"] for m in data["moved_customers"]), column
            for m in data["moved_customers"]:
                assert m["kind"] in ("upgrade", "downgrade") and m["from"] != m["to"]
    finally:
        ws.close()
    assert len(b - a) > 0  # 2024-01-01 → 2024-04-01: customers who signed up in between enter


def test_compare_defaults_to_the_last_two_dates_and_reports_new_top_customers(hist: tuple[Path, Path]) -> None:
    ws_dir, _ = hist
    runs = run_cli("runs", "-w", ws_dir, "--json").json()
    data = run_cli("compare", "-w", ws_dir, "--json").json()
    assert (data["run_a"]["run_id"], data["run_b"]["run_id"]) == (runs[-2]["run_id"], runs[-1]["run_id"])
    top = data["new_in_top"]
    assert top["class"] == "A" and top["this_run"] >= 0 and top["previous_run"] is not None
    text = run_cli("compare", "-w", ws_dir, "--lang", "en")
    assert text.code == 0 and "migration" in text.stdout and "new in A" in text.stdout
    bad = run_cli("compare", "-w", ws_dir, "--by", "nope")
    assert bad.code == 2 and "no such column" in bad.stderr and "Traceback" not in bad.stderr


def test_trends_and_timeline(hist: tuple[Path, Path]) -> None:
    ws_dir, _ = hist
    tr = run_cli("trends", "-w", ws_dir, "--json")
    assert tr.code == 0, tr.stderr
    data = tr.json()
    assert [r["as_of"] for r in data["runs"]] == ["2024-01-01", "2024-04-01", "2024-07-01", data["runs"][-1]["as_of"]]
    for r in data["runs"]:
        assert sum(r["sizes"].values()) == r["customers"]
    assert data["runs"][0]["new_in_top"] is None and data["runs"][1]["new_in_top"] >= 0
    assert run_cli("trends", "--by", "rfm_segment", "-w", ws_dir, "--lang", "en").stdout.count("Champions") == 1
    tl = run_cli("timeline", "C0000035", "-w", ws_dir, "--json")
    assert tl.code == 0, tl.stderr
    t = tl.json()
    present = [r for r in t["runs"] if r["present"]]
    assert len(t["runs"]) == 4
    grade = t["classes"]["grade"]
    assert grade["current"] == present[-1]["grade"]
    # "since" is the first run of the current streak, and the class before it differs
    streak = [r for r in present if r["as_of"] >= grade["since"]]
    assert all(r["grade"] == grade["current"] for r in streak)
    if grade["changed"]:
        before = [r for r in present if r["as_of"] < grade["since"]]
        assert before[-1]["grade"] == grade["previous"] != grade["current"]
    missing = run_cli("timeline", "NOPE", "-w", ws_dir)
    assert missing.code == 2 and "no customer 'NOPE'" in missing.stderr


def test_backfill_keeps_the_current_run_latest_and_skips_done_dates(hist: tuple[Path, Path]) -> None:
    ws_dir, _ = hist
    runs = run_cli("runs", "-w", ws_dir, "--json").json()
    latest = max(runs, key=lambda r: r["as_of"])
    assert run_cli("show", "-w", ws_dir, "--json").json()["run_id"] == latest["run_id"]
    again = run_cli("backfill", "--from", "2024-01-01", "--to", "2024-04-01", "--every", "quarter", "-w", ws_dir,
                    "--json").json()  # fmt: skip
    assert again["runs"] == [] and again["skipped"] == ["2024-01-01", "2024-04-01"]
    models = [json.loads(r["models"]) for r in runs]
    assert sorted(m["backfill"] for m in models) == [False, True, True, True]


# ---------------------------------------------------------------- backfill = run on truncated data


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _before(value: str, day: dt.date) -> bool:
    return bool(value) and dt.date.fromisoformat(value[:10]) < day


@pytest.mark.slow
def test_backfill_equals_a_run_on_data_truncated_at_the_date(hist: tuple[Path, Path], tmp_path: Path) -> None:
    ws_dir, data = hist
    cut = tmp_path / "cut"
    cut.mkdir()
    head, orders = _read(data / "orders.csv")
    orders = [r for r in orders if _before(r["order_date"], D)]
    _write(cut / "orders.csv", head, orders)
    head, payments = _read(data / "payments.csv")
    payments = [r for r in payments if _before(r["invoice_date"] or r["due_date"], D)]
    for r in payments:
        if r["paid_date"] and not _before(r["paid_date"], D):
            r["paid_date"] = ""  # not yet paid on that day
    _write(cut / "payments.csv", head, payments)
    head, interactions = _read(data / "interactions.csv")
    _write(cut / "interactions.csv", head, [r for r in interactions if _before(r["date"], D)])
    buyers = {r["customer_id"] for r in orders}
    head, customers = _read(data / "customers.csv")
    _write(
        cut / "customers.csv",
        head,
        [r for r in customers if r["customer_id"] in buyers or _before(r["signup_date"], D)],
    )
    fresh = tmp_path / "ws"
    assert run_cli("init", fresh).code == 0
    _no_clusters(fresh)
    for table in ("customers", "orders", "payments", "interactions"):
        assert run_cli("ingest", table, cut / f"{table}.csv", "-w", fresh).code == 0
    made = run_cli("run", "--as-of", D.isoformat(), "-w", fresh, "--json")
    assert made.code == 0, made.stderr
    backfilled = next(r for r in run_cli("runs", "-w", ws_dir, "--json").json() if r["as_of"] == D.isoformat())

    def rows(root: Path, run_id: str) -> dict[str, dict[str, object]]:
        from tierwise.store.runs import latest_snapshot
        from tierwise.workspace import Workspace

        ws = Workspace.open(root)
        try:
            _, snap = latest_snapshot(ws, run_id)
            return {r["customer_id"]: r for r in snap.drop("run_id").to_pyarrow().to_pylist()}
        finally:
            ws.close()

    expected, got = rows(fresh, made.json()["run_id"]), rows(ws_dir, backfilled["run_id"])
    assert set(got) == set(expected)
    assert set(next(iter(got.values()))) == set(next(iter(expected.values())))
    for cid, row in expected.items():
        for column, value in row.items():
            if isinstance(value, float):
                assert got[cid][column] == pytest.approx(value, rel=1e-6, abs=1e-6), (cid, column)
            else:
                assert got[cid][column] == value, (cid, column)


# ---------------------------------------------------------------- reasons on hand-built snapshots


def test_reasons_name_the_feature_and_threshold_crossed() -> None:
    from tierwise.config import Config
    from tierwise.history.compare import context, reasons

    old = {
        "customer_id": "X",
        "r_score": 4,
        "f_score": 3,
        "recency_days": 20,
        "frequency": 5,
        "rfm_segment": "potential_loyalists",
    }
    new = {"customer_id": "X", "r_score": 2, "f_score": 3, "recency_days": 95, "frequency": 5, "rfm_segment": "at_risk"}
    ctx = {"r_score": {2: (80, 120), 4: (15, 30)}}
    text = reasons("rfm_segment", old, new, {}, ctx)
    assert text == ["r_score 4 → 2: recency_days 20 → 95 days (r_score 2 covers 80–120 days in this run)"]

    cuts = {"cutoffs": {"A": 80.0, "B": 65.0, "C": 40.0}, "method": "cutoffs", "indicators": [("amount", "amount")]}
    old = {"grade": "B", "composite_score": 71.2, "score_amount": 71.2, "contrib_amount": 71.2}
    new = {"grade": "C", "composite_score": 64.8, "score_amount": 64.8, "contrib_amount": 64.8}
    text = reasons("grade", old, new, cuts, cuts)
    assert text[0] == "composite_score 71.2 → 64.8 fell below the B cut-off 65.0"
    assert text[1] == "amount score 71.2 → 64.8 (-6.4 points)"
    up = reasons("grade", new | {"grade": "D"}, old | {"grade": "B"}, cuts, cuts)
    assert up[0] == "composite_score 64.8 → 71.2 rose above the B cut-off 65.0"

    cfg = Config()
    abc = {"a": cfg.abc.a_cutoff, "b": cfg.abc.b_cutoff, "by": "monetary"}
    moved = reasons("abc_class", {"abc_cum_share": 0.78, "monetary": 900.0}, {"abc_cum_share": 0.83, "monetary": 800.0},
                    abc, abc)  # fmt: skip
    assert moved == ["cumulative monetary share 78.0% → 83.0% crossed the A cut-off 80% (monetary 900.0 → 800.0)"]
    assert context is not None


def test_reasons_from_two_real_runs_name_recency(ws_dir: Path, tmp_path: Path) -> None:
    """C1 stops buying: between the runs its recency passes a fixed r_score boundary (90 days)."""
    from tierwise.history.compare import compare
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    cfg = ws_dir / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    assert text.count("recency = []") == 1
    text = text.replace("recency = []", "recency = [30.0, 60.0, 90.0, 180.0]")
    cfg.write_text(text, encoding="utf-8")
    _no_clusters(ws_dir)
    src = tmp_path / "o.csv"
    src.write_text("customer_id,order_date,amount\nC1,2024-01-10,100\nC2,2024-01-05,50\nC2,2024-03-20,50\n")
    ws = Workspace.open(ws_dir)
    try:
        ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
        run(ws, dt.date(2024, 4, 1))  # C1: 82 days → r_score 3
        run(ws, dt.date(2024, 4, 20))  # C1: 101 days → r_score 2
        data = compare(ws, column="rfm_segment", language="en")
    finally:
        ws.close()
    moved = {m["customer_id"]: m for m in data["moved_customers"]}
    assert "r_score 3 → 2: recency_days 82 → 101 days" in moved["C1"]["reasons"][0]


# ---------------------------------------------------------------- stability (hysteresis)


def test_stability_rules_on_hand_built_runs() -> None:
    from tierwise.history.settings import StabilitySettings
    from tierwise.history.stability import apply_stability

    def table(rows: dict[str, tuple[float | None, str | None]]) -> ibis.Table:
        return ibis.memtable(
            {
                "customer_id": list(rows),
                "composite_score": [v[0] for v in rows.values()],
                "grade": [v[1] for v in rows.values()],
            }
        )

    now = table({"wobble": (63.0, "C"), "clear": (60.0, "C"), "new": (70.0, "B"), "up": (83.5, "A")})
    prev = table({"wobble": (66.0, "B"), "clear": (70.0, "B"), "up": (79.0, "B")})
    got = apply_stability(now, [prev], StabilitySettings(enabled=True, margin=3.0, confirm_runs=0),
                          method="cutoffs", cutoffs=(80.0, 65.0, 40.0)).to_pyarrow().to_pylist()  # fmt: skip
    by = {r["customer_id"]: (r["grade_raw"], r["grade"], r["grade_held"]) for r in got}
    assert by == {
        "wobble": ("C", "B", True),  # 63 ≥ 65 − 3: held
        "clear": ("C", "C", False),  # 60 < 62: clear
        "new": ("B", "B", False),  # no previous grade
        "up": ("A", "A", False),  # 83.5 ≥ 80 + 3
    }
    # confirmation only: the new grade sticks once it held two runs in a row
    older = table({"wobble": (63.0, "C")})
    settings = StabilitySettings(enabled=True, margin=0.0, confirm_runs=2)
    prev_raw = prev.mutate(grade_raw=prev.grade)
    once = apply_stability(now, [prev_raw], settings, method="cutoffs", cutoffs=(80.0, 65.0, 40.0))
    assert {r["customer_id"]: r["grade"] for r in once.to_pyarrow().to_pylist()}["wobble"] == "B"
    twice = apply_stability(now, [older.mutate(grade_raw=older.grade)], settings, method="cutoffs",
                            cutoffs=(80.0, 65.0, 40.0))  # fmt: skip
    assert {r["customer_id"]: r["grade"] for r in twice.to_pyarrow().to_pylist()}["wobble"] == "C"


def _minmax_grades(ws_dir: Path, stability: bool) -> None:
    cfg = ws_dir / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    text = re.sub(r"\[\[grade\.indicators\]\]\n(?:[^\[\n][^\n]*\n)*", "", text)
    for old, new in (('normalise = "percentile"', 'normalise = "minmax"'), ('method = "quotas"', 'method = "cutoffs"')):
        assert text.count(old) == 1
        text = text.replace(old, new)
    text = re.sub(r"(\[stability\]\n(?:#[^\n]*\n)*)enabled = false", rf"\1enabled = {str(stability).lower()}", text)
    text += '\n[[grade.indicators]]\nname = "amount"\nexpression = "monetary"\nweight = 1.0\n'
    cfg.write_text(text, encoding="utf-8")
    _no_clusters(ws_dir)


def test_stability_prevents_a_planted_flip_flop(ws_dir: Path, tmp_path: Path) -> None:
    """X's amount score goes 62, 58, 62, 58 around the B cut-off 60 (min–max between L = 100 and H = 1100)."""
    from tierwise.history.compare import compare
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    _minmax_grades(ws_dir, True)
    steps = [
        "L0,L,2024-01-02,100\nH0,H,2024-01-02,1100\nX0,X,2024-01-02,720\n",
        "X1,X,2024-02-02,-40\n",
        "X2,X,2024-03-02,40\n",
        "X3,X,2024-04-02,-40\n",
    ]
    ws = Workspace.open(ws_dir)
    reports = []
    try:
        for i, rows in enumerate(steps):
            src = tmp_path / f"o{i}.csv"
            src.write_text("order_id,customer_id,order_date,amount\n" + rows)
            ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
            reports.append(run(ws, dt.date(2024, i + 2, 15)))
    finally:
        ws.close()
    tl = run_cli("timeline", "X", "-w", ws_dir, "--json").json()
    assert [round(r["composite_score"], 1) for r in tl["runs"]] == [62.0, 58.0, 62.0, 58.0]
    ws = Workspace.open(ws_dir)
    try:
        raw = [ws.table(r.snapshot_table).filter(ibis._.customer_id == "X").grade_raw.execute()[0] for r in reports]
        data = compare(ws, language="en")
    finally:
        ws.close()
    assert raw == ["B", "C", "B", "C"]  # what the score alone says: a flip-flop
    assert [r["grade"] for r in tl["runs"]] == ["B", "B", "B", "B"]  # held: 58 is within 3 points of 60
    assert tl["classes"]["grade"] == {**tl["classes"]["grade"], "current": "B", "changed": False, "since": "2024-02-15"}
    assert [r.stability["held"] for r in reports if r.stability] == [0, 1, 0, 1]
    assert data["stability"]["held"] == 1 and data["totals"]["downgrade"] == 0


# ---------------------------------------------------------------- schedule and the run lock


def test_schedule_slots() -> None:
    from tierwise.history.settings import ScheduleSettings
    from tierwise.refresh.schedule import is_due, last_slot, next_slot

    monthly = ScheduleSettings(cadence="monthly", day=31, time="02:00")
    now = dt.datetime(2024, 2, 10, 9, 0)
    assert last_slot(monthly, now) == dt.datetime(2024, 1, 31, 2, 0)
    assert next_slot(monthly, now) == dt.datetime(2024, 2, 29, 2, 0)  # the month's last day
    weekly = ScheduleSettings(cadence="weekly", day=1, time="06:30")  # Mondays
    assert next_slot(weekly, dt.datetime(2024, 2, 10, 9, 0)) == dt.datetime(2024, 2, 12, 6, 30)
    assert last_slot(weekly, dt.datetime(2024, 2, 12, 6, 0)) == dt.datetime(2024, 2, 5, 6, 30)
    daily = ScheduleSettings(cadence="daily", time="02:00")
    assert next_slot(daily, dt.datetime(2024, 2, 10, 1, 0)) == dt.datetime(2024, 2, 10, 2, 0)
    assert is_due(daily, dt.datetime(2024, 2, 10, 3, 0), dt.datetime(2024, 2, 9, 2, 5))
    assert not is_due(daily, dt.datetime(2024, 2, 10, 3, 0), dt.datetime(2024, 2, 10, 2, 5))
    assert last_slot(ScheduleSettings(), now) is None
    with pytest.raises(ValueError, match="weekday"):
        ScheduleSettings(cadence="weekly", day=9)


def test_serve_once_runs_when_due_then_waits(hist: tuple[Path, Path], tmp_path: Path) -> None:
    ws_dir, _ = hist
    off = run_cli("serve", "--once", "-w", ws_dir)
    assert off.code == 2 and "cadence is off" in off.stderr
    copy = tmp_path / "ws"
    import shutil

    shutil.copytree(ws_dir, copy)
    cfg = copy / "tierwise.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('cadence = "off"', 'cadence = "daily"'), encoding="utf-8")
    # the current run was made today after the daily slot only if it is past 02:00; either way a second call is idle
    first = run_cli("serve", "--once", "-w", copy, "--json")
    assert first.code == 0, first.stderr
    second = run_cli("serve", "--once", "-w", copy, "--json").json()
    assert second["ran"] is False and "next refresh at" in second["log"][0]
    assert all("C0000" not in line for line in first.json()["log"] + second["log"])  # no customer data in logs


def test_run_lock_makes_a_second_run_wait_or_fail_clearly(ws_dir: Path, tmp_path: Path) -> None:
    from tierwise.errors import UserError
    from tierwise.store.lock import run_lock

    cfg = ws_dir / "tierwise.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("wait_seconds = 600", "wait_seconds = 1"), encoding="utf-8")
    _no_clusters(ws_dir)
    src = tmp_path / "o.csv"
    src.write_text("customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-02-03,20\n")
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.store.runs import list_runs
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    ingest_file(ws, "orders", src, today=dt.date(2025, 1, 1))
    ws.close()
    failures: list[Exception] = []
    with run_lock(ws_dir, 0):
        other = threading.Thread(target=lambda: _try_lock(ws_dir, failures))
        other.start()
        other.join()
        blocked = run_cli("run", "-w", ws_dir)  # another process while this one holds the lock
    assert isinstance(failures[0], UserError) and "another tierwise run is in progress" in str(failures[0])
    assert blocked.code == 2 and "another tierwise run is in progress" in blocked.stderr
    assert "Traceback" not in blocked.stderr

    # two concurrent runs: each succeeds or says clearly why not; the store stays consistent
    env_cmd = [sys.executable, "-m", "tierwise.cli", "run", "-w", str(ws_dir), "--json"]
    procs = [subprocess.Popen(env_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for p in procs]  # fmt: skip
    ok = [r for r in results if r[0] == 0]
    assert ok, results
    for code, _, stderr in results:
        assert "Traceback" not in stderr
        if code != 0:
            assert code == 2 and ("another tierwise run" in stderr or "workspace database" in stderr), stderr
    ws = Workspace.open(ws_dir)
    try:
        runs = list_runs(ws)
        assert sorted(r["run_id"] for r in runs) == sorted(json.loads(out)["run_id"] for _, out, _ in ok)
        for r in runs:
            assert ws.table(r["snapshot_table"]).count().execute() == r["customers"] == 2
    finally:
        ws.close()


def _try_lock(root: Path, failures: list[Exception]) -> None:
    from tierwise.store.lock import run_lock

    try:
        with run_lock(root, 0.3):
            pass
    except Exception as exc:
        failures.append(exc)
