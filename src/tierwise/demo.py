"""`make demo`: the main job on generated data, from nothing to a loaded workspace, in one command.

The generated history ends on 2024-12-31; the backfill gives the workspace six monthly runs before today's, so
`compare`, trends and the report's history page have something to show at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

STEPS_TABLES = ("customers", "orders", "payments", "interactions")


def run(target: Path, customers: int = 2000) -> int:
    data, ws = target / "data", target / "workspace"
    if target.exists():
        shutil.rmtree(target)
    steps: list[list[str]] = [
        ["generate", str(data), "--customers", str(customers), "--seed", "7", "--profile", "b2b"],
        ["init", str(ws)],
    ]
    for table in STEPS_TABLES:
        steps.append(["ingest", table, str(data / f"{table}.csv"), "--workspace", str(ws)])
    # An ordinary week: the same orders exported again, saved in GBK this time; record identity loads nothing twice.
    resaved = data / "orders_saved_again_gbk.csv"
    steps.append(["ingest", "orders", str(resaved), "--workspace", str(ws)])
    steps.append(["status", "--workspace", str(ws)])
    steps.append(["backfill", "--from", "2024-07-01", "--to", "2024-12-01", "--every", "month", "--workspace", str(ws)])
    steps.append(["run", "--workspace", str(ws)])
    steps.append(["show", "--workspace", str(ws), "--top", "5"])
    steps.append(["compare", "--workspace", str(ws), "--top", "3"])
    steps.append(["worklist", "--workspace", str(ws), "--top", "3"])
    steps.append(["classify", "--target", "future-churn", "--workspace", str(ws)])
    report = target / "report.html"
    steps.append(["report", "--workspace", str(ws), "--out", str(report)])
    for args in steps:
        if str(resaved) in args:
            text = (data / "orders.csv").read_text(encoding="utf-8-sig")
            resaved.write_bytes(text.encode("gb18030"))
        print(f"$ tierwise {' '.join(args)}", flush=True)
        # Wide enough for the summary tables when the output is not a terminal (make, CI logs).
        env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "150")}
        code = subprocess.call([sys.executable, "-m", "tierwise.cli", *args], env=env)
        if code != 0:
            return code
    print(
        f"\nDemo data: {data}\nWorkspace: {ws}  (try: tierwise runs -w {ws}; tierwise quarantine -w {ws})"
        f"\nReport: {report.resolve()}  (open it in a browser; it works offline)"
        f"\nDashboard: tierwise user add admin --role admin -w {ws}; tierwise serve -w {ws}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo")))
