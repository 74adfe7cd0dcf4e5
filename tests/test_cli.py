"""The command line as a user runs it: real processes, real files, the shared real data sets."""

from __future__ import annotations

import csv
import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest
from tests.conftest import CDNOW_MASTER, ONLINE_RETAIL, run_cli

from tierwise.config import Config


def test_init_writes_every_setting_with_a_comment(tmp_path: Path) -> None:
    r = run_cli("init", tmp_path / "shop")
    assert r.code == 0, r.stderr
    text = (tmp_path / "shop" / "tierwise.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert Config.model_validate(data) == Config()
    lines = text.splitlines()
    for section in ("workspace", "engine", "ingest"):
        for key in type(getattr(Config(), section)).model_fields:
            # a setting's line, or the header of a sub-table ([engine.spark]), or an empty table commented out
            starts = (f"{key} = ", f"[{section}.{key}]", f"# {key} = {{}}")
            i = lines.index(next(ln for ln in lines if ln.startswith(starts)))
            assert lines[i - 1].startswith("# "), key
    assert (tmp_path / "shop" / "tierwise.duckdb").exists()


def test_bad_setting_is_named(tmp_path: Path) -> None:
    run_cli("init", tmp_path / "shop")
    cfg = tmp_path / "shop" / "tierwise.toml"
    cfg.write_text(cfg.read_text().replace('date_order = "auto"', 'date_order = "sometimes"'))
    r = run_cli("status", "-w", tmp_path / "shop")
    assert r.code == 2
    assert "setting 'ingest.date_order'" in r.stderr and "Traceback" not in r.stderr


def test_not_a_workspace(tmp_path: Path) -> None:
    r = run_cli("status", "-w", tmp_path)
    assert r.code == 2 and "not a tierwise workspace" in r.stderr and "tierwise init" in r.stderr


def _cdnow_reference() -> tuple[int, int]:
    """Rows and exact duplicate lines of CDNOW_master.txt, counted with plain Python."""
    with CDNOW_MASTER.open() as fh:
        next(fh)
        records = [tuple(line.split()) for line in fh if line.strip()]
    distinct = len(set(records))
    return len(records), len(records) - distinct


def test_cdnow_master(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    r = run_cli("ingest", "orders", CDNOW_MASTER, "-w", ws, "--json")
    assert r.code == 0, r.stderr
    [report] = r.json()
    n, dups = _cdnow_reference()
    assert n == 69659
    assert report["rows_read"] == n
    assert report["duplicates_removed"] == dups
    assert report["rows_quarantined"] == 0
    assert report["rows_loaded"] == n - dups
    assert report["customers_created"] == 23570
    assert report["delimiter"] == "whitespace"
    assert report["mapping"]["fields"] == {
        "customer_id": "customer_id",
        "order_date": "date",
        "quantity": "number_of_cds",
        "amount": "dollar_value",
    }
    s = run_cli("status", "-w", ws, "--json").json()
    assert s["tables"]["orders"] == n - dups and s["tables"]["customers"] == 23570


def test_cdnow_keeping_identical_lines(tmp_path: Path) -> None:
    # CDNOW's identical lines are separate purchases of the same value on one day: keep them all.
    ws = tmp_path / "ws"
    run_cli("init", ws)
    [report] = run_cli("ingest", "orders", CDNOW_MASTER, "-w", ws, "--json", "--keep-duplicates").json()
    assert (report["rows_read"], report["rows_loaded"], report["duplicates_removed"]) == (69659, 69659, 0)


def _retail_reference() -> dict[str, int]:
    with ONLINE_RETAIL.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    missing = sum(1 for r in rows if r["CustomerID"] in ("", "NA"))
    keys = [tuple(r.values()) for r in rows]
    dups = len(keys) - len(set(keys))
    loaded_ids = {r["CustomerID"] for r in rows if r["CustomerID"] not in ("", "NA")}
    for r in rows:  # every date must be readable month-first in one of the two formats
        d = r["InvoiceDate"]
        fmt = "%m/%d/%Y %H:%M" if len(d.split(" ")[0].split("/")[2]) == 4 else "%m/%d/%y %H:%M"
        dt.datetime.strptime(d, fmt)
    return {"rows": len(rows), "missing": missing, "dups": dups, "customers": len(loaded_ids)}


def test_online_retail_sample(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    r = run_cli("ingest", "orders", ONLINE_RETAIL, "-w", ws, "--json")
    assert r.code == 0, r.stderr
    [report] = r.json()
    ref = _retail_reference()
    assert ref["rows"] == 5000 and 0.33 < ref["missing"] / ref["rows"] < 0.39
    assert report["rows_read"] == 5000
    assert report["rows_quarantined"] == ref["missing"]
    assert report["duplicates_removed"] == ref["dups"]
    assert report["rows_loaded"] == 5000 - ref["missing"] - ref["dups"]
    assert report["customers_created"] == ref["customers"]
    assert report["date_orders"] == {"InvoiceDate": "mdy"}
    assert report["reasons"] == {"MISSING_CUSTOMER_ID": ref["missing"]}
    assert set(report) >= {"batch_id", "rows_read", "rows_loaded", "rows_quarantined", "duplicates_removed", "mapping"}
    q = run_cli("quarantine", "-w", ws, "--json", "--limit", "3").json()
    assert q["total"] == ref["missing"]
    first = q["rows"][0]
    assert first["reason_code"] == "MISSING_CUSTOMER_ID" and first["column"] == "CustomerID"
    with ONLINE_RETAIL.open() as fh:
        lines = fh.read().splitlines()
    assert lines[first["line"] - 1].split(";")[8] == "NA"
    again = run_cli("ingest", "orders", ONLINE_RETAIL, "-w", ws, "--json").json()
    assert again[0]["status"] == "already_loaded"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["nope.csv"], "file not found"),
        (b"", ["empty.csv"], "the file is empty"),
        (b"customer_id,order_date,amount\n", ["header.csv"], "header but no data rows"),
        (bytes(range(256)), ["binary.csv"], "binary file"),
        (b"a,b\n1,2\n", ["nocol.csv"], "no column for the required field 'customer_id'"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, setup: bytes | None, args: list[str], message: str
) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    good = tmp_path / "good.csv"
    good.write_text("customer_id,order_date,amount\nC1,2024-01-01,1\n")
    assert run_cli("ingest", "orders", good, "-w", ws).code == 0
    before = run_cli("status", "-w", ws, "--json").json()
    path = tmp_path / args[0]
    if setup is not None:
        path.write_bytes(setup)
    r = run_cli("ingest", "orders", path, "-w", ws)
    assert r.code == 2
    assert message in r.stderr and str(path) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert run_cli("status", "-w", ws, "--json").json() == before


def test_wrong_sheet_via_cli(tmp_path: Path) -> None:
    import xlsxwriter

    ws = tmp_path / "ws"
    run_cli("init", ws)
    book = tmp_path / "c.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    wb.add_worksheet("客户").write_row(0, 0, ["客户编号"])
    wb.close()
    r = run_cli("ingest", "customers", book, "--sheet", "Sheet9", "-w", ws)
    assert r.code == 2 and "no sheet named 'Sheet9'; the sheets are: 客户" in r.stderr


def test_quarantine_export_neutralises_formulas(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    src = tmp_path / "o.csv"
    src.write_text('customer_id,order_date,amount,status\n=HYPERLINK("x"),2024-01-01,oops,@SUM(A1)\n')
    r = run_cli("ingest", "orders", src, "-w", ws)
    assert r.code == 0, r.stderr
    out = tmp_path / "q.csv"
    assert run_cli("quarantine", "-w", ws, "--export", out).code == 0
    with out.open(encoding="utf-8-sig", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["reason_code"] == "BAD_AMOUNT" and row["value"] == "oops"
    assert row["record"].startswith("'=HYPERLINK")


def test_ingest_human_output_shows_mapping_and_reconciliation(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    src = tmp_path / "订单.csv"
    src.write_bytes("客户编号,下单日期,实付金额\nC1,2024-01-01,￥100\n,2024-01-02,5\n".encode("gbk"))
    r = run_cli("ingest", "orders", src, "-w", ws)
    assert r.code == 0, r.stderr
    assert "gb18030" in r.stdout and "实付金额" in r.stdout and "MISSING_CUSTOMER_ID 1" in r.stdout
    # read, new, updated, unchanged, quarantined, duplicates
    assert re.search(r"│\s*2\s*│\s*1\s*│\s*0\s*│\s*0\s*│\s*1\s*│\s*0\s*│", r.stdout), r.stdout


def test_generate_messy_then_ingest_reconciles_with_ground_truth(tmp_path: Path) -> None:
    import json

    data, ws = tmp_path / "data", tmp_path / "ws"
    r = run_cli("generate", data, "--customers", "800", "--seed", "5", "--messy", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["rows"]["orders"] > 0
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))["messy"]
    run_cli("init", ws)
    for table in ("customers", "orders", "payments", "interactions"):
        res = run_cli("ingest", table, data / f"{table}.csv", "-w", ws, "--json")
        assert res.code == 0, res.stderr
        [rep] = res.json()
        assert rep["encoding"] == "gb18030"
        assert rep["rows_read"] == truth[table]["lines"]
        assert rep["duplicates_removed"] == truth[table]["exact_duplicates"]
        assert rep["rows_quarantined"] == truth[table]["missing_customer_id"]
        assert rep["customers_created"] == 0  # every transaction's customer is in customers.csv
    status = run_cli("status", "-w", ws, "--json").json()
    assert status["tables"]["customers"] == 800


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise.demo", str(target)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    status = run_cli("status", "-w", target / "workspace", "--json").json()
    assert status["tables"]["customers"] == 2000
    assert status["tables"]["orders"] > 0 and status["tables"]["payments"] > 0
    first, again = [b for b in status["batches"] if b["table_name"] == "orders"]
    assert all(b["rows_read"] == b["rows_loaded"] for b in status["batches"] if b is not again)
    # The orders exported again in GBK: every record already stored, nothing loaded twice.
    assert again["file"].endswith("orders_saved_again_gbk.csv") and again["rows_loaded"] == 0
    assert again["rows_unchanged"] == again["rows_read"] == first["rows_read"]
    report = target / "report.html"
    assert f"Report: {report.resolve()}" in proc.stdout and report.stat().st_size > 1_000_000
    assert "客户等级" in proc.stdout  # the summary, with the grade, in the default language


def test_run_builds_a_snapshot_per_customer(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from pyarrow import csv as pacsv

    data, ws = tmp_path / "data", tmp_path / "ws"
    assert run_cli("generate", data, "--customers", "600", "--seed", "8").code == 0
    run_cli("init", ws)
    for table in ("customers", "orders"):
        assert run_cli("ingest", table, data / f"{table}.csv", "-w", ws).code == 0
    r = run_cli("run", "-w", ws, "--json")
    assert r.code == 0, r.stderr
    report = r.json()
    orders = pacsv.read_csv(data / "orders.csv")
    last = max(orders["order_date"].to_pylist()).date()
    assert report["as_of"] == (last + dt.timedelta(days=1)).isoformat() and report["customers"] == 600
    listed = run_cli("runs", "-w", ws, "--json").json()
    assert [x["run_id"] for x in listed] == [report["run_id"]]

    import ibis

    con = ibis.duckdb.connect(str(ws / "tierwise.duckdb"), read_only=True)
    snap = con.table(report["snapshot_table"]).to_pyarrow().to_pylist()
    con.disconnect()
    truth = pq.read_table(data / "truth_customers.parquet").to_pylist()
    prospects = {t["customer_id"] for t in truth if t["is_prospect"]}
    assert {s["customer_id"] for s in snap if s["rfm_segment"] == "prospects"} == prospects
    assert {s["customer_id"] for s in snap if s["lifecycle_stage"] == "prospect"} == prospects
    assert all(s["abc_class"] in ("A", "B", "C") for s in snap)
    buyers = [s for s in snap if s["customer_id"] not in prospects]
    assert all(1 <= s["r_score"] <= 5 and s["rfm_class8"] for s in buyers)
    bad = run_cli("run", "-w", ws, "--as-of", "June")
    assert bad.code == 2 and "--as-of 'June'" in bad.stderr


def test_out_of_memory_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    assert run_cli("ingest", "orders", CDNOW_MASTER, "-w", ws).code == 0
    toml = ws / "tierwise.toml"
    roomy = toml.read_text()
    toml.write_text(re.sub(r'(?m)^memory_limit = ".*"$', 'memory_limit = "4MB"', roomy))
    r = run_cli("run", "-w", ws)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: out of memory") and "memory_limit under [engine]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert run_cli("runs", "-w", ws, "--json").json() == []  # nothing half-stored
    toml.write_text(roomy)
    assert run_cli("run", "-w", ws).code == 0


def test_usage_errors_are_one_message_not_a_traceback(tmp_path: Path) -> None:
    for args, message in ((["run", "--bogus"], "No such option: --bogus"), (["show", "--top", "x"], "--top")):
        r = run_cli(*args, "-w", tmp_path)
        assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr
