"""Playbook, next actions, cross-sell and the worklist (docs/strategy.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierwise.config import Config, load_config, render_default_config
from tierwise.errors import UserError
from tierwise.strategy.cross_sell import cross_sell
from tierwise.strategy.playbook import PLAYBOOK_COLUMNS, apply_playbook, check_playbook
from tierwise.strategy.settings import DEFAULT_PLAYBOOK, PlaybookRule, default_playbook


def rule(name: str, when: str, action: str = "maintain", share: float = 0.0, **kw: Any) -> PlaybookRule:
    return PlaybookRule(name=name, when=when, action=action, budget_share=share, **kw)


def rows(t: ibis.Table) -> dict[str, dict[str, Any]]:
    return {r["customer_id"]: r for r in t.to_pyarrow().to_pylist()}


# --- the playbook on hand-built snapshots ---------------------------------------------------------------

HAND = ibis.memtable(
    {
        "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
        "grade": ["A", "A", "B", "B", None, None],
        "lifecycle_stage": ["at_risk", "active", "active", None, "prospect", "at_risk"],
        "monetary": [5000.0, 5000.0, 2000.0, 10.0, None, 2000.0],
    },
    schema={"customer_id": "string", "grade": "string", "lifecycle_stage": "string", "monetary": "float64"},
)
HAND_RULES = [
    rule("a_at_risk", "grade = 'A' and lifecycle_stage = 'at_risk'", "win_back", 0.5, reason_en="{grade} slipping"),
    rule("a", "grade = 'A'", "vip_care", 0.2, channel="account_manager"),
    rule("big", "monetary > 1000", "up_sell", 0.1, reason_en="big, grade {grade}"),
    rule("rest", "true", "maintain", 0.0),
]


def test_first_matching_rule_wins_and_budget_is_split_by_hand() -> None:
    out = rows(apply_playbook(HAND, HAND_RULES, budget=10_000, language="en"))
    # c1 matches a_at_risk, a and big: the first wins. c6 (no grade) fails the grade rules (NULL never matches).
    expected = {"c1": "a_at_risk", "c2": "a", "c3": "big", "c4": "rest", "c5": "rest", "c6": "big"}
    assert {c: r["strategy"] for c, r in out.items()} == expected
    assert {c: r["next_action"] for c, r in out.items()} == {
        "c1": "win_back", "c2": "vip_care", "c3": "up_sell", "c4": "maintain", "c5": "maintain", "c6": "up_sell",
    }  # fmt: skip
    # budget × share ÷ customers matched: a_at_risk 0.5 × 10000 / 1, a 0.2 × 10000 / 1, big 0.1 × 10000 / 2.
    assert {c: r["budget_per_customer"] for c, r in out.items()} == pytest.approx(
        {"c1": 5000.0, "c2": 2000.0, "c3": 500.0, "c4": 0.0, "c5": 0.0, "c6": 500.0}
    )
    assert out["c2"]["channel"] == "account_manager" and out["c1"]["channel"] == "email"
    assert out["c1"]["contact_every_days"] == 30 and out["c1"]["service_level"] == "standard"
    assert out["c1"]["action_reason"] == "A slipping (rule 1 'a_at_risk': grade = 'A' and lifecycle_stage = 'at_risk')"
    assert out["c6"]["action_reason"].startswith("big, grade — (rule 3 'big'")  # a missing value shows as —
    assert out["c4"]["action_reason"] == "rest (rule 4 'rest': true)"  # no reason: the label (here the name)


def test_no_budget_means_zero_and_reapplying_replaces_the_columns() -> None:
    once = apply_playbook(HAND, HAND_RULES)
    assert {r["budget_per_customer"] for r in rows(once).values()} == {0.0}
    twice = apply_playbook(once, HAND_RULES[1:], budget=100)
    assert twice.columns == once.columns
    assert rows(twice)["c1"]["strategy"] == "a" and rows(twice)["c2"]["budget_per_customer"] == 10.0  # 0.2×100/2
    assert rows(once)["c1"]["action_reason"].startswith("A slipping（规则 1")  # zh by default


def test_customers_matching_no_rule_get_no_action() -> None:
    out = rows(apply_playbook(HAND, HAND_RULES[:2], budget=1000))
    assert out["c3"]["strategy"] is None and out["c3"]["next_action"] is None
    assert out["c3"]["budget_per_customer"] == 0.0


# --- validation: one line naming the rule -------------------------------------------------------------


def write_config(tmp_path: Path, playbook: str) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(playbook, encoding="utf-8")
    return path


def test_unknown_action_names_the_rule(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[[playbook]]\nname = "vip"\nwhen = "grade = \'A\'"\naction = "vip_kare"\n')
    with pytest.raises(UserError) as exc:
        load_config(path)
    message = str(exc.value)
    assert "\n" not in message
    assert "playbook rule 'vip': unknown action 'vip_kare'; did you mean 'vip_care'?" in message


def test_budget_shares_over_one_name_the_rule_that_crosses(tmp_path: Path) -> None:
    text = "".join(
        f'[[playbook]]\nname = "{n}"\nwhen = "true"\naction = "maintain"\nbudget_share = {s}\n'
        for n, s in (("first", 0.6), ("second", 0.3), ("third", 0.2))
    )
    with pytest.raises(UserError, match=r"playbook rule 'third': budget shares add up to 1\.1 by this rule"):
        load_config(write_config(tmp_path, text))
    with pytest.raises(UserError, match=r"playbook rule 'x': budget_share must be between 0 and 1, got 1\.5"):
        load_config(write_config(tmp_path, '[[playbook]]\nname = "x"\nwhen = "true"\naction = "nurture"\n'
                                            "budget_share = 1.5\n"))  # fmt: skip


def test_bad_expressions_and_placeholders_name_the_rule() -> None:
    schema = HAND.schema()
    with pytest.raises(UserError, match=r"^playbook rule 'typo': unknown column 'grad'.*did you mean 'grade'"):
        check_playbook([rule("ok", "true"), rule("typo", "grad = 'A'")], schema)
    with pytest.raises(UserError, match=r"^playbook rule 'text': cannot compare text with a number"):
        check_playbook([rule("text", "grade = 5")], schema)
    with pytest.raises(UserError, match=r"^playbook rule 'r': reason_zh uses \{grad\}.*did you mean \{grade\}"):
        check_playbook([rule("r", "true", reason_zh="{grad}级")], schema)
    with pytest.raises(ValueError, match="playbook rule 'r': reason_en: bad placeholder"):
        rule("r", "true", reason_en="{grade:>5}")
    with pytest.raises(UserError, match="playbook rule 'typo'"):  # apply checks too, before reading data
        apply_playbook(HAND, [rule("typo", "grad = 'A'")])


def test_duplicate_names_and_empty_playbooks_are_refused(tmp_path: Path) -> None:
    text = '[[playbook]]\nname = "a"\nwhen = "true"\naction = "maintain"\n' * 2
    with pytest.raises(UserError, match="playbook rule 'a': the name is used twice"):
        load_config(write_config(tmp_path, text))
    with pytest.raises(UserError, match="the playbook is empty"):
        load_config(write_config(tmp_path, "playbook = []\n"))


# --- the default playbook ------------------------------------------------------------------------------

SNAPSHOT_SCHEMA = {
    "customer_id": "string",
    "grade": "string",
    "lifecycle_stage": "string",
    "rfm_segment": "string",
    "loyalty": "string",
    "satisfaction_level": "string",
    "satisfaction": "float64",
    "composite_score": "float64",
    "priority_rank": "int64",
    "recency_days": "int64",
    "frequency": "int64",
    "tenure_days": "int64",
    "top_category": "string",
}


def test_default_playbook_is_written_by_init_and_reads_back() -> None:
    text = render_default_config()
    assert text.count("\n[[playbook]]\n") == len(DEFAULT_PLAYBOOK)
    assert Config.model_validate(tomllib.loads(text)).playbook == default_playbook()
    assert sum(r.budget_share for r in default_playbook()) == pytest.approx(1.0)
    assert default_playbook()[-1].when == "true"  # the catch-all comes last
    check_playbook(default_playbook(), ibis.schema(SNAPSHOT_SCHEMA))


def test_default_playbook_follows_the_source_documents() -> None:
    # (grade, lifecycle, rfm segment, loyalty, satisfaction level) → expected strategy and action.
    cases = {
        "a_slipping": (("A", "at_risk", "at_risk", "lapsed", None), "key_account_rescue", "win_back"),
        "b_churned": (("B", "churned", "hibernating", "lapsed", None), "key_account_rescue", "win_back"),
        "a_unhappy": (("A", "mature", "champions", "loyal", "dissatisfied"), "key_account_recovery",
                      "service_recovery"),
        "a": (("A", "mature", "champions", "loyal", "satisfied"), "vip_care", "vip_care"),
        "b": (("B", "active", "loyal_customers", "loyal", None), "important_personalised",
              "personalised_recommendation"),
        "c_cant_lose": (("C", "mature", "cant_lose_them", "loyal", None), "cant_lose_win_back", "win_back"),
        "c_at_risk": (("C", "at_risk", "need_attention", "loyal", None), "at_risk_win_back", "win_back"),
        "d_sleepy": (("D", "active", "about_to_sleep", "occasional", None), "at_risk_win_back", "win_back"),
        "c_potential": (("C", "active", "need_attention", "potential_loyal", None), "cultivate_loyalty",
                        "loyalty_invitation"),
        "d_promising": (("D", "active", "promising", "occasional", None), "cultivate_loyalty", "loyalty_invitation"),
        "d_new": (("D", "new", "new_customers", "occasional", None), "new_customer_nurture", "nurture"),
        "c": (("C", "mature", "loyal_customers", "loyal", None), "ordinary_cross_sell", "cross_sell"),
        "d_active": (("D", "mature", "hibernating", "loyal", None), "low_value_up_sell", "up_sell"),
        "d_churned": (("D", "churned", "hibernating", "lapsed", None), "lapsed_reduce_spend", "reduce_spend"),
        "prospect": ((None, "prospect", "prospects", "prospect", None), "prospect_nurture", "nurture"),
        "d_no_stage": (("D", None, "hibernating", "lapsed", None), "maintain", "maintain"),  # the catch-all
    }  # fmt: skip
    data: dict[str, list[Any]] = {c: [] for c in SNAPSHOT_SCHEMA}
    for cid, ((grade, stage, segment, loyalty, level), _, _) in cases.items():
        values = {"customer_id": cid, "grade": grade, "lifecycle_stage": stage, "rfm_segment": segment}
        values |= {"loyalty": loyalty, "satisfaction_level": level, "satisfaction": 2.0 if level else None}
        values |= {"composite_score": 50.5, "priority_rank": 3, "recency_days": 40, "frequency": 4}
        values |= {"tenure_days": 300, "top_category": "办公用品"}
        for column in SNAPSHOT_SCHEMA:
            data[column].append(values[column])
    out = rows(apply_playbook(ibis.memtable(data, schema=SNAPSHOT_SCHEMA), default_playbook(), language="zh"))
    assert {c: (r["strategy"], r["next_action"]) for c, r in out.items()} == {
        c: (strategy, action) for c, (_, strategy, action) in cases.items()
    }
    assert out["a"]["action_reason"].startswith("A级重点客户（综合得分 50.5，第 3 位）：专属客户经理")
    assert out["a_unhappy"]["action_reason"].startswith("A级重点客户满意度低（2.0 分）")


# --- property: exactly one strategy per customer, the first matching rule's ------------------------------

CONDITIONS = [
    ("grade = 'A'", lambda g, m, s: g == "A"),
    ("grade in ('B', 'C')", lambda g, m, s: g in ("B", "C")),
    ("monetary > 500", lambda g, m, s: m is not None and m > 500),
    ("lifecycle_stage = 'at_risk' or monetary < 100", lambda g, m, s: s == "at_risk" or (m is not None and m < 100)),
    ("not (grade = 'D')", lambda g, m, s: g is not None and g != "D"),
    ("grade is null", lambda g, m, s: g is None),
    ("true", lambda g, m, s: True),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    customers=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C", "D", None]),
            st.one_of(st.none(), st.integers(0, 1000).map(float)),
            st.sampled_from(["active", "at_risk", None]),
        ),
        min_size=1,
        max_size=12,
    ),
    picks=st.lists(st.integers(0, len(CONDITIONS) - 1), min_size=1, max_size=5),
)
def test_exactly_one_strategy_per_customer_the_first_matching(customers: list[tuple], picks: list[int]) -> None:
    ids = [f"c{i}" for i in range(len(customers))]
    table = ibis.memtable(
        {
            "customer_id": ids,
            "grade": [c[0] for c in customers],
            "monetary": [c[1] for c in customers],
            "lifecycle_stage": [c[2] for c in customers],
        },
        schema={"customer_id": "string", "grade": "string", "monetary": "float64", "lifecycle_stage": "string"},
    )
    rules = [rule(f"r{i}", CONDITIONS[p][0], share=0.1) for i, p in enumerate(picks)]
    result = apply_playbook(table, rules, budget=1000).to_pyarrow().to_pylist()
    assert sorted(r["customer_id"] for r in result) == sorted(ids)  # one row per customer, none lost
    got = {r["customer_id"]: r["strategy"] for r in result}
    for cid, (g, m, s) in zip(ids, customers, strict=True):
        first = next((f"r{i}" for i, p in enumerate(picks) if CONDITIONS[p][1](g, m, s)), None)
        assert got[cid] == first
    matched: dict[str, int] = {}
    for name in got.values():
        if name is not None:
            matched[name] = matched.get(name, 0) + 1
    for r in result:
        expected = 100.0 / matched[r["strategy"]] if r["strategy"] else 0.0
        assert r["budget_per_customer"] == pytest.approx(expected)


# --- cross-sell ---------------------------------------------------------------------------------------

CS_SNAPSHOT = ibis.memtable(
    {
        "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"],
        "cluster": [1, 1, 1, 1, 1, 2, 2, None],
        "rfm_segment": ["champions"] * 4 + ["hibernating"] * 4,
    },
    schema={"customer_id": "string", "cluster": "int64", "rfm_segment": "string"},
)
CS_ORDERS = ibis.memtable(
    {
        "customer_id": ["c1", "c2", "c2", "c3", "c4", "c4", "c5", "c5", "c6", "c8", "c1"],
        "product_category": ["A", "X", "A", "X", "X", "B", "B", "X", "Y", "X", None],
        "amount": [10.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, -5.0, 5.0, 5.0, 5.0],  # c5's X is a return
        "order_date": ["2024-01-05"] * 11,
    },
).mutate(order_date=ibis._.order_date.cast("timestamp"))


def suggestions(t: ibis.Table) -> dict[str, list[tuple[str, float, int]]]:
    out: dict[str, list[tuple[str, float, int]]] = {}
    for r in t.order_by(["customer_id", "rank"]).to_pyarrow().to_pylist():
        assert r["rank"] == len(out.get(r["customer_id"], [])) + 1
        out.setdefault(r["customer_id"], []).append((r["category"], r["support"], r["buyers"]))
    return out


def test_cross_sell_suggests_what_similar_customers_buy_by_hand() -> None:
    got = suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, k=3))  # cluster is there: similar = same cluster
    # Cluster 1 = c1..c5; each customer is compared with the 4 others. c1 (bought A): X by c2, c3, c4 → 3/4;
    # B by c4, c5 → 2/4. c5 returned its X, so X is still suggested to c5. Cluster 2: c7 (nothing) ← c6's Y 1/1.
    assert got == {
        "c1": [("X", 0.75, 3), ("B", 0.5, 2)],
        "c2": [("B", 0.5, 2)],
        "c3": [("A", 0.5, 2), ("B", 0.5, 2)],  # equal support and buyers: by category name
        "c4": [("A", 0.5, 2)],
        "c5": [("X", 0.75, 3), ("A", 0.5, 2)],
        "c7": [("Y", 1.0, 1)],
    }
    bought = {(r["customer_id"], r["product_category"]) for r in CS_ORDERS.to_pyarrow().to_pylist() if r["amount"] > 0}
    assert not {(c, cat) for c, items in got.items() for cat, _, _ in items} & bought
    assert suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, k=1))["c3"] == [("A", 0.5, 2)]
    assert suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, k=3, min_support=0.6)) == {
        "c1": [("X", 0.75, 3)], "c5": [("X", 0.75, 3)], "c7": [("Y", 1.0, 1)],
    }  # fmt: skip


def test_cross_sell_by_segment_and_for_some_customers_only() -> None:
    # By rfm_segment: champions = c1..c4. c1 ← X by c2, c3, c4 → 3/3.
    by_segment = suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, k=3, by="rfm_segment"))
    assert by_segment["c1"] == [("X", 1.0, 3), ("B", 1 / 3, 1)]
    only = ibis.memtable({"customer_id": ["c1"]})
    assert suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, k=3, targets=only)) == {"c1": [("X", 0.75, 3), ("B", 0.5, 2)]}
    import datetime as dt

    assert suggestions(cross_sell(CS_SNAPSHOT, CS_ORDERS, as_of=dt.date(2024, 1, 5))) == {}  # nothing before
    with pytest.raises(UserError, match="cross-sell by 'segment'"):
        cross_sell(CS_SNAPSHOT, CS_ORDERS, by="segment")


# --- the worklist, end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 generated B2B customers (with owners and product categories) and one run."""
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("strategy")
    data, ws_dir = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "300", "--seed", "11").code == 0
    assert run_cli("init", ws_dir).code == 0
    for table in ("customers", "orders", "payments", "interactions"):
        assert run_cli("ingest", table, data / f"{table}.csv", "-w", ws_dir).code == 0
    assert run_cli("run", "-w", ws_dir).code == 0
    return ws_dir


def snapshot_rows(ws_dir: Path) -> list[dict[str, Any]]:
    from tierwise.store.runs import latest_snapshot
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        _, snap = latest_snapshot(ws)
        if "next_action" not in snap.columns:
            snap = apply_playbook(snap, ws.config.playbook, budget=1000.0)
        return snap.to_pyarrow().to_pylist()
    finally:
        ws.close()


@pytest.mark.slow
def test_default_playbook_gives_every_generated_customer_an_action(generated_ws: Path) -> None:
    snap = snapshot_rows(generated_ws)
    assert len(snap) == 300
    assert all(r["next_action"] and r["strategy"] and r["action_reason"] for r in snap)
    assert {r["strategy"] for r in snap} >= {"vip_care", "prospect_nurture", "lapsed_reduce_spend"}
    assert sum(r["budget_per_customer"] for r in snap) <= 1000.0 + 1e-6
    assert all(c in snap[0] for c in PLAYBOOK_COLUMNS)


@pytest.mark.slow
def test_worklist_cli_orders_by_priority_per_owner(generated_ws: Path) -> None:
    from tests.conftest import run_cli

    snap = {r["customer_id"]: r for r in snapshot_rows(generated_ws)}
    result = run_cli("worklist", "-w", generated_ws, "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert isinstance(data, dict) and data["playbook"] in ("run", "applied now")
    assert sum(len(g["rows"]) for g in data["owners"]) == 300
    for group in data["owners"]:
        assert len(group["rows"]) == group["customers"]
        ranks = [r["priority_rank"] for r in group["rows"]]
        graded = [r for r in ranks if r is not None]
        assert graded == sorted(graded) and ranks[: len(graded)] == graded  # best first, ungraded last
        assert [r["position"] for r in group["rows"]] == list(range(1, len(ranks) + 1))
        for r in group["rows"]:
            assert snap[r["customer_id"]]["owner"] == group["owner"]
            assert r["next_action"] == snap[r["customer_id"]]["next_action"]
            for s in r["cross_sell"]:
                assert 0 < s["support"] <= 1 and s["buyers"] >= 1

    owner = next(g["owner"] for g in data["owners"] if g["owner"] is not None and g["customers"] >= 4)
    best = sorted(
        (r["priority_rank"], cid) for cid, r in snap.items() if r["owner"] == owner and r["priority_rank"] is not None
    )[:3]
    top = run_cli("worklist", "-w", generated_ws, "--owner", owner, "--top", "3", "--lang", "en", "--json").json()
    assert isinstance(top, dict) and [g["owner"] for g in top["owners"]] == [owner]
    assert [r["customer_id"] for r in top["owners"][0]["rows"]] == [cid for _, cid in best]
    assert top["language"] == "en" and "(rule " in top["owners"][0]["rows"][0]["action_reason"]

    human = run_cli("worklist", "-w", generated_ws, "--owner", owner, "--top", "2")
    assert human.code == 0 and owner in human.stdout and "下一步行动" in human.stdout
    wrong = run_cli("worklist", "-w", generated_ws, "--owner", "nobody")
    assert wrong.code == 2 and "--owner 'nobody': no customer has this owner" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_playbook_cli_and_a_bad_rule_stop_with_one_line(generated_ws: Path) -> None:
    from tests.conftest import run_cli

    listed = run_cli("playbook", "-w", generated_ws, "--json").json()
    assert isinstance(listed, dict)
    assert [r["name"] for r in listed["rules"]] == [r["name"] for r in DEFAULT_PLAYBOOK]
    assert sum(r["customers"] for r in listed["rules"]) + listed["unmatched"] == 300
    config = generated_ws / "tierwise.toml"
    original = config.read_text(encoding="utf-8")
    try:
        config.write_text(original.replace("when = \"grade = 'A'\"", 'when = "grade = A"', 1), encoding="utf-8")
        bad = run_cli("playbook", "-w", generated_ws)  # checks the workspace's playbook on the latest run
        assert bad.code == 2 and "playbook rule 'vip_care': unknown column 'A'" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    finally:
        config.write_text(original, encoding="utf-8")
