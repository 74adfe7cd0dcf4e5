"""Taking turns on one workspace (tierwise.access): waiting opens that name the holder, read-only opens side by
side, a damaged file told apart from a busy one, the write lock that makes identical uploads load once, and a
second run that waits for the first. Real processes throughout: the holders are Python child processes that
open the workspace and keep it until told, the commands are the real CLI, the uploads go to a real server."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from tests.conftest import run_cli, start_serve, stop_serve

from tierwise import access
from tierwise.errors import UserError

# A process that opens the workspace (or takes the run lock) as the named command and holds it until a line
# arrives on its standard input.
HOLDER = r"""
import sys
from tierwise import access
root, mode, command = sys.argv[1:4]
access.request(command=command)
if mode == "run-lock":
    from tierwise.store.lock import run_lock
    with run_lock(root, 0):
        print("holding", flush=True)
        sys.stdin.readline()
else:
    from tierwise.workspace import Workspace
    ws = Workspace.open(root, read_only=mode == "ro", wait_seconds=0)
    print("holding", flush=True)
    sys.stdin.readline()
    ws.close()
"""


class Holder:
    def __init__(self, root: Path, mode: str, command: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root), mode, command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = read_line(self.proc.stdout, 60)
        assert line.strip() == "holding", (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.pid = self.proc.pid

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read() if self.proc.stderr else ""


@contextmanager
def holding(root: Path, mode: str = "rw", command: str = "tierwise ingest") -> Iterator[Holder]:
    holder = Holder(root, mode, command)
    try:
        yield holder
    finally:
        if holder.proc.poll() is None:
            holder.release()


def read_line(stream: Any, timeout: float) -> str:
    """One line from a child's pipe, or '' after `timeout` seconds (never blocks the test for ever)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def cli(*args: str | Path, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TIERWISE_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tierwise.cli", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def orders_csv(path: Path, first: int, rows: int) -> Path:
    """Orders with distinct order numbers first … first+rows-1, every row valid (nothing quarantined)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "order_id", "order_date", "amount"])
        for i in range(first, first + rows):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=i % 300)
            w.writerow([f"C{i % 97:04d}", f"O{i:07d}", day.isoformat(), f"{10 + i % 50}.25"])
    return path


@pytest.fixture
def loaded(ws_dir: Path, tmp_path: Path) -> Path:
    """A workspace with 300 orders, its tables made (no upgrade pending)."""
    r = run_cli("ingest", "orders", orders_csv(tmp_path / "o.csv", 0, 300), "-w", ws_dir)
    assert r.code == 0, r.stderr
    return ws_dir


SINCE = re.compile(r"since (\d\d:\d\d:\d\d)")


def _record(root: Path, pid: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / access.HOLDERS_DIR / f"{pid}.json").read_text(encoding="utf-8"))
    return data


# ------------------------------------------------------------------------------------------------ waiting opens


def test_a_command_waits_for_the_holder_names_it_and_succeeds_when_it_is_gone(loaded: Path) -> None:
    with holding(loaded, "rw", "tierwise ingest") as holder:
        record = _record(loaded, holder.pid)
        assert record["command"] == "tierwise ingest" and record["read_only"] is False
        status = cli("status", "-w", loaded, "--json", "--wait", "120")
        line = read_line(status.stderr, 30)
        # one line: who (command, process id, since when), while the command keeps waiting
        assert line.startswith(f"waiting for the workspace {loaded}: in use by `tierwise ingest` "), line
        assert f"(process {holder.pid}, since " in line and "--wait" in line, line
        since = dt.datetime.fromisoformat(record["since"]).strftime("%H:%M:%S")
        assert SINCE.search(line) and SINCE.search(line).group(1) == since, line  # type: ignore[union-attr]
        time.sleep(0.5)
        assert status.poll() is None  # still waiting
        holder.release()
        out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert json.loads(out)["tables"]["orders"] == 300
    assert "Traceback" not in err and "waiting for" not in err  # said once (the line read above)
    # the holder's record went with it; the command's own record too
    assert not list((loaded / access.HOLDERS_DIR).glob("*.json"))


def test_wait_runs_out_with_a_clear_message_and_no_restore_advice(loaded: Path) -> None:
    with holding(loaded, "rw", "tierwise ingest") as holder:
        started = time.monotonic()
        r = run_cli("status", "-w", loaded, "--wait", "1")
        took = time.monotonic() - started
    assert r.code == 2, r.stderr
    assert 1.0 <= took < 20, took
    assert "Traceback" not in r.stderr and "restore" not in r.stderr.lower()
    error = r.stderr.strip().splitlines()[-1]
    expected = f"error: {loaded}: the workspace database is in use by `tierwise ingest` (process {holder.pid}, "
    assert error.startswith(expected), error
    assert error.endswith("waited 1 s — try again later or pass --wait SECONDS"), error


def test_the_default_wait_comes_from_workspace_wait_seconds(loaded: Path) -> None:
    cfg = loaded / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    assert "wait_seconds = 300" in text  # written by init, under [workspace]
    cfg.write_text(text.replace("wait_seconds = 300", "wait_seconds = 0", 1), encoding="utf-8")
    with holding(loaded, "rw"):
        started = time.monotonic()
        r = run_cli("runs", "-w", loaded)
        assert time.monotonic() - started < 20
    assert r.code == 2 and "waited 0 s" in r.stderr, r.stderr


def test_ingest_takes_wait_and_help_shows_it(loaded: Path, tmp_path: Path) -> None:
    r = run_cli("ingest", "orders", orders_csv(tmp_path / "more.csv", 1000, 20), "-w", loaded, "--wait", "5", "--json")
    assert r.code == 0, r.stderr
    assert r.json()[0]["rows_loaded"] == 20  # type: ignore[index]
    for command in (["ingest"], ["status"], ["campaign", "plan"], ["serve"]):
        shown = run_cli(*command, "--help")
        assert shown.code == 0 and "--wait" in shown.stdout, (command, shown.stdout)
    assert "--wait" not in run_cli("generate", "--help").stdout  # opens no workspace
    assert run_cli("status", "-w", loaded, "--wait", "-1").code == 2  # a usage error, not a traceback


def test_a_damaged_file_says_so_and_a_busy_one_never_does(ws_dir: Path) -> None:
    (ws_dir / "tierwise.duckdb").write_bytes(os.urandom(64 * 1024))
    for args in (["status"], ["ingest", "orders", "missing.csv"], ["show"]):
        started = time.monotonic()
        r = run_cli(*args, "-w", ws_dir)
        assert time.monotonic() - started < 20  # no waiting: nobody holds it
        assert r.code == 2 and "Traceback" not in r.stderr, r.stderr
        assert "the workspace database is damaged" in r.stderr and "restore it from a backup" in r.stderr, r.stderr
        assert "in use" not in r.stderr
    assert access.damaged(ws_dir / "tierwise.duckdb") is not None


def test_read_only_commands_share_the_workspace_and_writers_wait_for_them(loaded: Path, tmp_path: Path) -> None:
    with holding(loaded, "ro", "tierwise show") as reader:
        assert _record(loaded, reader.pid)["read_only"] is True
        # readers beside a reader: at once, even with no waiting allowed
        procs = [cli(cmd, "-w", loaded, "--wait", "0", "--json") for cmd in ("status", "runs", "batches")]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        for code, _out, err in results:
            assert code == 0, err
        assert json.loads(results[0][1])["tables"]["orders"] == 300
        assert len(json.loads(results[2][1])) == 1
        # a writer must wait for the reader
        w = run_cli("ingest", "orders", orders_csv(tmp_path / "w.csv", 5000, 5), "-w", loaded, "--wait", "1")
        assert w.code == 2 and f"`tierwise show` (process {reader.pid}, " in w.stderr, w.stderr
        assert "read-only" in w.stderr


def test_a_workspace_needing_an_upgrade_is_upgraded_once_by_a_reader(loaded: Path) -> None:
    import duckdb

    con = duckdb.connect(str(loaded / "tierwise.duckdb"))
    con.execute("DROP TABLE source_marks")
    con.execute("ALTER TABLE batches DROP COLUMN rows_replaced")
    con.close()
    r = run_cli("status", "-w", loaded, "--json")
    assert r.code == 0, r.stderr
    con = duckdb.connect(str(loaded / "tierwise.duckdb"), read_only=True)
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        columns = {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name='batches'")
                   .fetchall()}  # fmt: skip
    finally:
        con.close()
    assert "source_marks" in tables and "rows_replaced" in columns


def test_stale_holder_records_are_ignored_and_removed(loaded: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=60)
    folder = loaded / access.HOLDERS_DIR
    folder.mkdir(exist_ok=True)
    stale = folder / f"{gone.pid}.json"
    stale.write_text(json.dumps({"pid": gone.pid, "command": "tierwise run", "since": "2024-01-01T00:00:00"}))
    assert access.holders(loaded) == [] and not stale.exists()
    r = run_cli("status", "-w", loaded, "--wait", "0")
    assert r.code == 0, r.stderr


def test_one_process_shares_one_database_and_one_record(loaded: Path) -> None:
    from tierwise.workspace import Workspace

    writer = Workspace.open(loaded)
    reader = Workspace.open(loaded, read_only=True)  # the process has it open for writing: that is used
    try:
        assert not access.is_read_only(reader.con)
        assert [h.pid for h in access.holders(loaded)] == [os.getpid()]
        assert int(reader.table("orders").count().execute()) == 300
    finally:
        writer.close()
    assert [h.pid for h in access.holders(loaded)] == [os.getpid()]  # the reader still has it
    reader.close()
    assert access.holders(loaded) == []
    alone = Workspace.open(loaded, read_only=True)
    try:
        assert access.is_read_only(alone.con) and access.holders(loaded)[0].read_only is True
    finally:
        alone.close()


def test_a_workspace_opened_in_a_with_block_is_closed_at_its_end_also_on_an_error(loaded: Path) -> None:
    from tierwise.workspace import Workspace

    with Workspace.open(loaded) as ws:
        assert isinstance(ws, Workspace) and ws.root == loaded.resolve()
        assert [h.pid for h in access.holders(loaded)] == [os.getpid()]
    assert access.holders(loaded) == []
    with pytest.raises(ValueError, match="inside the block"), Workspace.open(loaded, read_only=True) as reader:
        assert access.holders(loaded)[0].read_only is True
        raise ValueError("inside the block")
    assert access.holders(loaded) == []
    with pytest.raises(duckdb.ConnectionException):  # its connection was closed with it
        reader.table("orders").count().execute()


# ------------------------------------------------------------------------------------------------ write lock


def test_write_lock_serialises_threads_and_names_the_holder(ws_dir: Path) -> None:
    order: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def first() -> None:
        with access.write_lock(ws_dir, 0):
            order.append("first in")
            inside.set()
            leave.wait(30)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(30)
    with pytest.raises(UserError) as refused, access.write_lock(ws_dir, 0.3):
        pass
    assert f"(process {os.getpid()}, since " in str(refused.value) and "waited 0.3 s" in str(refused.value)
    timer = threading.Timer(0.5, leave.set)
    timer.start()
    with access.write_lock(ws_dir, 30):
        order.append("second in")
        with access.write_lock(ws_dir, 0):  # re-entrant in its own thread
            order.append("again")
    t.join(30)
    assert order == ["first in", "first out", "second in", "again"]


# ------------------------------------------------------------------------------------------------ uploads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(root: Path, log: Path) -> Iterator[str]:
    proc, url = start_serve(root, log, timeout=60)
    try:
        yield url
    finally:
        stop_serve(proc, timeout=20)


def _upload(url: str, cookies: httpx.Cookies, csrf: str, path: Path) -> dict[str, Any]:
    with httpx.Client(base_url=url, cookies=cookies, headers={"X-CSRF-Token": csrf}, timeout=120) as c:
        with path.open("rb") as fh:
            r = c.post("/api/v1/uploads/orders", files={"file": (path.name, fh, "text/csv")})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        deadline = time.monotonic() + 180
        while True:
            status: dict[str, Any] = c.get(f"/api/v1/jobs/{job}").json()
            if status["state"] in ("done", "failed"):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(0.1)


def test_identical_uploads_at_once_load_once_and_different_ones_both_load(ws_dir: Path, tmp_path: Path) -> None:
    add = subprocess.run(
        [sys.executable, "-m", "tierwise.cli", "user", "add", "ann", "--role", "analyst", "--password-stdin",
         "-w", ws_dir],
        input="upload test pass 1\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    same = orders_csv(tmp_path / "same.csv", 0, 20_000)
    one, two = orders_csv(tmp_path / "one.csv", 100_000, 7_000), orders_csv(tmp_path / "two.csv", 200_000, 5_000)
    log = tmp_path / "serve.log"
    with serving(ws_dir, log) as url:
        assert _record(ws_dir, _server_pid(ws_dir))["command"] == "tierwise serve"
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/api/v1/auth/login", json={"username": "ann", "password": "upload test pass 1"})
            assert r.status_code == 200, r.text
            cookies, csrf = c.cookies, r.json()["csrf_token"]
        with ThreadPoolExecutor(3) as pool:
            identical = list(pool.map(lambda p: _upload(url, cookies, csrf, p), [same, same, same]))
        with ThreadPoolExecutor(2) as pool:
            different = list(pool.map(lambda p: _upload(url, cookies, csrf, p), [one, two]))
    for s in identical + different:
        assert s["state"] == "done", s
    reports = [s["result"]["report"] for s in identical]
    assert sorted(r["status"] for r in reports) == ["already_loaded", "already_loaded", "loaded"]
    assert len({r["batch_id"] for r in reports}) == 1
    assert [r["rows_loaded"] for r in reports if r["status"] == "loaded"] == [20_000]
    loaded_two = [s["result"]["report"] for s in different]
    assert [r["status"] for r in loaded_two] == ["loaded", "loaded"]
    assert sorted(r["rows_loaded"] for r in loaded_two) == [5_000, 7_000]
    assert loaded_two[0]["batch_id"] != loaded_two[1]["batch_id"]
    # what is stored, counted after the server has gone, against the files' own rows
    status = run_cli("status", "-w", ws_dir, "--json", "--wait", "30")
    assert status.code == 0, status.stderr
    data: dict[str, Any] = status.json()  # type: ignore[assignment]
    files_rows = sum(sum(1 for _ in p.open(encoding="utf-8")) - 1 for p in (same, one, two))
    assert data["tables"]["orders"] == files_rows == 32_000
    order_batches = [b for b in data["batches"] if b["table_name"] == "orders"]
    assert len(order_batches) == 3 and sum(b["rows_loaded"] for b in order_batches) == 32_000


def _server_pid(root: Path) -> int:
    found = [h for h in access.holders(root) if h.pid != os.getpid()]
    assert len(found) == 1, found
    return found[0].pid


# ------------------------------------------------------------------------------------------------ runs


def _no_clusters(root: Path) -> None:
    cfg = root / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(re.sub(r"(\[cluster\]\n(?:#[^\n]*\n)*)enabled = true", r"\1enabled = false", text), encoding="utf-8")


def test_a_second_run_waits_for_the_first_says_so_and_then_runs(loaded: Path) -> None:
    _no_clusters(loaded)
    with holding(loaded, "run-lock", "tierwise run") as first:
        second = cli("run", "-w", loaded, "--json")
        line = read_line(second.stderr, 30)
        assert line.startswith(f"waiting for another run of {loaded} to finish: in use by `tierwise run` "), line
        assert f"(process {first.pid}, since " in line, line
        time.sleep(0.5)
        assert second.poll() is None
        first.release()
        out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert json.loads(out)["customers"] == 97
    # two real runs started together: both finish, one after the other
    both = [cli("run", "-w", loaded, "--json") for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in both]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    runs = run_cli("runs", "-w", loaded, "--json")
    assert runs.code == 0 and len(runs.json()) == 3  # type: ignore[arg-type]


def test_a_run_beyond_its_wait_fails_clearly(loaded: Path) -> None:
    with holding(loaded, "run-lock", "tierwise run") as first:
        r = run_cli("run", "-w", loaded, "--wait", "1")
    assert r.code == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"another tierwise run is in progress in {loaded}: `tierwise run` (process {first.pid}, " in r.stderr
    assert "waited 1 s" in r.stderr and "--wait SECONDS" in r.stderr
