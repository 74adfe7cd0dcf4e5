"""Background jobs: cancelling them (through the API, and when the server is stopped) and the bound on temporary
disk.

The server tests run `tierwise serve` in a subprocess on a loopback port, on a copy of a generated workspace large
enough (and with one DuckDB thread) that a run, a settings preview and an upload each take a few seconds; the
run stored while building it is "the previous run" that must stay the latest after anything is cancelled. The
job manager tests run real DuckDB queries that would take hours unless interrupted.
"""

from __future__ import annotations

import csv
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import run_cli, start_serve, stop_serve

from tierwise.config import EngineSettings
from tierwise.errors import UserError
from tierwise.web.accounts import Accounts

CUSTOMERS = 20_000
PASSWORD = "jobs test pass 1"
USERS = {"ada": "admin", "ann": "analyst", "bob": "analyst", "vic": "viewer"}
ENDLESS = "SELECT count(*) FROM range(1000000000000) a"  # hours, unless interrupted
CANCELLED_WITHIN = 5.0  # seconds from the cancel request to state "cancelled"


# --- the workspace and the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with generated customers, orders and payments, one run, and the four users (never served
    itself: each server test works on a copy)."""
    root = tmp_path_factory.mktemp("jobs")
    data, ws = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", str(CUSTOMERS), "--seed", "11").code == 0
    assert run_cli("init", ws).code == 0
    toml = ws / "tierwise.toml"
    # One DuckDB thread: the jobs take long enough to be cancelled half-way, on any machine.
    toml.write_text(toml.read_text(encoding="utf-8").replace("threads = 0", "threads = 1"), encoding="utf-8")
    for table in ("customers", "orders", "payments"):
        r = run_cli("ingest", table, data / f"{table}.csv", "-w", ws)
        assert r.code == 0, r.stderr
    r = run_cli("run", "-w", ws, "--as-of", "2024-12-31")
    assert r.code == 0, r.stderr
    accounts = Accounts(ws)
    for name, role in USERS.items():
        accounts.add_user(name, role, PASSWORD)
    # A file the upload test loads: the orders with every amount changed, so nothing of it is "already loaded".
    with (
        (data / "orders.csv").open(encoding="utf-8", newline="") as src,
        (root / "orders2.csv").open("w", encoding="utf-8", newline="") as out,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        amount = next(f for f in reader.fieldnames or [] if "amount" in f)
        for row in reader:
            row[amount] = str(round(float(row[amount] or 0) + 1.25, 2))
            writer.writerow(row)
    return ws


def copy_of(built: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(built, ws)
    return ws


@dataclass
class Served:
    url: str
    ws: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def login(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=60)
        r = c.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(ws: Path, log: Path) -> Served:
    proc, url = start_serve(ws, log)
    return Served(url, ws, log, proc)


def stop_server(served: Served) -> None:
    stop_serve(served.proc, timeout=30)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def finished(c: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (s := job(c, job_id))["state"] in ("done", "failed", "cancelled") and s,
            timeout,
            f"job {job_id} finished",
        )
    )


def working(c: httpx.Client, job_id: str, stages: set[str]) -> dict[str, Any]:
    """The job's status once it is running in one of `stages` (it must not have finished: the workspace would
    be too small for the test)."""

    def check() -> dict[str, Any] | None:
        s = job(c, job_id)
        assert s["state"] in ("queued", "running"), f"the job ended before it could be cancelled: {s}"
        return s if s["state"] == "running" and s["stage"] in stages else None

    return dict(wait_for(check, 300, f"job {job_id} running in {stages}"))


def cancel_and_wait(c: httpx.Client, job_id: str) -> tuple[dict[str, Any], float]:
    """Cancel the job; its final status and the seconds the cancel took."""
    asked = time.monotonic()
    r = c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["cancel_requested"] is True and r.json()["state"] in ("running", "cancelled")
    status = finished(c, job_id, timeout=60)
    return status, time.monotonic() - asked


def stored_tables(ws: Path) -> dict[str, Any]:
    """Runs, run tables and batches of a workspace no server holds (read with DuckDB directly)."""
    import duckdb

    con = duckdb.connect(str(ws / "tierwise.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()]
        runs = con.execute("SELECT run_id, snapshot_table FROM runs ORDER BY as_of, created_at").fetchall()
        batches = sorted(r[0] for r in con.execute("SELECT batch_id FROM batches").fetchall())
        orders = con.execute("SELECT count(*) FROM orders").fetchone()
    finally:
        con.close()
    return {
        "runs": [r[0] for r in runs],
        "snapshots": sorted(t for t in tables if t.startswith("snapshot_")),
        "paretos": sorted(t for t in tables if t.startswith("pareto_")),
        "run_snapshots": sorted(r[1] for r in runs),
        "batches": batches,
        "orders": orders[0] if orders else None,
        "scratch": [t for t in tables if t.startswith("_tierwise")],
    }


# --- cancelling through the API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    ws = copy_of(built, root)
    server = start_server(ws, root / "serve.log")
    try:
        yield server
    finally:
        stop_server(server)


def test_who_may_cancel_a_job(served: Served) -> None:
    ann, bob, ada, vic = (served.login(n) for n in ("ann", "bob", "ada", "vic"))
    anon = httpx.Client(base_url=served.url, timeout=60)
    started = ann.post("/api/v1/runs", json={})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    url = f"/api/v1/jobs/{job_id}/cancel"
    assert anon.post(url).status_code == 401
    refused = vic.post(url)
    assert refused.status_code == 403 and "Traceback" not in refused.text
    other = bob.post(url)  # another analyst's job
    assert other.status_code == 403 and "who started this job" in other.json()["error"]
    assert job(ann, job_id)["cancel_requested"] is False
    status, _ = cancel_and_wait(ada, job_id)  # an admin may cancel anyone's
    assert status["state"] == "cancelled" and status["error"].startswith("cancelled")
    again = ann.post(url)  # the owner; already cancelled: the same answer
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    missing = ann.post("/api/v1/jobs/nope/cancel")
    assert missing.status_code == 404 and "no job 'nope'" in missing.json()["error"]
    entries = ada.get("/api/v1/audit", params={"limit": 50}).json()
    cancels = [e for e in entries if e["action"] == "job_cancel"]
    assert [e["username"] for e in cancels] == ["ada"] and f"job={job_id} kind=run" in cancels[0]["detail"]
    for c in (ann, bob, ada, vic, anon):
        c.close()


def test_cancelling_a_run_stores_nothing(served: Served) -> None:
    ann = served.login("ann")
    before = [r["run_id"] for r in ann.get("/api/v1/runs").json()]
    job_id = ann.post("/api/v1/runs", json={}).json()["job_id"]
    working(ann, job_id, {"measures", "classes", "clusters"})
    status, seconds = cancel_and_wait(ann, job_id)
    assert status["state"] == "cancelled", status
    assert seconds < CANCELLED_WITHIN, f"cancelled only after {seconds:.1f} s"
    assert status["result"] is None and "nothing of the unfinished work was stored" in status["error"]
    assert [r["run_id"] for r in ann.get("/api/v1/runs").json()] == before
    ann.close()


def test_cancelling_a_settings_preview_and_previewing_again(served: Served) -> None:
    ada = served.login("ada")
    weights = ada.get("/api/v1/settings").json()["grade"]["weights"]
    name = next(iter(weights))
    change = {"grade": {"weights": {name: weights[name] + 0.5}}}
    job_id = ada.post("/api/v1/settings/preview", json=change).json()["job_id"]
    working(ada, job_id, {"rebuilding"})
    status, seconds = cancel_and_wait(ada, job_id)
    assert status["state"] == "cancelled" and seconds < CANCELLED_WITHIN, (status, seconds)
    # The cancelled job's connection is not reused: the next preview runs to the end.
    again = finished(ada, ada.post("/api/v1/settings/preview", json=change).json()["job_id"])
    assert again["state"] == "done", again
    assert sum(c["customers"] for c in again["result"]["grade_matrix"]) == again["result"]["customers"]
    ada.close()


def test_cancelling_an_upload_loads_nothing(served: Served, built: Path) -> None:
    ann = served.login("ann")
    before = ann.get("/api/v1/uploads").json()
    path = built.parent / "orders2.csv"
    with path.open("rb") as fh:
        r = ann.post("/api/v1/uploads/orders", files={"file": ("orders2.csv", fh, "text/csv")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    working(ann, job_id, {"reading", "loading"})
    status, seconds = cancel_and_wait(ann, job_id)
    assert status["state"] == "cancelled" and seconds < CANCELLED_WITHIN, (status, seconds)
    assert ann.get("/api/v1/uploads").json() == before
    ann.close()


@pytest.mark.slow
def test_the_cancel_button_beside_a_running_job_in_chromium(served: Served) -> None:
    """The data page's Run button in headless Chromium (as tests/test_web_browser.py runs it): while the run
    goes, a Cancel button sits beside its progress; pressed, the job ends cancelled and the button goes."""
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

    if CHROMIUM is None:
        pytest.skip("no headless chromium here (/usr/bin/chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed").sync_playwright
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(served.url + "/login?next=/data")
            page.fill("#username", "ann")
            page.fill("#password", PASSWORD)
            page.click("form.login button[type=submit]")
            page.wait_for_url("**/data")
            page.click("#run-button")
            button = page.locator("#run-job [data-test=job-cancel]")
            page.wait_for_selector("#run-job[data-state=running] [data-test=job-cancel]:not([hidden])")
            assert button.inner_text() == "取消"  # the workspace's language, Chinese by default
            button.click()
            page.wait_for_selector("#run-job[data-state=cancelled]")
            assert button.is_hidden()
            assert page.inner_text("#run-job .job-text").startswith("已取消")
            assert page.is_enabled("#run-button")  # ready to start another
        finally:
            browser.close()
    assert not problems, problems


def test_after_cancelling_the_next_run_works_and_nothing_half_made_stays(served: Served, built: Path) -> None:
    """Runs last in this module: stops the server, then reads its database."""
    ann = served.login("ann")
    before = [r["run_id"] for r in ann.get("/api/v1/runs").json()]
    done = finished(ann, ann.post("/api/v1/runs", json={"as_of": "2024-12-31"}).json()["job_id"])
    assert done["state"] == "done" and done["progress"] == 1.0, done
    runs = [r["run_id"] for r in ann.get("/api/v1/runs").json()]
    assert len(runs) == len(before) + 1 and done["result"]["run_id"] in runs
    ann.close()
    stop_server(served)
    original, now = stored_tables(built), stored_tables(served.ws)
    # Exactly one run more than the workspace was built with (the cancelled ones left nothing), each with its
    # snapshot and Pareto table and no other; the batches and orders as they were; no scratch table.
    assert len(now["runs"]) == len(original["runs"]) + 1 and now["runs"][:-1] == original["runs"]
    assert now["snapshots"] == now["run_snapshots"] and len(now["paretos"]) == len(now["runs"])
    assert now["batches"] == original["batches"] and now["orders"] == original["orders"]
    assert now["scratch"] == []


# --- stopping the server --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("work", "sig"), [("run", signal.SIGTERM), ("preview", signal.SIGINT)], ids=["run-SIGTERM", "preview-SIGINT"]
)
def test_a_signal_during_a_job_stops_the_server_within_10_s(
    built: Path, tmp_path: Path, work: str, sig: signal.Signals
) -> None:
    ws = copy_of(built, tmp_path)
    original = stored_tables(ws)
    server = start_server(ws, tmp_path / "serve.log")
    try:
        if work == "run":
            c = server.login("ann")
            job_id = c.post("/api/v1/runs", json={}).json()["job_id"]
            working(c, job_id, {"measures", "classes", "clusters"})
        else:
            c = server.login("ada")
            weights = c.get("/api/v1/settings").json()["grade"]["weights"]
            name = next(iter(weights))
            change = {"grade": {"weights": {name: weights[name] + 0.5}}}
            job_id = c.post("/api/v1/settings/preview", json=change).json()["job_id"]
            working(c, job_id, {"rebuilding"})
        c.close()
        signalled = time.monotonic()
        server.proc.send_signal(sig)
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server was still running 10 s after {sig.name}:\n{server.output()}")
        took = time.monotonic() - signalled
    finally:
        stop_server(server)
    assert took < 10
    assert "Traceback" not in server.output(), server.output()
    # The previous run intact and still the latest; nothing half-made.
    now = stored_tables(ws)
    assert now["runs"] == original["runs"] and now["snapshots"] == original["snapshots"]
    assert now["batches"] == original["batches"] and now["scratch"] == []
    runs = run_cli("runs", "-w", ws, "--json")
    assert runs.code == 0, runs.stderr
    assert [r["run_id"] for r in runs.json()] == original["runs"]  # type: ignore[union-attr]
    cancelled = [e for e in Accounts(ws).audit_entries() if e["action"] == "job_cancel"]
    assert len(cancelled) == 1 and f"job={job_id}" in str(cancelled[0]["detail"])
    assert "reason=shutdown" in str(cancelled[0]["detail"])


# --- the job manager with real DuckDB queries -------------------------------------------------------------------


def _connect(tmp_path: Path, **settings: Any) -> Any:
    from tierwise import engine

    return engine.connect(EngineSettings(**settings), tmp_path)


def test_a_running_query_is_interrupted_and_a_queued_job_never_starts(tmp_path: Path) -> None:
    from tierwise.web.services.jobs import JobManager

    started: list[str] = []

    def endless(name: str, progress: Any = None) -> None:
        started.append(name)
        con = _connect(tmp_path)  # opened in the job: registered with it
        try:
            con.raw_sql(ENDLESS).fetchall()
        finally:
            con.disconnect()

    jobs = JobManager(workers=1)
    try:
        first, second = jobs.start("run", endless, "first"), jobs.start("run", endless, "second")
        wait_for(lambda: jobs.status(first)["state"] == "running" and started, 30, "the first job running")
        queued = jobs.cancel(second)
        assert queued["state"] == "cancelled" and queued["cancel_requested"]
        asked = time.monotonic()
        assert jobs.cancel(first)["cancel_requested"]
        status = jobs.wait(first, timeout=10)
        assert status["state"] == "cancelled" and time.monotonic() - asked < 2, status
        assert status["error"] == "cancelled; nothing of the unfinished work was stored"
        assert jobs.status(second)["state"] == "cancelled" and started == ["first"]
        with pytest.raises(UserError, match="already finished"):
            jobs.cancel(jobs.wait(jobs.start("test", lambda: 1), timeout=10)["job_id"])
    finally:
        jobs.shutdown()


def test_a_job_between_two_queries_is_interrupted_again(tmp_path: Path) -> None:
    """An interrupt reaches only the query running at that moment: a job that was between two queries, or
    caught the error and carried on, is interrupted again until it ends."""
    import duckdb

    from tierwise.web.services.jobs import JobManager

    seen: list[str] = []

    def carries_on() -> None:
        con = _connect(tmp_path)
        try:
            try:
                con.raw_sql(ENDLESS).fetchall()
            except duckdb.InterruptException:
                seen.append("interrupted")
            time.sleep(0.3)  # Python work between two queries
            con.raw_sql(ENDLESS).fetchall()
            seen.append("finished")
        finally:
            con.disconnect()

    jobs = JobManager()
    try:
        job_id = jobs.start("run", carries_on)
        wait_for(lambda: jobs.status(job_id)["state"] == "running", 30, "the job running")
        asked = time.monotonic()
        jobs.cancel(job_id)
        status = jobs.wait(job_id, timeout=10)
        assert status["state"] == "cancelled" and time.monotonic() - asked < 3, status
    finally:
        jobs.shutdown()
    assert seen == ["interrupted"]


def test_shutdown_cancels_running_jobs_without_waiting_for_them_to_finish(tmp_path: Path) -> None:
    from tierwise.web.services.jobs import JobManager

    def endless() -> None:
        con = _connect(tmp_path)
        try:
            con.raw_sql(ENDLESS).fetchall()
        finally:
            con.disconnect()

    jobs = JobManager()
    job_id = jobs.start("settings_preview", endless, owner="ada")
    wait_for(lambda: jobs.status(job_id)["state"] == "running", 30, "the job running")
    asked = time.monotonic()
    stopped = jobs.shutdown(timeout=5)
    assert time.monotonic() - asked < 2
    assert [(j["job_id"], j["owner"]) for j in stopped] == [(job_id, "ada")]
    assert jobs.status(job_id)["state"] == "cancelled"
    with pytest.raises(UserError, match="shutting down"):
        jobs.start("run", endless)
    assert all(not t.is_alive() or t.daemon for t in jobs._threads)


# --- the bound on temporary disk -------------------------------------------------------------------------------

SPILL = "CREATE TEMP TABLE spilled AS SELECT i, md5(i::VARCHAR) AS s FROM range(6000000) r(i)"


def test_a_spill_beyond_max_temp_gb_stops_with_a_clear_message(tmp_path: Path) -> None:
    """200 MB of temporary table under a 50 MB memory limit must spill; 0.001 GB of temporary disk is not
    enough. The same query with room on disk succeeds, so it is the bound that stops it."""
    from tierwise.errors import out_of_memory, temp_disk_full
    from tierwise.web.services.jobs import JobManager

    tight = _connect(tmp_path, database="tight.duckdb", memory_limit="50MB", threads=1, max_temp_gb=0.001)
    try:
        (limit,) = tight.raw_sql("SELECT current_setting('max_temp_directory_size')").fetchone()
        assert limit == "1.0 MiB"  # 0.001 GiB, as DuckDB writes it
        with pytest.raises(Exception) as raised:
            tight.raw_sql(SPILL)
        message = temp_disk_full(raised.value)
        assert message is not None and out_of_memory(raised.value) == message
        assert message.startswith("the work needed more than 0.001 GB of temporary disk ([engine] max_temp_gb")
    finally:
        tight.disconnect()
    roomy = _connect(tmp_path, database="roomy.duckdb", memory_limit="50MB", threads=1, max_temp_gb=1)
    try:
        roomy.raw_sql(SPILL)
        (spilled,) = roomy.raw_sql("SELECT sum(size) FROM duckdb_temporary_files()").fetchone()
        assert spilled > 1024**2  # it did spill, beyond the tight bound
    finally:
        roomy.disconnect()

    def job_that_spills() -> None:
        con = _connect(tmp_path, database="job.duckdb", memory_limit="50MB", threads=1, max_temp_gb=0.001)
        try:
            con.raw_sql(SPILL)
        finally:
            con.disconnect()

    jobs = JobManager()
    try:
        status = jobs.wait(jobs.start("run", job_that_spills), timeout=120)
    finally:
        jobs.shutdown()
    assert status["state"] == "failed" and status["error"].startswith("the work needed more than 0.001 GB")
    assert "Traceback" not in status["error"]


def test_the_command_line_says_so_too(built: Path, tmp_path: Path) -> None:
    ws = copy_of(built, tmp_path)
    toml = ws / "tierwise.toml"
    text = re.sub(r'(?m)^memory_limit = ".*"$', 'memory_limit = "40MB"', toml.read_text(encoding="utf-8"))
    toml.write_text(re.sub(r"(?m)^max_temp_gb = .*$", "max_temp_gb = 0.001", text), encoding="utf-8")
    r = run_cli("run", "-w", ws)
    assert r.code == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: the work needed more than 0.001 GB of temporary disk"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert [x["run_id"] for x in run_cli("runs", "-w", ws, "--json").json()] == stored_tables(built)["runs"]  # type: ignore[union-attr]


def test_a_request_that_runs_out_of_temporary_disk_answers_with_the_message(
    ws_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only jobs: a page or API request whose query spills beyond the bound answers 503 with the same
    message (here the overview's service runs the spilling query on a tightly bounded database)."""
    from fastapi.testclient import TestClient

    from tierwise.web.app import create_app
    from tierwise.web.services import overview

    def spills(*args: Any, **kwargs: Any) -> Any:
        con = _connect(tmp_path, database="tight.duckdb", memory_limit="50MB", threads=1, max_temp_gb=0.001)
        try:
            return con.raw_sql(SPILL)
        finally:
            con.disconnect()

    Accounts(ws_dir).add_user("ada", "admin", PASSWORD)
    monkeypatch.setattr(overview, "overview", spills)
    with TestClient(create_app(ws_dir)) as c:
        assert c.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 200
        r = c.get("/api/v1/overview")
    assert r.status_code == 503 and set(r.json()) == {"error"}, r.text
    assert r.json()["error"].startswith("the work needed more than 0.001 GB of temporary disk")
