"""The alerts page, its badge and the refresh log's REST API: refreshes and alerts written by the log's own writers
(tierwise.refresh.log) into a real workspace are shown exactly — on the page in both languages and in the JSON —
with delivery targets for admins only; the badge counts the latest finished refresh's alerts on every page; an
empty log shows the way to a first refresh; only admins may start a refresh."""

from __future__ import annotations

import csv
import datetime as dt
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import start_serve, stop_serve
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, REQUIRED, Problems, watched_page
from tierwise.generate import generate
from tierwise.i18n import heading, label
from tierwise.ingest.pipeline import ingest_file
from tierwise.refresh import log
from tierwise.store.runs import list_runs
from tierwise.web.accounts import Accounts
from tierwise.web.app import create_app
from tierwise.workspace import Workspace

PASSWORD = "correct horse 1"
USERS = {"ada": "admin", "ann": "analyst", "vic": "viewer"}
HTML = {"accept": "text/html"}
EVIL = "<b>Evil & Co</b>"
RUN_A, RUN_B = "run-20261207-a", "run-20261130-b"
HOOK = "https://crm.example.com/hooks/tierwise"
MAIL = "sales-lead@example.com"

FOLDER_SOURCE = {
    "name": "shop_orders", "table": "orders", "kind": "folder", "status": "ok", "rows_read": 120,
    "rows_loaded": 117, "rows_new": 110, "rows_updated": 7, "rows_quarantined": 3,
    "files_processed": ["2026-12-01.csv", "2026-12-02.csv"],
    "files_failed": [{"file": "broken.xlsx", "error": "no header row found"}], "error": None,
}  # fmt: skip
DB_SOURCE = {
    "name": "crm", "table": "customers", "kind": "database", "status": "failed", "rows_read": 0,
    "rows_loaded": 0, "rows_new": 0, "rows_updated": 0, "rows_quarantined": 0, "files_processed": [],
    "files_failed": [], "error": "could not connect to the database crm.internal:5432",
}  # fmt: skip
CUSTOMERS = [
    {"customer_id": "C0000007", "name": EVIL, "owner": "Li Lei", "grade": "A", "priority_rank": 3,
     "changes": {"grade": {"previous": "B", "now": "A"}}},
    {"customer_id": "C/0012", "name": "Beta Ltd", "owner": "Han Mei", "grade": "A", "priority_rank": 9,
     "changes": {"grade": {"previous": None, "now": "A"}}},
]  # fmt: skip
REFRESH_ROWS = "#refresh-table > tbody > tr[data-refresh]"
FINDING = "source 'crm' failed: could not connect to the database crm.internal:5432"


def _event(
    event_id: str, record: log.RefreshRecord, rule: str, kind: str, matched: int, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": event_id, "refresh_id": record.refresh_id, "run_id": RUN_A, "previous_run_id": RUN_B,
        "rule": rule, "kind": kind, "matched": matched, "details": details,
    }  # fmt: skip


def _delivery(event_id: str, channel: str, target: str, part: str, status: str, attempts: int, detail: str,
              customers: int) -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id, "channel": channel, "target": target, "part": part, "status": status,
            "attempts": attempts, "detail": detail, "customers": customers}  # fmt: skip


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace whose log holds, oldest first: a failed dashboard refresh (no alerts), a scheduled refresh
    killed half-way and resumed by the next one (partial: one source failed) which fired two alerts with their
    deliveries, and a refresh still running (no alert yet)."""
    root = tmp_path_factory.mktemp("refresh-log") / "ws"
    Workspace.init(root).close()
    accounts = Accounts(root)
    for name, role in USERS.items():
        accounts.add_user(name, role, PASSWORD)
    ws = Workspace.open(root)
    try:
        failed = log.start(ws, "dashboard")
        failed.steps = {"sources": [DB_SOURCE]}
        log.finish(ws, failed, log.FAILED, error="every source failed")
        time.sleep(1.1)  # started_at has whole seconds: the log's order must not depend on a tie
        first = log.start(ws, "schedule")
        first.steps = {"sources": [FOLDER_SOURCE, DB_SOURCE]}
        log.save(ws, first, run_id=RUN_A)
        resumed = log.start(ws, "cli")  # the killed refresh left its row running: taken over, same id
        assert resumed.refresh_id == first.refresh_id and resumed.attempts == 2
        details = {"label_zh": "新晋A级客户", "label_en": "New grade-A customers", "customers": CUSTOMERS}
        log.record_event(ws, _event("ev-new-a", resumed, "new_grade_a", "customers", 2, details))
        log.record_delivery(ws, _delivery("ev-new-a", "webhook", HOOK, "all", "delivered", 1, "HTTP 200", 2))
        log.record_delivery(ws, _delivery("ev-new-a", "email", MAIL, "Han Mei", "failed", 3, "SMTP 550 refused", 1))
        log.record_event(ws, _event("ev-source", resumed, "source_failed", "run", 1, {"findings": [{"what": FINDING}]}))
        log.finish(ws, resumed, log.PARTIAL)
        time.sleep(1.1)
        running = log.start(ws, "schedule")
    finally:
        ws.close()
    return {"root": root, "failed": failed.refresh_id, "partial": first.refresh_id, "running": running.refresh_id}


@pytest.fixture(scope="module")
def app(logged: dict[str, Any]) -> Iterator[Any]:
    made = create_app(logged["root"])
    yield made
    made.state.handle.close()


def _client(app: Any, name: str) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    r = c.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.csrf = r.json()["csrf_token"]  # type: ignore[attr-defined]  (sent by the tests that need it)
    return c


@pytest.fixture(scope="module")
def clients(app: Any) -> dict[str, TestClient]:
    return {role: _client(app, name) for name, role in USERS.items()}


# --- a small DOM, to read the page's cells by their data attributes ---------------------------------------------


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, attrs, parent, [], []  # type: ignore[var-annotated]

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    def all(self, **attrs: str | None) -> list[Node]:
        """Every descendant having these attributes (a value of None: any value)."""
        found = []
        for child in self.children:
            keys = {k.replace("_", "-"): v for k, v in attrs.items()}
            if all(k in child.attrs and (v is None or child.attrs[k] == v) for k, v in keys.items()):
                found.append(child)
            found.extend(child.all(**attrs))
        return found

    def tags(self, tag: str) -> list[Node]:
        found = []
        for child in self.children:
            found.extend([child] if child.tag == tag else [])
            found.extend(child.tags(tag))
        return found

    def one(self, **attrs: str | None) -> Node:
        found = self.all(**attrs)
        assert len(found) == 1, (attrs, len(found))
        return found[0]


VOID = {"meta", "link", "input", "br", "img", "hr"}


class Dom(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.root = self.here = Node("root", {}, None)
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.here)
        self.here.children.append(node)
        self.here.parts.append(node)
        if tag not in VOID:
            self.here = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.here
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.here = node.parent

    def handle_data(self, data: str) -> None:
        self.here.parts.append(data)


def page(c: TestClient, path: str, lang: str, status: int = 200) -> tuple[str, Node]:
    r = c.get(f"{path}?lang={lang}", headers=HTML)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    return r.text, Dom(r.text).root


def field(row: Node, name: str) -> Node:
    return row.all(data_field=name)[0]


# --- the page -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_refreshes_are_shown_as_recorded(clients: dict[str, TestClient], logged: dict[str, Any], lang: str) -> None:
    zh = lang == "zh"
    for role, c in clients.items():
        html, dom = page(c, "/alerts", lang)
        assert f'data-lang="{lang}"' in html and [h.text for h in dom.tags("h1")] == ["预警" if zh else "Alerts"]
        rows = dom.one(data_test="refresh-table").all(data_refresh=None)
        assert [r.attrs["data-refresh"] for r in rows] == [logged["running"], logged["partial"], logged["failed"]]
        running, partial, failed = rows
        assert [r.attrs["data-status"] for r in rows] == ["running", "partial", "failed"]
        status = field(partial, "status")
        assert "status-partial" in status.attrs["class"] and status.text == ("部分成功" if zh else "partial")
        assert field(failed, "status").text == ("失败" if zh else "failed")
        assert field(running, "status").text == ("进行中" if zh else "running")
        # the resumed refresh keeps the trigger it started with and shows its two attempts
        assert field(partial, "trigger").attrs["data-value"] == "schedule"
        assert field(partial, "trigger").text == ("定时" if zh else "schedule")
        assert field(failed, "trigger").text == ("仪表盘" if zh else "dashboard")
        assert field(partial, "attempts").attrs["data-value"] == "2"
        assert ("续跑" if zh else "resumed") in field(partial, "attempts").text
        assert field(failed, "attempts").attrs["data-value"] == "1" and "(" not in field(failed, "attempts").text
        run = field(partial, "run")
        assert run.attrs["data-value"] == RUN_A and [a.text for a in run.tags("a")] == [RUN_A]
        assert field(failed, "run").text.strip() == "—"
        # per source: rows loaded, quarantined, files processed and refused, and the errors
        shop = partial.one(data_source="shop_orders")
        assert field(shop, "rows_loaded").attrs["data-value"] == "117" and field(shop, "rows_loaded").text == "117"
        assert field(shop, "rows_quarantined").attrs["data-value"] == "3"
        assert field(shop, "files_processed").attrs["data-value"] == "2"
        assert field(shop, "files_processed").attrs["title"] == "2026-12-01.csv, 2026-12-02.csv"
        assert field(shop, "files_failed").attrs["data-value"] == "1"
        crm = partial.one(data_source="crm")
        assert field(crm, "status").attrs["data-value"] == "failed" and field(crm, "rows_loaded").text == "0"
        errors = [n.text for n in partial.all(data_field="source-error")]
        assert errors == [DB_SOURCE["error"]]
        assert [n.text for n in partial.all(data_field="file-failed")] == ["broken.xlsx: no header row found"]
        assert field(failed, "error").text.strip() == "every source failed"
        assert field(partial, "error").text.strip() == ""
        assert running.all(data_source=None) == [] and ("未读取数据源" if zh else "No source loaded") in running.text
        # only admins get the button
        assert bool(dom.all(data_test="refresh-button")) == (role == "admin")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_alert_history_with_deliveries_and_customers(clients: dict[str, TestClient], lang: str) -> None:
    zh = lang == "zh"
    for role, c in clients.items():
        html, dom = page(c, "/alerts", lang)
        table = dom.one(data_test="alert-table")
        events = table.all(data_event=None)
        assert {e.attrs["data-event"] for e in events} == {"ev-new-a", "ev-source"}
        new_a = table.one(data_event="ev-new-a")
        assert field(new_a, "label").text == ("新晋A级客户" if zh else "New grade-A customers")
        assert field(new_a, "matched").attrs["data-value"] == "2"
        assert field(new_a, "run").attrs["data-value"] == RUN_A
        deliveries = new_a.all(data_channel=None)
        assert [(d.attrs["data-channel"], d.attrs["data-status"]) for d in deliveries] == [
            ("webhook", "delivered"), ("email", "failed")
        ]  # fmt: skip
        hook, mail = deliveries
        assert field(hook, "status").text == ("已送达" if zh else "delivered") and field(hook, "part").text == "all"
        assert field(mail, "attempts").text == "3" and field(mail, "detail").text == "SMTP 550 refused"
        assert field(mail, "part").text == "Han Mei"
        # the targets (an e-mail address, a URL) only for admins
        assert (HOOK in html and MAIL in html) == (role == "admin")
        assert (HOOK in html or MAIL in html) == (role == "admin")
        if role == "admin":
            assert field(mail, "target").text == MAIL and field(hook, "target").text == HOOK
        # the customers behind it, each linked to its page; a name is text, never markup
        more = table.one(data_event_more="ev-new-a")
        assert [s.text for s in more.tags("summary")] == ["查看 2 位客户" if zh else "Show the 2 customers"]
        listed = more.all(data_customer=None)
        assert [r.attrs["data-customer"] for r in listed] == ["C0000007", "C/0012"]
        assert listed[0].all(href="/customers/C0000007") and listed[1].all(href="/customers/C%2F0012")
        assert EVIL not in html and "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in html
        # the changed columns by their headings, class codes by their labels (a new customer had none)
        grade_a, grade_b = label("grade", "A", lang), label("grade", "B", lang)
        assert grade_a.startswith("A") and grade_b.startswith("B")
        assert listed[0].one(data_column="grade").text == f"{heading('grade', lang)}: {grade_b} → {grade_a}"
        assert listed[1].one(data_column="grade").text == f"{heading('grade', lang)}: — → {grade_a}"
        # the run-level alert: its rule's name (no label recorded) and its findings
        source = table.one(data_event="ev-source")
        assert field(source, "label").text == "source_failed"
        assert ("未配置投递" if zh else "No delivery configured") in source.text
        findings = table.one(data_event_more="ev-source")
        assert [li.text for li in findings.all(data_field="finding")] == [FINDING]
        assert [s.text for s in findings.tags("summary")] == ["查看发现" if zh else "Show the findings"]


def test_the_badge_counts_the_latest_finished_refresh_on_every_page(clients: dict[str, TestClient]) -> None:
    # The running refresh fired nothing yet: the badge keeps the alerts of the last finished one (two).
    for role, c in clients.items():
        for path in ("/alerts", "/overview", "/history", "/data", "/users"):
            for lang in ("zh", "en"):
                r = c.get(f"{path}?lang={lang}", headers=HTML)
                dom = Dom(r.text).root
                badges = dom.all(data_test="alert-badge")
                assert len(badges) == 1, (role, path)
                assert badges[0].attrs["data-value"] == "2" and badges[0].text == "2"
                assert badges[0].attrs["title"] == (
                    "最近一次刷新触发了 2 条预警" if lang == "zh" else "2 alerts fired in the latest refresh"
                )
                assert badges[0].parent is not None and badges[0].parent.attrs["data-test"] == "nav-alerts"


# --- the API --------------------------------------------------------------------------------------------------


def test_api_refreshes_hold_exactly_the_log(clients: dict[str, TestClient], logged: dict[str, Any]) -> None:
    for c in clients.values():
        r = c.get("/api/v1/refreshes")
        assert r.status_code == 200, r.text
        got = r.json()
        assert [g["refresh_id"] for g in got] == [logged["running"], logged["partial"], logged["failed"]]
        running, partial, failed = got
        assert (running["status"], running["trigger"], running["attempts"], running["resumed"]) == (
            "running", "schedule", 1, False
        )  # fmt: skip
        assert running["finished_at"] is None and running["sources"] == [] and running["steps"] == {}
        assert (partial["status"], partial["trigger"], partial["attempts"], partial["resumed"]) == (
            "partial", "schedule", 2, True
        )  # fmt: skip
        assert partial["run_id"] == RUN_A and partial["error"] is None
        assert partial["sources"] == [FOLDER_SOURCE, DB_SOURCE]
        assert partial["steps"] == {"sources": [FOLDER_SOURCE, DB_SOURCE]}
        assert (failed["status"], failed["trigger"], failed["error"], failed["run_id"]) == (
            "failed", "dashboard", "every source failed", None
        )  # fmt: skip
        assert failed["sources"] == [DB_SOURCE]
        started = [dt.datetime.fromisoformat(g["started_at"]) for g in got]
        assert started == sorted(started, reverse=True)
        assert dt.datetime.fromisoformat(partial["finished_at"]) >= dt.datetime.fromisoformat(partial["started_at"])
        limited = c.get("/api/v1/refreshes?limit=1").json()
        assert [g["refresh_id"] for g in limited] == [logged["running"]]
    for bad in ("0", "501", "x"):
        assert clients["viewer"].get(f"/api/v1/refreshes?limit={bad}").status_code == 422


def test_api_alerts_targets_for_admins_only(clients: dict[str, TestClient], logged: dict[str, Any]) -> None:
    for role, c in clients.items():
        for lang, rule_label in (("zh", "新晋A级客户"), ("en", "New grade-A customers")):
            r = c.get(f"/api/v1/alerts?lang={lang}")
            assert r.status_code == 200, r.text
            got = {e["event_id"]: e for e in r.json()}
            assert set(got) == {"ev-new-a", "ev-source"}
            new_a, source = got["ev-new-a"], got["ev-source"]
            assert new_a["label"] == rule_label and source["label"] == "source_failed"
            assert (new_a["rule"], new_a["kind"], new_a["matched"]) == ("new_grade_a", "customers", 2)
            assert new_a["refresh_id"] == logged["partial"] and new_a["run_id"] == RUN_A
            assert new_a["previous_run_id"] == RUN_B
            assert new_a["customers"] == CUSTOMERS and new_a["findings"] == []
            assert source["findings"] == [{"what": FINDING}] and source["customers"] == []
            assert source["deliveries"] == []
            deliveries = {d["channel"]: d for d in new_a["deliveries"]}
            assert set(deliveries) == {"webhook", "email"}
            hook, mail = deliveries["webhook"], deliveries["email"]
            assert (hook["part"], hook["status"], hook["attempts"], hook["detail"], hook["customers"]) == (
                "all", "delivered", 1, "HTTP 200", 2
            )  # fmt: skip
            assert (mail["part"], mail["status"], mail["attempts"], mail["detail"], mail["customers"]) == (
                "Han Mei", "failed", 3, "SMTP 550 refused", 1
            )  # fmt: skip
            if role == "admin":
                assert (hook["target"], mail["target"]) == (HOOK, MAIL)
            else:
                assert hook.get("target") is None and mail.get("target") is None
                assert MAIL not in r.text and HOOK not in r.text


def test_api_alerts_since_and_limit(clients: dict[str, TestClient]) -> None:
    c = clients["viewer"]
    every = c.get("/api/v1/alerts").json()
    assert len(every) == 2
    fired = sorted(dt.datetime.fromisoformat(e["fired_at"]) for e in every)
    oldest, newest = fired[0], fired[-1]
    assert len(c.get("/api/v1/alerts", params={"since": oldest.isoformat()}).json()) == 2  # at or after
    assert len(c.get("/api/v1/alerts", params={"since": newest.isoformat()}).json()) == 1 + (oldest == newest)
    later = (newest + dt.timedelta(seconds=1)).isoformat()
    assert c.get("/api/v1/alerts", params={"since": later}).json() == []
    # an instant with a zone means the same moment in the server's time
    zoned = (oldest - dt.timedelta(seconds=1)).astimezone().astimezone(dt.timezone(dt.timedelta(hours=-11)))
    assert len(c.get("/api/v1/alerts", params={"since": zoned.isoformat()}).json()) == 2
    zoned_later = (newest + dt.timedelta(seconds=1)).astimezone().astimezone(dt.UTC)
    assert c.get("/api/v1/alerts", params={"since": zoned_later.isoformat()}).json() == []
    assert len(c.get("/api/v1/alerts?limit=1").json()) == 1
    for bad in ("limit=0", "limit=501", "since=yesterday"):
        r = c.get(f"/api/v1/alerts?{bad}")
        assert r.status_code == 422 and "error" in r.json()
    # the ends of the calendar: fine without a zone, one clear line when a zone moves them beyond it
    assert len(c.get("/api/v1/alerts", params={"since": "0001-01-01T00:00:00"}).json()) == 2
    assert c.get("/api/v1/alerts", params={"since": "9999-12-31T23:59:59"}).json() == []
    for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"):
        r = c.get("/api/v1/alerts", params={"since": edge})
        assert r.status_code == 400 and "between the years 1 and 9999" in r.json()["error"], r.text


def test_only_admins_start_a_refresh(clients: dict[str, TestClient], app: Any) -> None:
    before = len(app.state.jobs.list())
    for role in ("viewer", "analyst"):
        c = clients[role]
        r = c.post("/api/v1/refresh", headers={"X-CSRF-Token": c.cookies.get("tierwise_csrf") or "x"})
        assert r.status_code == 403 and "admin" in r.json()["error"]
    assert len(app.state.jobs.list()) == before
    # an admin's browser session without the CSRF token is refused too
    r = clients["admin"].post("/api/v1/refresh")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    # there are no options: a body that is not {} is refused before anything starts
    token = {"X-CSRF-Token": clients["admin"].csrf}  # type: ignore[attr-defined]
    for body in ([0], {"trigger": "cli"}, "now"):
        r = clients["admin"].post("/api/v1/refresh", json=body, headers=token)
        assert r.status_code == 422 and "error" in r.json(), (body, r.text)
    assert len(app.state.jobs.list()) == before


# --- an empty log ---------------------------------------------------------------------------------------------


def test_empty_log_shows_how_to_start(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.init(root).close()
    Accounts(root).add_user("vic", "viewer", PASSWORD)
    Accounts(root).add_user("ada", "admin", PASSWORD)
    made = create_app(root)
    try:
        for name in ("vic", "ada"):
            c = _client(made, name)
            for lang, words in (
                ("zh", "还没有刷新记录——请在 tierwise.toml 中配置 [[sources]]，然后运行 `tierwise refresh`。"),
                ("en", "No refresh yet — configure [[sources]] in tierwise.toml and run `tierwise refresh`."),
            ):
                _, dom = page(c, "/alerts", lang)
                assert dom.one(data_test="no-refresh").text == words
                assert dom.one(data_test="no-alerts").text == (
                    "尚未触发任何预警。" if lang == "zh" else "No alert has fired yet."
                )
                assert not dom.all(data_test="alert-badge") and not dom.all(data_test="refresh-table")
                assert dom.all(data_test="nav-alerts")
            assert c.get("/api/v1/refreshes").json() == [] and c.get("/api/v1/alerts").json() == []
    finally:
        made.state.handle.close()


# --- a real refresh, started as an admin ------------------------------------------------------------------------


def _split_orders(source: Path, early: Path, late: Path, cut: str) -> int:
    """The generated orders before `cut` (a date) into `early`, the others into `late`; how many are late."""
    with open(source, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    parts = {early: [r for r in rows if r["order_date"] < cut], late: [r for r in rows if r["order_date"] >= cut]}
    for path, part in parts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(part)
    assert parts[early] and parts[late]
    return len(parts[late])


def test_refresh_now_runs_a_real_refresh_and_its_row_appears(tmp_path: Path) -> None:
    """A generated workspace with a run on its older orders; the newer orders arrive in a folder source. The
    admin's POST starts a refresh job that loads the file, makes a run, compares it with the first and fires the
    default alerts; the page, the badge and the API then show exactly that refresh and what it fired."""
    from tierwise.pipeline.execute import run
    from tierwise.store.runs import latest_snapshot

    data, root = tmp_path / "data", tmp_path / "ws"
    generate(data, customers=150, seed=3)
    inbox = root / "inbox" / "orders"
    late = _split_orders(data / "orders.csv", data / "early_orders.csv", inbox / "orders-late.csv", "2024-09-01")
    Workspace.init(root).close()
    with Workspace.open(root) as ws:
        for table, name in (("customers", "customers"), ("payments", "payments"), ("orders", "early_orders")):
            ingest_file(ws, table, data / f"{name}.csv")
        first = run(ws).run_id
    config = root / "tierwise.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[[sources]]\nname = "shop_orders"\ntable = "orders"\nfolder = "inbox/orders"\nmin_age_seconds = 0\n',
        encoding="utf-8",
    )
    Accounts(root).add_user("ada", "admin", PASSWORD)
    Accounts(root).add_user("vic", "viewer", PASSWORD)
    made = create_app(root)
    try:
        admin, viewer = _client(made, "ada"), _client(made, "vic")
        _, dom = page(admin, "/alerts", "en")
        assert dom.all(data_test="no-refresh") and dom.all(data_test="refresh-button")
        r = admin.post("/api/v1/refresh", headers={"X-CSRF-Token": admin.csrf})  # type: ignore[attr-defined]
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json()["status_url"] == f"/api/v1/jobs/{job_id}"
        job = made.state.jobs.wait(job_id, timeout=300)
        assert job["state"] == "done" and job["kind"] == "refresh", job
        report = job["result"]
        assert (report["trigger"], report["status"], report["run_made"], report["attempts"]) == (
            "dashboard", "ok", True, 1
        )  # fmt: skip
        assert admin.get(f"/api/v1/jobs/{job_id}").json()["result"] == report  # polled like any job
        assert (inbox / "processed" / "orders-late.csv").is_file() and not (inbox / "orders-late.csv").exists()
        # what the workspace holds now, read without the service: the new run, and the grade-A newcomers
        with Workspace.open(root) as ws:
            runs = [r["run_id"] for r in list_runs(ws)]
            _, before = latest_snapshot(ws, first)
            _, after = latest_snapshot(ws, runs[-1])
            was_a = {
                r["customer_id"]
                for r in before.filter(before.grade == "A").select("customer_id").to_pyarrow().to_pylist()
            }
            new_a = {
                r["customer_id"]
                for r in after.filter(after.grade == "A").select("customer_id").to_pyarrow().to_pylist()
            } - was_a
            events = ws.con.con.execute(
                "SELECT rule, matched FROM alert_events WHERE refresh_id = ?", [report["refresh_id"]]
            ).fetchall()
        assert len(runs) == 2 and runs[0] == first and report["run_id"] == runs[1]
        assert new_a, "the newer orders make some customer grade A (the test needs one)"

        listed = viewer.get("/api/v1/refreshes").json()
        assert len(listed) == 1
        row = listed[0]
        assert (row["refresh_id"], row["trigger"], row["status"], row["run_id"], row["attempts"]) == (
            report["refresh_id"], "dashboard", "ok", runs[1], 1
        )  # fmt: skip
        [source] = row["sources"]
        assert (source["name"], source["table"], source["kind"], source["status"]) == (
            "shop_orders", "orders", "folder", "ok"
        )  # fmt: skip
        assert source["files_processed"] == ["orders-late.csv"] and source["files_failed"] == []
        assert source["rows_read"] == late and source["rows_loaded"] == late and source["rows_quarantined"] == 0

        fired = viewer.get("/api/v1/alerts", params={"lang": "en"}).json()
        assert sorted((a["rule"], a["matched"]) for a in fired) == sorted(events)
        [grade_a] = [a for a in fired if a["rule"] == "new_grade_a"]
        assert {c["customer_id"] for c in grade_a["customers"]} == new_a and grade_a["matched"] == len(new_a)
        assert grade_a["label"] == "New grade-A customers" and grade_a["previous_run_id"] == first
        for lang in ("zh", "en"):
            _, dom = page(viewer, "/alerts", lang)
            shown = dom.one(data_refresh=report["refresh_id"])
            assert field(shown, "trigger").attrs["data-value"] == "dashboard"
            assert field(shown, "status").attrs["data-value"] == "ok"
            assert field(shown, "run").attrs["data-value"] == runs[1]
            assert field(shown.one(data_source="shop_orders"), "rows_loaded").attrs["data-value"] == str(late)
            assert [b.attrs["data-value"] for b in dom.all(data_test="alert-badge")] == [str(len(events))]
            event = dom.one(data_event=grade_a["event_id"])
            assert field(event, "label").text == ("新晋A级客户" if lang == "zh" else "New grade-A customers")
            assert field(event, "matched").attrs["data-value"] == str(len(new_a))
            listed_ids = {
                n.attrs["data-customer"] for n in dom.one(data_event_more=grade_a["event_id"]).all(data_customer=None)
            }
            assert listed_ids == new_a
        audit = [e for e in Accounts(root).audit_entries(50) if e["action"] == "refresh"]
        assert len(audit) == 1 and audit[0]["username"] == "ada" and job_id in audit[0]["detail"]
    finally:
        made.state.jobs.shutdown(timeout=30)
        made.state.handle.close()


# --- in a real browser ----------------------------------------------------------------------------------------


def _write_log(root: Path) -> log.RefreshRecord:
    """The partial refresh of the `logged` fixture, finished, with its two alerts and their deliveries."""
    with Workspace.open(root) as ws:
        record = log.start(ws, "schedule")
        record.steps = {"sources": [FOLDER_SOURCE, DB_SOURCE]}
        log.save(ws, record, run_id=RUN_A)
        details = {"label_zh": "新晋A级客户", "label_en": "New grade-A customers", "customers": CUSTOMERS}
        log.record_event(ws, _event("ev-new-a", record, "new_grade_a", "customers", 2, details))
        log.record_delivery(ws, _delivery("ev-new-a", "webhook", HOOK, "all", "delivered", 1, "HTTP 200", 2))
        log.record_event(ws, _event("ev-source", record, "source_failed", "run", 1, {"findings": [{"what": FINDING}]}))
        log.finish(ws, record, log.PARTIAL)
    return record


@pytest.mark.slow
def test_alerts_page_and_refresh_button_in_headless_chromium(tmp_path: Path) -> None:
    """`tierwise serve` on a generated workspace whose orders wait in a folder source, with a refresh in its log:
    the alerts page renders in Chinese and English with its badge and expandable customers, and the admin's
    button runs a real refresh whose row then appears — with no console error, CSP violation or failed request."""
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("TIERWISE_REQUIRE_CHROMIUM is set but there is no /usr/bin/chromium")
        pytest.skip("no headless chromium here (/usr/bin/chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed").sync_playwright

    data, root = tmp_path / "data", tmp_path / "ws"
    generate(data, customers=120, seed=5)
    Workspace.init(root).close()
    with Workspace.open(root) as ws:
        for table in ("customers", "payments"):
            ingest_file(ws, table, data / f"{table}.csv")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "orders.csv").write_bytes((data / "orders.csv").read_bytes())
    config = root / "tierwise.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[[sources]]\nname = "shop_orders"\ntable = "orders"\nfolder = "inbox"\nmin_age_seconds = 0\n',
        encoding="utf-8",
    )
    earlier = _write_log(root)
    add = subprocess.run(
        [sys.executable, "-m", "tierwise.cli", "user", "add", "ada", "--role", "admin", "--password-stdin", "-w", root],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    proc, base = start_serve(root, tmp_path / "serve.log", timeout=60)
    problems = Problems()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = watched_page(browser, problems)

                page.goto(base + "/alerts")
                page.wait_for_url(re.compile(r"/login\?next="))
                page.fill("#username", "ada")
                page.fill("#password", PASSWORD)
                page.click("form.login button[type=submit]")
                page.wait_for_url("**/alerts")
                assert page.inner_text("h1") == "预警" and page.get_attribute("html", "lang") == "zh-CN"
                assert page.get_attribute("[data-test=alert-badge]", "data-value") == "2"
                rows = page.locator(REFRESH_ROWS)
                assert rows.count() == 1 and rows.first.get_attribute("data-refresh") == earlier.refresh_id
                assert page.inner_text(f"tr[data-refresh='{earlier.refresh_id}'] [data-field=status]") == "部分成功"
                # the customers are folded away until asked for; each links to its page
                customers = page.locator("tr[data-event-more=ev-new-a] .alert-customers")
                assert not customers.is_visible()
                page.click("tr[data-event-more=ev-new-a] summary")
                assert customers.is_visible()
                assert page.get_attribute("tr[data-customer='C/0012'] a", "href") == "/customers/C%2F0012"
                assert EVIL in page.inner_text("tr[data-customer=C0000007] th")  # the name as text
                page.screenshot(path=tmp_path / "alerts-zh.png", full_page=True)

                # Refresh now: the job's progress shows, then the page reloads with the new refresh on top.
                page.click("#refresh-button")
                page.wait_for_selector("#refresh-job:not([hidden])")
                page.wait_for_selector("#refresh-job[data-state=done]", timeout=180_000)
                page.wait_for_function(
                    "() => document.querySelectorAll('#refresh-table > tbody > tr[data-refresh]').length === 2",
                    timeout=30_000,
                )
                top = page.locator(REFRESH_ROWS).first
                assert top.get_attribute("data-refresh") != earlier.refresh_id
                assert top.get_attribute("data-status") == "ok"
                assert top.locator("[data-field=trigger]").first.get_attribute("data-value") == "dashboard"
                assert top.locator("[data-field=trigger]").first.inner_text() == "仪表盘"
                assert top.locator("tr[data-source=shop_orders] [data-field=files_processed]").inner_text() == "1"
                assert (inbox / "processed" / "orders.csv").is_file()
                made_run = top.locator(":scope > td[data-field=run]")
                assert made_run.get_attribute("data-value")  # the first run, made by this refresh
                assert made_run.locator("a").get_attribute("href") == "/history"
                page.screenshot(path=tmp_path / "alerts-refreshed.png", full_page=True)

                page.click("#lang-switch")
                page.wait_for_function("document.documentElement.lang === 'en'")
                assert page.inner_text("h1") == "Alerts" and page.inner_text("[data-test=nav-alerts]").startswith(
                    "Alerts"
                )
                assert page.locator(REFRESH_ROWS).first.get_attribute("data-status") == "ok"
                assert page.inner_text(f"tr[data-refresh='{earlier.refresh_id}'] [data-field=status]") == "partial"
                assert page.inner_text("tr[data-event=ev-new-a] [data-field=label]") == "New grade-A customers"
                page.screenshot(path=tmp_path / "alerts-en.png", full_page=True)
            finally:
                browser.close()
    finally:
        stop_serve(proc)
    problems.check()
