"""`tierwise cluster` and `tierwise classify` as a user runs them: real processes on a generated workspace."""

from __future__ import annotations

import datetime as dt
import shutil
import tomllib
from pathlib import Path
from types import SimpleNamespace

import ibis
import pandas as pd
import pytest
from tests.conftest import run_cli

from tierwise.errors import UserError
from tierwise.mining.rule_text import Condition, LeafRule

CUSTOMERS = 800
PLANTED_CUT = 150_000  # 人工等级 = A when the customer's net orders of the last 365 days exceed this


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated data (customers, orders, payments, interactions) ingested and run once; tests copy it."""
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("mining")
    generate(root / "data", customers=CUSTOMERS, seed=8, fmt="csv")
    ws = Workspace.init(root / "ws")
    try:
        for table in ("customers", "orders", "payments", "interactions"):
            ingest_file(ws, table, root / "data" / f"{table}.csv")
        run(ws)
    finally:
        ws.close()
    return root


@pytest.fixture
def ws_copy(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base / "ws", tmp_path / "ws")
    return tmp_path / "ws"


def query(ws: Path, sql: str) -> pd.DataFrame:
    con = ibis.duckdb.connect(str(ws / "tierwise.duckdb"), read_only=True)
    try:
        return con.sql(sql).to_pandas()
    finally:
        con.disconnect()


def stored(ws: Path) -> dict[str, object]:
    """What a command could have written: tables, runs, learned models, the settings file."""
    from tierwise.workspace import Workspace

    Workspace.open(ws).close()  # the system tables any command creates on opening, so that only writes count
    con = ibis.duckdb.connect(str(ws / "tierwise.duckdb"), read_only=True)
    try:
        return {
            "tables": sorted(con.list_tables()),
            "runs": con.table("runs").count().execute(),
            "learned": con.table("learned_models").count().execute(),
            "toml": (ws / "tierwise.toml").read_text(encoding="utf-8"),
        }
    finally:
        con.disconnect()


def latest_snapshot_df(ws: Path) -> pd.DataFrame:
    [name] = query(ws, "select snapshot_table from runs order by created_at desc limit 1")["snapshot_table"]
    return query(ws, f"select * from {name}")


# --- cluster ------------------------------------------------------------------------------------------------


def test_cluster_json_profiles_add_up_and_nothing_is_stored(base: Path) -> None:
    ws = base / "ws"
    before = stored(ws)
    r = run_cli("cluster", "-w", ws, "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert isinstance(data, dict)
    settings = data["settings"]
    assert settings["k"] is None and settings["k_min"] <= data["k"] <= settings["k_max"]
    assert list(data["silhouette"]) == [str(k) for k in range(settings["k_min"], settings["k_max"] + 1)]
    assert set(data["inertia"]) == set(data["silhouette"])
    profiles = data["profiles"]
    assert [p["cluster"] for p in profiles] == list(range(1, data["k"] + 1))
    buyers = int((latest_snapshot_df(ws)["purchases"].fillna(0) > 0).sum())
    assert data["clustered"] == buyers and data["excluded"] == CUSTOMERS - buyers
    assert sum(p["size"] for p in profiles) == data["clustered"]
    assert sum(p["revenue_share"] for p in profiles) == pytest.approx(1.0)
    assert all(p["name"] == p["name_zh"] and p["name_en"] for p in profiles)  # default language: zh
    assert all(set(p["dominant"]) >= {"rfm_segment", "grade", "province"} for p in profiles)
    assert data["stability"] is not None and 0 <= data["stability"] <= 1
    assert stored(ws) == before  # exploration only


def test_cluster_options_override_the_settings(base: Path) -> None:
    ws = base / "ws"
    args = ["--k", "3", "--features", "recency_days,monetary,frequency", "--categorical", "province", "--seed", "7"]
    r = run_cli("cluster", "-w", ws, *args, "--lang", "en", "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert isinstance(data, dict)
    assert data["k"] == 3 and data["k_fixed"] and len(data["profiles"]) == 3
    assert data["features"] == ["recency_days", "monetary", "frequency", "province"]
    assert data["settings"]["seed"] == 7 and list(data["silhouette"]) == ["3"]
    assert all(p["name"] == p["name_en"] for p in data["profiles"])

    human = run_cli("cluster", "-w", ws, "--k-min", "2", "--k-max", "3", "--lang", "en")
    assert human.code == 0, human.stderr
    assert "choosing k" in human.stdout and "← chosen" in human.stdout and "cluster profiles" in human.stdout
    assert "stability: mean adjusted Rand index" in human.stdout

    bad = run_cli("cluster", "-w", ws, "--features", "province")
    assert bad.code == 2 and "--categorical" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --- classify -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_classify_future_churn_stores_a_prediction_per_customer(ws_copy: Path) -> None:
    r = run_cli("classify", "-w", ws_copy, "--target", "future-churn", "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert isinstance(data, dict)
    tree = data["models"]["tree"]
    assert 0 <= tree["metrics"]["accuracy"] <= 1 and tree["metrics"]["roc_auc"] is not None
    assert tree["metrics"]["positive_class"] == "churned"
    assert len(tree["rules"]) >= 1 and tree["rules"] == data["rules"]
    assert all(rule["text"] == rule["text_zh"] and rule["text_en"].startswith("if ") for rule in data["rules"])
    assert data["calibration_end"] < data["holdout_end"]

    snapshot = latest_snapshot_df(ws_copy)
    predictions = query(ws_copy, f"select * from {data['predictions_table']}")
    assert list(predictions.columns) == ["customer_id", "learned_class", "learned_confidence"]
    assert len(predictions) == len(snapshot) == CUSTOMERS
    assert set(predictions["customer_id"]) == set(snapshot["customer_id"])
    assert set(predictions["learned_class"]) <= {"churned", "retained"}
    assert predictions["learned_confidence"].between(0.5, 1).all()
    models = query(ws_copy, "select * from learned_models")
    assert len(models) == 1
    row = models.iloc[0]
    assert row["model_id"] == data["model_id"] and row["predictions_table"] == data["predictions_table"]
    assert (row["target"], row["model"]) == ("future-churn", "tree")
    assert row["run_id"] == data["run_id"] == query(ws_copy, "select run_id from runs")["run_id"][0]

    from tierwise.store.learned import latest_learned
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_copy)
    try:
        latest = latest_learned(ws)
        assert latest_learned(ws, "no-such-run") is None
    finally:
        ws.close()
    assert latest is not None and latest["model_id"] == data["model_id"]
    assert latest["calibration_end"] == dt.date.fromisoformat(data["calibration_end"])
    payload = latest["payload"]
    assert payload["models"]["tree"]["metrics"]["accuracy"] == tree["metrics"]["accuracy"]
    assert {"text_en", "text_zh", "expression", "support", "confidence"} <= set(payload["rules"][0])
    assert payload["applied"]["customers"] == CUSTOMERS


def _planted_customers(base: Path, out: Path) -> pd.Series:
    """customers.csv with 人工等级 = A/B by the net orders of the 365 days before the run's as-of date."""
    orders = pd.read_csv(base / "data" / "orders.csv", parse_dates=["order_date"])
    as_of = orders["order_date"].max().normalize() + pd.Timedelta(days=1)
    window = orders[orders["order_date"] >= as_of - pd.Timedelta(days=365)]
    totals = window.groupby("customer_id")["amount"].sum()
    customers = pd.read_csv(base / "data" / "customers.csv", dtype=str, keep_default_na=False)
    grade = customers["customer_id"].map(lambda c: "A" if totals.get(c, 0.0) > PLANTED_CUT else "B")
    assert not ((totals - PLANTED_CUT).abs() < 1).any()  # nobody on the edge
    assert 0.1 < (grade == "A").mean() < 0.6
    customers["人工等级"] = grade
    customers.to_csv(out, index=False)
    return pd.Series(grade.to_numpy(), index=customers["customer_id"])


@pytest.mark.slow
def test_classify_learns_a_planted_manual_grade_and_saves_its_rules(base: Path, ws_copy: Path) -> None:
    planted = _planted_customers(base, ws_copy.parent / "customers_graded.csv")
    ingest = run_cli("ingest", "customers", ws_copy.parent / "customers_graded.csv", "-w", ws_copy)
    assert ingest.code == 0, ingest.stderr
    assert "人工等级" in ingest.stdout  # kept as an attribute

    r = run_cli("classify", "-w", ws_copy, "--target", "人工等级", "--save-rules", "--lang", "en", "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert isinstance(data, dict)
    assert data["class_counts"] == planted.value_counts().sort_index().to_dict()
    assert data["models"]["tree"]["metrics"]["accuracy"] >= 0.9
    a_rules = [rule for rule in data["rules"] if rule["class"] == "A"]
    assert a_rules and all("monetary > ¥" in rule["text"] for rule in a_rules)
    assert next(iter(data["models"]["tree"]["importances"])) == "monetary"
    predictions = query(ws_copy, f"select customer_id, learned_class from {data['predictions_table']}")
    agree = (predictions.set_index("customer_id")["learned_class"] == planted).mean()
    assert agree >= 0.9

    saved = data["saved_rules"]
    config = tomllib.loads((ws_copy / "tierwise.toml").read_text(encoding="utf-8"))
    names = [rule["name"] for rule in config["rules"]]
    assert sorted(names) == sorted(saved["added"]) and "learned_A_1" in names and saved["replaced"] == []
    assert {rule["expression"] for rule in config["rules"]} == {rule["expression"] for rule in data["rules"]}

    again = run_cli("classify", "-w", ws_copy, "--target", "人工等级", "--save-rules", "--json")
    assert again.code == 0, again.stderr
    redo = again.json()
    assert isinstance(redo, dict)
    assert sorted(redo["saved_rules"]["replaced"]) == sorted(names) and redo["saved_rules"]["added"] == []
    config = tomllib.loads((ws_copy / "tierwise.toml").read_text(encoding="utf-8"))
    assert sorted(rule["name"] for rule in config["rules"]) == sorted(names)  # replaced, not duplicated

    rerun = run_cli("run", "-w", ws_copy, "--json")
    assert rerun.code == 0, rerun.stderr
    snapshot = latest_snapshot_df(ws_copy).set_index("customer_id")
    tagged_a = snapshot["tags"].fillna("").str.contains("learned_A_")
    assert tagged_a.any() and (tagged_a == (planted.reindex(snapshot.index) == "A")).mean() >= 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "monetery"], "did you mean 'monetary'"),
        (["--target", "country"], "same class ('中国')"),
        (["--target", "name"], "a target must be a class"),
        (["--target", "future-churn", "--calibration-end", "2023-01-03"], "at least 20 are needed"),
        (["--target", "grade", "--model", "mlp", "--save-rules"], "--save-rules needs the tree"),
    ],
)
def test_bad_targets_are_one_line_and_store_nothing(ws_copy: Path, args: list[str], message: str) -> None:
    before = stored(ws_copy)
    r = run_cli("classify", "-w", ws_copy, *args)
    assert r.code == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert stored(ws_copy) == before


def test_classify_before_any_run_says_what_to_do(tmp_path: Path) -> None:
    from tierwise.workspace import Workspace

    Workspace.init(tmp_path / "ws").close()
    r = run_cli("classify", "-w", tmp_path / "ws", "--target", "grade")
    assert r.code == 2 and "no run yet" in r.stderr and "tierwise run" in r.stderr
    r = run_cli("classify", "-w", tmp_path / "ws", "--target", "future-high-value")
    assert r.code == 2 and "load them first with 'tierwise ingest orders FILE'" in r.stderr


def test_a_failure_while_storing_leaves_nothing_half_written(ws_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierwise.pipeline.learn import classify_settings, learn_and_store
    from tierwise.workspace import Workspace

    before = stored(ws_copy)
    ws = Workspace.open(ws_copy)
    try:
        settings = classify_settings(ws.config.classify, target="abc_class")

        def broken(*_: object, **__: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(ws.con, "insert", broken)
        with pytest.raises(OSError, match="disk full"):
            learn_and_store(ws, settings, save_rules=True)
    finally:
        ws.close()
    assert stored(ws_copy) == before  # no predictions table, no learned_models row, tierwise.toml untouched


def test_saving_rules_keeps_the_users_own_and_drops_stale_learned_ones(tmp_path: Path) -> None:
    from tierwise.pipeline.learn import _rules_file

    path = tmp_path / "tierwise.toml"
    path.write_text(
        "[workspace]\n"
        'language = "en"\n\n'
        "# my own rule\n"
        "[[rules]]\n"
        'name = "big"\n'
        'expression = "monetary > 1000000"\n\n'
        "# learned by 'tierwise classify --target g' (tree) on 2024-01-01\n"
        "[[rules]]\n"
        'name = "learned_A_1"\n'
        'expression = "monetary > 5"\n\n'
        "[[rules]]\n"
        'name = "learned_A_2"\n'
        'expression = "monetary > 6"\n\n'
        "# the mapping\n"
        "[mapping.orders]\n"
        '"实收款" = "amount"\n',
        encoding="utf-8",
    )
    rules = [
        LeafRule(1, [Condition("monetary", lower=5000.0)], "A", 0.9, 30),
        LeafRule(2, [Condition("monetary", upper=5000.0)], "B", 0.8, 70),
    ]
    result = SimpleNamespace(target="g", model="tree", report=SimpleNamespace(classes=["A", "B"]))
    schema = ibis.schema({"customer_id": "string", "monetary": "float64"})
    ws = SimpleNamespace(root=tmp_path)
    text, saved = _rules_file(ws, rules, result, False, schema)  # type: ignore[arg-type]
    assert text is not None
    assert (saved.added, saved.replaced, saved.removed) == (["learned_B_1"], ["learned_A_1"], ["learned_A_2"])
    data = tomllib.loads(text)
    assert data["rules"] == [
        {"name": "big", "expression": "monetary > 1000000"},
        {"name": "learned_B_1", "expression": "monetary <= 5000"},
        {"name": "learned_A_1", "expression": "monetary > 5000"},
    ]
    assert data["mapping"] == {"orders": {"实收款": "amount"}} and data["workspace"] == {"language": "en"}
    assert "# my own rule" in text and "# the mapping" in text and text.count("# learned by") == 1
    assert path.read_text(encoding="utf-8").count("learned_A_2") == 1  # only checked, not written

    bad = [LeafRule(1, [Condition("nope", lower=1.0)], "A", 0.9, 30)]
    with pytest.raises(UserError, match="nope"):
        _rules_file(ws, bad, result, False, schema)  # type: ignore[arg-type]


@pytest.mark.slow
def test_show_customer_gives_the_learned_class(ws_copy: Path) -> None:
    data = run_cli("classify", "-w", ws_copy, "--target", "future-churn", "--json").json()
    assert isinstance(data, dict)
    predictions = query(ws_copy, f"select * from {data['predictions_table']} order by customer_id limit 1")
    customer, learned = predictions["customer_id"][0], predictions["learned_class"][0]
    detail = run_cli("show", "customer", customer, "-w", ws_copy, "--json").json()
    assert isinstance(detail, dict)
    assert detail["learned"]["class"] == learned and detail["learned"]["model_id"] == data["model_id"]
    assert any(
        r.startswith(f"learned class (tree on future-churn, model {data['model_id']}): {learned}")
        for r in detail["reasons"]
    )
