"""Nothing read before it is allowed, and inputs checked (issue 21, parts 5 and 7), against `tierwise serve` started
as a user would (uvicorn on a loopback port in a child process, its TMPDIR a folder of the test's own).

- Anonymous bodies of 200 MB, sent chunked, are refused after at most a few KB: the server's resident memory
  (/proc/PID/status VmRSS) and its temporary folder (files there, and deleted files it still holds open) stay
  within a few MB, sampled while the body is being sent.
- A logged-in upload over [web] max_upload_mb sent chunked is refused with 413 and nothing is stored; a JSON body
  over [web] max_json_kb is refused, one byte under it is read.
- as_of outside (day after the first order … tomorrow) → 422 from the API, exit 2 with one line from the CLI.
- Campaign, rule and playbook names are checked; a province `<a href=…>` is drawn as text in the dashboard's and
  the report's charts (headless Chromium).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import run_cli, start_serve, stop_serve

from tierwise.web.accounts import Accounts

PASSWORD = "limits test pass 1"
EVIL = '<a href="https://evil">x</a>'
UPLOAD_MB, JSON_KB = 2, 64
MB = 1024 * 1024
BIG = 200 * MB
BLOCK = 64 * 1024
FEW_MB = 8 * MB
FRAMING = 64 * 1024  # tierwise.web.limits.UPLOAD_FRAMING
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]  # fmt: skip


@dataclass
class Site:
    url: str
    ws: Path
    cli_ws: Path  # a copy of the served workspace for the command line (the server holds the database)
    data: Path
    tmp: Path
    report: Path
    proc: subprocess.Popen[bytes]
    log: Path


def _poison(customers: Path) -> None:
    """Every customer with an even number gets the province EVIL (so it is the largest region of any chart)."""
    with customers.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        if i % 2 == 0:
            row["province"] = EVIL
    with customers.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _configure(ws: Path) -> None:
    path = ws / "tierwise.toml"
    text = path.read_text(encoding="utf-8")
    for key, value in (("max_upload_mb", UPLOAD_MB), ("max_json_kb", JSON_KB)):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if n == 0:
            text = text.replace("[web]\n", f"[web]\n{key} = {value}\n", 1)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("limits")
    data, ws_dir, cli_ws, tmp = root / "data", root / "ws", root / "cli", root / "tmp"
    generate(data, customers=200, seed=11)
    _poison(data / "customers.csv")
    Workspace.init(ws_dir).close()
    ws = Workspace.open(ws_dir)
    try:
        for table in ("customers", "orders", "payments"):
            ingest_file(ws, table, data / f"{table}.csv")
        run(ws)
    finally:
        ws.close()
    _configure(ws_dir)
    accounts = Accounts(ws_dir)
    for name in ("admin", "analyst", "viewer"):
        accounts.add_user(name, name, PASSWORD)
    shutil.copytree(ws_dir, cli_ws)
    report = root / "report.html"
    made = run_cli("report", "-w", cli_ws, "-o", report, "--language", "en")
    assert made.code == 0, made.stderr
    tmp.mkdir()
    log = root / "serve.log"
    proc, url = start_serve(ws_dir, log, env={"TMPDIR": str(tmp)}, timeout=60)
    try:
        yield Site(url, ws_dir, cli_ws, data, tmp, report, proc, log)
    finally:
        stop_serve(proc)


def login(site: Site, name: str) -> httpx.Client:
    c = httpx.Client(base_url=site.url, timeout=120)
    r = c.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


# --- what the server holds -----------------------------------------------------------------------------------


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def temp_bytes(pid: int, folder: Path) -> int:
    """Bytes in `folder`'s files plus those of deleted files there the process still holds open (a
    SpooledTemporaryFile rolled to disk is such a file: unlinked at once, freed when closed)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size if path.is_file() else 0
    fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fds):
        try:
            target = os.readlink(fds / fd)
            if target.startswith(str(folder)) and target.endswith("(deleted)"):
                total += os.stat(fds / fd).st_size
        except OSError:
            pass
    return total


class Peak:
    """The largest resident memory and temporary-folder use of the server while the block runs."""

    def __init__(self, site: Site) -> None:
        self.pid, self.folder = site.proc.pid, site.tmp
        self.rss = self.temp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> None:
        self.rss = max(self.rss, rss(self.pid))
        self.temp = max(self.temp, temp_bytes(self.pid, self.folder))

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.005)

    def __enter__(self) -> Peak:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Body:
    """A body of `size` bytes (head, filler, tail) as a generator: httpx sends it chunked, without Content-Length.
    `sent` counts what the server let the client write."""

    def __init__(self, size: int, head: bytes = b"", tail: bytes = b"", filler: bytes = b"x") -> None:
        self.size, self.head, self.tail, self.filler = size, head, tail, filler
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        block = (self.filler * (BLOCK // len(self.filler) + 1))[:BLOCK]
        for piece in self._pieces(block):
            self.sent += len(piece)
            yield piece

    def _pieces(self, block: bytes) -> Iterator[bytes]:
        yield self.head
        left = self.size - len(self.head) - len(self.tail)
        while left > 0:
            yield block[: min(left, BLOCK)]
            left -= BLOCK
        yield self.tail

    def whole(self) -> bytes:
        return b"".join(self._pieces((self.filler * (BLOCK // len(self.filler) + 1))[:BLOCK]))


def send(c: httpx.Client, method: str, path: str, body: Any, content_type: str) -> httpx.Response | None:
    """The answer, or None when the server closed the connection before the client could read one."""
    try:
        return c.request(method, path, content=body, headers={"content-type": content_type})
    except httpx.TransportError:
        return None


def error(r: httpx.Response | None, status: int) -> str:
    assert r is not None, "the connection was closed without an answer"
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    return str(body["error"])


BOUNDARY = "tierwiseLimitsBoundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def upload_body(size: int, filename: str = "orders.csv") -> Body:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\ncustomer_id,order_id,order_date,amount\r\n"
    ).encode()
    return Body(size, head, f"\r\n--{BOUNDARY}--\r\n".encode(), b"C0000001,SO1,2024-01-01,10\r\n")


def settled_rss(pid: int, timeout: float = 30) -> int:
    """The server's resident memory once it has stopped changing (its start-up work in the background is done)."""
    deadline = time.monotonic() + timeout
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss(pid)
        if abs(now - last) < 256 * 1024:
            return now
        last = now
    raise AssertionError(f"the server's memory did not settle within {timeout:.0f} s")


def wait_until(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- bodies --------------------------------------------------------------------------------------------------


def test_anonymous_200mb_chunked_bodies_leave_memory_and_temp_disk_alone(site: Site) -> None:
    cases = [
        ("POST", "/api/v1/runs", "application/json", 401),  # behind the login: refused unread
        ("POST", "/api/v1/uploads/orders", MULTIPART, 401),
        ("PUT", "/api/v1/settings", "application/json", 401),
        ("POST", "/api/v1/auth/login", "application/json", 413),  # public: a few KB read, then refused
    ]
    with httpx.Client(base_url=site.url, timeout=120) as anon:
        for method, path, kind, _ in cases:  # once small, so that anything made on first use is made
            send(anon, method, path, Body(20 * 1024, filler=b"["), kind)
        before = settled_rss(site.proc.pid)
        for method, path, kind, status in cases:
            body = Body(BIG, filler=b"[")
            with Peak(site) as peak:
                r = send(anon, method, path, body, kind)
            message = error(r, status)
            assert ("log in first" in message) if status == 401 else ("before logging in" in message), message
            # The client could write only what the sockets' buffers took before the server closed the connection.
            assert body.sent < 32 * MB, (path, body.sent)
            assert peak.rss - before < FEW_MB, (path, (peak.rss - before) / MB)
            assert peak.temp < 64 * 1024, (path, peak.temp)
        # The same with the length announced: refused before a byte is read.
        r = anon.post("/api/v1/auth/login", content=b"x" * (9 * 1024), headers={"content-type": "application/json"})
        assert "before logging in" in error(r, 413) and r.headers["connection"] == "close"
        # A browser is sent to the login page, as before.
        page = anon.get("/overview", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/overview"
        assert anon.get("/health").json() == {"status": "ok"}  # and the server carries on


def test_logged_in_chunked_upload_over_the_limit_is_refused_and_nothing_is_stored(site: Site) -> None:
    analyst = login(site, "analyst")
    before = analyst.get("/api/v1/uploads").json()
    jobs = analyst.get("/api/v1/jobs").json()
    body = upload_body(10 * UPLOAD_MB * MB)
    with Peak(site) as peak:
        r = send(analyst, "POST", "/api/v1/uploads/orders", body, MULTIPART)
    assert "max_upload_mb" in error(r, 413)
    assert body.sent < UPLOAD_MB * MB + 32 * MB
    # At most the limit (and 64 KB for the multipart framing) reached the multipart parser's spool file (1 MB in
    # memory, then on disk) …
    assert peak.temp <= UPLOAD_MB * MB + FRAMING, peak.temp / MB
    # … which is deleted, and nothing was loaded or kept.
    assert wait_until(lambda: temp_bytes(site.proc.pid, site.tmp) == 0), temp_bytes(site.proc.pid, site.tmp)
    assert not list((site.ws / "uploads").glob("*"))
    assert analyst.get("/api/v1/uploads").json() == before
    assert analyst.get("/api/v1/jobs").json() == jobs
    # With the length announced: refused before reading, nothing spooled.
    whole = upload_body(UPLOAD_MB * MB + FRAMING + 1).whole()
    with Peak(site) as peak:
        r = analyst.post("/api/v1/uploads/orders", content=whole, headers={"content-type": MULTIPART})
    assert "max_upload_mb" in error(r, 413) and peak.temp == 0
    # Just under the limit, the route reads the file and judges it (here: not a type tierwise reads).
    small = upload_body(UPLOAD_MB * MB - 1024, filename="orders.pdf").whole()
    assert "not a file type" in error(
        analyst.post("/api/v1/uploads/orders", content=small, headers={"content-type": MULTIPART}), 400
    )
    assert wait_until(lambda: temp_bytes(site.proc.pid, site.tmp) == 0)
    # A viewer may not upload: the JSON limit holds for them, then the route's role check.
    viewer = login(site, "viewer")
    tiny = upload_body(4096).whole()
    assert "analyst" in error(
        viewer.post("/api/v1/uploads/orders", content=tiny, headers={"content-type": MULTIPART}), 403
    )
    r = send(viewer, "POST", "/api/v1/uploads/orders", upload_body(3 * UPLOAD_MB * MB), MULTIPART)
    assert "max_json_kb" in error(r, 413)


def _campaign_body(size: int, name: str) -> bytes:
    """A campaign plan of exactly `size` bytes (the padding is a field the model ignores)."""
    empty = json.dumps({"name": name, "where": "true", "pad": ""}).encode()
    return json.dumps({"name": name, "where": "true", "pad": "x" * (size - len(empty))}).encode()


def test_json_bodies_over_the_limit_are_refused_while_streaming(site: Site) -> None:
    analyst = login(site, "analyst")
    limit = JSON_KB * 1024
    for size, chunked in ((limit, False), (limit, True), (limit + 1, False), (limit + 1, True)):
        raw = _campaign_body(size, "../../evil")
        assert len(raw) == size
        content: Any = iter([raw[i : i + 1000] for i in range(0, size, 1000)]) if chunked else raw
        r = send(analyst, "POST", "/api/v1/campaigns", content, "application/json")
        if size <= limit:  # read and judged by the route: the name is refused
            assert "campaign name '../../evil'" in error(r, 400)
        else:
            assert "max_json_kb" in error(r, 413), (size, chunked)
    body = Body(BIG, filler=b"[")
    r = send(analyst, "PUT", "/api/v1/settings", body, "application/json")
    assert "max_json_kb" in error(r, 413) and body.sent < 32 * MB


# --- as_of ---------------------------------------------------------------------------------------------------


def _allowed(site: Site) -> tuple[dt.date, dt.date]:
    """The day after the first order and max(tomorrow, the day after the last order), from the data file."""
    with (site.data / "orders.csv").open(encoding="utf-8", newline="") as f:
        days = [dt.date.fromisoformat(r["order_date"][:10]) for r in csv.DictReader(f)]
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    return min(days) + dt.timedelta(days=1), max(tomorrow, max(days) + dt.timedelta(days=1))


def test_as_of_outside_the_data_is_refused_by_the_api(site: Site) -> None:
    analyst = login(site, "analyst")
    earliest, latest = _allowed(site)
    jobs = analyst.get("/api/v1/jobs").json()
    runs = analyst.get("/api/v1/runs").json()
    for day in ("9999-12-31", "0001-01-01", str(earliest - dt.timedelta(days=1)), str(latest + dt.timedelta(days=1))):
        message = error(analyst.post("/api/v1/runs", json={"as_of": day}), 422)
        assert f"as_of {day}" in message and str(earliest) in message and str(latest) in message, message
    assert analyst.get("/api/v1/jobs").json() == jobs and analyst.get("/api/v1/runs").json() == runs


def test_as_of_outside_the_data_is_refused_by_the_cli(site: Site) -> None:
    from tierwise.checks import check_as_of
    from tierwise.errors import UserError
    from tierwise.workspace import Workspace

    earliest, latest = _allowed(site)
    runs = run_cli("runs", "-w", site.cli_ws, "--json").json()
    for args in (
        ("run", "--as-of", "9999-12-31"),
        ("run", "--as-of", "0001-01-01"),
        ("backfill", "--from", "0001-01-01", "--to", "2024-06-01"),
        ("backfill", "--from", "2024-01-01", "--to", "9999-12-31"),
    ):
        r = run_cli(*args, "-w", site.cli_ws)
        lines = r.stderr.strip().splitlines()
        assert r.code == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert str(earliest) in lines[0] and str(latest) in lines[0], lines
    assert run_cli("runs", "-w", site.cli_ws, "--json").json() == runs
    # The bounds themselves are allowed, one day beyond either is not.
    ws = Workspace.open(site.cli_ws)
    try:
        orders = ws.table("orders")
        check_as_of(orders, earliest)
        check_as_of(orders, latest)
        for day in (earliest - dt.timedelta(days=1), latest + dt.timedelta(days=1)):
            with pytest.raises(UserError, match="outside the data"):
                check_as_of(orders, day)
    finally:
        ws.close()


# --- names ---------------------------------------------------------------------------------------------------


def test_names_are_checked_everywhere_they_come_in(site: Site) -> None:
    bad = ("../../evil", "<b>x</b>", "a;b", "x" * 101, "..", "_hidden", "tab\there")
    analyst, admin = login(site, "analyst"), login(site, "admin")
    for name in bad:
        r = analyst.post("/api/v1/campaigns", json={"name": name, "where": "true"})
        assert "letters (any language), digits, spaces and _ - . only" in error(r, 400), name
    made = analyst.post("/api/v1/campaigns", json={"name": "春季 win-back_2024.1", "where": "true", "seed": 1})
    assert made.status_code == 201, made.text
    cli = run_cli("campaign", "plan", "../../evil", "--where", "true", "-w", site.cli_ws)
    assert cli.code == 2 and "campaign name '../../evil'" in cli.stderr and "letters" in cli.stderr
    assert not list(site.cli_ws.parent.glob("evil*")) and not list(site.cli_ws.glob("**/evil*"))
    version = admin.get("/api/v1/settings").json()["version"]
    for change, what in (
        ({"rules": [{"name": "<b>x</b>", "expression": "monetary > 1"}]}, "rule name '<b>x</b>'"),
        ({"playbook": [{"name": "../x", "when": "true", "action": "maintain"}]}, "playbook rule name '../x'"),
    ):
        message = error(admin.put("/api/v1/settings", params={"version": version}, json=change), 400)
        assert what in message and "letters" in message, message
    # tierwise.toml edited by hand: the command line says which name is wrong.
    config = site.cli_ws / "tierwise.toml"
    original = config.read_text(encoding="utf-8")
    try:
        config.write_text(original + '\n[[rules]]\nname = "a;b"\nexpression = "monetary > 1"\n', encoding="utf-8")
        r = run_cli("status", "-w", site.cli_ws)
        assert r.code == 2 and "rule name 'a;b'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        config.write_text(original, encoding="utf-8")


# --- charts --------------------------------------------------------------------------------------------------

NO_LINKS = """root => {
  const els = Array.from(root.querySelectorAll('*'));
  return {
    links: root.querySelectorAll('a').length,
    evil: els.filter(e => Array.from(e.attributes).some(a => /href|src|^on/i.test(a.name) && a.value.includes('evil')))
      .length,
    texts: els.filter(e => e.tagName.toLowerCase() === 'text').map(e => e.textContent)
  };
}"""


@pytest.fixture
def chromium() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no headless chromium here (/usr/bin/chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def _chart_shows_text(page: Any, chart: str) -> None:
    page.wait_for_selector(f"{chart}[data-rendered=true]")
    found = page.eval_on_selector(chart, NO_LINKS)
    assert found["links"] == 0 and found["evil"] == 0, found
    assert any(EVIL in t for t in found["texts"]), found["texts"]
    label = page.locator(f"{chart} text", has_text=EVIL).first
    assert label.is_visible() and EVIL in (label.text_content() or "")


@pytest.mark.slow
def test_markup_in_the_data_is_drawn_as_text_in_dashboard_and_report(site: Site, chromium: Any) -> None:
    page = chromium
    page.goto(site.url + "/login?next=/overview")
    page.fill("#username", "viewer")
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/overview")
    _chart_shows_text(page, "#chart-regions")
    assert page.locator('a[href="https://evil"]').count() == 0
    page.goto(site.report.as_uri())
    page.wait_for_function("() => document.documentElement.getAttribute('data-charts-rendered') !== null")
    chart = page.eval_on_selector_all(".chart", "els => els.filter(e => e.textContent.includes('evil')).map(e => e.id)")
    assert chart, "no chart of the report shows the province"
    for key in chart:
        _chart_shows_text(page, f"#{key}")
    assert page.locator('a[href="https://evil"]').count() == 0
