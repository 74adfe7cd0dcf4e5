"""The dashboard pages: each renders for the roles that may open it, in both languages, with the numbers of the
services (and so of the snapshot); other roles get the 403 page, anonymous browsers the login page; forms carry
the CSRF token; viewers see personal data masked; a workspace without a run shows the empty state."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from conftest import run_cli
from tierwise.web.accounts import Accounts
from tierwise.web.app import create_app

PASSWORD = "correct horse 1"
USERS = {"ada": "admin", "ann": "analyst", "vic": "viewer"}
HTML = {"accept": "text/html"}
EVIL = "<script>alert('x')</script>"
VIEWER_PAGES = ["/overview", "/segments", "/customers", "/history", "/models"]
PAGES = {**dict.fromkeys(VIEWER_PAGES, "viewer"), "/data": "analyst", "/settings": "admin", "/users": "admin"}


def _plant_evil_name(data: Path) -> str:
    path = data / "customers.csv"
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    rows[0]["name"] = EVIL
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    return rows[0]["customer_id"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pages")
    data, ws = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "240", "--seed", "5").code == 0
    evil_id = _plant_evil_name(data)
    assert run_cli("init", ws).code == 0
    for table in ("customers", "orders", "payments", "interactions"):
        r = run_cli("ingest", table, data / f"{table}.csv", "-w", ws)
        assert r.code == 0, r.stderr
    r = run_cli("backfill", "-w", ws, "--from", "2024-04-01", "--to", "2024-04-01", "--every", "quarter")
    assert r.code == 0, r.stderr
    r = run_cli("run", "-w", ws)
    assert r.code == 0, r.stderr
    accounts = Accounts(ws)
    for name, role in USERS.items():
        accounts.add_user(name, role, PASSWORD)
    return ws, evil_id


@pytest.fixture(scope="module")
def app(workspace: tuple[Path, str]) -> Iterator[Any]:
    made = create_app(workspace[0])
    yield made
    made.state.handle.close()


def _client(app: Any, name: str | None) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    if name is not None:
        r = c.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
    return c


@pytest.fixture(scope="module")
def clients(app: Any) -> dict[str, TestClient]:
    return {role: _client(app, name) for name, role in USERS.items()}


@pytest.fixture(scope="module")
def ws(app: Any) -> Any:
    return app.state.handle.workspace()


def page(c: TestClient, path: str, lang: str = "zh", status: int = 200) -> str:
    sep = "&" if "?" in path else "?"
    r = c.get(f"{path}{sep}lang={lang}", headers=HTML)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def attr(html: str, test: str, name: str = "data-value") -> str:
    m = re.search(rf'data-test="{re.escape(test)}"[^>]*?{name}="([^"]*)"', html)
    assert m, f"no {name} on data-test={test}"
    return unescape(m.group(1))


def test_anonymous_browsers_go_to_the_login_page(app: Any) -> None:
    anonymous = _client(app, None)
    for path in [*PAGES, "/customers/C0000001", "/lang/en"]:
        r = anonymous.get(path, headers=HTML)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={quote(path)}", path
        assert anonymous.get(path).status_code == 401  # scripts get the JSON error
    login = anonymous.get("/login?next=/customers", headers=HTML)
    assert login.status_code == 200 and 'name="next" value="/customers"' in login.text


def test_every_page_renders_for_its_roles_in_both_languages(clients: dict[str, TestClient]) -> None:
    order = ["viewer", "analyst", "admin"]
    for path, needed in PAGES.items():
        for role, c in clients.items():
            allowed = order.index(role) >= order.index(needed)
            for lang in ("zh", "en"):
                html = page(c, path, lang, 200 if allowed else 403)
                assert f'data-lang="{lang}"' in html
                if not allowed:
                    assert ("无权访问" if lang == "zh" else "Not allowed") in html
    # the navigation shows only what the role may open
    viewer = page(clients["viewer"], "/overview")
    assert 'href="/data"' not in viewer and 'href="/settings"' not in viewer and 'href="/users"' not in viewer
    analyst = page(clients["analyst"], "/overview")
    assert 'href="/data"' in analyst and 'href="/settings"' not in analyst
    admin = page(clients["admin"], "/overview", "en")
    assert all(f'href="{p}"' in admin for p in PAGES)
    assert ">Overview<" in admin and ">总览<" in page(clients["admin"], "/overview", "zh")


def test_overview_numbers_are_the_snapshots(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.store.runs import latest_snapshot

    meta, snap = latest_snapshot(ws)
    n = int(snap.count().execute())
    grade_a = int(snap.filter(snap.grade == "A").count().execute())
    for lang, label in (("zh", "客户总数"), ("en", "Customers")):
        html = page(clients["viewer"], "/overview", lang)
        assert int(attr(html, "kpi-customers")) == n
        assert int(attr(html, "kpi-grade_a")) == grade_a
        assert label in html
        assert attr(html, "kpi-customers", "data-change") == "0"  # the run before had the same customers
        assert meta["run_id"] in html
        for chart in ("grades", "segments", "lifecycle", "pareto", "heatmap-customers", "regions", "industries"):
            assert f'id="chart-{chart}"' in html
        assert '<script src="/static/plotly.min.js"' in html and 'id="page-data"' in html
        assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from elsewhere
    # the analyst gets the run button, the viewer not
    assert 'id="run-button"' in page(clients["analyst"], "/overview")
    assert 'id="run-button"' not in page(clients["viewer"], "/overview")


def test_static_assets_and_charts_script(clients: dict[str, TestClient]) -> None:
    c = clients["viewer"]
    for path in ("/static/app.js", "/static/charts.js", "/static/app.css"):
        assert c.get(path).status_code == 200
    charts = c.get("/static/charts.js").text
    assert "Plotly.newPlot" in charts and "sankey" in charts


def test_customers_page_lists_by_priority_and_filters(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    html = page(clients["viewer"], "/customers")
    first = re.search(r'<tr data-customer="([^"]+)" data-rank="([^"]*)"', html)
    assert first and first.group(2) == "1"
    assert 'id="customer-search"' in html and 'id="export-csv"' not in html  # viewers do not export
    analyst = page(clients["analyst"], "/customers?where=grade%20%3D%20%27A%27", "en")
    expected = list_customers(ws, where="grade = 'A'", page_size=1)["total"]
    assert int(attr(analyst, "customer-total")) == expected
    assert 'id="export-csv"' in analyst and "/api/v1/exports?format=csv&amp;where=grade%20%3D%20%27A%27" in analyst
    one = list_customers(ws, page_size=1, sort="-monetary")["rows"][0]
    found = page(clients["viewer"], f"/customers?q={quote(one['customer_id'])}")
    assert int(attr(found, "customer-total")) >= 1 and f'data-customer="{one["customer_id"]}"' in found
    bad = page(clients["viewer"], "/customers?where=grade%20%3D%3D%3D", "en", 400)
    assert 'data-test="filter-error"' in bad and 'id="customer-filter"' in bad


def test_customer_detail_shows_scores_reasons_and_next_action(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.customers import customer_detail, list_customers

    top = list_customers(ws, page_size=1)["rows"][0]["customer_id"]
    detail = customer_detail(ws, top, language="en")
    html = page(clients["viewer"], f"/customers/{quote(top)}", "en")
    assert f'data-test="customer-id">{top}<' in html
    assert attr(html, "customer-rank") == "1"
    text = unescape(html)
    for reason in detail["reasons"]:
        assert reason in text
    for indicator in detail["grade"]["indicators"]:
        assert f'data-indicator="{indicator["name"]}"' in html
    assert 'data-test="next-action"' in html and detail["next_action"]["action_label"] in text
    assert 'data-test="timeline-table"' in html and text.count("<tr data-run=") == 2
    assert page(clients["viewer"], "/customers/NOPE-404", "en", 404).count("no customer") >= 1


def test_viewers_see_personal_data_masked(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.customers import customer_detail, list_customers

    cid = list_customers(ws, page_size=1)["rows"][0]["customer_id"]
    phone = customer_detail(ws, cid)["profile"]["phone"]
    email = customer_detail(ws, cid)["profile"]["email"]
    assert phone and email
    viewer = page(clients["viewer"], f"/customers/{quote(cid)}")
    analyst = page(clients["analyst"], f"/customers/{quote(cid)}")
    assert phone not in viewer and email not in viewer and "****" in viewer
    assert phone in analyst and email in analyst


def test_segments_page_matches_the_service(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.segments import segments

    data = segments(ws, "grade", language="en")
    html = page(clients["viewer"], "/segments?column=grade", "en")
    for r in data["classes"]:
        code = r["code"] if r["code"] is not None else ""
        row = re.search(rf'<tr data-code="{re.escape(str(code))}".*?data-value="(\d+)"', html, re.S)
        assert row and int(row.group(1)) == r["customers"]
    members = page(clients["viewer"], "/segments?column=grade&code=A", "en")
    a = next(r for r in data["classes"] if r["code"] == "A")
    assert int(attr(members, "members-total")) == a["customers"]
    assert 'id="chart-segment"' in members


def test_history_and_models_pages(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.history import compare

    data = compare(ws, column="grade", language="zh")
    html = page(clients["viewer"], "/history")
    assert f'data-in-both="{data["in_both"]}"' in html
    assert 'id="chart-sankey"' in html and 'id="chart-matrix"' in html and 'id="chart-trend"' in html
    models = page(clients["viewer"], "/models", "en")
    assert 'data-test="model-clv"' in models or 'data-test="models-empty"' in models


def test_forms_carry_the_csrf_token(clients: dict[str, TestClient]) -> None:
    for role, path, form in (("analyst", "/data", "upload-form"), ("admin", "/settings", "settings-form"),
                             ("admin", "/users", "user-add-form"), ("viewer", "/overview", "logout-form")):  # fmt: skip
        c = clients[role]
        token = c.get("/api/v1/auth/me").json()["csrf_token"]
        html = page(c, path)
        block = html[html.index(f'id="{form}"') :]
        block = block[: block.index("</form>")]
        assert f'name="csrf_token" value="{token}"' in block, (path, form)
        assert f'<meta name="csrf-token" content="{token}">' in html
    settings = page(clients["admin"], "/settings", "en")
    assert 'id="settings-preview"' in settings and 'data-test="weight-' in settings
    users = page(clients["admin"], "/users")
    assert 'id="user-table"' in users and 'data-user="vic"' in users


def test_language_switch_sets_a_cookie(app: Any) -> None:
    c = _client(app, "vic")
    html = page(c, "/overview")
    assert 'id="lang-switch"' in html
    r = c.get("/lang/en?next=/customers", headers=HTML)
    assert r.status_code == 303 and r.headers["location"] == "/customers"
    assert "lang=en" in r.headers["set-cookie"]
    c.cookies.set("lang", "en")
    assert 'data-lang="en"' in c.get("/customers", headers=HTML).text
    assert c.get("/lang/zh?next=//evil.example", headers=HTML).headers["location"] == "/"


def test_customer_names_are_escaped(clients: dict[str, TestClient], workspace: tuple[Path, str]) -> None:
    evil_id = workspace[1]
    html = page(clients["viewer"], f"/customers?q={quote(evil_id)}")
    assert EVIL not in html and "&lt;script&gt;" in html
    detail = page(clients["viewer"], f"/customers/{quote(evil_id)}")
    assert EVIL not in detail


def test_empty_workspace_says_run_the_main_job_first(tmp_path: Path) -> None:
    from tierwise.workspace import Workspace

    Workspace.init(tmp_path / "empty").close()
    accounts = Accounts(tmp_path / "empty")
    accounts.add_user("ann", "analyst", PASSWORD)
    accounts.add_user("vic", "viewer", PASSWORD)
    app = create_app(tmp_path / "empty")
    try:
        analyst, viewer = _client(app, "ann"), _client(app, "vic")
        for path in ("/overview", "/customers", "/segments", "/history", "/models"):
            html = page(analyst, path, "en")
            assert 'data-test="empty-state"' in html and "run the main job first" in html
            assert 'id="run-button"' in html
            assert 'id="run-button"' not in page(viewer, path, "en")
        assert "还没有运行结果" in page(viewer, "/overview", "zh")
        data = page(analyst, "/data", "en")
        assert 'id="upload-form"' in data and "Nothing loaded yet" in data
    finally:
        app.state.handle.close()


# --- English pages in a Chinese workspace, stable keys, no server paths, re-uploads ---------------------------

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# The page's own words: headings, labels, table headers, buttons, terms, legends, navigation, KPI labels and
# placeholders (table bodies, customer names, cities and industries are customer data and may be Chinese).
CHROME_TAGS = {"h1", "h2", "h3", "h4", "label", "button", "dt", "legend", "nav", "title", "caption", "summary"}
VOID = {"br", "input", "meta", "link", "img", "hr", "col", "source", "wbr", "area", "base", "embed", "track"}


class _Chrome(HTMLParser):
    """The text of the page's own words, with where it was found."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.found: list[tuple[str, str]] = []

    def _chrome(self) -> bool:
        tags = [t for t, _ in self.stack]
        if "script" in tags or "style" in tags:
            return False
        if CHROME_TAGS & set(tags) or "thead" in tags:
            return True
        return any("kpi" in a.get("class", "").split() for _, a in self.stack) and any(
            a.get("class", "") == "label" for _, a in self.stack
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("placeholder", "aria-label", "title", "alt"):
            if a.get(key) and tag != "a":  # the language switch link names the other language
                self.found.append((f"{tag}@{key}", a[key]))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if data.strip() and self._chrome():
            self.found.append(("/".join(t for t, _ in self.stack[-3:]), data.strip()))


def chinese_words(html: str, allowed: set[str] = frozenset()) -> list[tuple[str, str]]:  # type: ignore[assignment]
    """The page's own words (see CHROME_TAGS) that hold Chinese, after removing the `allowed` strings (customer
    data and the workspace's own settings text); the JSON of the page's script texts is checked too."""
    parser = _Chrome()
    parser.feed(html)
    out = []
    for where, text in parser.found:
        for value in sorted(allowed, key=len, reverse=True):
            text = text.replace(value, "")
        if CJK.search(text):
            out.append((where, text))
    m = re.search(r'<script type="application/json" id="page-text">(.*?)</script>', html, re.S)
    assert m, "no page-text"
    for key, value in json.loads(m.group(1)).items():
        if CJK.search(json.dumps(value, ensure_ascii=False)):
            out.append((f"page-text:{key}", str(value)))
    return out


def test_english_pages_show_no_chinese_words_of_their_own(clients: dict[str, TestClient], ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    cfg = ws.config
    allowed = {i.label for i in cfg.grade.indicators if i.label}  # tierwise.toml's own labels (the user's text)
    allowed |= {str(r.name) for r in cfg.rules} | {str(r.name) for r in cfg.playbook}
    top = list_customers(ws, page_size=3, language="en")["rows"]
    allowed |= {str(r.get("name")) for r in top if r.get("name")}
    paths = [*PAGES, f"/customers/{quote(top[0]['customer_id'])}", "/segments?column=cluster_name",
             "/segments?column=satisfaction_level", "/segments?column=grade&code=A",
             "/history?column=loyalty"]  # fmt: skip
    for path in paths:
        html = page(clients["admin"], path, "en")
        assert chinese_words(html, allowed) == [], path
    # and the check does find the page's own words in Chinese
    assert chinese_words(page(clients["admin"], "/overview", "zh"))


def test_customer_page_labels_satisfaction_and_names_clusters_in_the_page_language(
    clients: dict[str, TestClient], ws: Any
) -> None:
    from tierwise.store.runs import latest_snapshot, run_clusters
    from tierwise.web.services.customers import list_customers

    meta, _ = latest_snapshot(ws)
    clusters = run_clusters(meta)
    assert clusters is not None, "the test workspace clusters its customers"
    names = {int(p["cluster"]): (p["name_en"], p["name_zh"]) for p in clusters["profiles"]}
    rows = list_customers(ws, where="cluster is not null", columns=["customer_id", "cluster"], page_size=1)["rows"]
    cid, number = rows[0]["customer_id"], int(rows[0]["cluster"])
    en_name, zh_name = names[number]
    for lang, name, other, level in (("en", en_name, zh_name, "Satisfaction"), ("zh", zh_name, en_name, "满意度")):
        html = page(clients["viewer"], f"/customers/{quote(cid)}", lang)
        card = re.search(r'data-test="class-cluster_name"><div class="label">[^<]*</div><div class="value small">'
                         r"([^<]*)</div>", html)  # fmt: skip
        assert card and unescape(card.group(1)) == name != other, (lang, card and card.group(1))
        sat = re.search(r'data-test="class-satisfaction_level"><div class="label">([^<]*)</div>', html)
        assert sat and sat.group(1) == level and "satisfaction_level</div>" not in html
        score_row = re.search(r'<tr data-field="cluster_name">.*?<td class="num">([^<]*)</td>', html, re.S)
        assert score_row and unescape(score_row.group(1)) == name
    # the other pages that name clusters: the segments tab (its class names; the codes in links stay as stored)
    # and the customer list
    for lang, name in (("en", en_name), ("zh", zh_name)):
        seg = page(clients["viewer"], "/segments?column=cluster_name", lang)
        shown = {unescape(x) for x in re.findall(r'<th scope="row">([^<]*)</th>', seg)}
        assert name in shown and not {en_name, zh_name} - {name} & shown, shown
        listed = list_customers(ws, search=cid, columns=["customer_id", "cluster_name"], language=lang)["rows"]
        assert listed[0]["cluster_name_label"] == name


def _wait(c: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = c.get(f"/api/v1/jobs/{job_id}").json()
        if status["state"] in ("done", "failed") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _api(app: Any, name: str) -> TestClient:
    c = _client(app, name)
    c.headers["X-CSRF-Token"] = c.get("/api/v1/auth/me").json()["csrf_token"]
    return c


def test_settings_preview_names_classes_and_counts_in_the_page_language(app: Any, ws: Any) -> None:
    admin = _api(app, "ada")
    weights = {i.name: (0.9 if n == 0 else 0.05) for n, i in enumerate(ws.config.grade.indicators)}
    results = {}
    for lang in ("en", "zh"):
        r = admin.post(f"/api/v1/settings/preview?lang={lang}", json={"grade": {"weights": weights}})
        assert r.status_code == 202, r.text
        job = _wait(admin, r.json()["job_id"])
        assert job["state"] == "done", job
        results[lang] = job["result"]
    en, zh = results["en"], results["zh"]
    assert en["changed_labels"] == {"grade": "Grade", "tags": "Tags (rules)", "next_action": "Next action",
                                    "strategy": "Strategy"}  # fmt: skip
    assert set(zh["changed_labels"]) == set(zh["changed"]) and all(CJK.search(v) for v in zh["changed_labels"].values())
    for cell in en["grade_matrix"]:
        assert not CJK.search(str(cell["from_label"]) + str(cell["to_label"])), cell
    assert any(CJK.search(str(c["from_label"])) for c in zh["grade_matrix"])
    # app.js names the counts with the page's words (not the raw keys) and asks for the page's language
    text = json.loads(re.search(r'id="page-text">(.*?)</script>', page(admin, "/settings", "en"), re.S).group(1))  # type: ignore[union-attr]
    assert text["compared"] == {"grade": "Grade", "tags": "Tags (rules)", "next_action": "Next action",
                                "strategy": "Strategy"}  # fmt: skip
    js = admin.get("/static/app.js").text
    assert "(T.compared || {})[k]" in js and '"/api/v1/settings/preview" + (lang ? "?lang="' in js


def test_ingest_summary_has_stable_keys_and_translated_status(clients: dict[str, TestClient]) -> None:
    js = clients["analyst"].get("/static/app.js").text
    fields = re.search(r"var INGEST_FIELDS = (\[.*?\]);", js, re.S)
    assert fields
    keys = [k for k, _ in json.loads(fields.group(1).replace("\n", ""))]
    assert keys == [
        "status",
        "rows_read",
        "rows_new",
        "rows_updated",
        "rows_unchanged",
        "rows_quarantined",
        "duplicates_removed",
        "values_blanked",
    ]
    assert '"data-field": f[0]' in js and "statuses[v] || v" in js
    for lang, loaded, already in (("en", "Loaded", "Already loaded before"), ("zh", "已导入", "此前已导入")):
        html = page(clients["analyst"], "/data", lang)
        text = json.loads(re.search(r'id="page-text">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
        assert text["ingest_status"] == {"loaded": loaded, "already_loaded": already}
        terms = re.findall(r'\["(\w+)", "(\w+)"\]', fields.group(1))
        assert all(text[term] for _, term in terms)  # every field is named in the page's language
        assert "{batch}" in text["already_loaded_note"] and "{date}" in text["already_loaded_note"]


def test_no_server_paths_reach_the_client(app: Any, clients: dict[str, TestClient], ws: Any) -> None:
    root = str(Path(ws.root).resolve())
    settings = page(clients["admin"], "/settings", "en")
    assert "<code>tierwise.toml</code>" in settings and root not in settings and str(ws.root) not in settings
    api = clients["admin"].get("/api/v1/settings").json()
    assert api["path"] == "tierwise.toml"
    for path in ("/api/v1/uploads", "/api/v1/quarantine?page_size=500"):
        body = clients["analyst"].get(path).text
        assert root not in body and str(ws.root) not in body, path
    data = page(clients["analyst"], "/data", "en")
    assert root not in data and str(ws.root) not in data


CUSTOMERS_UPLOAD = "customer_id,name,signup_date\nZ9000001,Upload One,2024-01-05\n,No Id,2024-01-06\n"


def test_uploads_show_file_names_and_a_reupload_says_it_was_loaded_before(app: Any, ws: Any) -> None:
    analyst = _api(app, "ann")
    root = str(Path(ws.root).resolve())

    def upload() -> dict[str, Any]:
        r = analyst.post("/api/v1/uploads/customers", files={"file": ("客户 new.csv", CUSTOMERS_UPLOAD.encode())})
        assert r.status_code == 202, r.text
        job = _wait(analyst, r.json()["job_id"])
        assert job["state"] == "done", job
        assert root not in json.dumps(job, ensure_ascii=False) and str(ws.root) not in json.dumps(job)
        return dict(job["result"])

    first = upload()
    rep = first["report"]
    assert rep["status"] == "loaded" and rep["file"] == first["file"] and "/" not in rep["file"]
    assert rep["file"].endswith("-客户_new.csv") and first["previous"] is None
    assert first["quarantine"]["total"] == rep["rows_quarantined"] == 1
    assert first["quarantine"]["batch_id"] == rep["batch_id"] and len(first["quarantine"]["rows"]) == 1

    again = upload()
    rep2 = again["report"]
    assert rep2["status"] == "already_loaded" and rep2["batch_id"] == rep["batch_id"] and rep2["rows_loaded"] == 0
    assert rep2["file"] == "客户_new.csv" and again["file"] is None
    # the earlier batch is named (to say when it was loaded), and its quarantine is not presented as this upload's
    assert again["previous"]["batch_id"] == rep["batch_id"] and again["previous"]["loaded_at"]
    assert again["previous"]["file"] == rep["file"] and again["previous"]["rows_quarantined"] == 1
    assert again["quarantine"] == {"batch_id": None, "total": 0, "rows": []}
    js = analyst.get("/static/app.js").text
    assert "already_loaded_note" in js and 'if (already && f[0] !== "status") { return; }' in js
