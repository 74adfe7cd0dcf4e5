"""Focused tests of the refresh modules (settings, sources, alerts, digest, job, schedule, log) on one generated
workspace with two runs; what the end-to-end test (test_refresh_e2e.py) covers is not repeated here.

The workspace: 300 generated customers; the first run sees the orders up to a cut date and all customers but a
held-back dozen, the second run everything. Expected lists are computed here with pandas from the runs' snapshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

UNSET_ENV = "TIERWISE_TEST_NEVER_SET_URL"


@dataclass
class Book:
    ws: Path
    data: Path
    held_back: list[str]  # customers only the second run has
    first: dict[str, Any]  # the three refreshes' --json reports
    second: dict[str, Any]
    third: dict[str, Any]
    before: pd.DataFrame  # the runs' snapshots
    now: pd.DataFrame

    @property
    def r1(self) -> str:
        return str(self.first["run_id"])

    @property
    def r2(self) -> str:
        return str(self.third["run_id"])


def _refresh_cli(ws: Path) -> tuple[int, dict[str, Any], str]:
    done = run_cli("refresh", "-w", ws, "--json")
    assert "Traceback" not in done.stderr and done.stdout, done.stderr
    return done.code, json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Book:
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.refresh.job import refresh as refresh_job
    from tierwise.store.runs import latest_snapshot
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("refresh")
    data, ws = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "300", "--seed", "5").code == 0
    Workspace.init(ws).close()
    cfg = ws / "tierwise.toml"
    cfg.write_text(re.sub(r"(?m)^enabled = true$", "enabled = false", cfg.read_text(encoding="utf-8"), count=1))
    assert "[cluster]\n# Cluster customers in every run" in cfg.read_text(encoding="utf-8")

    customers = pd.read_csv(data / "customers.csv", dtype=str)
    orders = pd.read_csv(data / "orders.csv", dtype=str)
    days = sorted(orders.order_date.str[:10])
    cut = days[int(len(days) * 0.85)]
    held = customers.customer_id.iloc[::25].tolist()  # 12 customers new in the second run
    early = (orders.order_date.str[:10] <= cut) & ~orders.customer_id.isin(held)
    parts = {
        "c1": customers[~customers.customer_id.isin(held)],
        "o1": orders[early],
        "c2": customers[customers.customer_id.isin(held)],
        "o2": orders[~early],
    }
    for name, frame in parts.items():
        frame.to_csv(root / f"{name}.csv", index=False)

    def ingest(*pairs: tuple[str, str]) -> None:
        with Workspace.open(ws) as w:
            for table, name in pairs:
                ingest_file(w, table, root / f"{name}.csv")

    def refresh() -> dict[str, Any]:
        return refresh_job(ws, trigger="cli").as_json()

    ingest(("customers", "c1"), ("orders", "o1"))
    first, second = refresh(), refresh()
    ingest(("customers", "c2"), ("orders", "o2"))
    third = refresh()

    def snapshot(run_id: str) -> pd.DataFrame:
        with Workspace.open(ws, read_only=True) as w:
            return latest_snapshot(w, run_id)[1].to_pandas()

    return Book(ws, data, held, first, second, third, snapshot(first["run_id"]), snapshot(third["run_id"]))


def _copy(book: Book, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(book.ws, copy)
    return copy


def _append(ws: Path, text: str) -> None:
    cfg = ws / "tierwise.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


# ---------------------------------------------------------------- 1. settings, through load_config on a real file


@pytest.fixture(scope="module")
def default_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tierwise.toml that `tierwise init` writes."""
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("init")
    Workspace.init(root).close()
    return (root / "tierwise.toml").read_text(encoding="utf-8")


def _load(tmp_path: Path, text: str) -> Any:
    from tierwise.config import load_config

    path = tmp_path / "cfg" / "tierwise.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _refused(tmp_path: Path, text: str) -> str:
    from tierwise.errors import UserError

    with pytest.raises(UserError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message and "tierwise.toml" in message
    return message


BAD_SETTINGS = [
    # (appended to the default file, the key the message names, words it must say)
    ('[[sources]]\nname = "s"\ntable = "orders"\n', "sources.0", "either folder"),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nfolder = "in"\nurl_env = "U"\nfrom_table = "t"\n',
        "sources.0",
        "either folder",
    ),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nurl = "postgresql://u@h/db"\nurl_env = "U"\nfrom_table = "t"\n',
        "sources.0",
        "not both",
    ),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nurl = "postgresql://u:secret@h/db"\nfrom_table = "t"\n',
        "sources.0.url",
        "url_env",
    ),
    ('[[sources]]\nname = "s"\ntable = "orders"\nurl_env = "U"\n', "sources.0", "from_table"),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nurl = "postgresql://u@h/db?sslmode=require&PassWord=x"\n'
        'from_table = "t"\n',
        "sources.0.url",
        "url_env",
    ),
    ('[[sources]]\nname = "s"\ntable = "orders"\nfolder = ""\n', "sources.0.folder", "at least 1"),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nfolder = "in"\nmap = {"实收" = "amout"}\n',
        "sources.0",
        'map "实收" = "amout": amout is not a field of orders',
    ),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nfolder = "in"\nsince_column = "seq"\n',
        "sources.0",
        "belong to database",
    ),
    ('[[sources]]\nname = "s"\ntable = "refunds"\nfolder = "in"\n', "sources.0.table", "customers"),
    (
        '[[sources]]\nname = "s"\ntable = "orders"\nfolder = "a"\n[[sources]]\nname = "s"\ntable = "orders"\n'
        'folder = "b"\n',
        "sources",
        "two entries are named 's'",
    ),
    ('[[alerts]]\nname = "new_grade_a"\nwhere = "grade = \'A\'"\n', "alerts", "two entries are named 'new_grade_a'"),
    ('[[alerts]]\nname = "x"\nkind = "customers"\n', "alerts.5", "needs a `where`"),
    ('[[alerts]]\nname = "x"\nwhere = "  "\n', "alerts.5", "needs a `where`"),
    ('[[alerts]]\nname = "x"\nkind = "source_failed"\nwhere = "true"\n', "alerts.5", "belongs to kind = customers"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nemail = ["ops.example.com"]\n', "alerts.5.email", "e-mail address"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nemail = ["a b@example.com"]\n', "alerts.5.email", "e-mail address"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nemail = ["@example.com"]\n', "alerts.5.email", "e-mail address"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nwebhook = "ftp://h/hook"\n', "alerts.5.webhook", "http://"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nwebhook = "crm.example.com/hook"\n', "alerts.5.webhook", "http://"),
    ('[[alerts]]\nname = "x"\nwhere = "true"\nwebhook = "https:///hook"\n', "alerts.5.webhook", "with a host"),
    ('[[alerts]]\nname = "x"\nkind = "quarantine_rate"\nlimit = 1.5\n', "alerts.5.limit", "1"),
    ('[[alerts]]\nname = "x"\nkind = "share_shift"\npoints = 0\n', "alerts.5.points", "0"),
]


@pytest.mark.parametrize(("extra", "key", "words"), BAD_SETTINGS)
def test_settings_refused_name_the_key(tmp_path: Path, default_text: str, extra: str, key: str, words: str) -> None:
    message = _refused(tmp_path, default_text + "\n" + extra)
    assert f"setting '{key}'" in message and words in message, message


def test_settings_delivery_addresses(tmp_path: Path, default_text: str) -> None:
    text = default_text
    owners = text.replace("[delivery]\n", '[delivery]\nowners = {"王伟" = "wang wei@example.com"}\n', 1)
    assert "setting 'delivery.owners'" in _refused(tmp_path, owners)
    sender = re.sub(r"(?m)^sender = .*$", 'sender = "tierwise"', text, count=1)
    assert "setting 'delivery.sender'" in _refused(tmp_path, sender)
    fine = text.replace("[delivery]\n", '[delivery]\nowners = {"王伟" = "wang.wei@example.com"}\n', 1)
    assert _load(tmp_path, fine).delivery.owners == {"王伟": "wang.wei@example.com"}


def test_settings_accepted_sources_and_alerts(tmp_path: Path, default_text: str) -> None:
    cfg = _load(
        tmp_path,
        default_text + '\n[[sources]]\nname = "erp"\ntable = "orders"\nfolder = "inbox"\nmin_age_seconds = 0\n'
        'map = {"实收" = "amount", "客户经理" = "owner", "备注" = "ignore"}\n'
        '[[sources]]\nname = "crm"\ntable = "customers"\nurl = "postgresql://reader@db/crm"\nfrom_table = "c"\n'
        '[[alerts]]\nname = "big"\nwhere = "monetary > 1"\nwebhook = "https://h/x"\nemail = ["a@b.example"]\n',
    )
    assert [(s.name, s.kind) for s in cfg.sources] == [("erp", "folder"), ("crm", "database")]
    assert cfg.sources[0].map == {"实收": "amount", "客户经理": "owner", "备注": "ignore"}
    assert [a.name for a in cfg.alerts][-1] == "big" and len(cfg.alerts) == 6


def test_init_config_has_the_five_default_alerts(tmp_path: Path, default_text: str) -> None:
    from tierwise.refresh.settings import default_alerts

    cfg = _load(tmp_path, default_text)
    assert [a.name for a in cfg.alerts] == [
        "new_grade_a", "key_customers_slipping", "top_customers_silent", "quarantine_above_5pct", "source_failed"
    ]  # fmt: skip
    assert cfg.alerts == default_alerts() and cfg.sources == []


def test_an_old_config_without_the_new_sections_loads_with_defaults(tmp_path: Path, default_text: str) -> None:
    from tierwise.refresh.settings import DeliverySettings, default_alerts

    blocks = re.split(r"(?m)^(?=\[)", default_text)
    old = "".join(b for b in blocks if not re.match(r"\[(\[alerts\]\]|\[sources\]\]|delivery[\].])", b))
    headers = [line for line in old.splitlines() if line.startswith("[")]
    assert "[workspace]" in headers and not any("delivery" in h or "alerts" in h or "sources" in h for h in headers)
    cfg = _load(tmp_path, old)
    assert cfg.sources == [] and cfg.alerts == default_alerts() and cfg.delivery == DeliverySettings()
    minimal = _load(tmp_path, '[workspace]\nlanguage = "en"\n')
    assert minimal.alerts == default_alerts() and minimal.workspace.language == "en"


# ---------------------------------------------------------------- 2. a folder's waiting files


UNFINISHED = (".tmp", ".part", ".crdownload", ".partial", ".filepart")


def _skipped(name: str) -> bool:
    return name.startswith((".", "~$")) or any(name.lower().endswith(s) for s in UNFINISHED)


names = st.builds(
    lambda prefix, stem, suffix: prefix + stem + suffix,
    st.sampled_from(["", "", ".", "~$", "~"]),
    st.text(alphabet="abzAZ09_-.中", min_size=1, max_size=6),
    st.sampled_from([".csv", ".xlsx", ".TMP", ".tmp", ".part", ".crdownload", ".Partial", ".filepart", ".txt", ""]),
).filter(lambda name: name not in (".", ".."))  # the folder itself and its parent are no file names


@settings(max_examples=60, deadline=None)
@given(files=st.lists(names, max_size=12, unique=True), folders=st.lists(names, max_size=2, unique=True))
def test_waiting_files_order_and_skips(files: list[str], folders: list[str]) -> None:
    from tierwise.refresh.sources import waiting_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in files:
            (root / name).write_text("x", encoding="utf-8")
            os.utime(root / name, (1_000_000, 1_000_000))
        for name in folders:
            if name not in files:
                (root / name).mkdir()  # a folder is never loaded, whatever its name
        ready, young = waiting_files(root, 10.0, now=2_000_000)
    assert [p.name for p in ready] == sorted(n for n in files if not _skipped(n))
    assert young == 0


def test_waiting_files_min_age_boundary(tmp_path: Path) -> None:
    from tierwise.refresh.sources import waiting_files

    made = 1_700_000_000
    for name in ("b.csv", "a.csv"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    os.utime(tmp_path / "a.csv", (made, made))
    os.utime(tmp_path / "b.csv", (made + 5, made + 5))
    ready, young = waiting_files(tmp_path, 30, now=made + 30)  # a.csv exactly 30 s old: ready
    assert [p.name for p in ready] == ["a.csv"] and young == 1
    ready, young = waiting_files(tmp_path, 30, now=made + 29.5)
    assert ready == [] and young == 2
    ready, young = waiting_files(tmp_path, 30, now=made + 35)
    assert [p.name for p in ready] == ["a.csv", "b.csv"] and young == 0
    ready, young = waiting_files(tmp_path, 0, now=made)  # no minimum age: even a file of this very second
    assert [p.name for p in ready] == ["a.csv"] and young == 1  # b.csv is dated in the future of `now`


def test_a_folder_source_never_reads_the_workspace_itself(book: Book, tmp_path: Path) -> None:
    import datetime as dt

    from tierwise.refresh.settings import SourceSettings
    from tierwise.refresh.sources import read_folder
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    own = sorted(p.name for p in ws.iterdir())
    old = dt.datetime.now() - dt.timedelta(hours=1)
    for p in ws.iterdir():
        os.utime(p, (old.timestamp(), old.timestamp()))  # no file too young to be touched
    with Workspace.open(ws) as w:
        for folder in (".", str(ws), f"../{ws.name}"):
            source = SourceSettings(name="here", table="orders", folder=folder, min_age_seconds=0)
            result = read_folder(w, source, old)
            assert result.status == "failed" and "the workspace itself" in str(result.error), result
            assert result.files_failed == [] and result.files_processed == []
    assert sorted(p.name for p in ws.iterdir()) == own and not (ws / "failed").exists()


def test_nested_folder_sources_count_only_their_own_files(book: Book, tmp_path: Path) -> None:
    import datetime as dt

    from tierwise.refresh.settings import SourceSettings
    from tierwise.refresh.sources import read_sources
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    orders = pd.read_csv(book.data / "orders.csv", dtype=str).head(7).copy()
    orders["order_id"] = [f"NX{i:04d}" for i in range(7)]
    (ws / "inbox" / "shop").mkdir(parents=True)
    orders.to_csv(ws / "inbox" / "shop" / "orders.csv", index=False)
    sources = [
        SourceSettings(name="shop", table="orders", folder="inbox/shop", min_age_seconds=0),
        SourceSettings(name="all", table="orders", folder="inbox", min_age_seconds=0),  # holds shop's folder
    ]
    since = dt.datetime.now() - dt.timedelta(seconds=5)
    with Workspace.open(ws) as w:
        shop, outer = read_sources(w, sources, since)
        # read again within the same refresh, as a resumed one does: the moved file's batch is still shop's
        again, outer_again = read_sources(w, sources, since)
    assert (shop.status, shop.rows_loaded, len(shop.batches)) == ("ok", 7, 1)
    assert (outer.status, outer.rows_read, outer.rows_loaded, outer.batches) == ("nothing_new", 0, 0, [])
    assert (again.files_processed, again.rows_loaded, again.batches) == ([], 7, shop.batches)
    assert (outer_again.rows_loaded, outer_again.batches) == (0, [])


def test_move_never_overwrites(tmp_path: Path) -> None:
    from tierwise.refresh.sources import _move

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    kept = []
    for content in ("monday", "tuesday", "wednesday"):
        (inbox / "orders.csv").write_text(content, encoding="utf-8")
        kept.append(_move(inbox / "orders.csv", inbox / "processed"))
    assert len(set(kept)) == 3 and kept[0] == inbox / "processed" / "orders.csv"
    assert [p.read_text(encoding="utf-8") for p in kept] == ["monday", "tuesday", "wednesday"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(p.name for p in kept)
    assert all(p.suffix == ".csv" for p in kept) and not (inbox / "orders.csv").exists()


# ---------------------------------------------------------------- 3. alerts over the two runs


def _runs(book: Book) -> Any:
    from tierwise.refresh.job import latest_and_previous
    from tierwise.workspace import Workspace

    ws = Workspace.open(book.ws, read_only=True)
    latest, previous = latest_and_previous(ws)
    assert latest is not None and previous is not None
    assert (latest.run_id, previous.run_id) == (book.r2, book.r1)
    return ws, latest, previous


def test_joined_previous_values_and_is_new(book: Book) -> None:
    from tierwise.refresh.alerts import joined

    ws, latest, previous = _runs(book)
    try:
        before = book.before.set_index("customer_id")
        both = book.before.customer_id.iloc[0]
        only_now = book.held_back[0]
        assert only_now not in before.index and only_now in set(book.now.customer_id)
        j = joined(latest.snapshot, previous.snapshot)
        rows = {r["customer_id"]: r for r in j.filter(j.customer_id.isin([both, only_now])).to_pyarrow().to_pylist()}
        assert rows[both]["is_new"] is False
        for col in ("grade", "lifecycle_stage", "priority_rank", "recency_days"):
            assert rows[both][f"previous_{col}"] == before.loc[both, col], col
        assert float(rows[both]["previous_monetary"]) == pytest.approx(float(before.loc[both, "monetary"]))
        assert rows[only_now]["is_new"] is True
        assert all(v is None for k, v in rows[only_now].items() if k.startswith("previous_"))
        assert int(j.count().execute()) == len(book.now)
        assert int(j.is_new.sum().execute()) == len(book.held_back)

        older = joined(latest.snapshot, previous.snapshot.drop("lifecycle_stage", "priority_rank"))  # older version
        schema = older.schema()
        assert schema["previous_lifecycle_stage"] == latest.snapshot.schema()["lifecycle_stage"]
        got = older.filter(older.customer_id == both).to_pyarrow().to_pylist()[0]
        assert got["previous_lifecycle_stage"] is None and got["previous_priority_rank"] is None
        assert got["previous_grade"] == before.loc[both, "grade"] and got["is_new"] is False
    finally:
        ws.close()


def _expected_default_alerts(before: pd.DataFrame, now: pd.DataFrame) -> dict[str, list[str]]:
    """The three default customer rules computed with pandas (NULL comparisons are false, as in SQL)."""
    prev = before.set_index("customer_id")
    p = {c: now.customer_id.map(prev[c]) for c in ("grade", "lifecycle_stage", "recency_days", "expected_gap_days")}
    is_new = ~now.customer_id.isin(prev.index)
    risky = ["at_risk", "churned"]
    new_a = (now.grade == "A") & (p["grade"].isna() | (p["grade"] != "A"))
    slipping = (
        p["grade"].fillna(now.grade).isin(["A", "B"])
        & now.lifecycle_stage.isin(risky)
        & (p["lifecycle_stage"].isna() | ~p["lifecycle_stage"].isin(risky))
    )
    gap, prev_gap = now.expected_gap_days.fillna(0), p["expected_gap_days"].fillna(0)
    was_silent = (p["recency_days"].fillna(0) > 2 * prev_gap) & (prev_gap > 0)
    silent = (now.priority_rank <= 100) & (gap > 0) & (now.recency_days > 2 * gap) & (is_new | ~was_silent)
    ordered = now.sort_values(["priority_rank", "customer_id"], na_position="last")
    return {
        rule: ordered.loc[mask.reindex(ordered.index), "customer_id"].tolist()
        for rule, mask in (("new_grade_a", new_a), ("key_customers_slipping", slipping),
                           ("top_customers_silent", silent))
    }  # fmt: skip


def test_default_alerts_equal_lists_computed_with_pandas(book: Book) -> None:
    from tierwise.refresh.alerts import check_rules, evaluate
    from tierwise.refresh.settings import default_alerts

    expected = _expected_default_alerts(book.before, book.now)
    assert all(expected.values()), "the data must give every rule something to find"
    ws, latest, previous = _runs(book)
    try:
        check_rules(default_alerts(), latest.snapshot, previous.snapshot)
        for alert in default_alerts():
            found = evaluate(alert, latest=latest, previous=previous, sources=[], language="zh")
            if alert.kind == "customers":
                assert [c["customer_id"] for c in found.customers] == expected[alert.name], alert.name
                assert found.matched == len(expected[alert.name])
            else:
                assert found.matched == 0 and found.customers == []
    finally:
        ws.close()
    # the refresh that made the second run found and recorded the same
    fired = {a["rule"]: a for a in book.third["alerts"]}
    for rule, ids in expected.items():
        assert fired[rule]["customers"] == ids and fired[rule]["matched"] == len(ids) and fired[rule]["new"]
    new_a = fired["new_grade_a"]
    held_a = [c for c in book.held_back if c in set(book.now[book.now.grade == "A"].customer_id)]
    assert set(held_a) <= set(new_a["customers"])  # a new customer straight into A counts as new grade A


def test_changes_of_matched_customers(book: Book) -> None:
    from tierwise.refresh.alerts import customers_matching
    from tierwise.refresh.settings import AlertSettings

    ws, latest, previous = _runs(book)
    try:
        rule = AlertSettings(name="moved", where="previous_grade <> grade or is_new")
        found = customers_matching(rule, latest, previous)
    finally:
        ws.close()
    before = book.before.set_index("customer_id")
    now = book.now.set_index("customer_id")
    was = now.index.map(before.grade)  # NaN for a new customer and for one without a grade
    differs = now.grade.notna() & pd.notna(was) & (now.grade != was)  # NULL <> x is not true
    moved = now.index[differs | ~now.index.isin(before.index)].tolist()
    assert sorted(c["customer_id"] for c in found) == sorted(moved)
    for c in found:
        cid = c["customer_id"]
        assert c["owner"] == now.loc[cid, "owner"] and c["grade"] == _none(now.loc[cid, "grade"])
        if c["is_new"]:
            assert cid in book.held_back and c["changes"] == {}
            continue
        assert c["changes"]["grade"] == {"previous": before.loc[cid, "grade"], "now": now.loc[cid, "grade"]}
        stages = before.loc[cid, "lifecycle_stage"], now.loc[cid, "lifecycle_stage"]
        assert ("lifecycle_stage" in c["changes"]) == (stages[0] != stages[1]), stages


@pytest.mark.parametrize(
    ("where", "what"),
    [
        ("no_such_column > 1", "no_such_column"),
        ("grade > 5", "cannot compare text with a number"),
        ("previous_nothing = 1", "previous_nothing"),
    ],
)
def test_a_bad_rule_is_one_error_naming_the_alert(book: Book, where: str, what: str) -> None:
    from tierwise.errors import UserError
    from tierwise.refresh.alerts import check_rules
    from tierwise.refresh.settings import AlertSettings, default_alerts

    ws, latest, previous = _runs(book)
    try:
        rules = [*default_alerts(), AlertSettings(name="坏规则", where=where)]
        with pytest.raises(UserError) as caught:
            check_rules(rules, latest.snapshot, previous.snapshot)
    finally:
        ws.close()
    message = str(caught.value)
    assert "坏规则" in message and what in message and "\n" not in message, message


def test_quarantine_rate_fires_only_above_the_limit() -> None:
    from tierwise.refresh.alerts import evaluate
    from tierwise.refresh.settings import AlertSettings
    from tierwise.refresh.sources import SourceResult

    def source(held: int, read: int = 20) -> SourceResult:
        r = SourceResult("erp", "orders", "folder")
        r.batches = [{"batch_id": f"b{held}", "rows_read": read, "rows_quarantined": held}]
        return r

    rule = AlertSettings(name="q", kind="quarantine_rate", limit=0.05)
    at_limit = evaluate(rule, latest=None, previous=None, sources=[source(1)], language="en")  # 1/20 = 5%
    assert at_limit.matched == 0
    above = evaluate(rule, latest=None, previous=None, sources=[source(1), source(2)], language="en")
    assert [f["batch_id"] for f in above.findings] == ["b2"] and above.findings[0]["share"] == 0.1
    assert "2 of 20 rows quarantined (10.0%, limit 5.0%)" in above.findings[0]["what"]
    lower = AlertSettings(name="q", kind="quarantine_rate", limit=0.0)
    assert evaluate(lower, latest=None, previous=None, sources=[source(0), source(1)], language="zh").matched == 1
    empty = evaluate(lower, latest=None, previous=None, sources=[source(0, read=0)], language="zh")
    assert empty.matched == 0  # a batch of no rows has no rate


def test_quarantine_rate_of_a_real_folder_batch(book: Book, tmp_path: Path) -> None:
    import datetime as dt

    from tierwise.refresh.alerts import quarantine_above
    from tierwise.refresh.settings import SourceSettings
    from tierwise.refresh.sources import read_folder
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    orders = pd.read_csv(book.data / "orders.csv", dtype=str).head(20).copy()
    orders["order_id"] = [f"QX{i:04d}" for i in range(20)]  # not loaded before
    orders.loc[[3, 11], "order_date"] = "no date"  # 2 of 20 rows quarantined: 10%
    (ws / "inbox").mkdir()
    orders.to_csv(ws / "inbox" / "orders.csv", index=False)
    since = dt.datetime.now() - dt.timedelta(seconds=5)
    with Workspace.open(ws) as w:
        result = read_folder(w, SourceSettings(name="erp", table="orders", folder="inbox", min_age_seconds=0), since)
    assert result.status == "ok" and result.files_processed == ["orders.csv"], result
    assert (result.rows_read, result.rows_quarantined, result.rows_loaded) == (20, 2, 18)
    assert [(b["rows_read"], b["rows_quarantined"]) for b in result.batches] == [(20, 2)]
    assert [f["share"] for f in quarantine_above([result], 0.05, "en")] == [0.1]
    assert quarantine_above([result], 0.1, "en") == []  # exactly at the limit
    assert (ws / "inbox" / "processed" / "orders.csv").is_file()


def test_share_shift_fires_when_a_share_moves_more_than_points(book: Book) -> None:
    from tierwise.refresh.alerts import evaluate
    from tierwise.refresh.settings import AlertSettings

    def shares(frame: pd.DataFrame) -> pd.Series:
        by = frame[frame.grade.notna()].groupby("grade").monetary.sum().astype(float)
        return by / by.sum()

    before, now = shares(book.before), shares(book.now)
    moved = ((now.reindex(now.index.union(before.index), fill_value=0.0)
              - before.reindex(now.index.union(before.index), fill_value=0.0)) * 100)  # fmt: skip
    sizes = sorted(set(moved.abs().round(6)))
    assert len(sizes) >= 2 and sizes[-1] > 0.1, moved
    ws, latest, previous = _runs(book)
    try:
        for points in ((sizes[-1] + sizes[-2]) / 2, sizes[0] / 2 if sizes[0] > 0 else sizes[1] / 2, sizes[-1] + 0.01):
            rule = AlertSettings(name="s", kind="share_shift", column="grade", points=points)
            found = evaluate(rule, latest=latest, previous=previous, sources=[], language="en")
            want = sorted(c for c, m in moved.items() if abs(m) > points)
            assert [f["class"] for f in found.findings] == want, points
            for f in found.findings:
                assert f["points"] == pytest.approx(moved[f["class"]], abs=0.01)
        absent = AlertSettings(name="s", kind="share_shift", column="no_such_column", points=1)
        assert evaluate(absent, latest=latest, previous=previous, sources=[], language="en").matched == 0
    finally:
        ws.close()


# ---------------------------------------------------------------- 4. digest


def _none(value: Any) -> Any:
    return None if pd.isna(value) else value


def _digest(book: Book, capsys: pytest.CaptureFixture[str], owner: str, **options: Any) -> str:
    """`tierwise digest` in this process (its refusals are checked through the real command line below)."""
    from tierwise.cli.common import out
    from tierwise.cli.refresh import digest

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(out, "_width", 200)  # as wide as run_cli's terminal (COLUMNS=200): headings are not wrapped
        digest(owner=owner, workspace=book.ws, **{"top": 20, "send": False, "lang": None, "as_json": False, **options})
    return capsys.readouterr().out


def _owner_changes(book: Book, owner: str) -> tuple[list[dict[str, Any]], list[str]]:
    before = book.before.set_index("customer_id")
    mine = book.now[book.now.owner == owner].sort_values(["priority_rank", "customer_id"], na_position="last")
    changes, new = [], []
    for row in mine.itertuples():
        if row.customer_id not in before.index:
            new.append(row.customer_id)
            continue
        for col in ("grade", "lifecycle_stage"):
            was, now = before.loc[row.customer_id, col], getattr(row, col)
            if not (pd.isna(was) and pd.isna(now)) and was != now:
                changes.append(
                    {"customer_id": row.customer_id, "column": col, "previous": _none(was), "now": _none(now)}
                )
    return changes, new


def _busy_owner(book: Book) -> str:
    """The owner with the most changes in their book."""
    owners = sorted(book.now.owner.dropna().unique())
    return str(max(owners, key=lambda o: (len(_owner_changes(book, o)[0]), o)))


def test_digest_of_one_owner(book: Book, capsys: pytest.CaptureFixture[str]) -> None:
    owner = _busy_owner(book)
    changes, new = _owner_changes(book, owner)
    assert changes, "the chosen owner's book must have changed"
    d = json.loads(_digest(book, capsys, owner, top=4, as_json=True))
    mine = book.now[book.now.owner == owner].sort_values(["priority_rank", "customer_id"], na_position="last")
    assert d["owner"] == owner and d["run_id"] == book.r2 and d["previous_run_id"] == book.r1
    assert d["customers"] == len(mine) > 4
    assert [c["customer_id"] for c in d["top"]] == mine.customer_id.head(4).tolist()
    assert [{k: c[k] for k in ("customer_id", "column", "previous", "now")} for c in d["changes"]] == changes
    assert [c["customer_id"] for c in d["new_customers"]] == new
    # the alerts of the latest run, each with only this owner's customers
    fired = {a["rule"]: a["customers"] for a in book.third["alerts"] if a["kind"] == "customers"}
    theirs = set(mine.customer_id)
    want = {rule: [c for c in ids if c in theirs] for rule, ids in fired.items()}
    assert {a["rule"]: [c["customer_id"] for c in a["customers"]] for a in d["alerts"]} == {
        rule: ids for rule, ids in want.items() if ids
    }


def test_digest_refusals_and_languages(book: Book, capsys: pytest.CaptureFixture[str]) -> None:
    from tierwise.cli.common import Lang

    owners = sorted(book.now.owner.dropna().unique())
    unknown = run_cli("digest", "--owner", "无此人", "-w", book.ws)
    assert unknown.code == 2 and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "无此人" in unknown.stderr and owners[0] in unknown.stderr
    owner = _busy_owner(book)
    zh, en = (_digest(book, capsys, owner, lang=lang) for lang in (Lang.zh, Lang.en))
    assert f"{owner} 的客户" in zh and "变化：" in zh and "Changes:" not in zh
    assert f"{owner}'s book" in en and "Changes:" in en and "的客户" not in en
    # headings and changed columns by their names in the language, not the columns' code names
    assert all(w in zh for w in ("客户编号", "等级", "下一步行动")) and "next_action" not in zh
    assert all(w in en for w in ("Customer", "Grade", "Next action")) and "next_action" not in en
    changes, _ = _owner_changes(book, owner)
    stage = next(c for c in changes if c["column"] == "lifecycle_stage")
    assert re.search(rf"(?m)^  {stage['customer_id']} .*: 生命周期 ", zh) and "lifecycle_stage" not in zh
    assert re.search(rf"(?m)^  {stage['customer_id']} .*: Lifecycle ", en) and "lifecycle_stage" not in en
    unsent = run_cli("digest", "--owner", owners[0], "--send", "-w", book.ws)
    assert unsent.code == 2 and "Traceback" not in unsent.stderr
    assert len(unsent.stderr.strip().splitlines()) == 1 and "[delivery.owners]" in unsent.stderr


# ---------------------------------------------------------------- 5. the refresh job, serve --once


def test_refresh_without_sources_makes_the_first_run_then_nothing(book: Book) -> None:
    first, second = book.first, book.second
    assert first["status"] == "ok" and first["run_made"] and first["sources"] == []
    assert first["previous_run_id"] is None and all(a["matched"] == 0 for a in first["alerts"])
    assert [a["rule"] for a in first["alerts"]] == [
        "new_grade_a", "key_customers_slipping", "top_customers_silent", "quarantine_above_5pct", "source_failed"
    ]  # fmt: skip
    assert second["status"] == "ok" and not second["run_made"] and second["run_id"] == book.r1
    assert second["refresh_id"] != first["refresh_id"]
    assert book.third["run_made"] and book.third["previous_run_id"] == book.r1
    runs = run_cli("runs", "-w", book.ws, "--json").json()
    assert isinstance(runs, list) and [r["run_id"] for r in runs] == [book.r1, book.r2]


def test_failing_sources_leave_the_refresh_partial(book: Book, tmp_path: Path) -> None:
    assert UNSET_ENV not in os.environ
    ws = _copy(book, tmp_path)
    _append(
        ws,
        f'[[sources]]\nname = "shop"\ntable = "orders"\nurl_env = "{UNSET_ENV}"\nfrom_table = "orders"\n'
        '[[sources]]\nname = "drop"\ntable = "orders"\nfolder = "inbox/none"\n',
    )
    code, report, stderr = _refresh_cli(ws)
    assert code == 1 and report["status"] == "partial" and not report["run_made"], report
    by_name = {s["name"]: s for s in report["sources"]}
    assert by_name["shop"]["status"] == by_name["drop"]["status"] == "failed"
    assert UNSET_ENV in by_name["shop"]["error"] and str(ws / "inbox" / "none") in by_name["drop"]["error"]
    lines = stderr.splitlines()
    assert any(line.startswith("source shop") and UNSET_ENV in line for line in lines), stderr
    assert any(line.startswith("source drop") and "does not exist" in line for line in lines), stderr
    assert "refresh partial: sources with errors: shop, drop" in stderr
    fired = {a["rule"]: a for a in report["alerts"]}
    assert fired["source_failed"]["matched"] == 2 and fired["source_failed"]["new"]
    from tierwise.refresh import log as refresh_log
    from tierwise.workspace import Workspace

    with Workspace.open(ws, read_only=True) as w:
        events = [e for e in refresh_log.alert_history(w) if e["rule"] == "source_failed"]
        (latest,) = refresh_log.recent_refreshes(w, limit=1)
    assert len(events) == 1 and events[0]["refresh_id"] == report["refresh_id"]
    assert [f["source"] for f in events[0]["details"]["findings"]] == ["shop", "drop"]
    assert UNSET_ENV in events[0]["details"]["findings"][0]["what"]
    assert latest["refresh_id"] == report["refresh_id"] and latest["status"] == "partial"


def test_a_bad_rule_fails_the_refresh_in_one_line(book: Book, tmp_path: Path) -> None:
    from tierwise.refresh import log as refresh_log
    from tierwise.refresh.job import refresh
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    cfg = ws / "tierwise.toml"
    good = cfg.read_text(encoding="utf-8")
    _append(ws, '[[alerts]]\nname = "大客户"\nwhere = "monetary > \'big\'"\n')
    done = run_cli("refresh", "-w", ws)
    assert done.code == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "alert '大客户'" in done.stderr
    with Workspace.open(ws, read_only=True) as w:
        failed = refresh_log.recent_refreshes(w, limit=1)[0]
    assert failed["status"] == "failed" and "大客户" in failed["error"]
    cfg.write_text(good, encoding="utf-8")
    fixed = refresh(ws)  # a failed refresh is over: the next one starts afresh
    assert fixed.status == "ok" and fixed.refresh_id != failed["refresh_id"] and fixed.attempts == 1


def test_serve_once_refreshes_at_a_due_slot_then_idles(book: Book, tmp_path: Path) -> None:
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    cfg = ws / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8").replace('cadence = "off"', 'cadence = "daily"', 1)
    cfg.write_text(re.sub(r'(?m)^time = ".*"$', 'time = "00:00"', text, count=1), encoding="utf-8")
    assert 'cadence = "daily"' in cfg.read_text(encoding="utf-8")
    # As if the last refresh, run and load were two days ago: today's 00:00 slot is due.
    with Workspace.open(ws) as w:
        w.con.raw_sql("UPDATE refreshes SET started_at = started_at - INTERVAL 2 DAY")
        w.con.raw_sql("UPDATE runs SET created_at = created_at - INTERVAL 2 DAY")
        w.con.raw_sql("UPDATE batches SET loaded_at = loaded_at - INTERVAL 2 DAY")
    first = run_cli("serve", "--once", "--json", "-w", ws)
    assert first.code == 0 and "Traceback" not in first.stderr, first.stderr
    done = first.json()
    assert isinstance(done, dict) and done["ran"] is True
    result = done["result"]
    assert result["refresh_id"].startswith("refresh-") and result["status"] == "ok" and not result["run_made"]
    assert result["run_id"] == book.r2
    second = run_cli("serve", "--once", "--json", "-w", ws).json()
    assert isinstance(second, dict) and second["ran"] is False and second["result"] is None
    assert "next refresh at" in second["log"][0]
    with Workspace.open(ws, read_only=True) as w:
        assert int(w.table("refreshes").count().execute()) == 4
        # no customer data in the lines serve logs
        ids = set(book.now.customer_id)
    assert not any(cid in line for line in done["log"] + second["log"] for cid in ids)


# ---------------------------------------------------------------- 6. the refresh log


def test_a_refresh_left_running_is_resumed_under_its_id(book: Book, tmp_path: Path) -> None:
    from tierwise.refresh import log as refresh_log
    from tierwise.workspace import Workspace

    ws = _copy(book, tmp_path)
    with Workspace.open(ws) as w:
        left = refresh_log.start(w, "schedule")  # and never finished: the process died
        assert left.attempts == 1
    code, report, stderr = _refresh_cli(ws)
    assert code == 0, stderr
    assert report["refresh_id"] == left.refresh_id and report["attempts"] == 2 and report["resumed"]
    assert report["trigger"] == "schedule" and f"refresh {left.refresh_id} resumed (attempt 2)" in stderr
    with Workspace.open(ws, read_only=True) as w:
        rows = refresh_log.recent_refreshes(w)
    assert len(rows) == 4 and sum(r["refresh_id"] == left.refresh_id for r in rows) == 1
    row = next(r for r in rows if r["refresh_id"] == left.refresh_id)
    assert row["status"] == "ok" and row["attempts"] == 2 and row["finished_at"] is not None
    assert not any(r["status"] == "running" for r in rows)


def test_a_bad_rule_is_told_with_the_first_run(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run_cli("init", ws).code == 0
    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-02-03,20\nC1,2024-03-01,5\n")
    assert run_cli("ingest", "orders", orders, "-w", ws).code == 0
    _append(ws, '[[alerts]]\nname = "typo"\nwhere = "grade = \'A\' and monetry > 10"\n')
    done = run_cli("refresh", "-w", ws)
    assert done.code == 2 and "alert 'typo'" in done.stderr and "monetry" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
