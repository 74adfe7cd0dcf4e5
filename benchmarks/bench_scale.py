"""Scale benchmark (issue 8): 1, 10 and 100 million generated transactions end to end, from Parquet, on DuckDB
or on Spark local mode.

    .venv/bin/python benchmarks/bench_scale.py --transactions 1000000 10000000 --keep /tmp/bench-scale
    .venv/bin/python benchmarks/bench_scale.py --engine spark --transactions 1000000 10000000 --keep /tmp/bench-scale
    .venv/bin/python benchmarks/bench_scale.py --transactions 100000000 --keep /tmp/bench-scale --generate-only
    timeout 1500 .venv/bin/python benchmarks/bench_scale.py --transactions 100000000 --keep /tmp/bench-scale

For each size the script generates the data once with tierwise's own generator (B2C profile, seed 1, eight years
of history as in bench_run.py, so about ten order lines per customer; the customer count is chosen from a
20,000-customer pilot so that the order lines come close to the wanted number). Generation is not timed; with
--keep DIR the Parquet files are reused by later invocations, and --generate-only stops after generating. Before
generating, the free disk space is checked (about 300 bytes per transaction for the Parquet files, the workspace
and DuckDB's spill files: 30 GB at 100 million); a size that does not fit is skipped with a note.

Then, each in its own child process so that its peak memory (max RSS, imports included) is its own:

  end-to-end  what a user does, in one process: `Workspace.init` of a fresh workspace → `ingest_file` of the
              customers Parquet → `ingest_file` of the orders Parquet (full pipeline: duplicates, parsing and
              checking, returns and outliers, quarantine) → `tierwise.pipeline.execute.run(ws)` (the snapshot, stored)
              → `tierwise.report.render.write_report` (the HTML report, as `tierwise report` writes it). Default
              workspace settings (DuckDB memory limit 3 GB, all cores; --memory-limit changes the one setting in
              the fresh workspace's tierwise.toml, as a user would). Seconds, CPU seconds and the peak so far
              after every stage, and with each of the run's stages as it starts; the run's own stage timings
              (RunReport.timings: models, measures, classes, clusters when enabled, pareto; "other" is the run's
              wall time outside them: counting inputs, commit); rows/s is transactions ÷ end-to-end seconds.
              Not timed, afterwards: the snapshot's core columns exported for the check below.
              With --engine spark the same process ingests on DuckDB (ingest always does) and the main job runs on
              Spark local mode as a user would set it: the fresh workspace's tierwise.toml edited to `kind =
              "spark"` under [engine] and, under [engine.spark], `master = "local[*]"` and `conf` = SPARK_CONF below
              (--spark-conf KEY=VALUE overrides or adds settings), checked with load_config. The run then starts the
              JVM, exports the canonical tables to Parquet and computes on Spark; "start" in its timings is the time
              before the models stage (session and JVM start, the export, counting the inputs), "end" after the
              Pareto curve (storing the run row). The JVM is a child of this process and Spark's Python workers
              (the CLV pandas UDFs) are the JVM's children: the max RSS of this process does not include them, so a
              thread samples /proc every 0.2 s: "JVM peak" is the JVM's own VmHWM (exact), "workers peak" the
              largest sampled sum of the other descendants' VmRSS, "all peak" the largest sampled sum of this
              process's, the JVM's and the workers' VmRSS. CPU seconds include the descendants' CPU (alive ones
              from /proc, ended ones from RUSAGE_CHILDREN) on either engine.
  pandas      a baseline where it fits in memory (up to --pandas-max transactions; the reason is printed when
              skipped): `pd.read_parquet` of the same generated files, returns as ingest flags them, then the
              core of bench_run.py's pandas baseline: first/last order date, recency, frequency, monetary per
              customer, RFM quintile scores, segment, eight classes, ABC. It does far less than end-to-end (no
              checking, no storing, no other features, no report): a floor, not an equal.

After both, the run's snapshot and the pandas result are compared customer by customer on the core columns
(bench_run._compare, done after the timing). Each child prints the start of every stage as it goes, so a child
stopped by --limit (or by an outer `timeout`) shows where it was; the result then says "did not finish".
The summary gives, per size, seconds per million transactions and the ratio of time to the previous size (time
growing no worse than linearly means the time ratio is at most the size ratio), and checks the issue's targets
at 100 million transactions: end to end ≤ 300 s with peak memory ≤ 8 GB. The load average before each child is
printed too: other processes on the machine inflate wall time, hardly CPU time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# The sibling script (its folder is on sys.path when run as a script): the same data shape, the same check.
from bench_run import CORE, HISTORY, _compare, customers_for, pandas_core

TARGET_TRANSACTIONS = 100_000_000
TARGET_SECONDS = 300.0
TARGET_PEAK_MB = 8 * 1024
BYTES_PER_TRANSACTION = 300  # free disk wanted: Parquet ~35, workspace DuckDB file, spill files, with room to spare
PROGRESS = "@progress "
RESULT = "@result "
# [engine.spark] conf of the fresh workspace with --engine spark. Local mode runs everything in the driver's JVM, so
# the driver's memory is all Spark has (tierwise's local default is 1 GB): 12 GB of this 24 GB machine leaves room
# for the Python process (DuckDB's ingest, the models fitted on the driver) and Spark's Python workers. Eight
# shuffle partitions (tierwise's local default is one per core, here 2) keep each shuffle task's share of 10
# million order lines small enough not to spill, at a small cost in task overhead at 1 million.
SPARK_CONF = {"spark.driver.memory": "12g", "spark.sql.shuffle.partitions": "8"}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _descendants() -> dict[int, tuple[str, float]]:
    """This process's descendants alive now, from /proc: pid → (command name, CPU seconds of it and of its
    children that it has waited for)."""
    stats: dict[int, tuple[int, str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        # fields[1] is the parent; fields[11:15] utime, stime, cutime, cstime (proc(5), fields 4 and 14-17)
        stats[int(entry.name)] = (int(fields[1]), name, sum(int(f) for f in fields[11:15]) / tick)
    found: dict[int, tuple[str, float]] = {}
    parents = [os.getpid()]
    while parents:
        parent = parents.pop()
        for pid, (ppid, name, cpu) in stats.items():
            if ppid == parent and pid not in found:
                found[pid] = (name, cpu)
                parents.append(pid)
    return found


def _clock() -> tuple[float, float]:
    """Wall clock and CPU time (user + system, all threads) of this process and its descendants: the ended ones
    (waited for) from RUSAGE_CHILDREN, the alive ones (Spark's JVM and its Python workers) from /proc."""
    ru, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    alive = sum(cpu for _, cpu in _descendants().values())
    return time.perf_counter(), ru.ru_utime + ru.ru_stime + children.ru_utime + children.ru_stime + alive


def _vm_kb(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM (peak RSS) of a process in kB; zeros if it has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    vm = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in ("VmRSS", "VmHWM")}
    return vm.get("VmRSS", 0), vm.get("VmHWM", 0)


class TreeMemory:
    """Peak memory of this process's descendants (Spark's JVM and its Python workers), sampled from /proc in a
    thread: the JVM's own VmHWM, the largest sum of the other descendants' VmRSS, the largest sum of everyone's."""

    def __init__(self, every: float = 0.2) -> None:
        self.jvm_kb = self.workers_kb = self.all_kb = 0
        self._every, self._done = every, threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self._every):
            self.sample()

    def sample(self) -> None:
        jvm = workers = 0
        with self._lock:
            for pid, (name, _) in _descendants().items():
                rss, hwm = _vm_kb(pid)
                if name == "java":
                    self.jvm_kb, jvm = max(self.jvm_kb, hwm), jvm + rss
                else:
                    workers += rss
            self.workers_kb = max(self.workers_kb, workers)
            self.all_kb = max(self.all_kb, _vm_kb(os.getpid())[0] + jvm + workers)

    def peaks(self) -> dict[str, float]:
        """The peaks so far in MB (sampled once more now)."""
        self.sample()
        return {
            "jvm_peak_mb": self.jvm_kb / 1024,
            "workers_peak_mb": self.workers_kb / 1024,
            "all_peak_mb": self.all_kb / 1024,
        }

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"seconds": wall - start[0], "cpu_s": cpu - start[1], "peak_mb": _peak_mb()}


def _say(started: float, text: str) -> None:
    """A progress line for the parent (which echoes it at once)."""
    print(f"{PROGRESS}[{time.perf_counter() - started:7.1f} s] {text}", flush=True)


# ---------------------------------------------------------------------------------------------------- data


def _prepare(size_dir: Path, transactions: int, min_free_gb: float | None) -> dict[str, Any]:
    """Generate the Parquet files once per size (kept in size_dir/data); the summary is kept in generated.json."""
    summary_file = size_dir / "generated.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text())
    from tierwise.generate import generate

    size_dir.mkdir(parents=True, exist_ok=True)
    need_gb = min_free_gb if min_free_gb is not None else transactions * BYTES_PER_TRANSACTION / 1e9
    free_gb = shutil.disk_usage(size_dir).free / 1e9
    if free_gb < need_gb:
        return {"skipped": f"{free_gb:.0f} GB free on {size_dir}, {need_gb:.0f} GB wanted for {transactions:,}"}
    customers = customers_for(transactions)
    print(f"  generating {customers:,} customers ({free_gb:.0f} GB free) ...", flush=True)
    t0 = time.perf_counter()
    generated = generate(size_dir / "data", customers=customers, seed=1, profile="b2c", fmt="parquet", **HISTORY)
    seconds = time.perf_counter() - t0
    sizes = {t: (size_dir / "data" / f"{t}.parquet").stat().st_size / 1e6 for t in ("customers", "orders")}
    summary = {
        "customers": customers,
        "order_lines": generated.rows["orders"],
        "generate_s": seconds,
        "generate_peak_mb": _peak_mb(),  # this (parent) process's peak so far: the generator's, roughly
        "parquet_mb": sizes,
    }
    summary_file.write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------- measurements


def _toml_set(text: str, section: str, key: str, value: str) -> str:
    """tierwise.toml with `key = value` in [section], where `tierwise init` wrote the key's line (once)."""
    head = re.search(rf"(?m)^\[{re.escape(section)}\]$", text)
    assert head, f"no [{section}] in tierwise.toml"
    after = re.search(r"(?m)^\[", text[head.end() :])  # the next table header ends the section
    stop = head.end() + after.start() if after else len(text)
    body, n = re.subn(rf"(?m)^{re.escape(key)} = .*$", lambda _: f"{key} = {value}", text[head.end() : stop], count=1)
    assert n == 1, f"no {key} line under [{section}] in tierwise.toml"
    return text[: head.end()] + body + text[stop:]


def _end_to_end(size_dir: Path, memory_limit: str | None, engine: str, spark_conf: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    from tierwise.config import load_config
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.report.render import write_report
    from tierwise.workspace import Workspace

    _say(started, f"imports done, peak {_peak_mb():,.0f} MB")
    tree = TreeMemory() if engine == "spark" else None
    ws_dir, data = size_dir / "ws", size_dir / "data"
    shutil.rmtree(ws_dir, ignore_errors=True)
    stages: dict[str, dict[str, float]] = {}
    t_all = _clock()

    def measure(t0: tuple[float, float]) -> dict[str, float]:
        return {**_since(t0), **(tree.peaks() if tree else {})}

    def stage(name: str, fn: Any) -> Any:
        _say(started, f"{name}: start")
        t0 = _clock()
        result = fn()
        stages[name] = m = measure(t0)
        jvm = f", JVM {m['jvm_peak_mb']:,.0f} MB, workers {m['workers_peak_mb']:,.0f} MB" if tree else ""
        _say(started, f"{name}: {m['seconds']:.1f} s, cpu {m['cpu_s']:.1f} s, peak so far {m['peak_mb']:,.0f} MB{jvm}")
        return result

    def init() -> Workspace:
        ws = Workspace.init(ws_dir)
        if memory_limit is None and engine == "duckdb":
            return ws
        ws.close()  # the settings changed as a user would edit tierwise.toml
        toml = ws_dir / "tierwise.toml"
        text = toml.read_text()
        if memory_limit is not None:
            text = _toml_set(text, "engine", "memory_limit", json.dumps(memory_limit))
        if engine == "spark":
            text = _toml_set(text, "engine", "kind", '"spark"')
            text = _toml_set(text, "engine.spark", "master", '"local[*]"')
            conf = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in spark_conf.items())
            text = _toml_set(text, "engine.spark", "conf", f"{{{conf}}}")
        toml.write_text(text)
        settings = load_config(toml).engine  # as tierwise reads it
        assert settings.kind == engine, settings
        assert engine == "duckdb" or (settings.spark.master == "local[*]" and settings.spark.conf == spark_conf)
        return Workspace.open(ws_dir)

    ws = stage("init", init)
    ingest = {
        t: stage(f"ingest {t}", lambda t=t: ingest_file(ws, t, data / f"{t}.parquet")) for t in ("customers", "orders")
    }
    # A run stage is announced when it starts: the peak printed with it is the peak up to the previous one's end.
    marks: dict[str, float] = {}

    def on_stage(name: str) -> None:
        marks[name] = time.perf_counter()
        jvm = f", JVM {tree.peaks()['jvm_peak_mb']:,.0f} MB" if tree else ""
        _say(started, f"  run: {name} (peak {_peak_mb():,.0f} MB{jvm})")

    def run_job() -> Any:
        marks["start"] = time.perf_counter()
        report = run(ws, on_stage=on_stage)
        marks["end"] = time.perf_counter()
        return report

    report = stage("run", run_job)
    # The run's wall time outside its own stage timings, split: before the models stage starts (on Spark: the
    # session and the JVM, exporting the tables to Parquet, counting the inputs) and after the Pareto curve.
    outside = {
        "start": marks["measures"] - report.timings["models"] - marks["start"],
        "end": marks["end"] - marks["saving"],
    }
    html = size_dir / "report.html"
    summary = stage("report", lambda: write_report(ws, html, progress=lambda s: _say(started, f"  report: {s}")))
    total = measure(t_all)
    # Not timed: the core columns for the comparison with pandas, and the size of what was stored.
    (size_dir / "out").mkdir(exist_ok=True)
    ws.table(report.snapshot_table).select(CORE).to_parquet(size_dir / "out" / "run.parquet")
    ws.close()
    if tree:
        tree.stop()
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    db_mb = sum(p.stat().st_size for p in ws_dir.rglob("*") if p.is_file()) / 1e6
    return {
        **total,
        "engine": engine,
        "spark_conf": spark_conf if engine == "spark" else None,
        "stages": stages,
        "ingest": {
            t: {k: getattr(r, k) for k in ("status", "rows_read", "rows_loaded", "rows_quarantined", "timings")}
            for t, r in ingest.items()
        },
        "run_timings": report.timings,
        "run_outside": outside,
        "run_engine": report.engine,
        "run_id": report.run_id,
        "as_of": report.as_of.isoformat(),
        "customers": report.customers,
        "report_bytes": summary.bytes,
        "workspace_mb": db_mb,
    }


def _pandas(size_dir: Path) -> dict[str, Any]:
    """bench_run.py's pandas core, read from the generated files instead of the ingested tables."""
    import pandas as pd

    from tierwise.config import Config, load_config

    toml = size_dir / "ws" / "tierwise.toml"
    cfg = load_config(toml) if toml.exists() else Config()
    as_of = dt.date.fromisoformat(json.loads((size_dir / "out" / "as_of.json").read_text()))
    t0 = _clock()
    columns = ["order_id", "customer_id", "order_date", "amount", "quantity", "status"]
    orders = pd.read_parquet(size_dir / "data" / "orders.parquet", columns=columns)
    customers = pd.read_parquet(size_dir / "data" / "customers.parquet", columns=["customer_id"])
    read = _since(t0)
    # Returns as ingest flags them: a cancelled status or order-number prefix, a negative amount or quantity.
    cancelled = orders["status"].str.strip().str.lower().isin(cfg.ingest.cancel_statuses).fillna(False)
    order_id = orders["order_id"].str.strip().str.upper()
    for prefix in cfg.ingest.cancel_prefixes:
        cancelled |= order_id.str.startswith(prefix.upper()).fillna(False).astype(bool)
    orders["is_return"] = cancelled | (orders["amount"] < 0).fillna(False) | (orders["quantity"] < 0).fillna(False)
    orders = orders.drop(columns=["order_id", "quantity", "status"])
    del order_id, cancelled

    df = pandas_core(orders, customers, as_of, cfg)
    m = _since(t0)
    for col in ("first_order_date", "last_order_date"):
        df[col] = df[col].dt.date
    df.reset_index()[CORE].to_parquet(size_dir / "out" / "pandas.parquet")
    return {**m, "read_s": read["seconds"], "rows": len(df)}


# ------------------------------------------------------------------------------------------------- driver


def _in_child(
    kind: str,
    size_dir: Path,
    limit: float | None,
    memory_limit: str | None = None,
    engine: str = "duckdb",
    spark_conf: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One measurement in a fresh process, its progress echoed as it comes; {"failed": why} if it did not finish."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(size_dir), memory_limit or "", engine, json.dumps(spark_conf)],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    state = {"stage": "starting", "result": ""}

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS):
                text = line[len(PROGRESS) :].rstrip()
                print(f"    {kind}: {text}", flush=True)
                state["stage"] = text
            elif line.startswith(RESULT):
                state["result"] = line[len(RESULT) :]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    t0 = time.perf_counter()
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()  # this child only, by its own id (a JVM it started ends with it: it watches its stdin)
        proc.wait()
        reader.join()
        why = f"did not finish within {limit:.0f} s (stopped); last progress: {state['stage']}"
        print(f"  {kind} {why}", flush=True)
        return {"failed": why, "seconds_until_stopped": time.perf_counter() - t0}
    reader.join()
    if code or not state["result"]:
        why = f"exit code {code} after {time.perf_counter() - t0:.0f} s; last progress: {state['stage']}"
        print(f"  {kind} FAILED: {why}", flush=True)
        return {"failed": why}
    return json.loads(state["result"])


def _child(kind: str, size_dir: str, memory_limit: str, engine: str, spark_conf: str) -> None:
    path = Path(size_dir)
    if kind == "end-to-end":
        result = _end_to_end(path, memory_limit or None, engine, json.loads(spark_conf) or {})
    else:
        result = _pandas(path)
    print(RESULT + json.dumps(result, default=str), flush=True)


def _pandas_skip(transactions: int, pandas_max: int, measured: list[tuple[int, float]]) -> str | None:
    if transactions <= pandas_max:
        return None
    reason = f"above --pandas-max {pandas_max:,} transactions"
    if measured:
        n, peak = max(measured)
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        need_gb = peak * transactions / n / 1024
        reason += (
            f"; its peak at {n:,} was {peak:,.0f} MB, so about {need_gb:,.0f} GB at {transactions:,} on a "
            f"{ram_gb:.0f} GB machine" + (": does not fit" if need_gb > 0.75 * ram_gb else "")
        )
    return reason


def _bench_size(base: Path, transactions: int, args: argparse.Namespace, history: list[dict[str, Any]]) -> dict:
    size_dir = base / str(transactions)
    print(f"== {transactions:,} transactions ({size_dir})", flush=True)
    prep = _prepare(size_dir, transactions, args.min_free_gb)
    entry: dict[str, Any] = {"transactions": transactions, "generated": prep}
    if "skipped" in prep:
        print(f"  SKIPPED: {prep['skipped']}", flush=True)
        return entry
    lines = prep["order_lines"]
    print(
        f"  data: {lines:,} order lines, {prep['customers']:,} customers; Parquet orders "
        f"{prep['parquet_mb']['orders']:,.0f} MB, customers {prep['parquet_mb']['customers']:,.0f} MB; "
        f"generated in {prep['generate_s']:.1f} s (not timed)",
        flush=True,
    )
    if args.generate_only:
        return entry

    load = os.getloadavg()
    spark = args.engine == "spark"
    notes = f", DuckDB memory limit {args.memory_limit}" if args.memory_limit else ""
    notes += f", Spark local[*] conf {json.dumps(args.spark_conf)}" if spark else ""
    print(f"  end to end (load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{notes}) ...", flush=True)
    e2e = _in_child("end-to-end", size_dir, args.limit, args.memory_limit, args.engine, args.spark_conf)
    e2e["memory_limit"] = args.memory_limit or "workspace default"
    e2e["load_before"] = load[0]
    e2e["load_after"] = os.getloadavg()[0]
    entry["end_to_end"] = e2e
    if "failed" not in e2e:
        (size_dir / "out" / "as_of.json").write_text(json.dumps(e2e["as_of"]))
        jvm_head = f" {'JVM MB':>8s} {'workers MB':>10s} {'all MB':>8s}" if spark else ""
        print(
            f"\n  {'stage':24s} {'seconds':>8s} {'share':>6s} {'CPU s':>7s} {'peak MB':>8s} {'rows/s':>12s}{jvm_head}"
        )
        rows = {"ingest customers": prep["customers"], "ingest orders": lines, "run": lines, "report": None}

        def jvm(m: dict[str, float]) -> str:
            return f" {m['jvm_peak_mb']:8,.0f} {m['workers_peak_mb']:10,.0f} {m['all_peak_mb']:8,.0f}" if spark else ""

        for name, m in e2e["stages"].items():
            rate = f"{rows[name] / m['seconds']:12,.0f}" if rows.get(name) else f"{'':12s}"
            share = 100 * m["seconds"] / e2e["seconds"]
            print(
                f"  {name:24s} {m['seconds']:8.2f} {share:5.1f}% {m['cpu_s']:7.1f} {m['peak_mb']:8,.0f} {rate}{jvm(m)}"
            )
            if name == "run":
                timed = {k: v for k, v in e2e["run_timings"].items() if k != "total"}
                timed["other"] = m["seconds"] - sum(timed.values())
                for k, v in timed.items():
                    print(f"    run: {k:18s} {v:8.2f}")
                for k, v in e2e["run_outside"].items():
                    print(f"    run:   other: {k:9s} {v:8.2f}")
        print(
            f"  {'total':24s} {e2e['seconds']:8.2f} {'':6s} {e2e['cpu_s']:7.1f} {e2e['peak_mb']:8,.0f} "
            f"{lines / e2e['seconds']:12,.0f}{jvm(e2e)}"
        )
        print(
            f"  loaded {e2e['ingest']['orders']['rows_loaded']:,} order lines "
            f"({e2e['ingest']['orders']['rows_quarantined']:,} quarantined), snapshot of {e2e['customers']:,} "
            f"customers as of {e2e['as_of']}, report {e2e['report_bytes'] / 1e3:,.0f} kB, workspace "
            f"{e2e['workspace_mb']:,.0f} MB on disk\n",
            flush=True,
        )

    measured = [(h["transactions"], h["pandas"]["peak_mb"]) for h in history if "seconds" in h.get("pandas", {})]
    skip = _pandas_skip(transactions, args.pandas_max, measured)
    if skip:
        entry["pandas"] = {"skipped": skip}
        print(f"  pandas skipped: {skip}", flush=True)
    elif "failed" in e2e:
        entry["pandas"] = {"skipped": "end to end did not finish (no as-of date, nothing to compare with)"}
    else:
        load = os.getloadavg()
        pd_result = _in_child("pandas", size_dir, args.limit)
        pd_result["load_before"] = load[0]
        entry["pandas"] = pd_result
        if "failed" not in pd_result:
            print(
                f"  pandas core {pd_result['seconds']:.2f} s (read {pd_result['read_s']:.2f} s), cpu "
                f"{pd_result['cpu_s']:.1f} s, peak {pd_result['peak_mb']:,.0f} MB, "
                f"{lines / pd_result['seconds']:,.0f} rows/s (load before {load[0]:.2f})",
                flush=True,
            )
            from tierwise.config import load_config

            abc = load_config(size_dir / "ws" / "tierwise.toml").abc
            diff = _compare(size_dir / "out", "run", "pandas", CORE, (abc.a_cutoff, abc.b_cutoff))
            entry["check"] = diff
            real = {k: v for k, v in diff.items() if not k.startswith("float ties")}
            print(f"  check run vs pandas (core columns): {'DIFFER' if real else 'agree'} {json.dumps(diff)}\n")
    return entry


def _summary(entries: list[dict[str, Any]], engine: str) -> dict[str, Any]:
    spark = engine == "spark"
    where = "; the run on Spark local mode; peak MB is the Python process's, JVM and all MB as above" if spark else ""
    print(f"\nsummary (end to end = init + ingest customers + ingest orders + run + report, one process{where})")
    head = (
        f"{'transactions':>13s} {'customers':>11s} {'e2e s':>8s} {'rows/s':>10s} {'CPU s':>7s} {'peak MB':>8s} "
        + (f"{'JVM MB':>8s} {'all MB':>8s} " if spark else "")
        + f"{'s / M':>6s} {'× time':>7s} {'× size':>7s} {'pandas s':>9s} {'pandas MB':>9s} {'load':>5s}"
    )
    print(head)
    previous: tuple[int, float] | None = None
    verdict: dict[str, Any] = {}
    for e in entries:
        gen, e2e, pd_r = e["generated"], e.get("end_to_end", {}), e.get("pandas", {})
        lines = gen.get("order_lines", e["transactions"])
        if "seconds" not in e2e:
            why = gen.get("skipped") or e2e.get("failed") or "not measured"
            print(f"{lines:13,d} {gen.get('customers', 0):11,d}  {why}")
            if e["transactions"] >= TARGET_TRANSACTIONS:
                verdict = {"met": False, "why": why}
            continue
        s = e2e["seconds"]
        ratio, size = ("", "") if previous is None else (f"{s / previous[1]:7.2f}", f"{lines / previous[0]:7.2f}")
        pd_s = f"{pd_r['seconds']:9.2f}" if "seconds" in pd_r else f"{'skipped':>9s}"
        pd_mb = f"{pd_r['peak_mb']:9,.0f}" if "seconds" in pd_r else f"{'':9s}"
        jvm = f"{e2e['jvm_peak_mb']:8,.0f} {e2e['all_peak_mb']:8,.0f} " if spark else ""
        print(
            f"{lines:13,d} {gen['customers']:11,d} {s:8.1f} {lines / s:10,.0f} {e2e['cpu_s']:7.1f} "
            f"{e2e['peak_mb']:8,.0f} {jvm}{s / lines * 1e6:6.2f} {ratio:>7s} {size:>7s} {pd_s} {pd_mb} "
            f"{e2e['load_before']:5.2f}"
        )
        if e["transactions"] >= TARGET_TRANSACTIONS:
            linear = None if previous is None else (s / previous[1]) <= (lines / previous[0])
            verdict = {
                "seconds_ok": s <= TARGET_SECONDS,
                "peak_ok": e2e.get("all_peak_mb", e2e["peak_mb"]) <= TARGET_PEAK_MB,  # on Spark: with the JVM
                "linear_from_previous": linear,
            }
            verdict["met"] = all(v is not False for v in verdict.values())
        previous = (lines, s)
    if not verdict:
        print(f"targets at {TARGET_TRANSACTIONS:,} (≤ {TARGET_SECONDS:.0f} s, ≤ 8 GB): not measured in this run")
    elif "why" in verdict:
        print(f"targets at {TARGET_TRANSACTIONS:,} (≤ {TARGET_SECONDS:.0f} s, ≤ 8 GB): NOT MET ({verdict['why']})")
    else:
        word = {True: "met", False: "MISSED", None: "not measured"}
        print(
            f"targets at {TARGET_TRANSACTIONS:,}: ≤ {TARGET_SECONDS:.0f} s {word[verdict['seconds_ok']]}; "
            f"peak ≤ 8 GB {word[verdict['peak_ok']]}; "
            f"no worse than linear from the previous size {word[verdict['linear_from_previous']]}"
        )
    return verdict


def _spark_versions() -> str:
    """PySpark's version and the first line of `java -version` of the Java PySpark starts (JAVA_HOME, else PATH)."""
    import pyspark

    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java") or "java"
    try:
        first = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        first = "no java found"
    return f", PySpark {pyspark.__version__}, Java {first}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, nargs="+", default=[1_000_000], help="order lines (about)")
    ap.add_argument("--keep", type=Path, help="reuse/keep generated Parquet (and the last workspaces) in this folder")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write all results to this JSON file")
    ap.add_argument("--generate-only", action="store_true", help="only generate the data (with --keep)")
    ap.add_argument("--pandas-max", type=int, default=20_000_000, help="largest size for the pandas baseline")
    ap.add_argument("--limit", type=float, default=1500, help="stop a child after this many seconds (default 1500)")
    ap.add_argument("--min-free-gb", type=float, help="free disk wanted before generating (default 300 B/line)")
    ap.add_argument("--memory-limit", help="[engine] memory_limit of the fresh workspace (default: as init writes it)")
    ap.add_argument(
        "--engine", choices=["duckdb", "spark"], default="duckdb", help="engine of the run (ingest: DuckDB)"
    )
    ap.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"with --engine spark: a setting added to or replacing [engine.spark] conf {json.dumps(SPARK_CONF)}",
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    pairs = [item.partition("=") for item in args.spark_conf]
    if any(not key or not sep for key, sep, _ in pairs):
        ap.error("--spark-conf wants KEY=VALUE")
    args.spark_conf = {**SPARK_CONF, **{key.strip(): value.strip() for key, _, value in pairs}}

    import duckdb
    import ibis
    import pandas as pd
    import pyarrow as pa

    base = args.keep or Path(tempfile.mkdtemp(prefix="tw-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    machine = (
        f"{os.cpu_count()} cores, {ram_gb:.1f} GB RAM, {platform.processor() or platform.machine()}; "
        f"Python {sys.version.split()[0]}, DuckDB {duckdb.__version__}, Ibis {ibis.__version__}, "
        f"pyarrow {pa.__version__}, pandas {pd.__version__}{_spark_versions() if args.engine == 'spark' else ''}; "
        f"{shutil.disk_usage(base).free / 1e9:.0f} GB free on {base}; {dt.datetime.now().isoformat(timespec='minutes')}"
    )
    print(f"machine: {machine}", flush=True)
    entries: list[dict[str, Any]] = []
    try:
        for n in args.transactions:
            entries.append(_bench_size(base, n, args, entries))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    verdict = _summary(entries, args.engine) if not args.generate_only else {}
    if args.json:
        spark = {"engine": args.engine, "spark_conf": args.spark_conf if args.engine == "spark" else None}
        doc = {"machine": machine, **spark, "sizes": entries, "targets_100m": verdict}
        args.json.write_text(json.dumps(doc, indent=1, default=str))


if __name__ == "__main__":
    main()
