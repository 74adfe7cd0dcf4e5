"""Ingest from a real PostgreSQL server: same mapping, cleaning, quarantine and reconciliation as files, and
incremental loads.

The server is started here, from Debian's PostgreSQL binaries (initdb, pg_ctl), in a temporary folder on a free
loopback port with password authentication, and stopped at the end. Without the binaries the tests are skipped
with the reason, unless TIERWISE_REQUIRE_POSTGRES=1 (set by .ci/run, which installs them), so CI cannot pass by
skipping. TIERWISE_TEST_POSTGRES_URL points the tests at a server you already run instead.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import free_port, run_cli
from tests.pg_server import PASSWORD, USER, execute

from tierwise.ingest.database import safe_url
from tierwise.ingest.pipeline import ingest_database, ingest_file
from tierwise.workspace import Workspace

# A messy orders export as text, as an ERP table often holds it: Chinese headers, dates in several forms,
# amounts with thousands separators and currency signs, a missing customer, a bad date, an exact duplicate.
MESSY_HEADER = ["订单号", "客户编号", "下单日期", "实收金额"]
MESSY_ROWS = [
    ["SO-1", "C001", "2024-03-05", "1,200.50"],
    ["SO-2", "C002", "2024/03/06", "¥300"],
    ["SO-3", "", "2024-03-07", "50"],  # no customer: quarantined
    ["SO-4", "C001", "2024-13-45", "80"],  # impossible date: quarantined
    ["SO-5", "C003", "2024-03-08", "abc"],  # unreadable amount: quarantined
    ["SO-2", "C002", "2024/03/06", "¥300"],  # exact duplicate of SO-2
    ["SO-6", "C003", "2024年3月9日", "99.90"],
]


def _messy_table(url: str, name: str) -> None:
    cols = ", ".join(f'"{c}" text' for c in MESSY_HEADER)
    placeholders = ", ".join(["%s"] * len(MESSY_HEADER))
    execute(
        url,
        f'DROP TABLE IF EXISTS "{name}"',
        f'CREATE TABLE "{name}" ({cols})',
        (f'INSERT INTO "{name}" VALUES ({placeholders})', [tuple(r) for r in MESSY_ROWS]),
    )


def _canonical(ws: Workspace, table: str, drop: tuple[str, ...] = ("batch_id", "source_line")) -> list[dict]:
    t = ws.table(table)
    keep = [c for c in t.columns if c not in drop]
    return sorted(t.select(*keep).to_pyarrow().to_pylist(), key=lambda r: str(sorted(r.items())))


def test_a_table_is_cleaned_exactly_like_the_same_rows_in_a_file(server_url: str, tmp_path: Path) -> None:
    _messy_table(server_url, "erp_orders")
    csv_path = tmp_path / "erp_orders.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([MESSY_HEADER, *MESSY_ROWS])
    from_db, from_file = Workspace.init(tmp_path / "db"), Workspace.init(tmp_path / "file")
    try:
        today = dt.date(2024, 6, 1)
        db = ingest_database(from_db, "orders", server_url, "erp_orders", today=today)
        file = ingest_file(from_file, "orders", csv_path, today=today)
        # reconciliation, computed by hand from MESSY_ROWS: 7 read, 1 duplicate, 3 quarantined, 3 loaded
        assert (db.rows_read, db.duplicates_removed, db.rows_quarantined, db.rows_loaded) == (7, 1, 3, 3)
        assert (file.rows_read, file.duplicates_removed, file.rows_quarantined, file.rows_loaded) == (7, 1, 3, 3)
        assert db.reasons == file.reasons == {"MISSING_CUSTOMER_ID": 1, "BAD_DATE": 1, "BAD_AMOUNT": 1}
        assert db.mapping["fields"] == file.mapping["fields"]
        assert db.file_format == "database"
        loaded = _canonical(from_db, "orders")
        assert loaded == _canonical(from_file, "orders")
        assert {r["order_id"]: float(r["amount"]) for r in loaded} == {"SO-1": 1200.5, "SO-2": 300.0, "SO-6": 99.9}
        assert {r["order_id"]: r["order_date"].date() for r in loaded}["SO-6"] == dt.date(2024, 3, 9)
        # quarantined rows point at their row of the read (the first row is 1), with the whole record
        q = from_db.table("quarantine").order_by("line").to_pyarrow().to_pylist()
        assert [(r["line"], r["reason_code"]) for r in q] == [
            (3, "MISSING_CUSTOMER_ID"),
            (4, "BAD_DATE"),
            (5, "BAD_AMOUNT"),
        ]
        assert "SO-4" in q[1]["record"] and "2024-13-45" in q[1]["record"]
        # the password is never stored or shown
        batch = from_db.table("batches").to_pyarrow().to_pylist()[0]
        assert PASSWORD not in str(batch) and "%21" not in str(batch)
        assert batch["file"] == f"{safe_url(server_url)}#erp_orders"
    finally:
        from_db.close()
        from_file.close()


def test_typed_columns_keep_their_values(server_url: str, tmp_path: Path) -> None:
    execute(
        server_url,
        "DROP TABLE IF EXISTS typed_orders",
        "CREATE TABLE typed_orders (order_no bigint, customer varchar(20), ordered_at timestamp, "
        "amount numeric(12, 2), qty integer, paid boolean, extra jsonb)",
        (
            "INSERT INTO typed_orders VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (1, "K1", dt.datetime(2024, 1, 2, 10, 30), Decimal("10.25"), 2, True, '{"a": 1}'),
                (2, "K2", dt.datetime(2024, 2, 3, 23, 59, 59), Decimal("-5.00"), 1, False, None),
                (3, "K1", None, Decimal("7.10"), 1, True, None),  # no date: quarantined
            ],
        ),
    )
    ws = Workspace.init(tmp_path / "ws")
    try:
        maps = {"order_no": "order_id", "customer": "customer_id", "ordered_at": "order_date", "qty": "quantity"}
        report = ingest_database(ws, "orders", server_url, "typed_orders", maps=maps, today=dt.date(2024, 6, 1))
        assert (report.rows_read, report.rows_loaded, report.rows_quarantined) == (3, 2, 1)
        assert report.returns == 1  # the negative amount is a return, kept as negative revenue
        rows = {r["order_id"]: r for r in ws.table("orders").to_pyarrow().to_pylist()}
        assert rows["1"]["order_date"] == dt.datetime(2024, 1, 2, 10, 30)
        assert float(rows["1"]["amount"]) == 10.25 and rows["1"]["quantity"] == 2
        assert float(rows["2"]["amount"]) == -5.0 and rows["2"]["is_return"]
    finally:
        ws.close()


def test_incremental_loads_read_only_newer_rows(server_url: str, tmp_path: Path) -> None:
    execute(
        server_url,
        "DROP TABLE IF EXISTS live_orders",
        "CREATE TABLE live_orders (order_id text, customer_id text, order_date text, amount numeric, "
        "updated_at timestamp)",
    )

    def add(rows: list[tuple[str, str, str, str, dt.datetime]]) -> None:
        execute(server_url, ("INSERT INTO live_orders VALUES (%s, %s, %s, %s, %s)", rows))

    first = [
        ("A1", "C1", "2024-01-05", "10", dt.datetime(2024, 1, 5, 9)),
        ("A2", "C2", "2024-01-06", "20", dt.datetime(2024, 1, 6, 9)),
    ]
    add(first)
    ws_dir = tmp_path / "ws"
    Workspace.init(ws_dir).close()
    (ws_dir / "tierwise.toml").write_text(
        (ws_dir / "tierwise.toml").read_text().replace("# incremental = {}", 'incremental = {orders = "updated_at"}')
    )
    ws = Workspace.open(ws_dir)
    try:
        today = dt.date(2024, 6, 1)
        one = ingest_database(ws, "orders", server_url, "live_orders", today=today)
        assert (one.status, one.rows_read, one.rows_loaded) == ("loaded", 2, 2)
        nothing = ingest_database(ws, "orders", server_url, "live_orders", today=today)
        assert nothing.status == "up_to_date" and nothing.rows_read == 0
        add(
            [
                ("A3", "C1", "2024-02-01", "30", dt.datetime(2024, 2, 1, 9)),
                ("A4", "C3", "not a date", "40", dt.datetime(2024, 2, 2, 9)),  # quarantined, still read
            ]
        )
        two = ingest_database(ws, "orders", server_url, "live_orders", today=today)
        assert (two.rows_read, two.rows_loaded, two.rows_quarantined) == (2, 1, 1)
        assert sorted(r["order_id"] for r in ws.table("orders").to_pyarrow().to_pylist()) == ["A1", "A2", "A3"]
        marks = ws.table("source_marks").order_by("loaded_at").to_pyarrow().to_pylist()
        assert [m["mark"] for m in marks] == ["2024-01-06 09:00:00", "2024-02-02 09:00:00"]
        assert marks[-1]["batch_id"] == two.batch_id and marks[-1]["column"] == "updated_at"
        # a row arriving with an older value than the mark is not read again (documented limit)
        add([("A0", "C9", "2024-01-01", "5", dt.datetime(2023, 12, 31))])
        assert ingest_database(ws, "orders", server_url, "live_orders", today=today).status == "up_to_date"
    finally:
        ws.close()


def test_a_whole_table_loaded_twice_is_recognised(server_url: str, tmp_path: Path) -> None:
    _messy_table(server_url, "twice")
    ws = Workspace.init(tmp_path / "ws")
    try:
        first = ingest_database(ws, "orders", server_url, "twice", today=dt.date(2024, 6, 1))
        again = ingest_database(ws, "orders", server_url, "twice", today=dt.date(2024, 6, 1))
        assert first.status == "loaded" and again.status == "already_loaded" and again.batch_id == first.batch_id
        assert ws.table("orders").count().execute() == 3
    finally:
        ws.close()


def test_the_command_line_reads_a_table(server_url: str, tmp_path: Path, ws_dir: Path) -> None:
    _messy_table(server_url, "cli_orders")
    result = run_cli("ingest", "orders", "--from", server_url, "--table", "cli_orders", "-w", ws_dir, "--json")
    assert result.code == 0, result.stderr
    [report] = result.json()  # type: ignore[misc]
    assert (report["rows_read"], report["rows_loaded"], report["rows_quarantined"]) == (7, 3, 3)
    assert PASSWORD not in result.stdout + result.stderr
    shown = run_cli("ingest", "orders", "--from", server_url, "--table", "cli_orders", "-w", ws_dir)
    assert shown.code == 0 and "already loaded" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "no_such_table"], "no such table"),
        (["--table", "cli_orders", "--since-column", "nope"], "incremental column 'nope'"),
    ],
)
def test_bad_tables_and_columns_are_one_clear_line(
    server_url: str, ws_dir: Path, args: list[str], message: str
) -> None:
    _messy_table(server_url, "cli_orders")
    result = run_cli("ingest", "orders", "--from", server_url, *args, "-w", ws_dir)
    assert result.code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_password_or_port_is_one_clear_line(server_url: str, ws_dir: Path) -> None:
    wrong = server_url.replace(PASSWORD.replace("!", "%21"), "wrong")
    result = run_cli("ingest", "orders", "--from", wrong, "--table", "x", "-w", ws_dir)
    assert result.code == 2 and "cannot connect to" in result.stderr and "Traceback" not in result.stderr
    assert "wrong" not in result.stderr
    closed = f"postgresql://{USER}@127.0.0.1:{free_port()}/postgres"
    result = run_cli("ingest", "orders", "--from", closed, "--table", "x", "-w", ws_dir)
    assert result.code == 2 and "cannot connect to" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_need_no_server(ws_dir: Path) -> None:
    cases = [
        (["--from", "ftp://host/db", "--table", "t"], "not a database URL"),
        (["--from", "postgresql://h/db"], "give --table NAME"),
        (["--table", "t"], "go with --from"),
        ([], "name the files to ingest"),
    ]
    for args, message in cases:
        result = run_cli("ingest", "orders", *args, "-w", ws_dir)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
    config = ws_dir / "tierwise.toml"
    config.write_text(config.read_text().replace("# incremental = {}", 'incremental = {order = "updated_at"}'))
    result = run_cli("ingest", "orders", "--from", "postgresql://h/db", "--table", "t", "-w", ws_dir)
    assert result.code == 2 and "unknown table order" in result.stderr and "Traceback" not in result.stderr


_url_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="@/:?#[]%"), min_size=1)


@given(user=_url_text, password=_url_text, host=st.sampled_from(["127.0.0.1", "db.example.com", "[::1]"]))
def test_the_shown_url_never_holds_the_password(user: str, password: str, host: str) -> None:
    from urllib.parse import quote

    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:5432/sales?password={quote(password)}"
    shown = safe_url(url)
    assert shown == f"postgresql://{quote(user, safe='')}@{host}:5432/sales"
