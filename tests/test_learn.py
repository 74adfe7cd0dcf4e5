"""Learned classification rules: models (mining.learn), rule text (mining.rule_text), targets (mining.targets)."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.tree import DecisionTreeClassifier

from tierwise.config import Config
from tierwise.errors import UserError
from tierwise.mining.learn import ClassifySettings, apply_learned, learn_classes, usable_features
from tierwise.mining.rule_text import (
    Condition,
    LeafRule,
    nice_threshold,
    number_literal,
    readable,
    rules_toml,
    tree_rules,
)
from tierwise.pipeline.targets import cut_tables, default_periods, future_target, label_target
from tierwise.rules import check_rules, compile_expression


def planted(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    """label = A if recency_days <= 30 and monetary > 5000 else B, with two features that mean nothing."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "recency_days": rng.integers(1, 200, n),
            "monetary": np.round(rng.uniform(0, 20_000, n), 2),
            "frequency": rng.integers(1, 30, n),
            "online_share": rng.uniform(0, 1, n),
        }
    )
    df["label"] = np.where((df.recency_days <= 30) & (df.monetary > 5000), "A", "B")
    return df


SETTINGS = ClassifySettings(target="label", features=["recency_days", "monetary", "frequency", "online_share"])


def selects(df: pd.DataFrame, expressions: list[str]) -> list[np.ndarray]:
    """What each expression selects on `df`, evaluated by tierwise's rule engine (DuckDB)."""
    table = ibis.memtable(df)
    filters = [compile_expression(e, table.schema(), what=f"rule {i}") for i, e in enumerate(expressions)]
    out = table.select(**{f"r{i}": f(table) for i, f in enumerate(filters)}).to_pandas()
    return [out[f"r{i}"].to_numpy(dtype=bool) for i in range(len(expressions))]


def test_the_tree_recovers_a_planted_rule_and_says_it() -> None:
    df = planted()
    result = learn_classes(df, df["label"], SETTINGS)
    assert result.report.accuracy == 1.0 and result.report.roc_auc == 1.0
    a_rules = [r for r in result.rules if r.predicted == "A"]
    assert len(a_rules) == 1
    rule = a_rules[0]
    bounds = {c.feature: (c.lower, c.upper) for c in rule.conditions}
    assert set(bounds) == {"recency_days", "monetary"}
    assert bounds["recency_days"][0] is None and bounds["recency_days"][1] == pytest.approx(30, abs=1)
    assert bounds["monetary"][1] is None and bounds["monetary"][0] == pytest.approx(5000, abs=50)
    truth = int(((df.recency_days <= 30) & (df.monetary > 5000)).sum())
    assert rule.confidence == 1.0 and rule.customers == truth
    assert rule.text("en").startswith("if recency ≤ 30 days and monetary > ¥5,000 then A (confidence 100%, ")
    assert rule.text("zh").startswith("如果 最近购买间隔 ≤ 30天 且 消费金额 > ¥5,000 则 A（置信度 100%，")
    assert rule.expression() == "recency_days <= 30 and monetary > 5000"
    (chosen,) = selects(df, [rule.expression()])
    assert (chosen == (df["label"] == "A")).all()
    # every customer is predicted, with the confidence of their leaf
    assert (result.predictions["learned_class"] == df["label"]).all()
    assert (result.predictions["learned_confidence"] == 1.0).all()
    top2 = list(result.report.importances)[:2]
    assert set(top2) == {"recency_days", "monetary"} and result.report.importance_kind == "impurity"


def test_a_fitted_model_applies_to_other_customers() -> None:
    train, today = planted(3000, seed=5), planted(1000, seed=6).set_index(pd.Index(range(5000, 6000)))
    result = learn_classes(train, train["label"], SETTINGS)
    predictions, rules = apply_learned(result, today)
    assert predictions.index.equals(today.index)
    assert (predictions["learned_class"] == today["label"]).mean() > 0.99
    for rule, chosen in zip(rules, selects(today, [r.expression() for r in rules]), strict=True):
        assert chosen.sum() == rule.customers
        assert (predictions.loc[chosen, "learned_class"] == rule.predicted).all()
    assert sum(r.customers or 0 for r in rules) == len(today)


def test_metrics_agree_with_the_confusion_matrix_and_rows_without_labels_are_still_predicted() -> None:
    df = planted(3000, seed=8)
    y = df["label"].copy()
    noisy = np.random.default_rng(1).random(len(df)) < 0.1
    y[noisy] = np.where(y[noisy] == "A", "B", "A")  # 10% of labels flipped
    y[:200] = None
    result = learn_classes(df, y, SETTINGS, compare=True)
    assert [r.model for r in result.comparison] == ["tree", "boosting", "mlp"]
    for report in result.comparison:
        m = np.array(report.confusion)
        assert report.classes == ["A", "B"] and m.sum() == report.test_rows
        assert report.test_rows == math.ceil(2800 * 0.25)
        assert report.accuracy == pytest.approx(np.trace(m) / m.sum())
        for i, c in enumerate(report.classes):
            assert report.per_class[c]["recall"] == pytest.approx(m[i, i] / m[i].sum())
            assert report.per_class[c]["precision"] == pytest.approx(m[i, i] / m[:, i].sum())
            assert report.per_class[c]["support"] == m[i].sum()
        assert report.positive == "A" and report.roc_auc is not None and 0.6 < report.roc_auc < 1.0
        assert 0.8 < report.accuracy < 0.97  # the flipped labels cannot be learned
    assert result.comparison[1].importance_kind == result.comparison[2].importance_kind == "permutation"
    assert result.predictions.index.equals(df.index) and result.predictions["learned_class"].notna().all()
    assert any("200 customers without a label" in n for n in result.notes)
    data = result.as_json("zh")
    assert set(data["models"]) == {"tree", "boosting", "mlp"} and "accuracy" in data["models"]["mlp"]["metrics"]
    assert data["rules"][0]["text"].startswith("如果")


def test_leaf_size_scales_down_for_small_data_and_the_target_needs_two_classes() -> None:
    df = planted(400)
    result = learn_classes(df, df["label"], SETTINGS)
    assert result.min_samples_leaf == 3  # 1% of 300 training customers
    assert any("lowered to 3" in n for n in result.notes)
    big = planted(8000)
    assert learn_classes(big, big["label"], SETTINGS).min_samples_leaf == 50
    with pytest.raises(UserError, match="1 class"):
        learn_classes(df, pd.Series("A", index=df.index), SETTINGS)


def test_features_never_include_the_target_or_what_is_derived_from_it() -> None:
    df = pd.DataFrame(
        {
            "grade": ["A"],
            "composite_score": [1.0],
            "score_credit": [1.0],
            "contrib_amount": [1.0],
            "priority_rank": [1],
            "monetary": [1.0],
            "province": ["浙江"],
        }
    )
    wanted = ["grade", "composite_score", "score_credit", "contrib_amount", "priority_rank", "monetary", "province"]
    used, dropped = usable_features(df, "grade", [*wanted, "nope"])
    assert used == ["monetary"]
    assert dropped == [
        "grade (the target or derived from it)",
        "composite_score (the target or derived from it)",
        "score_credit (the target or derived from it)",
        "contrib_amount (the target or derived from it)",
        "priority_rank (the target or derived from it)",
        "province (not a number)",
        "nope (not in the data)",
    ]


def test_missing_values_are_imputed_and_the_rules_say_where_they_go() -> None:
    df = planted(2000, seed=4).astype({"recency_days": "float64"})
    df.loc[df.index % 7 == 0, "recency_days"] = np.nan  # the median (about 100) is on the "> 30" side
    result = learn_classes(df, df["label"], SETTINGS)
    for rule, chosen in zip(result.rules, selects(df, [r.expression() for r in result.rules]), strict=True):
        leaves = result.estimator.apply(df[result.features].fillna(result.medians).to_numpy(dtype="float32"))
        assert (chosen == (leaves == rule.leaf)).all()
        assert rule.customers == chosen.sum()
    boosting = learn_classes(df, df["label"], SETTINGS.model_copy(update={"model": "boosting"}))
    assert boosting.rules == [] and boosting.report.accuracy > 0.9


def test_rules_become_tierwise_rule_tags() -> None:
    df = planted(2000)
    result = learn_classes(df, df["label"], SETTINGS)
    rules = tomllib.loads(rules_toml(result.rules))["rules"]
    expected, seen = [], {"A": 0, "B": 0}
    for rule in sorted(result.rules, key=lambda r: -r.support):
        seen[rule.predicted] += 1
        expected.append({"name": f"learned_{rule.predicted}_{seen[rule.predicted]}", "expression": rule.expression()})
    assert rules == expected and seen["A"] == 1
    config = Config.model_validate({"rules": rules})
    check_rules([(r.name, r.expression) for r in config.rules], ibis.memtable(df).schema())
    only_a = tomllib.loads(rules_toml(result.rules, classes=["A"], prefix="学习"))["rules"]
    a_rule = next(r for r in result.rules if r.predicted == "A")
    assert only_a == [{"name": "学习_A_1", "expression": a_rule.expression()}]


def test_odd_column_names_are_quoted_and_toml_is_escaped() -> None:
    rule = LeafRule(leaf=1, conditions=[Condition('城市"等级', upper=2.5, missing=True)], predicted="高 价值",
                    confidence=0.5, support=10)  # fmt: skip
    assert rule.expression() == '("城市""等级" is null or "城市""等级" <= 2.5)'
    parsed = tomllib.loads(rules_toml([rule]))["rules"][0]
    assert parsed == {"name": "learned_高_价值_1", "expression": rule.expression()}
    assert LeafRule(leaf=0, conditions=[], predicted="A", confidence=1.0, support=3).expression() == "true"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (30, 31, 30),
        (4987.2, 5012.5, 5000),
        (0.2483, 0.2517, 0.25),
        (11987.25, 12003, 12000),
        (7, 7, 7),
        (-31.5, -29, -30),
        (-31, -30, -31),
    ],
)
def test_thresholds_are_the_roundest_number_that_splits_the_same(low: float, high: float, expected: float) -> None:
    assert nice_threshold(low, high) == expected


def test_readable_thresholds() -> None:
    assert readable("monetary", 12000, "en") == "¥12,000"
    assert readable("monetary", 1234567.5, "zh") == "¥1,234,568"  # no decimals beyond 4 significant places
    assert readable("monetary", 12.25, "en") == "¥12.25" and readable("monetary", -5, "en") == "-¥5"
    assert readable("recency_days", 45, "en") == "45 days" and readable("recency_days", 45, "zh") == "45天"
    assert readable("online_share", 0.35, "en") == "35%"
    assert readable("frequency", 3, "en") == "3"
    assert readable("revenue_trend", -0.125, "en") == "-0.125"


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    gap=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
)
def test_nice_thresholds_lie_between_and_print_exactly(low: float, gap: float) -> None:
    high = low + gap
    t = nice_threshold(low, high)
    assert (low <= t < high) or t == low
    assert float(number_literal(t)) == t
    assert "e" not in number_literal(t)


@st.composite
def _data(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=20, max_value=150))
    seed = draw(st.integers(min_value=0, max_value=2**31))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 0.01, 1000.0, 123456.789]))
    df = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 400, n).astype("float64"),
            "monetary": np.round(rng.lognormal(5, 2, n) * scale, draw(st.integers(0, 4))),
            "online_share": rng.uniform(-1, 1, n),
        }
    )
    for column in df.columns:
        df.loc[rng.random(n) < draw(st.sampled_from([0.0, 0.1, 0.4])), column] = np.nan
    df["label"] = rng.choice(["x", "y", "z"][: draw(st.integers(2, 3))], n)
    return df


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=_data(), depth=st.integers(1, 5))
def test_every_rendered_rule_selects_exactly_its_leaf(df: pd.DataFrame, depth: int) -> None:
    features = ["recency_days", "monetary", "online_share"]
    medians = {f: float(v) if pd.notna(v) else 0.0 for f, v in df[features].median().items()}
    filled = df[features].fillna(medians)
    tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(filled.to_numpy(), df["label"])
    rules = tree_rules(tree, features, df, medians)
    leaves = tree.apply(filled.to_numpy(dtype="float32"))
    assert sorted(r.leaf for r in rules) == sorted(set(leaves) | {r.leaf for r in rules})
    for rule, chosen in zip(rules, selects(df, [r.expression() for r in rules]), strict=True):
        assert (chosen == (leaves == rule.leaf)).all(), rule.expression()
        assert rule.text("en") and rule.text("zh")


# --- targets ------------------------------------------------------------------------------------------------


def test_a_label_column_with_gaps() -> None:
    snapshot = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "monetary": [1.0, 2.0, 3.0, 4.0]})
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "销售评级": ["重点", " ", "一般"]})
    rows, labels = label_target(snapshot, "销售评级", customers)
    assert list(rows["customer_id"]) == ["a", "b", "c", "d"]
    assert list(labels) == ["重点", None, "一般", None]
    with pytest.raises(UserError, match="did you mean 'monetary'"):
        label_target(snapshot, "monetery")


def _orders_csv(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    lines = ["order_id,customer_id,order_date,amount"] + [f"{o},{c},{d},{a}" for o, c, d, a in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_future_target_uses_nothing_from_after_the_calibration_date(ws_dir: Path, tmp_path: Path) -> None:
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.snapshot import build_snapshot
    from tierwise.store.runs import canonical_tables
    from tierwise.workspace import Workspace

    # One DuckDB thread: parallel sums add in a varying order, so two runs on the same data may differ in the
    # last bits of averages and shares, which a byte-for-byte comparison would take for a leak.
    config = ws_dir / "tierwise.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("threads = 0", "threads = 1"), encoding="utf-8")
    ws = Workspace.open(ws_dir)
    assert ws.config.engine.threads == 1
    generate(tmp_path / "gen", customers=300, seed=21, fmt="csv")
    for table in ("customers", "orders", "payments", "interactions"):
        ingest_file(ws, table, tmp_path / "gen" / f"{table}.csv", today=dt.date(2025, 1, 1))
    calibration_end, holdout_end = dt.date(2024, 7, 1), dt.date(2025, 1, 1)
    before = {k: future_target(canonical_tables(ws), ws.config, calibration_end, holdout_end, k)
              for k in ("future-high-value", "future-churn")}  # fmt: skip
    features = before["future-high-value"].features
    churned = [c for c, y in zip(features["customer_id"], before["future-churn"].labels, strict=True) if y == "churned"]
    small = features.sort_values("monetary")["customer_id"].tolist()
    chosen = [c for c in small if c in set(churned)][:3]
    assert len(chosen) == 3

    # After the calibration date: huge orders, late payments, interactions; and a brand-new customer.
    late = [(f"LATE{i}", c, "2024-08-15", 10_000_000.0) for i, c in enumerate(chosen)]
    ingest_file(ws, "orders", _orders_csv(tmp_path / "late.csv", [*late, ("LATE9", "NEWCOMER", "2024-07-01", 5.0)]))
    (tmp_path / "pay.csv").write_text(
        "invoice_id,customer_id,invoice_date,due_date,paid_date,amount\n"
        f"INV-LATE,{chosen[0]},2024-07-02,2024-08-01,,999999\n"
        f"INV-UNDATED,{chosen[1]},,2024-08-01,,5000\n",
        encoding="utf-8",
    )
    ingest_file(ws, "payments", tmp_path / "pay.csv")
    (tmp_path / "int.csv").write_text(f"customer_id,date,kind,satisfaction\n{chosen[2]},2024-07-03,survey,1\n")
    ingest_file(ws, "interactions", tmp_path / "int.csv")

    after = {k: future_target(canonical_tables(ws), ws.config, calibration_end, holdout_end, k)
             for k in ("future-high-value", "future-churn")}  # fmt: skip
    for k in before:
        pd.testing.assert_frame_equal(after[k].features, before[k].features)
        assert after[k].features.to_csv() == before[k].features.to_csv()  # byte for byte
    new_labels = dict(zip(features["customer_id"], after["future-high-value"].labels, strict=True))
    assert all(new_labels[c] == "high_value" for c in chosen)
    assert before["future-high-value"].labels.tolist() != after["future-high-value"].labels.tolist()
    new_churn = dict(zip(features["customer_id"], after["future-churn"].labels, strict=True))
    assert all(new_churn[c] == "retained" for c in chosen)
    assert "NEWCOMER" not in set(after["future-churn"].features["customer_id"])

    # The check can fail: one order the day before the calibration date changes the features.
    ingest_file(ws, "orders", _orders_csv(tmp_path / "early.csv", [("EARLY1", chosen[0], "2024-06-30", 123.0)]))
    moved = future_target(canonical_tables(ws), ws.config, calibration_end, holdout_end, "future-churn")
    assert moved.features.to_csv() != before["future-churn"].features.to_csv()

    # The learned rules compile against the schema of a real snapshot.
    target = after["future-high-value"]
    result = learn_classes(target.features, target.labels, ClassifySettings(), positive=target.positive)
    schema = build_snapshot(cut_tables(canonical_tables(ws), calibration_end), ws.config, calibration_end).schema()
    check_rules([(f"r{i}", r.expression()) for i, r in enumerate(result.rules)], schema)
    assert result.report.positive == "high_value" and result.rules
    ws.close()


def test_default_periods_end_after_the_last_order() -> None:
    orders = ibis.memtable({"order_date": [dt.datetime(2024, 3, 1, 10), dt.datetime(2024, 12, 30, 18)]})
    assert default_periods(orders, 180) == (dt.date(2024, 7, 4), dt.date(2024, 12, 31))
