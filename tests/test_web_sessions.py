"""Server-side sessions and login throttling (issue 21, parts 4 and 6).

Most tests talk to `tierwise serve` started as a user would, on a free loopback port, and change accounts with the
real command line beside it; the addresses of different visitors are simulated with X-Forwarded-For, which that
server believes because its [web] trusted_proxies names 127.0.0.1. Unit-level checks (idle timeout, the login
page's texts, client addresses) use FastAPI's TestClient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.conftest import start_serve, stop_serve

from tierwise.web.accounts import AUTH_FILE, Accounts
from tierwise.web.app import create_app

PASSWORD = "correct horse 1"
NEW_PASSWORD = "battery staple 2"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"
)
# The server under test: pauses short enough to watch them grow (2 s, 4 s, then the 5 s cap).
TRUSTED_SETTINGS = {
    "trusted_proxies": '["127.0.0.1"]',
    "login_attempts": "5",
    "address_attempts": "8",
    "lockout_seconds": "2",
    "lockout_max_seconds": "5",
}


def configure(ws: Path, **settings: str) -> None:
    """Set [web] keys in tierwise.toml (each is written there at its default by `tierwise init`)."""
    path = ws / "tierwise.toml"
    text = path.read_text(encoding="utf-8")
    for key, value in settings.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    path.write_text(text, encoding="utf-8")


def cli(*args: str | Path, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process; `password` is its standard input (else there is none)."""
    env = {k: v for k, v in os.environ.items() if k != "TIERWISE_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "tierwise.cli", *map(str, args)],
        input="" if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def add_user(ws: Path, name: str, role: str) -> None:
    """Straight into the accounts file (the running server sees it at once); the command line is exercised where
    it ends sessions."""
    Accounts(ws).add_user(name, role, PASSWORD)


@dataclass
class Server:
    url: str
    ws: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, address: str | None = None, agent: str = FIREFOX) -> httpx.Client:
        """A visitor: its own cookie jar, from `address` (sent as X-Forwarded-For) with a browser's user agent."""
        headers = {"User-Agent": agent}
        if address:
            headers["X-Forwarded-For"] = address
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, follow_redirects=False)

    def login(self, name: str, password: str = PASSWORD, address: str | None = None, agent: str = FIREFOX) -> Visitor:
        c = self.client(address, agent)
        r = c.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return Visitor(c, c.cookies["tierwise_session"])


@dataclass
class Visitor:
    http: httpx.Client
    cookie: str

    def me(self) -> int:
        """The status of GET /api/v1/auth/me with exactly this visitor's session cookie."""
        r = httpx.get(self.http.base_url.join("/api/v1/auth/me"), headers={"Cookie": f"tierwise_session={self.cookie}"})
        return r.status_code


def start_server(ws: Path) -> Server:
    log = ws.parent / f"serve-{time.monotonic_ns()}.log"
    proc, url = start_serve(ws, log, timeout=60)
    return Server(url, ws, proc, log)


def stop_server(server: Server) -> None:
    stop_serve(server.proc)


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    r = cli("init", ws)
    assert r.returncode == 0, r.stderr
    add_user(ws, "ada", "admin")
    return ws


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An empty workspace with the admin `ada`, served with 127.0.0.1 as a trusted proxy."""
    ws = _workspace(tmp_path_factory.mktemp("sessions"))
    configure(ws, **TRUSTED_SETTINGS)
    started = start_server(ws)
    yield started
    stop_server(started)


@pytest.fixture(scope="module")
def admin(server: Server) -> Visitor:
    return server.login("ada", address="192.0.2.1")


def db_rows(ws: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(ws / AUTH_FILE) as db:
        return db.execute(query, args).fetchall()


def end_reasons(ws: Path, username: str) -> list[str | None]:
    return [r[0] for r in db_rows(ws, "SELECT end_reason FROM sessions WHERE username = ? ORDER BY rowid", username)]


# ------------------------------------------------------------------------------------------ the cookie


def test_the_cookie_holds_a_random_id_and_the_database_only_its_digest(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "carl", "viewer")
    c = server.client("192.0.2.10")
    r = c.post("/api/v1/auth/login", json={"username": "carl", "password": PASSWORD})
    assert r.status_code == 200
    header = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attrs and "secure" not in attrs
    assert "samesite=strict" in header.lower()
    cookie = c.cookies["tierwise_session"]
    # 32 random bytes, URL-safe base64: nothing of the user, the role or a signature in it.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie) and "carl" not in cookie.lower()
    digest = hashlib.sha256(cookie.encode()).hexdigest()
    rows = db_rows(server.ws, "SELECT username, secret_sha256, ip, user_agent FROM sessions WHERE username = 'carl'")
    assert rows == [("carl", digest, "192.0.2.10", "Firefox 120 on Linux")]
    stored = b"".join(p.read_bytes() for p in server.ws.glob(AUTH_FILE + "*"))
    assert cookie.encode() not in stored and digest.encode() in stored
    # Another login gets another random id; a forged one is nobody.
    again = server.login("carl", address="192.0.2.10")
    assert again.cookie != cookie
    assert Visitor(again.http, cookie[:-1] + ("A" if cookie[-1] != "A" else "B")).me() == 401


def test_secure_cookies_mark_the_cookie_secure(ws_dir: Path) -> None:
    Accounts(ws_dir).add_user("ada", "admin", PASSWORD)
    configure(ws_dir, secure_cookies="true")
    with TestClient(create_app(ws_dir), base_url="https://testserver") as c:
        r = c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
        assert r.status_code == 200 and "; secure" in r.headers["set-cookie"].lower()


# ------------------------------------------------------------------------------------------ ending sessions


def test_logout_ends_the_session_on_the_server(server: Server) -> None:
    add_user(server.ws, "lou", "viewer")
    visitor = server.login("lou", address="192.0.2.20")
    other = server.login("lou", address="192.0.2.21")
    assert visitor.me() == 200
    r = visitor.http.post("/api/v1/auth/logout")
    assert r.json() == {"logged_out": True} and 'tierwise_session=""' in r.headers["set-cookie"]
    assert visitor.me() == 401  # the old cookie, sent again, is refused
    assert other.me() == 200  # logging out ends this browser's session only
    assert end_reasons(server.ws, "lou") == ["logout", None]


def test_a_password_change_ends_the_users_sessions(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "pat", "viewer")
    first, second = server.login("pat", address="192.0.2.30"), server.login("pat", address="192.0.2.31")
    # On the command line, beside the running server (same SQLite file).
    r = cli("user", "passwd", "pat", "--password-stdin", "-w", server.ws, password=NEW_PASSWORD)
    assert r.returncode == 0 and "2 browser sessions ended" in r.stdout, r.stdout + r.stderr
    assert (first.me(), second.me()) == (401, 401)
    # Through the API, by an admin.
    third = server.login("pat", NEW_PASSWORD, address="192.0.2.30")
    r = admin.http.put("/api/v1/users/pat/password", json={"password": PASSWORD})
    assert r.status_code == 200 and r.json()["sessions_ended"] == 1
    assert third.me() == 401
    assert end_reasons(server.ws, "pat") == ["password_changed"] * 3
    # An admin changing their own password stays logged in here, but not elsewhere.
    add_user(server.ws, "abe", "admin")
    here, elsewhere = server.login("abe", address="192.0.2.32"), server.login("abe", address="192.0.2.33")
    assert here.http.put("/api/v1/users/abe/password", json={"password": NEW_PASSWORD}).json()["sessions_ended"] == 1
    assert (here.me(), elsewhere.me()) == (200, 401)


def test_a_role_change_ends_the_users_sessions(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "rob", "viewer")
    visitor = server.login("rob", address="192.0.2.40")
    assert admin.http.put("/api/v1/users/rob/role", json={"role": "analyst"}).json()["role"] == "analyst"
    assert visitor.me() == 401
    again = server.login("rob", address="192.0.2.40")
    r = cli("user", "role", "rob", "viewer", "-w", server.ws)
    assert r.returncode == 0 and "1 browser session ended" in r.stdout
    assert again.me() == 401
    # Setting the role it has already is no change: the session stays.
    third = server.login("rob", address="192.0.2.40")
    assert cli("user", "role", "rob", "viewer", "-w", server.ws).returncode == 0
    assert third.me() == 200
    assert end_reasons(server.ws, "rob") == ["role_changed", "role_changed", None]


def test_removing_a_user_ends_its_sessions(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "ron", "analyst")
    add_user(server.ws, "rue", "analyst")
    ron, rue = server.login("ron", address="192.0.2.50"), server.login("rue", address="192.0.2.51")
    assert admin.http.delete("/api/v1/users/ron").json() == {"removed": "ron"}
    assert ron.me() == 401 and rue.me() == 200
    r = cli("user", "remove", "rue", "-w", server.ws)
    assert r.returncode == 0 and "1 browser session ended" in r.stdout
    assert rue.me() == 401
    # A user of the same name added later does not inherit the old sessions.
    add_user(server.ws, "rue", "analyst")
    assert rue.me() == 401
    assert end_reasons(server.ws, "ron") == ["user_removed"]


def test_sessions_end_after_the_idle_time_and_the_absolute_time(ws_dir: Path) -> None:
    Accounts(ws_dir).add_user("ida", "viewer", PASSWORD)
    configure(ws_dir, idle_minutes="30", session_hours="2")

    def move(column: str, **delta: float) -> None:
        at = (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).replace(microsecond=0).isoformat()
        with sqlite3.connect(ws_dir / AUTH_FILE) as db:
            db.execute(f"UPDATE sessions SET {column} = ? WHERE ended_at IS NULL", (at,))

    def stored(column: str) -> str:
        with sqlite3.connect(ws_dir / AUTH_FILE) as db:
            return str(db.execute(f"SELECT {column} FROM sessions ORDER BY rowid DESC").fetchone()[0])

    with TestClient(create_app(ws_dir)) as c:
        assert c.post("/api/v1/auth/login", json={"username": "ida", "password": PASSWORD}).status_code == 200
        expires = dt.datetime.fromisoformat(stored("expires_at")) - dt.datetime.fromisoformat(stored("created_at"))
        assert expires == dt.timedelta(hours=2)
        # "Last seen" is written at most once a minute: a request 30 s after the last mark leaves it alone …
        move("last_seen_at", seconds=-30)
        marked = stored("last_seen_at")
        for _ in range(3):
            assert c.get("/api/v1/auth/me").status_code == 200
        assert stored("last_seen_at") == marked
        # … one 61 s after it writes the new time.
        move("last_seen_at", seconds=-61)
        assert c.get("/api/v1/auth/me").status_code == 200
        assert dt.datetime.fromisoformat(stored("last_seen_at")) > dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
        # 29 minutes idle: still open; 30 minutes idle: ended.
        move("last_seen_at", minutes=-29)
        assert c.get("/api/v1/auth/me").status_code == 200
        move("last_seen_at", minutes=-30, seconds=-1)
        assert c.get("/api/v1/auth/me").status_code == 401
        assert stored("end_reason") == "idle"
        # A session in use still ends at its absolute end.
        assert c.post("/api/v1/auth/login", json={"username": "ida", "password": PASSWORD}).status_code == 200
        move("expires_at", seconds=-1)
        assert c.get("/api/v1/auth/me").status_code == 401
        assert stored("end_reason") == "expired"


# ------------------------------------------------------------------------------------------ admins and sessions


def test_admins_list_and_end_other_users_sessions(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "sue", "viewer")
    add_user(server.ws, "sam", "analyst")
    sue_linux = server.login("sue", address="198.51.100.1")
    sue_windows = server.login("sue", address="198.51.100.2", agent=CHROME_WIN)
    sam = server.login("sam", address="198.51.100.3")
    listed = admin.http.get("/api/v1/sessions", params={"username": "sue"}).json()
    assert [(s["ip"], s["user_agent"], s["current"]) for s in listed] == [
        ("198.51.100.1", "Firefox 120 on Linux", False),
        ("198.51.100.2", "Chrome 121 on Windows", False),
    ]
    assert set(listed[0]) == {"session_id", "username", "created_at", "last_seen_at", "expires_at", "ip",
                              "user_agent", "current"}  # fmt: skip
    everyone = admin.http.get("/api/v1/sessions").json()
    mine = [s for s in everyone if s["current"]]
    assert len(mine) == 1 and mine[0]["username"] == "ada"
    assert {"sue", "sam", "ada"} <= {s["username"] for s in everyone}
    # End one of sue's sessions: that browser is out, the other stays in.
    target = listed[0]["session_id"]
    assert admin.http.delete(f"/api/v1/sessions/{target}").json() == {"ended": target, "username": "sue"}
    assert (sue_linux.me(), sue_windows.me()) == (401, 200)
    assert admin.http.delete(f"/api/v1/sessions/{target}").status_code == 404
    # End all of sam's.
    assert admin.http.delete("/api/v1/users/sam/sessions").json() == {"username": "sam", "ended": 1}
    assert sam.me() == 401
    assert admin.http.delete("/api/v1/users/nobody/sessions").status_code == 404
    audit = {(e["action"], e["detail"]) for e in Accounts(server.ws).audit_entries(500)}
    assert ("session_end", f"{target} of sue") in audit and ("sessions_end", "sam: 1") in audit
    # The users page shows the open sessions with their end buttons, in both languages.
    other = listed[1]["session_id"]
    for lang, end, end_all in (("zh", "结束", "结束全部会话"), ("en", "End", "End all sessions")):
        html = admin.http.get(f"/users?lang={lang}", headers={"accept": "text/html"}).text
        row = html[html.index(f'data-session="{other}"') :]
        row = row[: row.index("</tr>")]
        assert "198.51.100.2" in row and "Chrome 121 on Windows" in row and f">{end}</button>" in row
        assert f'data-test="end-sessions-sue">{end_all}</button>' in html
        assert f'data-session="{target}"' not in html


def test_only_admins_reach_the_session_routes(server: Server, admin: Visitor) -> None:
    add_user(server.ws, "ned", "viewer")
    add_user(server.ws, "nia", "analyst")
    victim = server.login("ned", address="198.51.100.20")
    session_id = admin.http.get("/api/v1/sessions", params={"username": "ned"}).json()[0]["session_id"]
    routes = [("GET", "/api/v1/sessions"), ("DELETE", f"/api/v1/sessions/{session_id}"),
              ("DELETE", "/api/v1/users/ned/sessions")]  # fmt: skip
    for name in ("ned", "nia"):
        visitor = server.login(name, address="198.51.100.21")
        for method, path in routes:
            r = visitor.http.request(method, path)
            assert r.status_code == 403 and "admin role" in r.json()["error"], (name, method, path)
    anonymous = server.client("198.51.100.22")
    for method, path in routes:
        assert anonymous.request(method, path).status_code == 401
    # A script with a viewer's API token is refused too; an admin's session without the CSRF token as well.
    token = cli("user", "token", "ned", "-w", server.ws, "--json")
    bearer = {"Authorization": "Bearer " + json.loads(token.stdout)["token"]}
    assert httpx.get(server.url + "/api/v1/sessions", headers=bearer).status_code == 403
    no_csrf = httpx.delete(
        f"{server.url}/api/v1/sessions/{session_id}", headers={"Cookie": f"tierwise_session={admin.cookie}"}
    )
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    assert victim.me() == 200


# ------------------------------------------------------------------------------------------ throttling


def test_a_lock_on_one_address_does_not_lock_the_user_out_of_another(server: Server) -> None:
    a, b = server.client("203.0.113.1"), server.client("203.0.113.2")
    codes = [a.post("/api/v1/auth/login", json={"username": "ada", "password": f"guess {i}!"}).status_code
             for i in range(6)]  # fmt: skip
    assert codes == [401] * 5 + [429]
    # The right password is refused from A while the pause lasts …
    blocked = a.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert "too many failed logins; try again in" in blocked.json()["error"]
    # … and accepted from B.
    assert b.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 200
    entries = [(e["action"], e["ip"]) for e in Accounts(server.ws).audit_entries(1000) if e["username"] == "ada"]
    assert entries.count(("login_failed", "203.0.113.1")) == 5
    assert ("login_throttled", "203.0.113.1") in entries and ("login", "203.0.113.2") in entries


def _until_checked(c: httpx.Client, name: str, timeout: float = 20) -> httpx.Response:
    """Try a wrong password until the server checks it again (the pause is over), answering 401."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.post("/api/v1/auth/login", json={"username": name, "password": "still wrong"})
        if r.status_code != 429:
            return r
        time.sleep(0.1)
    pytest.fail("the pause did not end")


@pytest.mark.slow  # waits out two pauses (2 s and 4 s)
def test_the_pause_doubles_with_each_further_failure_up_to_the_cap(server: Server) -> None:
    c = server.client("203.0.113.9")
    for _ in range(5):
        assert c.post("/api/v1/auth/login", json={"username": "pam", "password": "wrong one"}).status_code == 401
    pauses = []
    for _ in range(3):
        r = c.post("/api/v1/auth/login", json={"username": "pam", "password": "wrong one"})
        assert r.status_code == 429
        pauses.append(int(r.headers["retry-after"]))
        assert _until_checked(c, "pam").status_code == 401  # the failure after a pause starts a longer one
    # lockout_seconds = 2, doubled per further failure, at most lockout_max_seconds = 5.
    assert pauses == [2, 4, 5]


def test_one_address_trying_many_names_is_paused(server: Server) -> None:
    add_user(server.ws, "vera", "viewer")
    spray = server.client("203.0.113.30")
    codes = [spray.post("/api/v1/auth/login", json={"username": f"name{i}", "password": "Winter2024!"}).status_code
             for i in range(9)]  # fmt: skip
    assert codes == [401] * 8 + [429]  # address_attempts = 8 over all names
    assert spray.post("/api/v1/auth/login", json={"username": "vera", "password": PASSWORD}).status_code == 429
    assert server.login("vera", address="203.0.113.31").me() == 200


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    configure(ws, lockout_seconds="60")  # trusted_proxies stays empty, as by default
    untrusted = start_server(ws)
    try:
        codes = []
        for i in range(6):
            c = httpx.Client(base_url=untrusted.url, headers={"X-Forwarded-For": f"203.0.113.{100 + i}"})
            codes.append(c.post("/api/v1/auth/login", json={"username": "ada", "password": "bad guess"}).status_code)
        # Each request claimed another address; the server counted them all against the peer, 127.0.0.1.
        assert codes == [401] * 5 + [429]
        ips = {e["ip"] for e in Accounts(ws).audit_entries() if e["action"].startswith("login_")}
        assert ips == {"127.0.0.1"}
    finally:
        stop_server(untrusted)


def test_client_address_walks_the_forwarded_chain_from_the_trusted_end(ws_dir: Path) -> None:
    Accounts(ws_dir).add_user("ada", "admin", PASSWORD)
    configure(ws_dir, trusted_proxies='["10.0.0.0/8"]')
    app = create_app(ws_dir)

    def seen_as(peer: str, forwarded: str | None) -> str:
        c = TestClient(app, client=(peer, 5000))  # no lifespan needed: the login reads only the accounts
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        assert c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}, headers=headers).is_success
        return str(Accounts(ws_dir).audit_entries(1)[0]["ip"])

    assert seen_as("10.1.1.1", "198.51.100.7") == "198.51.100.7"
    # The client may put anything first; only the entries the trusted proxies appended count.
    assert seen_as("10.1.1.1", "1.2.3.4, 198.51.100.7, 10.2.2.2") == "198.51.100.7"
    assert seen_as("10.1.1.1", "not-an-address") == "10.1.1.1"
    assert seen_as("10.1.1.1", None) == "10.1.1.1"
    assert seen_as("192.0.2.99", "198.51.100.7") == "192.0.2.99"  # not a trusted peer


def test_the_login_page_shows_the_pause_in_its_language(ws_dir: Path) -> None:
    Accounts(ws_dir).add_user("ada", "admin", PASSWORD)
    configure(ws_dir, login_attempts="2", lockout_seconds="120")
    with TestClient(create_app(ws_dir), follow_redirects=False) as c:
        for lang in ("zh", "en"):
            page = c.get(f"/login?lang={lang}")
            assert f'name="lang" value="{lang}"' in page.text
        form = {"username": "ada", "password": "wrong guess", "next": "/customers"}
        first = c.post("/api/v1/auth/login", data=form | {"lang": "en"})
        assert first.status_code == 303 and first.headers["location"].startswith("/login?failed=1")
        assert "lang=en" in first.headers["location"]
        assert c.post("/api/v1/auth/login", data=form | {"lang": "en"}).status_code == 303
        expected = {
            "zh": "登录失败次数过多，请在 {} 秒后重试",
            "en": "Too many failed logins; try again in {} s",
        }
        for lang, text in expected.items():
            r = c.post("/api/v1/auth/login", data=form | {"lang": lang})
            assert r.status_code == 429 and r.headers["content-type"].startswith("text/html")
            seconds = int(r.headers["retry-after"])
            assert 100 < seconds <= 120
            assert text.format(seconds) in r.text, r.text
            assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in r.text
            assert 'name="next" value="/customers"' in r.text  # the form still leads where the user was going
        # Scripts still get JSON with Retry-After.
        api = c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
        assert api.status_code == 429 and api.headers["retry-after"].isdigit()
        assert api.json()["error"].startswith("too many failed logins")


def test_a_new_login_ends_the_browsers_previous_session(server: Server) -> None:
    add_user(server.ws, "fay", "viewer")
    c = server.client("192.0.2.70")
    assert c.post("/api/v1/auth/login", json={"username": "fay", "password": PASSWORD}).status_code == 200
    old = c.cookies["tierwise_session"]
    assert c.post("/api/v1/auth/login", json={"username": "fay", "password": PASSWORD}).status_code == 200
    assert c.cookies["tierwise_session"] != old
    assert Visitor(c, old).me() == 401
    assert end_reasons(server.ws, "fay") == ["replaced", None]


def test_the_principal_is_found_from_the_scope_alone_before_any_body(ws_dir: Path) -> None:
    """What an ASGI middleware does before it lets a body be read: a Request made of the scope, no receive."""
    from starlette.requests import Request

    from tierwise.web.auth import optional_principal

    Accounts(ws_dir).add_user("ada", "admin", PASSWORD)
    app = create_app(ws_dir)
    c = TestClient(app)
    login = c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    cookie = login.cookies["tierwise_session"]

    def scope(headers: dict[str, str]) -> dict[str, Any]:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return {"type": "http", "method": "POST", "path": "/api/v1/uploads/orders", "headers": raw, "app": app,
                "query_string": b"", "client": ("127.0.0.1", 5000)}  # fmt: skip

    found = scope({"Cookie": f"tierwise_session={cookie}", "Content-Length": "999999999"})
    principal = optional_principal(Request(found))  # a receive would raise: Request's default has no body
    assert principal is not None and (principal.username, principal.role, principal.via) == ("ada", "admin", "session")
    assert principal.csrf_token == login.json()["csrf_token"]
    # The route's own Request on the same scope reuses the answer instead of looking it up again.
    Accounts(ws_dir).end_sessions("ada", "test")
    assert optional_principal(Request(found)) == principal
    assert optional_principal(Request(scope({"Cookie": f"tierwise_session={cookie}"}))) is None
    assert optional_principal(Request(scope({}))) is None
