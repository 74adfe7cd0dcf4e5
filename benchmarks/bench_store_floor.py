"""What storing order lines in DuckDB costs at the least, column by column (issue 8's floor).

Copies the columns of a generated orders Parquet file (bench_scale.py --keep) into a fresh DuckDB file, one
column per statement and then all together, each in its own transaction, with the workspace's settings
(insertion order not preserved, the memory limit below). No parsing, checking or lineage: what is left is
reading the Parquet and DuckDB's compression and writing, the floor under `ingest orders`' store.

With --workspace (an ingested workspace, opened read-only), also: its stored orders written to Parquet, and the
run's kind of reads (grouping by customer and day, per-customer sums, a scan) from that file and from the table.

    .venv/bin/python benchmarks/bench_store_floor.py /tmp/bench-scale/100000000/data/orders.parquet \
        --workspace /tmp/bench-scale/100000000/ws
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orders", type=Path, help="orders.parquet written by bench_scale.py --keep")
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory limit (the workspace default)")
    parser.add_argument("--workspace", type=Path, help="also compare its stored orders with a Parquet copy")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    source = f"read_parquet('{args.orders}')"
    with tempfile.TemporaryDirectory(prefix="tierwise-floor-") as folder:
        con = duckdb.connect(
            str(Path(folder) / "floor.duckdb"),
            config={"preserve_insertion_order": False, "memory_limit": args.memory_limit},
        )
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]  # type: ignore[index]
        columns = [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
        print(f"{rows:,} rows, {len(columns)} columns, {threads} threads, memory limit {args.memory_limit}")

        def timed(what: str, select: str) -> float:
            con.execute("BEGIN")
            start = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TABLE floor AS {select}")
            con.execute("COMMIT")
            seconds = time.perf_counter() - start
            print(f"  {what:<40} {seconds:7.1f} s  {rows / seconds / 1e6:6.1f} M rows/s", flush=True)
            return round(seconds, 2)

        start = time.perf_counter()
        maxima = ", ".join(f'max("{name}")' for name, _ in columns)
        con.execute(f"SELECT {maxima} FROM {source}").fetchall()
        read = round(time.perf_counter() - start, 2)
        figures: dict[str, object] = {"rows": rows, "read every column (max of each)": read}
        print(f"  {'read every column (max of each)':<40} {read:7.1f} s")
        for name, kind in columns:
            figures[f"{name} ({kind})"] = timed(f"{name} ({kind})", f'SELECT "{name}" FROM {source}')
        figures["a constant string"] = timed("a constant string", f"SELECT 'batch-20261205' AS batch_id FROM {source}")
        figures["a constant integer"] = timed("a constant integer", f"SELECT 7 AS batch_no FROM {source}")
        figures["every column"] = timed("every column", f"SELECT * FROM {source}")
        con.close()
        if args.workspace:
            figures["stored orders as Parquet"] = parquet_reads(args.workspace, Path(folder), args.memory_limit)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


READS = {
    "group by customer and day": "SELECT count(*), sum(n) FROM (SELECT customer_id, order_date::DATE AS d, "
    "count(*) AS n, sum(amount) AS v FROM {src} GROUP BY ALL)",
    "per-customer sums, distinct count": "SELECT count(*), sum(s) FROM (SELECT customer_id, sum(amount) AS s, "
    "sum(cost) AS c, count(DISTINCT product_category) AS k, max(order_date) AS l FROM {src} GROUP BY customer_id)",
    "scan of four columns": "SELECT max(customer_id), max(order_date), sum(amount), max(status) FROM {src}",
}


def parquet_reads(workspace: Path, folder: Path, memory_limit: str) -> dict[str, float]:
    """The workspace's orders written to Parquet, then each of READS from the table and from the file."""
    con = duckdb.connect(
        str(workspace / "tierwise.duckdb"),
        read_only=True,
        config={"preserve_insertion_order": False, "memory_limit": memory_limit},
    )
    copy = folder / "orders.parquet"
    start = time.perf_counter()
    con.execute(f"COPY orders TO '{copy}' (FORMAT parquet, COMPRESSION snappy)")
    out = {"write (snappy)": round(time.perf_counter() - start, 2)}
    print(f"  {'stored orders to Parquet':<40} {out['write (snappy)']:7.1f} s  ({copy.stat().st_size / 1e9:.2f} GB)")
    for what, query in READS.items():
        for where, src in (("table", "orders"), ("Parquet", f"read_parquet('{copy}')")):
            start = time.perf_counter()
            con.execute(query.format(src=src)).fetchall()
            out[f"{what}, {where}"] = round(time.perf_counter() - start, 2)
            print(f"  {what + ', ' + where:<40} {out[f'{what}, {where}']:7.1f} s", flush=True)
    con.close()
    return out


if __name__ == "__main__":
    main()
