"""Logins, roles, sessions, CSRF, API tokens, throttling, security headers and the `tierwise user` commands."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import run_cli

from tierwise.web.accounts import AUTH_FILE, Accounts
from tierwise.web.app import create_app

PASSWORD = "correct horse 1"


def add_user(ws_dir: Path, name: str, role: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierwise.cli", "user", "add", name, "--role", role, "--password-stdin", "-w", ws_dir],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def client(ws_dir: Path):
    for name, role in (("ada", "admin"), ("ann", "analyst"), ("vic", "viewer")):
        assert add_user(ws_dir, name, role).returncode == 0
    with TestClient(create_app(ws_dir)) as c:
        yield c


def login(c: TestClient, name: str, password: str = PASSWORD) -> str:
    r = c.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


def test_user_commands_store_hashed_passwords_and_manage_tokens(ws_dir: Path) -> None:
    assert add_user(ws_dir, "ada", "admin").returncode == 0
    again = add_user(ws_dir, "ada", "viewer")
    assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr
    short = add_user(ws_dir, "bob", "viewer", "short")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    assert add_user(ws_dir, "bob", "boss").returncode == 2
    listed = run_cli("user", "list", "-w", ws_dir, "--json").json()
    assert listed == [{"username": "ada", "role": "admin", "created_at": listed[0]["created_at"]}]
    # The password is stored as an argon2 hash, never as given.
    with sqlite3.connect(ws_dir / AUTH_FILE) as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE username = 'ada'").fetchone()
    assert stored.startswith("$argon2") and PASSWORD not in stored
    made = run_cli("user", "token", "ada", "-w", ws_dir, "--json").json()
    accounts = Accounts(ws_dir)
    assert accounts.verify_token(made["token"]).username == "ada"
    assert accounts.verify_token(made["token"][:-2] + "xx") is None
    assert run_cli("user", "revoke", made["token_id"], "-w", ws_dir).code == 0
    assert accounts.verify_token(made["token"]) is None
    assert run_cli("user", "revoke", made["token_id"], "-w", ws_dir).code == 2
    assert run_cli("user", "remove", "ada", "-w", ws_dir).code == 0
    assert run_cli("user", "list", "-w", ws_dir, "--json").json() == []
    actions = [e["action"] for e in accounts.audit_entries()]
    assert {"user_add", "token_create", "token_revoke", "user_remove"} <= set(actions)


def test_login_session_and_logout(client: TestClient) -> None:
    assert client.get("/api/v1/auth/me").status_code == 401
    wrong = client.post("/api/v1/auth/login", json={"username": "ada", "password": "nope nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "wrong user name or password"}
    csrf = login(client, "ada")
    cookie = client.cookies.get("tierwise_session")
    assert cookie and PASSWORD not in cookie
    me = client.get("/api/v1/auth/me").json()
    assert (me["username"], me["role"], me["csrf_token"]) == ("ada", "admin", csrf)
    # A change without the CSRF token is refused even with a valid session; with it, it goes through.
    assert client.post("/api/v1/auth/logout").status_code == 403
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).json() == {"logged_out": True}
    assert client.get("/api/v1/auth/me").status_code == 401


def test_set_cookie_is_httponly_samesite_and_signed(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "vic", "password": PASSWORD})
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    forged = client.cookies.get("tierwise_session")[:-4] + "AAAA"
    client.cookies.clear()
    client.cookies.set("tierwise_session", forged)
    assert client.get("/api/v1/auth/me").status_code == 401


def test_login_form_redirects_and_keeps_next_on_this_site(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    ok = client.post(
        "/api/v1/auth/login",
        data={"username": "ann", "password": PASSWORD, "next": "/customers"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/customers"
    client.cookies.clear()
    evil = client.post(
        "/api/v1/auth/login",
        data={"username": "ann", "password": PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/"
    failed = client.post(
        "/api/v1/auth/login", data={"username": "ann", "password": "bad password"}, follow_redirects=False
    )
    assert failed.status_code == 303 and failed.headers["location"].startswith("/login?failed=1")


def test_logins_are_throttled_after_repeated_failures(ws_dir: Path) -> None:
    assert add_user(ws_dir, "ada", "admin").returncode == 0
    cfg = ws_dir / "tierwise.toml"
    cfg.write_text(cfg.read_text().replace("login_attempts = 5", "login_attempts = 3"))
    with TestClient(create_app(ws_dir)) as c:
        codes = [
            c.post("/api/v1/auth/login", json={"username": "ada", "password": f"guess {i}"}).status_code
            for i in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        # Even the right password waits until the pause is over.
        blocked = c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    actions = [e["action"] for e in Accounts(ws_dir).audit_entries()]
    assert actions.count("login_failed") == 3 and "login_throttled" in actions


def test_bearer_tokens_act_as_their_user_without_csrf(client: TestClient, ws_dir: Path) -> None:
    _, token = Accounts(ws_dir).create_token("vic")
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["username"], me["role"], me["via"]) == ("vic", "viewer", "token")
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Bearer tw_nope.nope"}).status_code == 401
    # Removing the user ends its tokens at once.
    Accounts(ws_dir).remove_user("vic")
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_public_routes_security_headers_and_errors_as_json(client: TestClient) -> None:
    health = client.get("/health")
    assert health.json() == {"status": "ok"}
    for name in ("x-content-type-options", "x-frame-options", "content-security-policy", "referrer-policy"):
        assert name in health.headers
    assert client.get("/static/plotly.min.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code in (401, 404) and "error" in missing.json()
    assert client.get("/api/v1/openapi.json").status_code == 401
    login(client, "vic")
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/auth/login" in schema["paths"]


def test_oversized_requests_are_refused_before_reading(client: TestClient, ws_dir: Path) -> None:
    too_big = str(200 * 1024 * 1024 + 1)
    r = client.post("/api/v1/auth/login", content=b"x", headers={"content-length": too_big})
    assert r.status_code == 413 and "before logging in" in r.json()["error"]  # anonymous: a few KB at most


def test_request_log_names_routes_not_customers(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    login(client, "ada")
    with caplog.at_level("INFO", logger="tierwise.web"):
        client.get("/api/v1/customers/SECRET-CUSTOMER-42?lang=en")
        client.get("/api/v1/customers", params={"search": "张三 13800138000"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/v1/customers/{customer_id}" in text
    assert "SECRET-CUSTOMER-42" not in text and "13800138000" not in text and "张三" not in text


def test_logout_form_returns_to_the_login_page(client: TestClient) -> None:
    csrf = login(client, "ann")
    r = client.post("/api/v1/auth/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/api/v1/auth/me").status_code == 401


def test_nul_characters_in_addresses_are_refused_plainly(client: TestClient) -> None:
    login(client, "ada")
    for url in ("/api/v1/quarantine?reason=a%00b", "/api/v1/customers?search=x%00", "/api/v1/customers/C1%00"):
        r = client.get(url)
        assert r.status_code == 400 and "NUL" in r.json()["error"]
