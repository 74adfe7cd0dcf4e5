"""The REST API under /api/v1: every endpoint, roles, masking, jobs, audit, and agreement with the CLI.

One workspace for the module: 500 generated customers (customers, orders and payments loaded; interactions are
uploaded through the API by the upload test) and two runs with different as-of dates, so there is history.
Tests that change the workspace (uploads, settings, runs, campaigns, users) come last and keep the latest run.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount
from tests.conftest import run_cli

from tierwise.web.accounts import Accounts
from tierwise.web.app import create_app

PASSWORD = "correct horse 1"
PUBLIC = {"/login", "/health", "/api/v1/auth/login"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
FIRST_AS_OF = dt.date(2024, 6, 30)


@dataclass
class Api:
    ws_dir: Path
    data: Path
    app: Any
    admin: TestClient
    analyst: TestClient
    viewer: TestClient
    anon: TestClient
    show: dict[str, Any]
    compare: dict[str, Any]


SEEN: set[tuple[str, str]] = set()  # (method, path) of the requests the tests made as an allowed user


def client(app: Any, **kwargs: Any) -> TestClient:
    """A TestClient that records which endpoints the tests reach."""
    c = TestClient(app, **kwargs)

    def seen(response: Any) -> None:
        if response.status_code not in (401, 403):  # reached by someone allowed to use it
            SEEN.add((response.request.method, response.request.url.path))

    c.event_hooks = {"request": [], "response": [seen]}
    return c


def _login(c: TestClient, name: str) -> TestClient:
    r = c.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("api")
    data, ws_dir = root / "data", root / "ws"
    generate(data, customers=500, seed=7)
    Workspace.init(ws_dir).close()
    ws = Workspace.open(ws_dir)
    try:
        for table in ("customers", "orders", "payments"):
            ingest_file(ws, table, data / f"{table}.csv")
        run(ws, FIRST_AS_OF)
        run(ws)
    finally:
        ws.close()
    # The command line's numbers, read before the server holds the database.
    show = run_cli("show", "-w", ws_dir, "--json")
    compare = run_cli("compare", "-w", ws_dir, "--by", "grade", "--json")
    assert show.code == 0 and compare.code == 0, show.stderr + compare.stderr
    accounts = Accounts(ws_dir)
    for name in ("admin", "analyst", "viewer"):
        accounts.add_user(name, name, PASSWORD)
    app = create_app(ws_dir)
    with client(app) as admin:
        yield Api(
            ws_dir=ws_dir,
            data=data,
            app=app,
            admin=_login(admin, "admin"),
            analyst=_login(client(app), "analyst"),
            viewer=_login(client(app), "viewer"),
            anon=client(app),
            show=show.json(),  # type: ignore[arg-type]
            compare=compare.json(),  # type: ignore[arg-type]
        )


def wait(c: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        status = r.json()
        if status["state"] in ("done", "failed") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def error(r: Any, status: int) -> str:
    """The JSON error message of a refused request (never a traceback)."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    return str(body["error"])


def summary(api: Api, column: str) -> dict[Any, int]:
    return {r["code"]: r["customers"] for r in api.show["summaries"][column]}


# ------------------------------------------------------------------------------------------ every route


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path with dummy path parameters) of every registered route, included routers expanded."""
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            out.append(("GET", f"{context.path}/app.css"))
            continue
        assert isinstance(route, APIRoute), route
        path = re.sub(r"\{[^}]+\}", "dummy", str(context.path))
        out += [(method, path) for method in sorted(context.methods or ())]
    return out


def test_every_route_refuses_anonymous_and_viewers_cannot_write(api: Api) -> None:
    found = routes(api.app)
    assert ("POST", "/api/v1/runs") in found and ("DELETE", "/api/v1/users/dummy") in found  # included routers
    assert ("POST", "/api/v1/jobs/dummy/cancel") in found  # analysts (their own jobs) and admins only
    checked = 0
    for method, path in found:
        public = path in PUBLIC or path.startswith("/static/")
        html = not path.startswith("/api/")
        r = api.anon.request(method, path, headers={"accept": "text/html"} if html else {}, follow_redirects=False)
        if public:
            assert r.status_code < 400 or path == "/api/v1/auth/login", (method, path, r.status_code)
            continue
        if html:
            assert r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login"), (method, path)
        else:
            assert error(r, 401).startswith("log in first"), (method, path)
        checked += 1
    assert checked > 40
    writes = [(m, p) for m, p in found if m in UNSAFE and not p.startswith("/api/v1/auth/")]
    assert len(writes) >= 10
    for method, path in writes:
        r = api.viewer.request(method, path, follow_redirects=False)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    # Sessions (who is logged in where, ending them) are for admins only, reading included.
    admin_only = [("GET", "/api/v1/sessions"), ("DELETE", "/api/v1/sessions/dummy"),
                  ("DELETE", "/api/v1/users/dummy/sessions")]  # fmt: skip
    assert set(admin_only) <= set(found)
    for method, path in admin_only:
        for c in (api.analyst, api.viewer):
            assert "admin role" in error(c.request(method, path), 403), (method, path)


# Who may use each route: the lowest role whose pages show its data (viewer < analyst < admin). Every route is
# listed, so a new one needs a decision here.
VIEWER_ROUTES = """
GET / | GET /api/v1/openapi.json | GET /api/v1/auth/me | POST /api/v1/auth/logout | GET /lang/{code}
GET /overview | GET /segments | GET /customers | GET /customers/{customer_id:path} | GET /history | GET /models
GET /api/v1/runs | GET /api/v1/runs/{run_id} | GET /api/v1/models | GET /api/v1/overview
GET /api/v1/segments/{column} | GET /api/v1/segments/{column}/{code}/customers | GET /api/v1/customers
GET /api/v1/columns | GET /api/v1/customers/columns | GET /api/v1/customers/{customer_id}
GET /api/v1/customers/{customer_id}/timeline | GET /api/v1/history/compare | GET /api/v1/history/trends
GET /api/v1/campaigns | GET /api/v1/campaigns/{name}/report
GET /alerts | GET /api/v1/refreshes | GET /api/v1/alerts
"""
ANALYST_ROUTES = """
GET /data | POST /api/v1/runs | GET /api/v1/jobs | GET /api/v1/jobs/{job_id} | GET /api/v1/exports
POST /api/v1/uploads/{table} | GET /api/v1/uploads | GET /api/v1/quarantine | POST /api/v1/campaigns
POST /api/v1/jobs/{job_id}/cancel
"""
ADMIN_ROUTES = """
GET /settings | GET /users | GET /api/v1/settings | POST /api/v1/settings/preview | PUT /api/v1/settings
GET /api/v1/users | POST /api/v1/users | DELETE /api/v1/users/{username} | PUT /api/v1/users/{username}/password
PUT /api/v1/users/{username}/role | GET /api/v1/tokens | POST /api/v1/users/{username}/tokens
DELETE /api/v1/tokens/{token_id} | GET /api/v1/audit | GET /api/v1/sessions | DELETE /api/v1/sessions/{session_id}
DELETE /api/v1/users/{username}/sessions | POST /api/v1/refresh
"""
ROLE_ORDER = ("viewer", "analyst", "admin")


def _needs() -> dict[str, str]:
    needs = {}
    for role, text in (("viewer", VIEWER_ROUTES), ("analyst", ANALYST_ROUTES), ("admin", ADMIN_ROUTES)):
        needs |= {" ".join(item.split()): role for item in text.replace("\n", " | ").split("|") if item.strip()}
    return needs


def test_each_route_is_open_to_exactly_the_roles_of_its_pages(api: Api) -> None:
    needs = _needs()
    clients = {"viewer": api.viewer, "analyst": api.analyst, "admin": api.admin}
    checked = set()
    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        path = str(context.path)
        if isinstance(route, Mount) or path in PUBLIC or path.startswith("/static/"):
            continue
        for method in sorted(context.methods or ()):
            key = f"{method} {path}"
            assert key in needs, f"{key}: say which role may use it (VIEWER_ROUTES, ANALYST_ROUTES, ADMIN_ROUTES)"
            checked.add(key)
            if path.startswith("/api/v1/auth/"):
                continue  # logging out would end the shared sessions; tests/test_web_auth.py covers these
            url = re.sub(r"\{[^}]+\}", "dummy", path)
            for role, c in clients.items():
                # A body no route accepts, and a format no export knows: allowed roles get 404/422 without
                # changing anything or leaving an entry in the audit log.
                body = {"json": [0]} if method in UNSAFE else {}
                r = c.request(method, url, params={"format": "-"}, follow_redirects=False, **body)
                allowed = ROLE_ORDER.index(role) >= ROLE_ORDER.index(needs[key])
                if allowed:
                    assert r.status_code not in (401, 403) and r.status_code < 500, (role, key, r.status_code, r.text)
                else:
                    assert r.status_code == 403, (role, key, r.status_code)
    assert checked == set(needs), set(needs) - checked  # no stale entries


def test_openapi_schema_documents_the_api(api: Api) -> None:
    schema = api.viewer.get("/api/v1/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    for method, path in [
        ("GET", "/api/v1/customers"),
        ("POST", "/api/v1/uploads/{table}"),
        ("PUT", "/api/v1/settings"),
        ("POST", "/api/v1/users/{username}/tokens"),
        ("GET", "/api/v1/history/compare"),
    ]:
        assert (method, path) in documented
    components = schema["components"]["schemas"]
    assert {"SettingsChanges", "PlanRequest", "NewUser", "JobAccepted", "JobStatus", "CustomerPage"} <= set(components)
    page_size = next(p for p in schema["paths"]["/api/v1/customers"]["get"]["parameters"] if p["name"] == "page_size")
    assert page_size["schema"]["maximum"] == 500 and page_size["schema"]["minimum"] == 1


# ------------------------------------------------------------------------------------------ runs and models


def test_runs_list_detail_and_models(api: Api) -> None:
    runs = api.viewer.get("/api/v1/runs").json()
    assert [r["as_of"] for r in runs][1:] == [FIRST_AS_OF.isoformat()] and len(runs) == 2
    assert runs[0]["latest"] and runs[0]["run_id"] == api.show["run_id"] and runs[0]["customers"] == 500
    detail = api.viewer.get(f"/api/v1/runs/{runs[1]['run_id']}").json()
    assert detail["as_of"] == FIRST_AS_OF.isoformat() and not detail["latest"] and "config" not in detail
    assert "grade" in api.admin.get(f"/api/v1/runs/{runs[1]['run_id']}").json()["config"]  # settings: admins'
    assert "no run 'nope'" in error(api.viewer.get("/api/v1/runs/nope"), 404)
    models = api.viewer.get("/api/v1/models").json()
    assert models["run_id"] == api.show["run_id"]
    assert {"transactions", "spend"} <= set(models["clv"]["params"])
    assert models["clusters"]["profiles"] and models["backtest"] is None and models["learned"] is None
    older = api.viewer.get("/api/v1/models", params={"run_id": runs[1]["run_id"]}).json()
    assert older["as_of"] == FIRST_AS_OF.isoformat()


# ------------------------------------------------------------------------------------------ snapshot queries


def test_overview_agrees_with_show(api: Api) -> None:
    data = api.viewer.get("/api/v1/overview", params={"lang": "en"}).json()
    assert data["run"]["run_id"] == api.show["run_id"] and data["language"] == "en"
    kpis = {k["key"]: k for k in data["kpis"]}
    assert kpis["customers"]["value"] == 500 and kpis["customers"]["label"] == "Customers"
    assert kpis["grade_a"]["value"] == summary(api, "grade")["A"]
    assert kpis["revenue"]["previous"] is not None  # the first run is the previous one
    runs = api.viewer.get("/api/v1/runs").json()
    assert data["run"]["previous_run"]["run_id"] == runs[1]["run_id"]
    for column in ("grade", "rfm_segment", "abc_class", "lifecycle_stage"):
        rows = {r["code"]: r["customers"] for r in data["distributions"][column]["rows"]}
        assert rows == summary(api, column), column
    assert data["heatmap"]["customers"] and len(data["pareto"]["x"]) == len(data["pareto"]["y"])
    first = api.viewer.get("/api/v1/overview", params={"run_id": runs[1]["run_id"], "lang": "zh"}).json()
    assert first["run"]["previous_run"] is None and first["language"] == "zh"
    assert "lang" in error(api.viewer.get("/api/v1/overview", params={"lang": "fr"}), 422)


def test_segments_and_their_members(api: Api) -> None:
    data = api.viewer.get("/api/v1/segments/grade", params={"lang": "en"}).json()
    sizes = {c["code"]: c["customers"] for c in data["classes"]}
    assert sizes == summary(api, "grade")
    assert all(c["strategy"] and 0 < c["strategy_share"] <= 1 for c in data["classes"] if c["code"])
    a = api.viewer.get("/api/v1/segments/grade/A/customers", params={"page_size": 10, "sort": "-monetary"}).json()
    assert a["total"] == sizes["A"] and len(a["rows"]) == 10 and a["code"] == "A"
    assert {r["grade"] for r in a["rows"]} == {"A"}
    money = [r["monetary"] for r in a["rows"]]
    assert money == sorted(money, reverse=True)
    lifecycle = api.viewer.get("/api/v1/segments/lifecycle_stage").json()
    assert sum(c["customers"] for c in lifecycle["classes"]) == 500
    assert "not a class column" in error(api.viewer.get("/api/v1/segments/monetary"), 400)
    none = api.viewer.get("/api/v1/segments/grade/-/customers").json()
    assert none["code"] is None and none["total"] == 500 - sum(v for k, v in sizes.items() if k is not None)


def test_customer_list_pages_sorts_and_filters(api: Api) -> None:
    c = api.viewer
    first = c.get("/api/v1/customers", params={"page_size": 7}).json()
    assert (first["total"], first["pages"], first["sort"]) == (500, 72, "priority_rank")
    assert [r["priority_rank"] for r in first["rows"]] == list(range(1, 8))
    top = api.show["top_customers"]
    assert [r["customer_id"] for r in first["rows"]][: len(top)] == [t["customer_id"] for t in top][:7]
    last = c.get("/api/v1/customers", params={"page_size": 7, "page": 72}).json()
    assert len(last["rows"]) == 500 - 71 * 7
    assert c.get("/api/v1/customers", params={"page_size": 7, "page": 73}).json()["rows"] == []
    assert "page" in error(c.get("/api/v1/customers", params={"page": 0}), 422)
    assert "page_size" in error(c.get("/api/v1/customers", params={"page_size": 501}), 422)
    assert c.get("/api/v1/customers", params={"page_size": 500}).status_code == 200
    # Sorting both ways, empty values last either way.
    up = c.get("/api/v1/customers", params={"sort": "recency_days", "page_size": 500}).json()["rows"]
    down = c.get("/api/v1/customers", params={"sort": "-recency_days", "page_size": 500}).json()["rows"]
    values = [r["recency_days"] for r in up if r["recency_days"] is not None]
    assert values == sorted(values) and all(r["recency_days"] is None for r in up[len(values) :])
    assert [r["recency_days"] for r in down if r["recency_days"] is not None] == sorted(values, reverse=True)
    assert "did you mean monetary" in error(c.get("/api/v1/customers", params={"sort": "monetry"}), 400)
    # Filters in the rule language, validated.
    a = c.get("/api/v1/customers", params={"where": "grade = 'A'", "columns": "customer_id,grade,monetary"}).json()
    assert a["total"] == summary(api, "grade")["A"] and a["columns"] == ["customer_id", "grade", "monetary"]
    assert set(a["rows"][0]) == {"customer_id", "grade", "grade_label", "monetary"}
    bad = error(c.get("/api/v1/customers", params={"where": "grade = = 'A'"}), 400)
    assert bad.startswith("where:")
    assert "did you mean 'grade'" in error(c.get("/api/v1/customers", params={"where": "grad = 'A'"}), 400)
    assert "no column 'nope'" in error(c.get("/api/v1/customers", params={"columns": "customer_id,nope"}), 400)
    found = c.get("/api/v1/customers", params={"search": "c0000042"}).json()
    assert [r["customer_id"] for r in found["rows"]] == ["C0000042"]
    runs = c.get("/api/v1/runs").json()
    older = c.get("/api/v1/customers", params={"run_id": runs[1]["run_id"], "page_size": 1}).json()
    assert older["run_id"] == runs[1]["run_id"]


def test_viewers_see_phone_numbers_and_emails_masked(api: Api) -> None:
    with (api.data / "customers.csv").open(encoding="utf-8") as fh:
        raw = {r["customer_id"]: r for r in csv.DictReader(fh)}
    params = {"columns": "customer_id,phone,email", "sort": "customer_id", "page_size": 20}
    plain = api.analyst.get("/api/v1/customers", params=params).json()["rows"]
    masked = api.viewer.get("/api/v1/customers", params=params).json()["rows"]
    for p, m in zip(plain, masked, strict=True):
        assert (p["phone"], p["email"]) == (raw[p["customer_id"]]["phone"], raw[p["customer_id"]]["email"])
        assert m["phone"] == p["phone"][:3] + "****" + p["phone"][-4:]
        assert m["email"][0] == p["email"][0] and "*" in m["email"] and m["email"].endswith(p["email"].split("@")[1])
    cid = plain[0]["customer_id"]
    assert api.analyst.get(f"/api/v1/customers/{cid}").json()["profile"]["phone"] == raw[cid]["phone"]
    profile = api.viewer.get(f"/api/v1/customers/{cid}").json()["profile"]
    assert profile["phone"] != raw[cid]["phone"] and "****" in profile["phone"] and "*" in profile["email"]
    # Nor can a viewer find them out a condition at a time.
    phone = raw[cid]["phone"]
    refused = error(api.viewer.get("/api/v1/customers", params={"where": f"phone = '{phone}'"}), 403)
    assert "personal data (phone)" in refused and phone not in refused
    assert error(api.viewer.get("/api/v1/customers", params={"sort": "-email"}), 403)
    assert api.analyst.get("/api/v1/customers", params={"where": f"phone = '{phone}'"}).json()["total"] == 1


def test_customer_detail_and_timeline(api: Api) -> None:
    top = api.show["top_customers"][0]
    d = api.viewer.get(f"/api/v1/customers/{top['customer_id']}", params={"lang": "en"}).json()
    assert d["run_id"] == api.show["run_id"] and d["scores"]["priority_rank"] == 1
    assert d["scores"]["monetary"] == pytest.approx(top["monetary"])
    assert d["grade"]["grade"] == top["grade"] and d["grade"]["indicators"]
    shares = sum(i["weight_share"] for i in d["grade"]["indicators"])
    assert shares == pytest.approx(1.0)
    assert d["reasons"] and any(r.startswith("R ") for r in d["reasons"])
    assert len(d["timeline"]["runs"]) == 2 and d["next_action"]["action"]
    assert d["labels"]["grade"].startswith(top["grade"])
    timeline = api.viewer.get(f"/api/v1/customers/{top['customer_id']}/timeline").json()
    assert timeline == api.viewer.get(f"/api/v1/customers/{top['customer_id']}").json()["timeline"]
    assert "no customer 'NOPE'" in error(api.viewer.get("/api/v1/customers/NOPE"), 404)
    assert "no customer 'NOPE'" in error(api.viewer.get("/api/v1/customers/NOPE/timeline"), 404)


def test_columns_list_snapshot_and_contact_columns(api: Api) -> None:
    cols = api.viewer.get("/api/v1/columns").json()
    by_name = {c["name"]: c for c in cols}
    assert by_name["customer_id"]["source"] == "snapshot" and by_name["phone"]["source"] == "customers"
    assert by_name["monetary"]["type"].startswith("float")
    assert api.viewer.get("/api/v1/customers/columns").json() == cols


# ------------------------------------------------------------------------------------------ history


def test_compare_and_trends_agree_with_the_cli(api: Api) -> None:
    data = api.viewer.get("/api/v1/history/compare", params={"by": "grade"}).json()
    cli = api.compare
    assert (data["run_a"], data["run_b"]) == (cli["run_a"], cli["run_b"])
    assert data["totals"] == cli["totals"] and data["in_both"] == cli["in_both"] == 500
    cells = lambda m: sorted((c["from"] or "", c["to"] or "", c["customers"]) for c in m)  # noqa: E731
    assert cells(data["matrix"]) == cells(cli["matrix"])
    nodes, links = data["sankey"]["nodes"], data["sankey"]["links"]
    assert sum(link["value"] for link in links) == 500
    assert all(nodes[link["source"]]["side"] == "from" and nodes[link["target"]]["side"] == "to" for link in links)
    named = api.viewer.get(
        "/api/v1/history/compare", params={"run_a": cli["run_a"]["run_id"], "run_b": cli["run_b"]["run_id"], "top": 3}
    ).json()
    assert len(named["moved_customers"]) <= 3 and named["totals"] == cli["totals"]
    assert "top" in error(api.viewer.get("/api/v1/history/compare", params={"top": 1000}), 422)
    assert error(api.viewer.get("/api/v1/history/compare", params={"by": "nope"}), 400)
    trends = api.viewer.get("/api/v1/history/trends", params={"by": "abc_class", "lang": "en"}).json()
    assert trends["chart"]["x"] == [FIRST_AS_OF.isoformat(), api.show["as_of"]]
    latest = {s["code"]: s["customers"][-1] for s in trends["chart"]["series"]}
    assert {k: v for k, v in latest.items() if v} == summary(api, "abc_class")


# ------------------------------------------------------------------------------------------ exports


def test_exports_parse_back_and_are_audited(api: Api) -> None:
    import pandas as pd

    a_count = summary(api, "grade")["A"]
    where = "grade = 'A'"
    r = api.analyst.get(
        "/api/v1/exports", params={"format": "csv", "where": where, "columns": "customer_id,name,phone"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;") and ".csv" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == a_count and list(rows[0]) == ["customer_id", "name", "phone"]
    assert [x["customer_id"] for x in rows] == sorted(x["customer_id"] for x in rows)
    assert not any(v.startswith(("=", "+", "@")) for x in rows for v in x.values())
    xlsx = api.analyst.get("/api/v1/exports", params={"format": "xlsx", "where": where})
    sheet = pd.read_excel(io.BytesIO(xlsx.content), engine="calamine")
    assert len(sheet) == a_count and set(sheet["grade"]) == {"A"}
    parquet = api.analyst.get("/api/v1/exports", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 500 and "composite_score" in table.column_names
    assert "format" in error(api.analyst.get("/api/v1/exports", params={"format": "pdf"}), 422)
    assert error(api.analyst.get("/api/v1/exports", params={"where": "grade = = 1"}), 400).startswith("where:")
    assert error(api.viewer.get("/api/v1/exports"), 403)
    entries = [e for e in api.admin.get("/api/v1/audit", params={"limit": 50}).json() if e["action"] == "export"]
    assert entries[-1]["username"] == "analyst" and f"rows={a_count}" in entries[-1]["detail"]
    assert "where=grade = 'A'" in entries[-1]["detail"] and "format=csv" in entries[-1]["detail"]
    names = {x["name"] for x in rows}
    assert not any(n in e["detail"] for e in entries for n in names)  # no customer data in the log


# ------------------------------------------------------------------------------------------ changes: uploads


def test_upload_is_checked_then_ingested_in_the_background(api: Api) -> None:
    path = api.data / "interactions.csv"
    lines = sum(1 for _ in path.open(encoding="utf-8")) - 1
    with path.open("rb") as fh:
        r = api.analyst.post("/api/v1/uploads/interactions", files={"file": ("interactions.csv", fh, "text/csv")})
    assert r.status_code == 202, r.text
    status = wait(api.analyst, r.json()["job_id"])
    assert status["state"] == "done" and status["kind"] == "upload", status
    report = status["result"]["report"]
    assert report["status"] == "loaded" and report["rows_read"] == lines
    assert report["rows_loaded"] + report["rows_quarantined"] + report["duplicates_removed"] == lines
    batches = api.analyst.get("/api/v1/uploads").json()
    assert batches[0]["batch_id"] == report["batch_id"] and batches[0]["table_name"] == "interactions"
    assert {b["table_name"] for b in batches} == {"customers", "orders", "payments", "interactions"}
    # The same file again, as the browser's form sends it (CSRF token as a form field), is not loaded twice.
    form = client(api.app)
    token = _login(form, "analyst").headers.pop("X-CSRF-Token")
    upload = {"file": ("i.csv", path.read_bytes(), "text/csv")}
    assert "CSRF" in error(form.post("/api/v1/uploads/interactions", files=upload), 403)
    again = form.post("/api/v1/uploads/interactions", files=upload, data={"csrf_token": token})
    assert again.status_code == 202, again.text
    assert wait(form, again.json()["job_id"])["result"]["report"]["status"] == "already_loaded"
    # Wrong types, contents, tables and sizes are refused at once with a message.
    assert "not a file type" in error(api.analyst.post("/api/v1/uploads/orders", files={"file": ("a.pdf", b"x")}), 400)
    pdf = api.analyst.post("/api/v1/uploads/orders", files={"file": ("orders.csv", b"%PDF-1.4 ...")})
    assert "PDF" in error(pdf, 400)
    assert "empty" in error(api.analyst.post("/api/v1/uploads/orders", files={"file": ("o.csv", b"")}), 400)
    assert error(api.analyst.post("/api/v1/uploads/nope", files={"file": ("o.csv", b"a,b\n1,2\n")}), 422)
    assert "file" in error(api.analyst.post("/api/v1/uploads/orders"), 422)
    limit = api.app.state.max_upload
    api.app.state.max_upload = 100
    try:
        big = api.analyst.post("/api/v1/uploads/orders", files={"file": ("o.csv", b"customer_id\n" + b"C1\n" * 100)})
        assert "max_upload_mb" in error(big, 413)
    finally:
        api.app.state.max_upload = limit
    assert error(api.viewer.post("/api/v1/uploads/orders", files={"file": ("o.csv", b"a\n")}), 403)
    actions = [(e["username"], e["action"], e["detail"]) for e in api.admin.get("/api/v1/audit").json()]
    assert any(u == "analyst" and a == "upload" and "table=interactions" in d for u, a, d in actions)


def test_quarantine_pages_and_needs_the_analyst_role(api: Api) -> None:
    q = api.analyst.get("/api/v1/quarantine", params={"page_size": 5}).json()
    assert {"total", "page", "page_size", "pages", "rows"} <= set(q) and len(q["rows"]) <= 5
    batch = api.analyst.get("/api/v1/uploads").json()[0]["batch_id"]
    one = api.analyst.get("/api/v1/quarantine", params={"batch_id": batch}).json()
    assert all(r["batch_id"] == batch for r in one["rows"])
    assert error(api.analyst.get("/api/v1/quarantine", params={"page": 0}), 422)
    assert error(api.viewer.get("/api/v1/quarantine"), 403)


# ------------------------------------------------------------------------------------------ changes: settings


def test_settings_preview_job_and_validated_save(api: Api) -> None:
    settings = api.admin.get("/api/v1/settings").json()
    weights = settings["grade"]["weights"]
    name = next(iter(weights))
    change = {"grade": {"weights": {name: weights[name] + 0.5}}}
    assert error(api.analyst.post("/api/v1/settings/preview", json=change), 403)
    bad = error(api.admin.post("/api/v1/settings/preview", json={"grade": {"weights": {"nope": 1}}}), 400)
    assert "no indicator 'nope'" in bad
    assert error(api.admin.post("/api/v1/settings/preview", json={"workspace": {"language": "en"}}), 422)
    started = api.admin.post("/api/v1/settings/preview", json=change)
    assert started.status_code == 202
    assert error(api.analyst.get(started.json()["status_url"]), 404)  # someone else's job
    preview = wait(api.admin, started.json()["job_id"])
    assert preview["state"] == "done", preview
    result = preview["result"]
    assert result["run_id"] == api.show["run_id"] and result["customers"] == 500
    assert sum(c["customers"] for c in result["grade_matrix"]) == 500
    moved = sum(c["customers"] for c in result["grade_matrix"] if c["from"] != c["to"])
    assert result["changed"]["grade"] == moved
    assert [c["key"] for c in result["settings_changed"]] == [f"grade.indicators.{0}.weight"]
    # Saving: admins only, validated, versioned, audited.
    assert error(api.analyst.put("/api/v1/settings", json=change), 403)
    assert error(api.viewer.put("/api/v1/settings", json=change), 403)
    invalid = {"rules": [{"name": "vip", "expression": "monetry > 1"}]}
    assert "monetry" in error(api.admin.put("/api/v1/settings", json=invalid), 400)
    stale = api.admin.put("/api/v1/settings", params={"version": "0" * 16}, json=change)
    assert "reload" in error(stale, 400)
    saved = api.admin.put("/api/v1/settings", params={"version": settings["version"]}, json=change)
    assert saved.status_code == 200, saved.text
    assert api.admin.get("/api/v1/settings").json()["grade"]["weights"][name] == pytest.approx(weights[name] + 0.5)
    assert f"{name}" in (api.ws_dir / "tierwise.toml").read_text(encoding="utf-8")
    entry = next(e for e in api.admin.get("/api/v1/audit").json() if e["action"] == "settings")
    assert entry["username"] == "admin" and "grade.indicators.0.weight" in entry["detail"]


# ------------------------------------------------------------------------------------------ changes: runs


def test_run_job_adds_a_run_and_reports_progress(api: Api) -> None:
    assert error(api.analyst.post("/api/v1/runs", json={"as_of": "2024-13-01"}), 422)
    r = api.analyst.post("/api/v1/runs", json={"as_of": "2024-09-30"})
    assert r.status_code == 202, r.text
    status = wait(api.analyst, r.json()["job_id"])
    assert status["state"] == "done" and status["progress"] == 1.0, status
    report = status["result"]
    assert report["as_of"] == "2024-09-30" and report["customers"] == 500
    runs = api.viewer.get("/api/v1/runs").json()
    assert len(runs) == 3 and report["run_id"] in {r["run_id"] for r in runs}
    assert runs[0]["run_id"] == api.show["run_id"]  # an earlier as-of date does not become the latest
    jobs = api.analyst.get("/api/v1/jobs").json()
    assert jobs[0]["job_id"] == r.json()["job_id"] and all(j["owner"] == "analyst" for j in jobs)
    assert "no job 'nope'" in error(api.analyst.get("/api/v1/jobs/nope"), 404)
    # Cancelling (tests/test_web_jobs.py cancels running jobs): a finished job stays as it was.
    cancel = f"/api/v1/jobs/{r.json()['job_id']}/cancel"
    assert "already finished (done)" in error(api.analyst.post(cancel), 409)
    assert error(api.viewer.post(cancel), 403)
    assert "already finished" in error(api.admin.post(cancel), 409)
    audit = next(e for e in api.admin.get("/api/v1/audit").json() if e["action"] == "run")
    assert audit["username"] == "analyst" and "as_of=2024-09-30" in audit["detail"]


def test_a_failing_job_says_so_without_a_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierwise.errors import UserError
    from tierwise.web.services import runs

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise UserError("another tierwise run is in progress; try again when it has finished")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    for fn, message in (
        (refused, "another tierwise run is in progress"),
        (broken, "unexpected error; see the server log"),
    ):
        monkeypatch.setattr(runs, "run_job", fn)
        status = wait(api.analyst, api.analyst.post("/api/v1/runs").json()["job_id"])
        assert status["state"] == "failed" and status["result"] is None
        assert status["error"].startswith(message) and "secret" not in status["error"]


# ------------------------------------------------------------------------------------------ campaigns


def test_campaign_plan_list_and_report(api: Api) -> None:
    body = {"name": "winback", "where": "lifecycle_stage = 'at_risk' or grade = 'B'", "control": "20%", "seed": 3}
    assert error(api.viewer.post("/api/v1/campaigns", json=body), 403)
    r = api.analyst.post("/api/v1/campaigns", json=body)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["treatment"] + plan["control"] == plan["customers"] > 0 and plan["seed"] == 3
    assert "already exists" in error(api.analyst.post("/api/v1/campaigns", json=body), 400)
    assert error(api.analyst.post("/api/v1/campaigns", json={**body, "name": "x", "where": "grade = = 1"}), 400)
    assert error(api.analyst.post("/api/v1/campaigns", json={"name": "x"}), 422)
    listed = api.viewer.get("/api/v1/campaigns").json()
    assert listed[0]["name"] == "winback" and listed[0]["customers"] == plan["customers"]
    report = api.viewer.get("/api/v1/campaigns/winback/report", params={"lang": "en"}).json()
    assert report["campaign"] == "winback" and report["source"] == "plan"
    assert report["overall"]["contacted"] == plan["treatment"]
    assert report["overall"]["control_customers"] == plan["control"]
    assert error(api.viewer.get("/api/v1/campaigns/nope/report"), 404)


# ------------------------------------------------------------------------------------------ administration


def test_users_and_tokens_are_managed_by_admins(api: Api) -> None:
    admin = api.admin
    assert error(api.analyst.get("/api/v1/users"), 403)
    made = admin.post("/api/v1/users", json={"username": "temp", "role": "viewer", "password": PASSWORD})
    assert made.status_code == 201 and made.json()["role"] == "viewer"
    assert "exists already" in error(admin.post("/api/v1/users", json=made.json() | {"password": PASSWORD}), 400)
    assert "at least 8" in error(admin.post("/api/v1/users", json={"username": "x", "role": "viewer",
                                                                   "password": "short"}), 400)  # fmt: skip
    assert error(admin.post("/api/v1/users", json={"username": "x", "role": "boss", "password": PASSWORD}), 422)
    assert {u["username"] for u in admin.get("/api/v1/users").json()} == {"admin", "analyst", "viewer", "temp"}
    assert admin.put("/api/v1/users/temp/role", json={"role": "analyst"}).json()["role"] == "analyst"
    assert admin.put("/api/v1/users/temp/password", json={"password": "another pass 2"}).status_code == 200
    assert error(admin.put("/api/v1/users/nope/password", json={"password": PASSWORD}), 404)
    assert "your own account" in error(admin.put("/api/v1/users/admin/role", json={"role": "viewer"}), 400)
    assert "your own account" in error(admin.delete("/api/v1/users/admin"), 400)
    # A token acts as its user without a session or CSRF token, until revoked.
    token = admin.post("/api/v1/users/temp/tokens")
    assert token.status_code == 201
    secret, token_id = token.json()["token"], token.json()["token_id"]
    script = client(api.app)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert script.get("/api/v1/auth/me", headers=bearer).json()["role"] == "analyst"
    assert script.get("/api/v1/customers", headers=bearer, params={"page_size": 1}).status_code == 200
    listed = {t["token_id"]: t for t in admin.get("/api/v1/tokens").json()}
    assert listed[token_id]["username"] == "temp" and "token" not in listed[token_id]
    assert listed[token_id]["last_used_at"] is not None
    assert admin.delete(f"/api/v1/tokens/{token_id}").json() == {"revoked": token_id}
    assert error(script.get("/api/v1/customers", headers=bearer), 401)
    assert error(admin.delete(f"/api/v1/tokens/{token_id}"), 404)
    assert error(admin.post("/api/v1/users/nope/tokens"), 404)
    assert admin.delete("/api/v1/users/temp").json() == {"removed": "temp"}
    assert error(admin.delete("/api/v1/users/temp"), 404)
    actions = [e["action"] for e in admin.get("/api/v1/audit", params={"limit": 500}).json()]
    for action in ("user_add", "user_role", "user_passwd", "token_create", "token_revoke", "user_remove"):
        assert action in actions
    assert error(admin.get("/api/v1/audit", params={"limit": 0}), 422)


def test_sessions_are_listed_and_ended_by_admins(api: Api) -> None:
    before = {s["session_id"] for s in api.admin.get("/api/v1/sessions", params={"username": "viewer"}).json()}
    extra = _login(client(api.app), "viewer")  # a second browser of the viewer; the shared one stays
    listed = api.admin.get("/api/v1/sessions", params={"username": "viewer"}).json()
    (new,) = [s for s in listed if s["session_id"] not in before]
    assert new["username"] == "viewer" and not new["current"] and new["expires_at"] > new["created_at"]
    assert [s["username"] for s in api.admin.get("/api/v1/sessions").json() if s["current"]] == ["admin"]
    assert api.admin.delete(f"/api/v1/sessions/{new['session_id']}").json() == {
        "ended": new["session_id"],
        "username": "viewer",
    }
    assert error(extra.get("/api/v1/auth/me"), 401)
    assert api.viewer.get("/api/v1/auth/me").status_code == 200
    assert error(api.admin.delete(f"/api/v1/sessions/{new['session_id']}"), 404)
    Accounts(api.ws_dir).add_user("leaver", "viewer", PASSWORD)
    leaver = _login(client(api.app), "leaver")
    assert api.admin.delete("/api/v1/users/leaver/sessions").json() == {"username": "leaver", "ended": 1}
    assert error(leaver.get("/api/v1/auth/me"), 401)
    assert error(api.admin.delete("/api/v1/users/nope/sessions"), 404)
    assert api.admin.delete("/api/v1/users/leaver").status_code == 200
    actions = [e["action"] for e in api.admin.get("/api/v1/audit", params={"limit": 100}).json()]
    assert "session_end" in actions and "sessions_end" in actions


def test_audit_log_records_logins_uploads_runs_exports_and_settings(api: Api) -> None:
    entries = api.admin.get("/api/v1/audit", params={"limit": 1000}).json()
    assert {"login", "upload", "run", "export", "settings"} <= {e["action"] for e in entries}
    assert all(PASSWORD not in (e["detail"] or "") for e in entries)
    assert entries == sorted(entries, key=lambda e: e["at"], reverse=True)


def test_unexpected_errors_are_json_without_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierwise.web.services import overview

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(overview, "overview", broken)
    c = client(api.app, raise_server_exceptions=False)
    _login(c, "viewer")
    r = c.get("/api/v1/overview")
    assert error(r, 500) == "unexpected error; see the server log" and "secret" not in r.text


def test_refresh_log_and_refresh_now(api: Api) -> None:
    """The refresh log's endpoints (in detail: tests/test_web_refresh.py). This workspace was never refreshed; an
    admin's refresh is a job like a run: with no [[sources]] it loads nothing, makes a run only if data came in
    after the latest one, and then appears in the log with the alerts it fired."""
    for c in (api.viewer, api.analyst, api.admin):
        assert c.get("/api/v1/refreshes", params={"limit": 5}).json() == []
        assert c.get("/api/v1/alerts", params={"limit": 5, "since": "2024-01-01T00:00:00"}).json() == []
    before = [r["run_id"] for r in api.admin.get("/api/v1/runs").json()]
    r = api.admin.post("/api/v1/refresh")
    assert r.status_code == 202, r.text
    status = wait(api.admin, r.json()["job_id"], timeout=300)
    assert status["state"] == "done" and status["kind"] == "refresh", status
    report = status["result"]
    assert report["trigger"] == "dashboard" and report["status"] == "ok" and report["sources"] == []
    after = [r["run_id"] for r in api.admin.get("/api/v1/runs").json()]
    assert after[len(after) - len(before) :] == before and len(after) == len(before) + int(report["run_made"])
    [row] = api.viewer.get("/api/v1/refreshes").json()
    assert (row["refresh_id"], row["trigger"], row["status"], row["run_id"]) == (
        report["refresh_id"], "dashboard", "ok", after[0] if report["run_made"] else None
    )  # fmt: skip
    fired = api.viewer.get("/api/v1/alerts", params={"since": row["started_at"]}).json()
    assert sorted(a["rule"] for a in fired) == sorted(a["rule"] for a in report["alerts"] if a["matched"])
    assert all(a["refresh_id"] == row["refresh_id"] and a["run_id"] == after[0] for a in fired)


def test_every_api_endpoint_was_exercised(api: Api, request: pytest.FixtureRequest) -> None:
    """Runs last: each route of the API was called by the tests above with real parameters (not only by the
    route test's dummy ones), so a new endpoint needs tests of its own."""
    here = [i for i in request.session.items if i.module is request.module]
    if len(here) != len([n for n in dir(request.module) if n.startswith("test_")]):
        pytest.skip("only part of the module ran")
    missing = []
    for context in iter_route_contexts(api.app.routes):
        path = str(context.path)
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/auth/"):  # auth: tests/test_web_auth.py
            continue
        if not isinstance(context.original_route, APIRoute):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in context.methods or ():
            hits = [p for m, p in SEEN if m == method and pattern.match(p) and "/dummy" not in p]
            if not hits:
                missing.append(f"{method} {path}")
    assert not missing, f"endpoints without tests: {missing}"
