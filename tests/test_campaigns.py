"""Campaigns: control groups (random, stratified, reproducible), statistics checked by hand, the CLI end to end."""

from __future__ import annotations

import csv
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierwise.campaigns.evaluate import GroupCounts, campaign_report, figures, newcombe_interval, wilson_interval
from tierwise.campaigns.plan import control_size, create_plan, draw_groups, parse_share
from tierwise.errors import UserError
from tierwise.ingest.pipeline import ingest_file
from tierwise.pipeline.execute import run
from tierwise.workspace import Workspace

Z = 1.959963984540054


def wilson_by_hand(x: int, n: int) -> tuple[float, float]:
    p = x / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def assert_figures(actual: dict[str, object], expected: dict[str, object]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == (value if value is None else pytest.approx(value)), key


# --- statistics ---------------------------------------------------------------------------------------------


def test_wilson_interval_of_12_in_40_matches_the_closed_formula() -> None:
    # p = 0.3; z²/n = 0.0960; centre = (0.3 + 0.0480) / 1.0960 = 0.31753; half = 0.13678
    low, high = wilson_interval(12, 40)  # type: ignore[misc]
    assert (low, high) == pytest.approx(wilson_by_hand(12, 40), abs=1e-12)
    assert (low, high) == pytest.approx((0.18075, 0.45430), abs=1e-5)
    assert wilson_interval(0, 0) is None


def test_wilson_and_newcombe_match_the_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17: 81/263 → 0.2553–0.3662 (method 3, Wilson score) and
    # 56/70 − 48/80 → 0.0524–0.3339 (method 10, hybrid score).
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(5, 10, 0, 0) is None


def test_lift_interval_and_roi_by_hand() -> None:
    # Treatment 12 of 40 responded with 1,800 revenue; control 3 of 20 with 200; a contact costs 10.
    f = figures(GroupCounts(40, 12, 1800.0), GroupCounts(20, 3, 200.0), 10.0)
    assert f["response_rate"] == 0.3 and f["control_response_rate"] == 0.15
    assert f["lift"] == pytest.approx(0.15) and f["relative_lift"] == pytest.approx(1.0)
    l1, u1 = wilson_by_hand(12, 40)
    l2, u2 = wilson_by_hand(3, 20)
    assert f["response_rate_ci"] == pytest.approx([l1, u1])
    assert f["control_response_rate_ci"] == pytest.approx([l2, u2])
    lower = 0.15 - math.sqrt((0.3 - l1) ** 2 + (u2 - 0.15) ** 2)
    upper = 0.15 + math.sqrt((u1 - 0.3) ** 2 + (0.15 - l2) ** 2)
    assert f["lift_ci"] == pytest.approx([lower, upper])
    assert f["revenue_per_contact"] == 45.0 and f["control_revenue_per_customer"] == 10.0
    assert f["incremental_revenue_per_contact"] == 35.0 and f["incremental_revenue"] == 1400.0
    assert f["cost"] == 400.0
    assert f["roi"] == pytest.approx((45 - 10) / 10)  # gross: 350%
    assert f["incremental_roi"] == pytest.approx((35 - 10) / 10)  # incremental: 250%


def test_without_control_there_is_no_lift_and_without_cost_no_roi() -> None:
    f = figures(GroupCounts(40, 12, 1800.0), GroupCounts(), None)
    assert f["lift"] is None and f["lift_ci"] is None and f["relative_lift"] is None
    assert f["incremental_revenue_per_contact"] is None
    assert f["cost"] is None and f["roi"] is None and f["incremental_roi"] is None


@given(n=st.integers(1, 2000), data=st.data())
def test_wilson_interval_properties(n: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, n))
    interval = wilson_interval(x, n)
    assert interval is not None
    low, high = interval
    assert 0.0 <= low <= x / n <= high <= 1.0
    # The same proportion measured on four times as many customers gives a narrower interval.
    low4, high4 = wilson_interval(4 * x, 4 * n)  # type: ignore[misc]
    assert high4 - low4 < high - low


# --- control groups ----------------------------------------------------------------------------------------


def test_control_share_parsing_and_rounding() -> None:
    assert parse_share("10%") == Fraction(1, 10) == parse_share("0.1")
    assert parse_share("0%") == 0
    for bad in ("abc", "10", "100%", "-5%"):
        with pytest.raises(UserError, match="--control"):
            parse_share(bad)
    share = Fraction(1, 10)
    # round(share × n), halves up: 2.5 → 3, 1.5 → 2, 0.5 → 1, 0.4 → 0
    assert [control_size(n, share) for n in (25, 15, 5, 4, 10, 0)] == [3, 2, 1, 0, 1, 0]


def _population() -> tuple[list[str], list[str]]:
    ids, strata = [], []
    for stratum, n in (("champions", 95), ("at_risk", 37), ("hibernating", 250), ("new_customers", 4)):
        for i in range(n):
            ids.append(f"{stratum[:3]}{i:04d}")
            strata.append(stratum)
    return ids, strata


def test_control_groups_are_stratified_random_and_reproducible() -> None:
    ids, strata = _population()
    share = Fraction(15, 100)
    first = draw_groups(ids, strata, share, seed=1)
    for stratum, n in (("champions", 95), ("at_risk", 37), ("hibernating", 250), ("new_customers", 4)):
        controls = [c for c, (g, s) in first.items() if s == stratum and g == "control"]
        assert len(controls) == control_size(n, share) == math.floor(0.15 * n + 0.5)
    assert draw_groups(ids, strata, share, seed=1) == first
    other = draw_groups(ids, strata, share, seed=2)
    assert {c for c, (g, _) in other.items() if g == "control"} != {c for c, (g, _) in first.items() if g == "control"}
    # Row order does not matter: the ids are sorted before the draw.
    order = list(range(len(ids)))
    random.Random(3).shuffle(order)
    shuffled = draw_groups([ids[i] for i in order], [strata[i] for i in order], share, seed=1)
    assert shuffled == first


# --- plans in a workspace -------------------------------------------------------------------------------------


@pytest.fixture
def small_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    """12 customers, one of them named like a spreadsheet formula, and one run."""
    customers = tmp_path / "customers.csv"
    orders = tmp_path / "orders.csv"
    names = ['=HYPERLINK("http://x","click")'] + [f"公司{i}" for i in range(1, 12)]
    with customers.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "name"])
        for i, name in enumerate(names):
            w.writerow([f"C{i:02d}", name])
    with orders.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "order_date", "amount"])
        for i in range(12):
            for k in range(1 + i % 3):
                w.writerow([f"C{i:02d}", f"2024-0{1 + k}-{10 + i}", 100 + 10 * i])
    ingest_file(ws, "customers", customers)
    ingest_file(ws, "orders", orders)
    run(ws)
    return ws


def _rows(ws: Workspace, table: str) -> list[dict[str, object]]:
    return ws.table(table).to_pyarrow().to_pylist()


def test_duplicate_plan_name_fails_clearly_and_changes_nothing(small_ws: Workspace, tmp_path: Path) -> None:
    first = create_plan(small_ws, "spring", where="monetary > 0", control="25%", seed=4)
    plans, members = _rows(small_ws, "campaign_plans"), _rows(small_ws, "campaign_members")
    out = tmp_path / "again.csv"
    with pytest.raises(UserError, match=r"'spring' already exists.*--replace"):
        create_plan(small_ws, "spring", where="monetary > 500", control="50%", seed=9, output=out)
    assert _rows(small_ws, "campaign_plans") == plans and _rows(small_ws, "campaign_members") == members
    assert not out.exists()
    again = create_plan(small_ws, "spring", where="monetary > 0", control="50%", seed=9, replace=True)
    assert (first.customers, again.customers) == (12, 12)
    assert [p["control_share"] for p in _rows(small_ws, "campaign_plans")] == [0.5]
    assert sum(1 for m in _rows(small_ws, "campaign_members") if m["group"] == "control") == again.control


def test_exported_target_list_neutralises_formulas(small_ws: Workspace, tmp_path: Path) -> None:
    targets, controls = tmp_path / "targets.csv", tmp_path / "control.csv"
    result = create_plan(
        small_ws, "safe", where="customer_id = 'C00' or monetary > 0", control="0%", seed=1, output=targets
    )
    assert result.control == 0 and result.files == {"treatment": str(targets)}
    text = targets.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text and '\n"safe","C00","treatment"' in text
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 12 and rows[0].keys() >= {"campaign_id", "customer_id", "group", "rfm_segment", "name"}
    with pytest.raises(UserError, match="no control group"):
        create_plan(small_ws, "safe2", where="monetary > 0", control="0%", control_output=controls)


def test_no_control_campaign_reports_no_lift_and_says_so(small_ws: Workspace, tmp_path: Path) -> None:
    create_plan(small_ws, "all-in", where="monetary > 0", control="0%", seed=1, cost_per_contact=20.0)
    responses = tmp_path / "r.csv"
    responses.write_text("campaign_id,customer_id,responded,response_revenue\nall-in,C01,yes,100\nall-in,C02,no,\n")
    ingest_file(small_ws, "campaigns", responses)
    data = campaign_report(small_ws, "all-in")
    o = data["overall"]
    assert not data["has_control"] and o["lift"] is None and o["lift_ci"] is None
    assert "no control group" in data["notes"][0]
    assert (o["contacted"], o["responded"], o["revenue"]) == (12, 1, 100.0)
    assert o["roi"] == pytest.approx((100 / 12 - 20) / 20) and o["incremental_roi"] is None
    assert data["coverage"]["customers_without_response_rows"] == {"treatment": 10}
    assert any("not responded" in n and "treatment 10" in n for n in data["notes"])


def test_unplanned_campaign_reported_from_the_contacts_groups(ws: Workspace, tmp_path: Path) -> None:
    """40 treated (12 responded, 1,800 revenue) and 20 controls (3 responded, 200): the hand example above."""
    src = tmp_path / "contacts.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["活动编号", "客户编号", "分组", "是否响应", "响应金额"])
        for i in range(40):
            w.writerow(["夏季", f"T{i:02d}", "实验组", "是" if i < 12 else "否", 150 if i < 12 else ""])
        for i in range(20):
            w.writerow(["夏季", f"K{i:02d}", "对照组", "是" if i < 3 else "否", "200" if i == 0 else ""])
    ingest_file(ws, "campaigns", src)
    data = campaign_report(ws, "夏季", cost_per_contact=10.0)
    assert data["source"] == "contacts" and data["has_control"]
    expected = figures(GroupCounts(40, 12, 1800.0), GroupCounts(20, 3, 200.0), 10.0)
    assert_figures(data["overall"], expected)
    assert [s["contacted"] for s in data["segments"]] == [40]
    with pytest.raises(UserError, match=r"no campaign '夏'.*did you mean 夏季"):
        campaign_report(ws, "夏")


# --- the command line end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("campaigns")
    data, ws_dir = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "300", "--seed", "11").code == 0
    assert run_cli("init", ws_dir).code == 0
    for table in ("customers", "orders"):
        assert run_cli("ingest", table, data / f"{table}.csv", "-w", ws_dir).code == 0
    assert run_cli("run", "-w", ws_dir).code == 0
    return ws_dir


@pytest.mark.slow
def test_plan_ingest_responses_and_report_through_the_cli(generated_ws: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    where = "rfm_segment in ('at_risk', 'hibernating', 'need_attention', 'about_to_sleep')"
    targets, controls = tmp_path / "targets.csv", tmp_path / "control.xlsx"
    args = ["--where", where, "--control", "20%", "--seed", "7", "--cost-per-contact", "5", "-w", generated_ws]
    plan = run_cli("campaign", "plan", "winback", *args, "-o", targets, "--control-output", controls, "--json")
    assert plan.code == 0, plan.stderr
    p = plan.json()
    assert isinstance(p, dict) and p["customers"] == p["treatment"] + p["control"] > 0
    for counts in p["strata"].values():
        assert counts["control"] == math.floor(0.2 * counts["customers"] + 0.5)
    assert controls.exists()
    again = run_cli("campaign", "plan", "winback", *args)
    assert again.code == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr

    with targets.open(encoding="utf-8-sig") as fh:
        treated = [r["customer_id"] for r in csv.DictReader(fh)]
    assert len(treated) == p["treatment"]
    ws = Workspace.open(generated_ws)
    try:
        m = ws.table("campaign_members")
        control_ids = sorted(
            m.filter((m["name"] == "winback") & (m.group == "control")).customer_id.to_pyarrow().to_pylist()
        )
    finally:
        ws.close()
    control_ids = [str(c) for c in control_ids]
    # Every other treated customer has a row (every fourth responded, 80 each); the first half of the controls
    # have a row, one responded with 40; the rest of the plan has no row at all.
    responses = tmp_path / "responses.csv"
    rows = ["campaign_id,customer_id,group,responded,response_revenue"]
    answered_t = treated[::2]
    for i, cid in enumerate(answered_t):
        rows.append(f"winback,{cid},treatment,{'yes' if i % 2 == 0 else 'no'},{80 if i % 2 == 0 else ''}")
    answered_c = control_ids[: len(control_ids) // 2]
    for i, cid in enumerate(answered_c):
        rows.append(f"winback,{cid},control,{'yes' if i == 0 else 'no'},{40 if i == 0 else ''}")
    responses.write_text("\n".join(rows) + "\n", encoding="utf-8")
    loaded = run_cli("ingest", "campaigns", responses, "-w", generated_ws)
    assert loaded.code == 0, loaded.stderr

    rep = run_cli("campaign", "report", "winback", "--json", "--lang", "en", "-w", generated_ws)
    assert rep.code == 0, rep.stderr
    r = rep.json()
    assert isinstance(r, dict) and r["source"] == "plan" and r["has_control"]
    responded_t = len(answered_t[::2])
    expected = figures(
        GroupCounts(p["treatment"], responded_t, 80.0 * responded_t),
        GroupCounts(p["control"], 1 if answered_c else 0, 40.0 if answered_c else 0.0),
        5.0,
    )
    assert_figures(r["overall"], expected)
    assert r["coverage"]["customers_without_response_rows"] == {
        "treatment": p["treatment"] - len(answered_t),
        "control": p["control"] - len(answered_c),
    }
    assert sum(s["contacted"] for s in r["segments"]) == p["treatment"]
    assert {s["stratum"] for s in r["segments"]} == set(p["strata"])
    human = run_cli("campaign", "report", "winback", "--lang", "zh", "-w", generated_ws)
    assert human.code == 0 and "合计" in human.stdout and "对照" in human.stdout
    listed = run_cli("campaign", "list", "--json", "-w", generated_ws).json()
    assert isinstance(listed, list) and listed[0]["name"] == "winback" and listed[0]["contact_rows"] == len(rows) - 1
