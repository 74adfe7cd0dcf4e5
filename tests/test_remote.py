"""The command line on a served workspace (docs/architecture.md, "The command line on a served workspace").

`tierwise serve` runs in a child process on a small generated workspace, as a user would start it; the real CLI
runs in other child processes. Every command must give what it gives on a copy of the workspace that no server
holds (made before the server started, so both hold the same runs): same exit code, same standard output and
error, once the two workspaces' (and output folders') paths are swapped. Without the server, any of these
commands would fail at once on DuckDB's lock, so each success is also a command the server ran.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliResult, run_cli, start_serve, stop_serve

from tierwise.cli.remote import SERVE_FILE

pytestmark = pytest.mark.slow

USER, PASSWORD = "ada", "remote test pass 1"
AS_OF_FIRST = "2024-07-01"


@dataclass
class Served:
    root: Path  # the tmp folder holding everything below
    ws: Path  # the served workspace
    copy: Path  # the same workspace, not served (same path length, so tables wrap alike)
    data: Path
    url: str
    token: str
    log: Path
    server_cwd: Path
    proc: subprocess.Popen[bytes]

    def swap(self, text: str, *pairs: tuple[Path | str, Path | str]) -> str:
        """The unserved copy's output as the served workspace would print it (a table may wrap a path; the two
        workspaces' folder names differ in one letter, which is swapped wherever it stands)."""
        for unserved, served in ((self.copy, self.ws), *pairs, (self.copy.name, self.ws.name)):
            text = text.replace(str(unserved), str(served))
        return text


def _start_server(ws: Path, log: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_serve(ws, log, cwd=cwd, ready=lambda: (ws / SERVE_FILE).exists())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """300 generated customers with two runs and an admin with an API token; the workspace copied, then served
    from a folder of its own (so a path read relative to the server's folder would land there)."""
    root = tmp_path_factory.mktemp("remote")
    data, ws, copy = root / "data", root / "ws_a", root / "ws_b"
    assert run_cli("generate", data, "--customers", "300", "--seed", "5").code == 0
    assert run_cli("init", ws).code == 0
    cfg = ws / "tierwise.toml"
    cfg.write_text(
        re.sub(r"(\[cluster\]\n(?:#[^\n]*\n)*)enabled = true", r"\1enabled = false", cfg.read_text("utf-8")), "utf-8"
    )
    for table in ("customers", "orders"):
        r = run_cli("ingest", table, data / f"{table}.csv", "-w", ws)
        assert r.code == 0, r.stderr
    for extra in (("--as-of", AS_OF_FIRST), ()):
        r = run_cli("run", "-w", ws, *extra)
        assert r.code == 0, r.stderr
    add = subprocess.run(
        [sys.executable, "-m", "tierwise.cli", "user", "add", USER, "--role", "admin", "--password-stdin", "-w", ws],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    shutil.copytree(ws, copy)
    server_cwd = root / "server_cwd"
    server_cwd.mkdir()
    log = root / "serve.log"
    proc, url = _start_server(ws, log, server_cwd)
    try:
        # `user …` runs beside the server (SQLite), so the token is made while it serves.
        token = run_cli("user", "token", USER, "-w", ws, "--json")
        assert token.code == 0, token.stderr
        yield Served(root, ws, copy, data, url, str(token.json()["token"]), log, server_cwd, proc)  # type: ignore[index]
    finally:
        socket_file = Path(json.loads((ws / SERVE_FILE).read_text(encoding="utf-8"))["socket"])
        stop_serve(proc)
    # A server stopped as a service is stopped (SIGTERM) leaves neither its server file nor its socket behind.
    assert not (ws / SERVE_FILE).exists() and not socket_file.exists()


def _api(served: Served, path: str) -> Any:
    request = urllib.request.Request(served.url + path, headers={"Authorization": f"Bearer {served.token}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _same(served: CliResult, unserved: CliResult, expected_stdout: str, expected_stderr: str) -> None:
    assert (served.code, served.stdout, served.stderr) == (unserved.code, expected_stdout, expected_stderr)


def test_the_server_listens_on_a_private_socket(served: Served) -> None:
    info = json.loads((served.ws / SERVE_FILE).read_text(encoding="utf-8"))
    assert info["pid"] == served.proc.pid and info["workspace"] == str(served.ws)
    assert stat.S_IMODE((served.ws / SERVE_FILE).stat().st_mode) == 0o600
    sock = Path(info["socket"])
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    folder = sock.parent.stat()
    assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.getuid()
    assert len(str(sock).encode()) < 108  # AF_UNIX's limit, though pytest's folders are long
    lines = served.log.read_text(encoding="utf-8").splitlines()
    assert f"tierwise commands on {served.ws} run here (socket {sock})" in lines


def test_reading_commands_print_what_they_print_without_a_server(served: Served) -> None:
    with (served.data / "customers.csv").open(encoding="utf-8-sig") as fh:
        customer = next(csv.DictReader(fh))["customer_id"]
    for args in (
        ("status", "--json"),
        ("status",),
        ("runs", "--json"),
        ("show",),
        ("show", "--json"),
        ("show", "customer", customer),
        ("compare",),
        ("compare", "--json"),
    ):
        a, b = run_cli(*args, "-w", served.ws), run_cli(*args, "-w", served.copy)
        assert a.code == 0, (args, a.stderr)
        _same(a, b, served.swap(b.stdout), served.swap(b.stderr))
    assert "command compare: exit 0" in served.log.read_text(encoding="utf-8")


def test_export_to_a_relative_path_lands_in_the_clients_folder(served: Served) -> None:
    here_a, here_b = served.root / "out_a", served.root / "out_b"
    here_a.mkdir()
    here_b.mkdir()
    a = run_cli("export", "top.csv", "--where", "grade = 'A'", "-w", "../ws_a", "--json", cwd=here_a)
    b = run_cli("export", here_b / "top.csv", "--where", "grade = 'A'", "-w", served.copy, "--json")
    assert a.code == 0, a.stderr
    _same(a, b, served.swap(b.stdout, (here_b, here_a)), b.stderr)
    assert (here_a / "top.csv").read_bytes() == (here_b / "top.csv").read_bytes()
    assert a.json()["rows"] > 0  # type: ignore[index]
    assert not (served.server_cwd / "top.csv").exists()
    # Tables on the screen, in the same columns.
    a, b = run_cli("export", "--list-columns", "-w", served.ws), run_cli("export", "--list-columns", "-w", served.copy)
    _same(a, b, b.stdout, b.stderr)


def _new_orders(served: Served, folder: Path) -> tuple[Path, int]:
    """Three orders of existing customers, dated the day of the last generated order."""
    with (served.data / "orders.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    last_day = max(r["order_date"][:10] for r in rows)
    customers = sorted({r["customer_id"] for r in rows})[:3]
    path = folder / "in" / "new_orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["order_id", "customer_id", "order_date", "amount"])
        for i, c in enumerate(customers):
            writer.writerow([f"REMOTE-{i}", c, last_day, f"{100 + i}.50"])
    return path, len(customers)


def test_ingest_and_run_through_the_server_and_the_dashboard_shows_the_run(served: Served) -> None:
    here_a, here_b = served.root / "in_a", served.root / "in_b"
    file_a, n = _new_orders(served, here_a)
    _new_orders(served, here_b)
    before = _api(served, "/api/v1/overview")["run"]["run_id"]  # the dashboard's cache holds the latest run now

    # Relative file and workspace, from a folder that is neither the server's nor the workspace's.
    a = run_cli("ingest", "orders", "in/new_orders.csv", "-w", "../ws_a", "--json", cwd=here_a)
    b = run_cli("ingest", "orders", "in/new_orders.csv", "-w", "../ws_b", "--json", cwd=here_b)
    assert (a.code, b.code) == (0, 0), a.stderr + b.stderr
    [got], [want] = a.json(), b.json()  # type: ignore[misc]
    assert got["file"] == str(file_a) and got["rows_new"] == n
    for report in (got, want):
        del report["file"], report["timings"]
    assert got == want

    a = run_cli("run", "-w", served.ws, "--json")
    b = run_cli("run", "-w", served.copy, "--json")
    assert (a.code, b.code) == (0, 0), a.stderr + b.stderr
    run_a, run_b = a.json(), b.json()
    assert isinstance(run_a, dict) and isinstance(run_b, dict)
    assert (run_a["as_of"], run_a["customers"]) == (run_b["as_of"], run_b["customers"])

    # The dashboard and the API show the run made through the command line at once.
    runs = _api(served, "/api/v1/runs")
    assert runs[0]["run_id"] == run_a["run_id"] and runs[0]["latest"] and len(runs) == 3
    overview = _api(served, "/api/v1/overview")["run"]
    assert overview["run_id"] == run_a["run_id"] != before and overview["customers"] == run_a["customers"]

    # The new runs compare alike: the same migration, once the run ids are swapped.
    for args in (("compare", "--json"), ("compare",)):
        a, b = run_cli(*args, "-w", served.ws), run_cli(*args, "-w", served.copy)
        assert a.code == 0, a.stderr
        _same(a, b, served.swap(b.stdout, (run_b["run_id"], run_a["run_id"])), b.stderr)


def _wait_for_log(served: Served, start: int, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in served.log.read_text(encoding="utf-8")[start:]:
        if time.monotonic() > deadline:
            pytest.fail(f"'{text}' not in the server's log within {timeout:.0f} s")
        time.sleep(0.05)


def test_ctrl_c_cancels_the_command_on_the_server(served: Served) -> None:
    runs = [r["run_id"] for r in _api(served, "/api/v1/runs")]
    start = len(served.log.read_text(encoding="utf-8"))
    client = subprocess.Popen(
        [sys.executable, "-m", "tierwise.cli", "run", "-w", str(served.ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    _wait_for_log(served, start, "command run: started")
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert (client.returncode, out, err) == (130, "", "aborted\n")  # as without a server
    _wait_for_log(served, start, "command run cancelled after")
    assert [r["run_id"] for r in _api(served, "/api/v1/runs")] == runs  # the run's transaction rolled back
    assert run_cli("status", "--json", "-w", served.ws).code == 0


def test_errors_come_back_as_one_line_with_the_exit_code(served: Served) -> None:
    empty = served.root / "empty.csv"
    empty.write_text("", encoding="utf-8")
    for args in (
        ("ingest", "orders", str(empty)),  # a bad file: UserError, exit 2
        ("show", "--run", "no-such-run"),
        ("show", "customer"),
    ):
        a, b = run_cli(*args, "-w", served.ws), run_cli(*args, "-w", served.copy)
        assert a.code == 2 and len(a.stderr.splitlines()) == 1 and "Traceback" not in a.stderr, a.stderr
        _same(a, b, served.swap(b.stdout), served.swap(b.stderr))
    # Usage errors are reported where they are typed, as always.
    a, b = run_cli("status", "--bogus", "-w", served.ws), run_cli("status", "--bogus", "-w", served.copy)
    assert a.code == 2 and "--bogus" in a.stderr
    _same(a, b, b.stdout, served.swap(b.stderr))


def test_a_killed_servers_file_is_ignored_and_removed(served: Served) -> None:
    """Last: it serves the copy for a moment and kills that server."""
    proc, _ = _start_server(served.copy, served.root / "killed.log", served.server_cwd)
    stale = served.copy / SERVE_FILE
    assert json.loads(stale.read_text(encoding="utf-8"))["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=15)
    text = stale.read_text(encoding="utf-8")  # nothing removed it: the process had no chance
    socket_file = Path(json.loads(text)["socket"])
    assert socket_file.exists()
    for pid in (proc.pid, os.getpid()):  # its process is gone; or its number was taken by a live one
        stale.write_text(text.replace(f'"pid": {proc.pid}', f'"pid": {pid}'), encoding="utf-8")
        a = run_cli("status", "--json", "-w", served.copy)
        assert a.code == 0, a.stderr
        assert a.json()["workspace"] == str(served.copy)  # type: ignore[index]
        assert not stale.exists()
    assert not socket_file.exists()  # removed by the client that found nobody listening on it
