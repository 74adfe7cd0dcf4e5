"""`tierwise refresh` end to end with real parts: a generated workspace fed by a folder source and a PostgreSQL source
(the tests' own server), alerts delivered to a local SMTP server (aiosmtpd) and a local HTTP server receiving
webhooks. The expected customer lists are computed here, with pandas, from the two runs' exports.

One scenario, step by step, as a company's week goes: the first load; new files and new database rows; a refresh
with nothing new; a refused file; a refresh killed during its run and started again, checked against a copy of
the workspace refreshed without interruption.
"""

from __future__ import annotations

import csv
import email
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from tests.conftest import free_port, run_cli
from tests.pg_server import execute

SECRET = "hook-key-7"
CUSTOMER_ID = re.compile(r"C\d{7}")
NEW_A, SLIPPING = "新晋A级", "重点客户下滑"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.port = free_port()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


class _Hooks(ThreadingHTTPServer):
    received: list[tuple[dict[str, str], bytes]]


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def mailbox() -> Iterator[_Mailbox]:
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def hooks() -> Iterator[_Hooks]:
    server = _Hooks(("127.0.0.1", 0), _HookHandler)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def _text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return str(part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8"))  # type: ignore[union-attr]
    raise AssertionError("no text part")


def _ids(message: Message) -> list[str]:
    """The customer ids a mail names, in order (each once: a row links its id)."""
    return list(dict.fromkeys(CUSTOMER_ID.findall(_text(message))))


def _subject(message: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # copied in under another name, as a careful export job does
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    tmp.rename(path)


def _insert(url: str, header: list[str], rows: list[dict[str, str]]) -> None:
    cols = ", ".join(f'"{c}"' for c in header)
    marks = ", ".join(["%s"] * len(header))
    execute(url, (f"INSERT INTO shop_orders ({cols}) VALUES ({marks})", [tuple(r[c] for c in header) for r in rows]))


def _refresh(ws: Path, *more: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("refresh", "-w", ws, "--json", *more)
    assert "Traceback" not in result.stderr and result.stdout, result.stderr
    return result.code, json.loads(result.stdout)


def _export(ws: Path, run_id: str, out: Path) -> pd.DataFrame:
    done = run_cli("export", str(out), "--run", run_id, "-w", ws)
    assert done.code == 0, done.stderr
    return pd.read_parquet(out)


def _expected(before: pd.DataFrame, now: pd.DataFrame) -> dict[str, list[str]]:
    """The two alert rules, computed independently of the rule language: customer ids by priority."""
    prev = before.set_index("customer_id")
    prev_grade = now.customer_id.map(prev.grade)
    prev_stage = now.customer_id.map(prev.lifecycle_stage)
    new_a = (now.grade == "A") & (prev_grade.isna() | (prev_grade != "A"))
    risky = ("at_risk", "churned")
    slipping = (
        prev_grade.where(prev_grade.notna(), now.grade).isin(["A", "B"])
        & now.lifecycle_stage.isin(risky)
        & (prev_stage.isna() | ~prev_stage.isin(risky))
    )
    ordered = now.sort_values(["priority_rank", "customer_id"])
    return {
        rule: ordered.loc[mask.reindex(ordered.index), "customer_id"].tolist()
        for rule, mask in (("new_a", new_a), ("slipping", slipping))
    }


def _config(ws: Path, mailbox_port: int, hook_url: str, owners: dict[str, str]) -> None:
    cfg = ws / "tierwise.toml"
    text = cfg.read_text(encoding="utf-8")
    text = text[: text.index("[[alerts]]")]  # our own alerts replace the default set
    owner_table = ", ".join(f'"{o}" = "{a}"' for o, a in owners.items())
    text = text.replace("[delivery]\n", f"[delivery]\nowners = {{{owner_table}}}\n", 1)
    for key, value in {
        "smtp_host": '"127.0.0.1"',
        "smtp_port": str(mailbox_port),
        "smtp_security": '"none"',
        "sender": '"tierwise@example.com"',
        "backoff_seconds": "0.01",
        "digest": "true",
        "dashboard_url": '"https://tierwise.example.com"',
    }.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
    text += f"""
[[sources]]
name = "crm"
table = "customers"
folder = "inbox/crm"
min_age_seconds = 0

[[sources]]
name = "erp"
table = "orders"
folder = "inbox/erp"
min_age_seconds = 0

[[sources]]
name = "shop"
table = "orders"
url_env = "SHOP_DB_URL"
from_table = "shop_orders"
since_column = "seq"

[[alerts]]
name = "new_a"
label_zh = "{NEW_A}"
where = "grade = 'A' and (previous_grade is null or previous_grade <> 'A')"
webhook = "{hook_url}"
email = ["lead@example.com"]
per_owner = true

[[alerts]]
name = "slipping"
label_zh = "{SLIPPING}"
where = \"\"\"coalesce(previous_grade, grade) in ('A', 'B') and lifecycle_stage in ('at_risk', 'churned')
  and (previous_lifecycle_stage is null or previous_lifecycle_stage not in ('at_risk', 'churned'))\"\"\"
webhook = "{hook_url}"

[[alerts]]
name = "source_failed"
kind = "source_failed"
email = ["ops@example.com"]
"""
    cfg.write_text(text, encoding="utf-8")


def _kill_during_run(ws: Path) -> None:
    """Start a refresh and kill it (SIGKILL) once its sources are read and its run has begun."""
    env = {**os.environ}
    env.pop("TIERWISE_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise.cli", "refresh", "-w", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("source shop"):
            break
    lock = ws / ".tierwise-run.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)


@pytest.mark.slow
def test_a_week_of_refreshes(
    server_url: str, mailbox: _Mailbox, hooks: _Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    assert run_cli("generate", data, "--customers", "400", "--seed", "11").code == 0
    ws = tmp_path / "ws"
    assert run_cli("init", ws).code == 0
    with (data / "customers.csv").open(encoding="utf-8") as fh:
        customers = list(csv.DictReader(fh))
    owner_of = {c["customer_id"]: c["owner"] for c in customers}
    owners = {o: f"owner{i}@example.com" for i, o in enumerate(sorted(set(owner_of.values())))}
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
    _config(ws, mailbox.port, hook_url, owners)
    monkeypatch.setenv("SHOP_DB_URL", server_url)
    monkeypatch.setenv("TIERWISE_WEBHOOK_SECRET", SECRET)

    with (data / "orders.csv").open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        orders = list(reader)
    days = sorted(o["order_date"][:10] for o in orders)
    cut1, cut2 = days[int(len(days) * 0.75)], days[int(len(days) * 0.88)]
    period = {1: lambda d: d <= cut1, 2: lambda d: cut1 < d <= cut2, 3: lambda d: d > cut2}

    def part(n: int, online: bool) -> list[dict[str, str]]:
        return [o for o in orders if period[n](o["order_date"][:10]) and (o["channel"] == "线上") == online]

    cols = ", ".join(f'"{c}" text' for c in header)
    execute(server_url, "DROP TABLE IF EXISTS shop_orders", f"CREATE TABLE shop_orders (seq serial, {cols})")

    # 1. The first load: customers and the first orders from both sources; the first run, nothing to compare yet.
    _write(ws / "inbox/crm/customers.csv", list(customers[0]), customers)
    _write(ws / "inbox/erp/orders_1.csv", header, part(1, False))
    _insert(server_url, header, part(1, True))
    code, first = _refresh(ws)
    assert code == 0 and first["status"] == "ok" and first["run_made"], first
    by_name = {s["name"]: s for s in first["sources"]}
    assert by_name["crm"]["rows_loaded"] == len(customers)
    assert by_name["erp"]["rows_loaded"] == len(part(1, False)) and by_name["erp"]["files_processed"] == [
        "orders_1.csv"
    ]
    assert by_name["shop"]["rows_loaded"] == len(part(1, True))
    assert (ws / "inbox/erp/processed/orders_1.csv").is_file() and not (ws / "inbox/erp/orders_1.csv").exists()
    assert all(a["matched"] == 0 for a in first["alerts"]) and not hooks.received
    r1 = first["run_id"]
    digests = [(to, m) for to, m in mailbox.messages if "tierwise" in _subject(m) and "周" in _subject(m)]
    assert len(digests) == len(owners) == len(first["digests"])
    for to, message in digests:
        owner = next(o for o, a in owners.items() if [a] == to)
        assert {owner_of[c] for c in _ids(message)} == {owner}  # only the owner's book
    mailbox.messages.clear()

    # 2. New files and new database rows: exactly they are loaded; a run; the alerts as computed from the exports.
    _write(ws / "inbox/erp/orders_2.csv", header, part(2, False))
    _insert(server_url, header, part(2, True))
    code, second = _refresh(ws)
    assert code == 0 and second["status"] == "ok" and second["run_made"], second
    by_name = {s["name"]: s for s in second["sources"]}
    assert by_name["crm"]["rows_read"] == 0 and by_name["crm"]["status"] == "nothing_new"
    assert by_name["erp"]["rows_loaded"] == len(part(2, False))
    assert by_name["shop"]["rows_loaded"] == len(part(2, True))
    r2 = second["run_id"]
    assert second["previous_run_id"] == r1 and r2 != r1
    expected = _expected(_export(ws, r1, tmp_path / "r1.parquet"), _export(ws, r2, tmp_path / "r2.parquet"))
    assert expected["new_a"], "the data must give the alert something to find"
    alerts = {a["rule"]: a for a in second["alerts"]}
    assert alerts["new_a"]["customers"] == expected["new_a"]
    assert alerts["slipping"]["customers"] == expected["slipping"]

    posts = {json.loads(body)["rule"]: (headers, body) for headers, body in hooks.received}
    assert len(hooks.received) == len(posts) == sum(bool(expected[r]) for r in ("new_a", "slipping"))
    for rule, (headers, body) in posts.items():
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Tierwise-Signature"], signature)
        payload = json.loads(body)
        assert [c["customer_id"] for c in payload["customers"]] == expected[rule]
        assert payload["run_id"] == r2 and payload["previous_run_id"] == r1
        for c in payload["customers"]:
            assert c["owner"] == owner_of[c["customer_id"]]

    alert_mails = [(to, m) for to, m in mailbox.messages if NEW_A in _subject(m)]
    lead = [m for to, m in alert_mails if to == ["lead@example.com"]]
    assert len(lead) == 1 and _ids(lead[0])[:20] == expected["new_a"][:20]
    per_owner: dict[str, list[str]] = {}
    for c in expected["new_a"]:
        per_owner.setdefault(owner_of[c], []).append(c)
    owner_mails = {tuple(to): m for to, m in alert_mails if to != ["lead@example.com"]}
    assert set(owner_mails) == {(owners[o],) for o in per_owner}
    for owner, theirs in per_owner.items():
        assert _ids(owner_mails[(owners[owner],)])[:20] == theirs[:20]
    hooks.received.clear()
    mailbox.messages.clear()

    # 3. Again, with nothing new: nothing loaded, no run, nothing sent.
    code, third = _refresh(ws)
    assert code == 0 and not third["run_made"] and third["run_id"] == r2, third
    assert all(s["rows_loaded"] == 0 for s in third["sources"])
    assert not hooks.received and not mailbox.messages
    assert all(not a["new"] for a in third["alerts"] if a["matched"])

    # 4. A refused file goes to failed/ with its error beside it; the ops mail says so; the exit code too.
    (ws / "inbox/erp/broken.csv").write_text("order_id,customer_id\n", encoding="utf-8")
    code, fourth = _refresh(ws)
    assert code == 1 and fourth["status"] == "partial" and not fourth["run_made"]
    assert (ws / "inbox/erp/failed/broken.csv").is_file()
    assert "broken.csv" in (ws / "inbox/erp/failed/broken.csv.error.txt").read_text(encoding="utf-8")
    assert [to for to, _ in mailbox.messages] == [["ops@example.com"]]
    mailbox.messages.clear()

    # 5. Killed during the run, started again: the same result as a refresh that was never interrupted.
    control = tmp_path / "control"
    shutil.copytree(ws, control)
    _write(ws / "inbox/erp/orders_3.csv", header, part(3, False))
    _write(control / "inbox/erp/orders_3.csv", header, part(3, False))
    _insert(server_url, header, part(3, True))
    _kill_during_run(ws)
    runs = run_cli("runs", "-w", ws, "--json")
    assert [r["run_id"] for r in runs.json()][-1] == r2, "the kill must land before the run was stored"
    code, resumed = _refresh(ws)
    assert code == 0 and resumed["resumed"] and resumed["attempts"] == 2 and resumed["run_made"], resumed
    code, uninterrupted = _refresh(control)
    assert code == 0 and not uninterrupted["resumed"]

    def same(report: dict[str, Any]) -> dict[str, Any]:
        return {
            "sources": [{k: s[k] for k in ("name", "status", "rows_read", "rows_loaded", "files_processed")}
                        for s in report["sources"]],
            "alerts": {a["rule"]: a["customers"] for a in report["alerts"]},
        }  # fmt: skip

    assert same(resumed) == same(uninterrupted)
    assert {s["name"]: s["rows_loaded"] for s in resumed["sources"]} == {
        "crm": 0, "erp": len(part(3, False)), "shop": len(part(3, True))
    }  # fmt: skip
    mine = _export(ws, resumed["run_id"], tmp_path / "r3.parquet").drop(columns=["run_id"])
    theirs = _export(control, uninterrupted["run_id"], tmp_path / "c3.parquet").drop(columns=["run_id"])
    pd.testing.assert_frame_equal(mine, theirs)
    # each alert of the resumed run went out once (the control's went to the same servers: told apart by run)
    sent = [json.loads(b) for _, b in hooks.received if json.loads(b)["run_id"] == resumed["run_id"]]
    assert sorted(p["rule"] for p in sent) == sorted(
        a["rule"] for a in resumed["alerts"] if a["matched"] and a["rule"] != "source_failed"
    )
