"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (no browser download) against
`tierwise serve` started as a user would, on a small generated workspace.

One walk through the issue's steps, as an admin: log in, upload the generated messy (GBK, Chinese headers) orders
file and read the ingest report, start a run and follow its progress, see the overview charts drawn by plotly and
the KPIs filled, find a customer and open it (scores, reasons), change a weight on the settings page and see the
preview, export a filtered list as CSV, switch the language both ways. Every page is screenshotted under the test
output, and any page error, console error (a CSP violation is one) or failed request fails the test.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import run_cli, start_serve, stop_serve

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
REQUIRED = bool(os.environ.get("TIERWISE_REQUIRE_CHROMIUM"))
# How this machine runs headless Chromium (see docs/web.md): no sandbox as root, no GPU, and nothing that
# phones home (the network is closed; those connections would only fail, noisily).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]  # fmt: skip
USER, PASSWORD = "ada", "browser test pass 1"
CUSTOMERS = 200
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None and not REQUIRED, reason="no headless chromium here (/usr/bin/chromium)"),
]


# --- the server ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    root: Path
    data: Path
    log: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A workspace with the generated messy customers, payments and interactions (the orders come through the
    browser), an admin, and `tierwise serve` on a free loopback port."""
    root = tmp_path_factory.mktemp("browser")
    data, ws = root / "data", root / "ws"
    r = run_cli("generate", data, "--customers", str(CUSTOMERS), "--messy", "--seed", "7")
    assert r.code == 0, r.stderr
    assert run_cli("init", ws).code == 0
    for table in ("customers", "payments", "interactions"):
        r = run_cli("ingest", table, data / f"{table}.csv", "-w", ws)
        assert r.code == 0, r.stderr
    add = subprocess.run(
        [sys.executable, "-m", "tierwise.cli", "user", "add", USER, "--role", "admin", "--password-stdin", "-w", ws],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    log = root / "serve.log"
    proc, url = start_serve(ws, log, timeout=60)
    try:
        yield Server(url, ws, data, log, proc)
    finally:
        stop_serve(proc)


# --- the browser --------------------------------------------------------------------------------------------


# Report every CSP violation on the console too (Chromium does already; this names the directive and the URL).
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline code"));
});
"""


@dataclass
class Problems:
    """What went wrong in the browser while the test ran: page errors, console errors, failed requests."""

    items: list[str] = field(default_factory=list)

    def console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        self.items.append(f"console error: {msg.text} ({where})")

    def request_failed(self, request: Any) -> None:
        self.items.append(f"request failed: {request.method} {request.url} ({request.failure})")

    def response(self, response: Any) -> None:
        if response.status >= 400:
            self.items.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def check(self) -> None:
        assert not self.items, "\n".join(self.items)


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screens")


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, Problems]]:
    if CHROMIUM is None:
        pytest.fail("TIERWISE_REQUIRE_CHROMIUM is set but there is no /usr/bin/chromium (apt-get install chromium)")
    if REQUIRED:
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed").sync_playwright
    problems = Problems()
    with sync_playwright() as pw:
        # launch() gives the browser a fresh, empty profile of its own, deleted when it closes.
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield watched_page(browser, problems, accept_downloads=True), problems
        finally:
            browser.close()


def watched_page(browser: Any, problems: Problems, **context_options: Any) -> Any:
    """A page in a fresh context at 1280 × 900 whose errors, console messages, failed requests and CSP
    violations are collected in `problems`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(CSP_REPORTER)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.items.append(f"page error: {exc}"))
    page.on("console", problems.console)
    page.on("requestfailed", problems.request_failed)
    page.on("response", problems.response)
    return page


def _shot(page: Any, screens: Path, name: str) -> None:
    """The whole page as <screens>/NN-name.png, numbered in the order of the walk."""
    number = len(list(screens.glob("*.png"))) + 1
    page.screenshot(path=screens / f"{number:02d}-{name}.png", full_page=True)


def _charts_drawn(page: Any, at_least: int = 1) -> set[str]:
    """Wait for plotly to draw every chart of the page; each must hold its SVG and a trace (a heatmap: .hm)."""
    page.wait_for_function(
        "n => { const c = document.querySelectorAll('.chart');"
        " return c.length >= n && Array.from(c).every(e => e.getAttribute('data-rendered') === 'true'); }",
        arg=at_least,
    )
    charts = page.eval_on_selector_all(
        ".chart",
        "els => els.map(e => [e.id, e.querySelectorAll('.main-svg').length, e.querySelectorAll('.trace, .hm').length])",
    )
    assert all(svgs > 0 and drawn > 0 for _, svgs, drawn in charts), charts
    return {c[0] for c in charts}


def _records(path: Path, encoding: str) -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as f:
        return list(csv.reader(f))


# --- the walk -----------------------------------------------------------------------------------------------


def test_dashboard_in_headless_chromium(browser_page: tuple[Any, Problems], server: Server, screens: Path) -> None:
    page, problems = browser_page
    base = server.url

    # Log in: anonymous visitors land on the login page (in the workspace's language, Chinese by default).
    page.goto(base + "/overview")
    page.wait_for_url(re.compile(r"/login\?next=(%2F|/)overview"))
    assert page.get_attribute("html", "lang") == "zh-CN"
    _shot(page, screens, "login")
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/overview")
    assert page.inner_text("[data-test=current-user]").startswith(USER)
    page.wait_for_selector("[data-test=empty-state]")  # no run yet: the empty state with the way forward
    _shot(page, screens, "overview-empty")

    # Upload the generated messy orders file (GBK, Chinese headers) on the data page; the ingest report appears.
    page.click("[data-test=nav-data]")
    page.wait_for_url("**/data")
    page.select_option("#upload-table", "orders")
    orders = server.data / "orders.csv"
    page.set_input_files("#upload-file", orders)
    page.click("#upload-button")
    page.wait_for_selector("#upload-job[data-state=done]")
    page.wait_for_selector("#upload-report:not([hidden]) [data-test=ingest-summary]")
    # status, rows read, new, updated, unchanged, quarantined, duplicates removed, each under the report's own key
    # (data-field) with its raw value (data-value); the terms and the status shown are in the page's language
    summary = page.locator("[data-test=ingest-summary]")
    counts = ("rows_read", "rows_new", "rows_updated", "rows_unchanged", "rows_quarantined", "duplicates_removed")
    facts = {
        field: summary.locator(f"dd[data-field={field}]").get_attribute("data-value") or ""
        for field in ("status", *counts)
    }
    assert facts["status"] == "loaded", facts
    shown = summary.locator("dd[data-field=status]").inner_text()
    assert shown != "loaded" and shown in ("Loaded", "已导入"), shown
    read, new, updated, unchanged, quarantined, duplicates = (int(facts[f]) for f in counts)
    loaded = new + updated + unchanged
    rows = len(_records(orders, "gbk")) - 1
    assert read == rows and loaded > 0.9 * rows, facts
    assert quarantined > 0 and loaded + quarantined + duplicates == read, facts  # the mess is accounted for
    quarantine_rows = page.locator("#upload-report table tbody tr")
    assert quarantine_rows.count() > 0
    assert "MISSING_CUSTOMER_ID" in quarantine_rows.first.inner_text()
    _shot(page, screens, "data-upload")

    # Start a run from the overview's empty state; its progress is shown, then the page reloads with the charts.
    page.click("[data-test=nav-overview]")
    page.wait_for_url("**/overview")
    page.evaluate("""() => {
      window.__runStates = [];
      const box = document.getElementById("run-job");
      new MutationObserver(() => window.__runStates.push(box.getAttribute("data-state")))
        .observe(box, { attributes: true, attributeFilter: ["data-state"] });
    }""")
    page.click("#run-button")
    page.wait_for_selector("#run-job:not([hidden]) progress")
    page.wait_for_selector("#run-job[data-state=done]", timeout=120_000)
    states = page.evaluate("window.__runStates")
    assert states[0] == "queued" and states[-1] == "done", states
    assert page.eval_on_selector("#run-job progress", "p => p.value") == 100
    assert page.inner_text("#run-job .job-text").startswith("完成")

    # The overview: every chart drawn by plotly (SVG inside each chart div), every KPI filled.
    page.wait_for_selector("[data-test=kpi-customers]", timeout=30_000)  # after the page reloaded itself
    ids = _charts_drawn(page)
    assert {"chart-grades", "chart-segments", "chart-pareto", "chart-heatmap-customers", "chart-lifecycle"} <= ids
    assert page.locator("#chart-grades .point").count() >= 4  # a bar per grade at least
    kpis = page.eval_on_selector_all(
        "[data-test^=kpi-]",
        "els => els.map(e => [e.dataset.test, e.dataset.value, e.querySelector('.value').textContent.trim()])",
    )
    assert len(kpis) >= 5 and all(text and text != "—" for _, _, text in kpis), kpis
    values = {key: value for key, value, _ in kpis}
    assert int(values["kpi-customers"]) == CUSTOMERS and float(values["kpi-revenue"]) > 0, values
    assert page.inner_text("[data-test=run-id]")
    _shot(page, screens, "overview")

    # The other read-only pages and the users page open without an error, with their charts drawn.
    for key in ("segments", "history", "models", "users"):
        page.click(f"[data-test=nav-{key}]")
        page.wait_for_url(f"**/{key}")
        _charts_drawn(page, at_least=int(key in ("segments", "models")))
        _shot(page, screens, key)

    # Customers: search by id, open the customer, see every score and the reasons.
    page.click("[data-test=nav-customers]")
    page.wait_for_url("**/customers")
    assert int(page.get_attribute("[data-test=customer-total]", "data-value") or 0) == CUSTOMERS
    top = page.locator("#customer-table tbody tr").first.get_attribute("data-customer")
    assert top
    page.fill("#customer-search", top)
    page.click("#customer-apply")
    page.wait_for_url(re.compile(r"/customers\?.*q="))
    assert page.get_attribute("[data-test=customer-total]", "data-value") == "1"
    _shot(page, screens, "customers")
    page.click(f"#customer-table tbody tr[data-customer='{top}'] a")
    page.wait_for_url(f"**/customers/{top}")
    assert page.inner_text("[data-test=customer-id]") == top
    assert page.get_attribute("[data-test=customer-grade]", "data-value") in {"A", "B", "C", "D"}
    score = float(page.get_attribute("[data-test=customer-score]", "data-value") or "nan")
    assert 0 <= score <= 100
    reasons = page.locator("[data-test=reasons] li").all_inner_texts()
    assert len(reasons) >= 3 and all(r.strip() for r in reasons), reasons
    assert page.locator("[data-test=indicator-table] tbody tr").count() >= 1
    assert page.locator("[data-test=score-table] tbody tr").count() >= 10
    _shot(page, screens, "customer")

    # Settings (admin): change a weight, preview how many customers change grade; nothing is saved by a preview.
    page.click("[data-test=nav-settings]")
    page.wait_for_url("**/settings")
    weight = page.locator("input[name=weight]").first
    before = weight.input_value()
    weight.fill("5")
    page.click("#settings-preview")
    page.wait_for_selector("#settings-result:not([hidden]) [data-test=preview-changed-grade]")
    changed = int(page.get_attribute("[data-test=preview-changed-grade]", "data-value") or -1)
    assert 0 < changed <= CUSTOMERS
    assert page.locator("#settings-result table tbody tr").count() > 0  # the from → to matrix
    _shot(page, screens, "settings-preview")
    page.reload()
    assert page.locator("input[name=weight]").first.input_value() == before

    # Export a filtered list: the download is a CSV with the header and exactly the listed customers.
    page.goto(base + "/customers?where=" + quote("grade = 'A'"))
    listed = int(page.get_attribute("[data-test=customer-total]", "data-value") or 0)
    assert 0 < listed < CUSTOMERS
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename.endswith(".csv")
    exported = _records(Path(download.path()), "utf-8-sig")
    header, body = exported[0], exported[1:]
    assert "customer_id" in header and "grade" in header, header
    assert len(body) == listed
    assert {row[header.index("grade")] for row in body} == {"A"}

    # Switch the language: the labels change, the choice sticks across pages, and it switches back.
    page.goto(base + "/overview")
    assert page.inner_text("h1") == "总览" and page.inner_text("[data-test=nav-customers]") == "客户"
    page.click("#lang-switch")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.url.endswith("/overview")
    assert page.inner_text("h1") == "Overview" and page.inner_text("[data-test=nav-customers]") == "Customers"
    page.wait_for_selector("#chart-grades .main-svg")
    _shot(page, screens, "overview-en")
    page.click("[data-test=nav-customers]")
    page.wait_for_url("**/customers")
    assert page.get_attribute("html", "lang") == "en" and page.inner_text("h1") == "Customers"
    page.click("#lang-switch")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.inner_text("h1") == "客户"

    problems.check()
    # What the admin did is in the audit log; the server log names routes, never the customer looked up.
    from tierwise.web.accounts import Accounts

    actions = {e["action"] for e in Accounts(server.root).audit_entries() if e["username"] == USER}
    assert {"login", "upload", "run", "export"} <= actions, actions
    assert top not in server.log.read_text(encoding="utf-8", errors="replace")
