"""Ingest benchmark: a generated orders file of N lines, from Parquet and from CSV, against plain pandas.

    .venv/bin/python benchmarks/bench_ingest.py --lines 10000000

Each measurement runs in its own child process so that its peak memory (max RSS) is its own.
Prints one line per measurement: seconds, rows/s, peak MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, path: str, workdir: str) -> None:
    t0 = time.perf_counter()
    if kind == "tierwise":
        from tierwise.ingest.pipeline import ingest_file
        from tierwise.workspace import Workspace

        ws = Workspace.init(Path(workdir) / f"ws-{Path(path).suffix[1:]}")
        report = ingest_file(ws, "orders", Path(path))
        rows, loaded = report.rows_read, report.rows_loaded
        ws.close()
    else:
        import pandas as pd

        df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, dtype=str)
        rows = len(df)
        df = df.drop_duplicates()
        df["order_date"] = pd.to_datetime(df["order_date"], errors="coerce", format="mixed")
        for col in ("amount", "cost", "quantity", "unit_price"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        good = df["customer_id"].notna() & df["order_date"].notna() & df["amount"].notna()
        loaded = int(good.sum())
        df[good].to_parquet(Path(workdir) / "pandas-out.parquet")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "loaded": loaded, "seconds": seconds, "peak_mb": peak_mb}))


def _measure(kind: str, path: Path, workdir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=10_000_000, help="order lines to generate (about)")
    ap.add_argument("--keep", type=Path, help="reuse/keep generated files in this folder")
    ap.add_argument("--no-pandas", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    from tierwise.generate import generate

    data = args.keep or Path(tempfile.mkdtemp(prefix="tw-bench-"))
    work = Path(tempfile.mkdtemp(prefix="tw-bench-ws-"))
    try:
        pilot = generate(work / "pilot", customers=5000, seed=1, fmt="parquet")
        per_customer = pilot.rows["orders"] / 5000
        customers = max(1000, int(args.lines / per_customer))
        for fmt in ("parquet", "csv"):
            target = data / fmt
            if not (target / f"orders.{fmt}").exists():
                t0 = time.perf_counter()
                generate(target, customers=customers, seed=1, fmt=fmt)
                print(f"generated {fmt}: {time.perf_counter() - t0:.1f} s", flush=True)
        size = {fmt: (data / fmt / f"orders.{fmt}").stat().st_size / 1e6 for fmt in ("parquet", "csv")}
        print(
            f"machine: {os.cpu_count()} cores; customers {customers:,}; "
            f"files: parquet {size['parquet']:.0f} MB, csv {size['csv']:.0f} MB"
        )
        kinds = ["tierwise"] + ([] if args.no_pandas else ["pandas"])
        for fmt in ("parquet", "csv"):
            for kind in kinds:
                r = _measure(kind, data / fmt / f"orders.{fmt}", work)
                print(
                    f"{kind:9s} {fmt:8s} rows {r['rows']:>12,}  loaded {r['loaded']:>12,}  "
                    f"{r['seconds']:7.1f} s  {r['rows'] / r['seconds']:>12,.0f} rows/s  "
                    f"peak {r['peak_mb']:>7,.0f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
