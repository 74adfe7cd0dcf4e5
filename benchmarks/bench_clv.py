"""Predictive CLV benchmark: the whole chain on generated data, next to lifetimes 0.11.3 on the same data.

    .venv/bin/python benchmarks/bench_clv.py --customers 1000000 10000000 --keep /tmp/bench-clv

For each size the script generates Parquet data once (`tierwise generate`, B2C profile, seed 1, four years of
history 2021–2024: about 6.8 order lines per customer, so 1 million customers ≈ 6.8 million lines). The chain,
on the sales (order lines with a positive amount; the ~2% return lines are left out), is

  summary   RFM summary in weeks, calibration to the last day of the data (2024-12-31)
  bgnbd     BG/NBD fit on every customer
  mbgnbd    MBG/NBD fit on every customer (tierwise ModifiedBetaGeoModel, lifetimes ModifiedBetaGeoFitter); not
            used by the CLV step, which stays BG/NBD's
  gg        Gamma-Gamma fit on the repeat customers (frequency > 0)
  clv       discounted CLV over 12 months at 1% a month, for every customer
  bgbb      BG/BB fit on a discrete summary of the same sales: calendar quarters as opportunities (x = quarters
            with a sale after the first sale's quarter, t_x = the last of them, n = quarters from the first sale's
            to the last of 2024, at most 15; customers whose first quarter is the last have n = 0 and are left out).
            The summary is made once per size with DuckDB (DIR/SIZE/discrete.parquet); the step times reading it
            and the fit. Quarters, not months: on monthly opportunities (n up to 47) lifetimes' BG/BB does not
            converge (its likelihood sums beta functions in linear space, floored at 1e-15, and turns NaN)

and each implementation runs in its own child process, so that its peak memory (max RSS, imports included)
is its own:

  tierwise   DuckDB in memory: `read_parquet` of the orders, `tierwise.clv.rfm_summary(...)` fetched with
             `to_pyarrow` to numpy, `BetaGeoModel().fit`, `ModifiedBetaGeoModel().fit`, `GammaGammaModel().fit`,
             `customer_lifetime_value`
  lifetimes  lifetimes 0.11.3 in a side environment (numpy<2, pandas<2.2, scipy<1.13: it does not install next
             to tierwise's); timed from `pd.read_parquet` on: `summary_data_from_transaction_data(freq='D',
             freq_multiplier=7)`, `BetaGeoFitter().fit`, `ModifiedBetaGeoFitter().fit`, `GammaGammaFitter().fit`,
             `GammaGammaFitter.customer_lifetime_value(freq='W')`; BG/BB: `pd.read_parquet`, the patterns counted
             with `groupby(...).size()` (lifetimes fits a recency-frequency matrix with weights, as its docs say;
             on one row per customer its likelihood loops over the rows' longest gap each evaluation), then
             `BetaGeoBetaBinomFitter().fit(..., weights)`. tierwise fits the per-customer arrays (it compresses)

The side environment is created on demand as DIR/lifetimes-venv (about a minute; with --keep it is kept for
later invocations), or pass --lifetimes-python. lifetimes runs only up to --lifetimes-max customers
(default 1 million): its summary and its CLV are plain pandas/numpy over every row, several minutes and
>10 GB at 10 million customers.

Each line shows wall seconds per step, the total, CPU seconds of the process (user + system, all threads)
and peak MB. After the timing each child writes its summary and CLV per customer to Parquet; the script then
compares the fitted parameters side by side (relative difference), the summaries customer by customer and the
CLV (Pearson correlation, relative differences, totals). One definitional difference remains in the CLV:
tierwise's month is 365.25 / 12 = 30.4375 days, lifetimes' (freq='W') is 4.345 weeks = 30.415 days, so
lifetimes' horizon is 0.07% shorter; both discount month m by (1 + d)^m and give one-off buyers the
population mean spend. The final table gives each step's seconds and the ratio lifetimes ÷ tierwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

KINDS = ["tierwise", "lifetimes"]
STEPS = ["read", "summary", "bgnbd", "mbgnbd", "gg", "clv", "bgbb"]


class History(TypedDict):
    start: dt.date
    end: dt.date


HISTORY: History = {"start": dt.date(2021, 1, 1), "end": dt.date(2024, 12, 31)}
CALIBRATION_END = HISTORY["end"]  # the last day of the data
UNIT_DAYS = 7  # weeks
HORIZON_MONTHS = 12
DISCOUNT = 0.01
LIFETIMES_PINS = ["lifetimes==0.11.3", "numpy<2", "pandas<2.2", "scipy<1.13", "pyarrow<20"]  # 20+ need numpy 2
TOLERANCE = 0.01  # parameters within 1%
MIN_CORRELATION = 0.999


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _Steps:
    """Wall seconds per step, in order; CPU seconds and peak MB of the whole chain."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu0 = _cpu()
        self.t0 = self.last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = now - self.last
        self.last = now

    def result(self) -> dict[str, Any]:
        return {
            "steps": self.seconds,
            "seconds": time.perf_counter() - self.t0,
            "cpu_s": _cpu() - self.cpu0,
            "peak_mb": _peak_mb(),
        }


# ---------------------------------------------------------------------------------------------- preparation


def _prepare(size_dir: Path, customers: int) -> dict[str, Any]:
    """Generate once per size; the summary is kept in prepared.json."""
    summary_file = size_dir / "prepared.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text())
    from tierwise.generate import generate

    size_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    generated = generate(size_dir / "data", customers=customers, seed=1, profile="b2c", fmt="parquet", **HISTORY)
    summary = {"customers": customers, "order_lines": generated.rows["orders"], "generate_s": time.perf_counter() - t0}
    summary_file.write_text(json.dumps(summary, indent=1))
    return summary


FIRST_MONTH = HISTORY["start"].year * 12 + HISTORY["start"].month - 1
LAST_MONTH = CALIBRATION_END.year * 12 + CALIBRATION_END.month - 1
OPPORTUNITY_MONTHS = 3  # BG/BB opportunities: calendar quarters
LAST_OPPORTUNITY = (LAST_MONTH - FIRST_MONTH) // OPPORTUNITY_MONTHS


def _discrete(size_dir: Path) -> Path:
    """The BG/BB input: one row per customer with quarterly opportunities (see the module docstring), once."""
    path = size_dir / "discrete.parquet"
    if path.exists():
        return path
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    orders = size_dir / "data" / "orders.parquet"
    con.execute(f"""
        COPY (
            WITH months AS (
                SELECT DISTINCT customer_id,
                    (year(order_date) * 12 + month(order_date) - 1 - {FIRST_MONTH}) // {OPPORTUNITY_MONTHS} AS k
                FROM read_parquet('{orders}')
                WHERE amount > 0 AND order_date < DATE '{CALIBRATION_END + dt.timedelta(days=1)}'
            ), first AS (SELECT customer_id, min(k) AS k0 FROM months GROUP BY customer_id)
            SELECT customer_id,
                count(*) FILTER (WHERE k > k0)::BIGINT AS frequency,
                coalesce(max(k) FILTER (WHERE k > k0) - k0, 0)::BIGINT AS recency,
                ({LAST_OPPORTUNITY} - k0)::BIGINT AS periods
            FROM months JOIN first USING (customer_id)
            GROUP BY customer_id, k0
            HAVING {LAST_OPPORTUNITY} - k0 > 0
        ) TO '{path}' (FORMAT parquet)
    """)
    con.close()
    return path


def _lifetimes_python(base: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    python = base / "lifetimes-venv" / "bin" / "python"
    if not python.exists():
        print(f"creating the side environment {python.parent.parent} for lifetimes ({' '.join(LIFETIMES_PINS)})")
        print("  (not part of the project; delete it with the --keep folder)", flush=True)
        subprocess.run(["python3", "-m", "venv", str(python.parent.parent)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *LIFETIMES_PINS]
        subprocess.run(pip, check=True)
    return python


# ------------------------------------------------------------------------------------------- measurements


def _tierwise(size_dir: Path) -> dict[str, Any]:
    import warnings

    import ibis
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tierwise.clv import (
        BetaGeoBetaBinomModel,
        BetaGeoModel,
        GammaGammaModel,
        ModifiedBetaGeoModel,
        customer_lifetime_value,
        rfm_summary,
    )

    clock = _Steps()
    con = ibis.duckdb.connect()
    orders = con.read_parquet(size_dir / "data" / "orders.parquet")
    sales = orders.filter(orders.amount > 0)
    clock.done("read")
    summary = rfm_summary(
        sales, amount_col="amount", calibration_end=CALIBRATION_END, time_unit_days=UNIT_DAYS
    ).to_pyarrow()
    f = summary["frequency"].to_numpy().astype(np.float64)
    r = summary["recency"].to_numpy()
    age = summary["T"].to_numpy()
    m = summary["monetary_value"].to_numpy()
    clock.done("summary")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bg = BetaGeoModel().fit(f, r, age)
        clock.done("bgnbd")
        mbg = ModifiedBetaGeoModel().fit(f, r, age)
        clock.done("mbgnbd")
        repeat = f > 0
        gg = GammaGammaModel().fit(f[repeat], m[repeat])
        clock.done("gg")
    clv = customer_lifetime_value(
        bg,
        gg,
        f,
        r,
        age,
        m,
        horizon_months=HORIZON_MONTHS,
        discount_rate_monthly=DISCOUNT,
        time_unit_days=UNIT_DAYS,
    )
    clock.done("clv")
    discrete = pq.read_table(size_dir / "discrete.parquet", columns=["frequency", "recency", "periods"])
    with warnings.catch_warnings(record=True) as caught_bgbb:
        warnings.simplefilter("always")
        bgbb = BetaGeoBetaBinomModel().fit(*(discrete[c].to_numpy() for c in ("frequency", "recency", "periods")))
    clock.done("bgbb")
    caught += caught_bgbb
    result = clock.result()
    out = summary.select(["customer_id", "frequency", "recency", "T", "monetary_value"]).append_column(
        "clv", pa.array(clv)
    )
    pq.write_table(out, size_dir / "out" / "tierwise.parquet")
    return {
        **result,
        "rows": summary.num_rows,
        "repeat": int(repeat.sum()),
        "params": {"bgnbd": bg.params_, "mbgnbd": mbg.params_, "gg": gg.params_, "bgbb": bgbb.params_},
        "log_likelihood": {
            "bgnbd": bg.log_likelihood_,
            "mbgnbd": mbg.log_likelihood_,
            "gg": gg.log_likelihood_,
            "bgbb": bgbb.log_likelihood_,
        },
        "unique_rows": {
            "bgnbd": getattr(bg, "n_unique_rows_", None),
            "mbgnbd": getattr(mbg, "n_unique_rows_", None),
            "gg": getattr(gg, "n_unique_rows_", None),
            "bgbb": bgbb.n_unique_rows_,
        },
        "bgbb_customers": discrete.num_rows,
        "warnings": [str(w.message) for w in caught],
    }


def _lifetimes(size_dir: Path) -> dict[str, Any]:
    """Runs with the side environment's python: lifetimes, numpy<2, pandas<2.2 (no tierwise here)."""
    import warnings

    import pandas as pd
    from lifetimes import BetaGeoBetaBinomFitter, BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    warnings.simplefilter("ignore")  # lifetimes' and pandas' deprecation chatter
    clock = _Steps()
    df = pd.read_parquet(size_dir / "data" / "orders.parquet", columns=["customer_id", "order_date", "amount"])
    df = df[df["amount"] > 0]
    clock.done("read")
    summary = summary_data_from_transaction_data(
        df,
        "customer_id",
        "order_date",
        monetary_value_col="amount",
        observation_period_end=CALIBRATION_END.isoformat(),
        freq="D",
        freq_multiplier=UNIT_DAYS,
    )
    clock.done("summary")
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    clock.done("bgnbd")
    mbgf = ModifiedBetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    clock.done("mbgnbd")
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    clock.done("gg")
    clv = ggf.customer_lifetime_value(
        bgf,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        summary["monetary_value"],
        time=HORIZON_MONTHS,
        discount_rate=DISCOUNT,
        freq="W",
    )
    clock.done("clv")
    discrete = pd.read_parquet(size_dir / "discrete.parquet", columns=["frequency", "recency", "periods"])
    patterns = discrete.groupby(["frequency", "recency", "periods"]).size().rename("weights").reset_index()
    bbf = BetaGeoBetaBinomFitter().fit(
        patterns["frequency"], patterns["recency"], patterns["periods"], patterns["weights"]
    )
    clock.done("bgbb")
    result = clock.result()
    out = summary[["frequency", "recency", "T", "monetary_value"]].assign(clv=clv).reset_index()
    out.to_parquet(size_dir / "out" / "lifetimes.parquet", index=False)
    return {
        **result,
        "rows": len(summary),
        "repeat": len(repeat),
        "params": {
            "bgnbd": dict(bgf.params_),
            "mbgnbd": dict(mbgf.params_),
            "gg": dict(ggf.params_),
            "bgbb": dict(bbf.params_),
        },
        "log_likelihood": {
            "bgnbd": float(bgf._negative_log_likelihood_) * -len(summary),
            "mbgnbd": float(mbgf._negative_log_likelihood_) * -len(summary),
            # lifetimes minimises the weighted mean
            "bgbb": float(bbf._negative_log_likelihood_) * -float(patterns["weights"].sum()),
        },
    }


# ----------------------------------------------------------------------------------------------- checking


def _agreement(size_dir: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Parameters side by side, the summaries customer by customer, CLV correlation and relative differences."""
    import duckdb

    tw, lt = results["tierwise"], results["lifetimes"]
    params: dict[str, dict[str, float]] = {}
    print("  agreement:  parameter  tierwise  lifetimes  rel. diff", flush=True)
    beta_geo = ("r", "alpha", "a", "b")
    models = (
        ("bgnbd", beta_geo),
        ("mbgnbd", beta_geo),
        ("gg", ("p", "q", "v")),
        ("bgbb", ("alpha", "beta", "gamma", "delta")),
    )
    for model, names in models:
        for name in names:
            a, b = tw["params"][model][name], lt["params"][model][name]
            rel = abs(a - b) / abs(b)
            params[f"{model}.{name}"] = {"tierwise": a, "lifetimes": b, "rel_diff": rel}
            flag = "" if rel <= TOLERANCE else "  > 1%"
            print(f"    {model:6s} {name:5s} {a:12.6g} {b:12.6g} {rel:10.2e}{flag}", flush=True)
    if "bgbb" in lt.get("log_likelihood", {}):
        a, b = tw["log_likelihood"]["bgbb"], lt["log_likelihood"]["bgbb"]
        print(f"    bgbb   LL    {a:12.2f} {b:12.2f} {abs(a - b):10.2e} (absolute)", flush=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    out = size_dir / "out"
    query = f"""
        SELECT count(*) AS customers,
            count(*) FILTER (WHERE a.customer_id IS NULL OR b.customer_id IS NULL) AS missing,
            count(*) FILTER (WHERE a.frequency <> b.frequency) AS frequency,
            count(*) FILTER (WHERE abs(a.recency - b.recency) > 1e-9) AS recency,
            count(*) FILTER (WHERE abs(a."T" - b."T") > 1e-9) AS "T",
            count(*) FILTER (WHERE abs(a.monetary_value - b.monetary_value)
                > 1e-9 * greatest(1, abs(a.monetary_value))) AS monetary_value,
            corr(a.clv, b.clv) AS clv_corr,
            median(abs(a.clv / b.clv - 1)) AS clv_rel_median,
            quantile_cont(abs(a.clv / b.clv - 1), 0.99) AS clv_rel_p99,
            max(abs(a.clv / b.clv - 1)) AS clv_rel_max,
            sum(a.clv) AS tierwise_total, sum(b.clv) AS lifetimes_total
        FROM read_parquet('{out / "tierwise.parquet"}') a
        FULL JOIN read_parquet('{out / "lifetimes.parquet"}') b USING (customer_id)
    """
    rel = con.sql(query)
    row = dict(zip(rel.columns, rel.fetchone() or (), strict=True))
    print(
        f"    summary: {row['customers']:,} customers; differing rows: missing {row['missing']}, frequency "
        f"{row['frequency']}, recency {row['recency']}, T {row['T']}, monetary_value {row['monetary_value']}",
        flush=True,
    )
    print(
        f"    CLV: correlation {row['clv_corr']:.7f}; |tierwise/lifetimes − 1| median {row['clv_rel_median']:.2e}, "
        f"99% {row['clv_rel_p99']:.2e}, max {row['clv_rel_max']:.2e}; totals {row['tierwise_total']:,.0f} vs "
        f"{row['lifetimes_total']:,.0f} (month 30.4375 vs 30.415 days)",
        flush=True,
    )
    worst = max(p["rel_diff"] for p in params.values())
    ok = worst <= TOLERANCE and row["clv_corr"] > MIN_CORRELATION
    print(f"    verdict: {'agree' if ok else 'DIFFER'} (largest parameter difference {worst:.2e})", flush=True)
    return {"params": params, "customers": row, "agree": ok}


# ------------------------------------------------------------------------------------------------- driver


def _in_child(kind: str, size_dir: Path, python: str) -> dict[str, Any] | None:
    """One measurement in a fresh process; None (after printing the error's last lines) if it failed."""
    out = subprocess.run([python, __file__, "--child", kind, str(size_dir)], capture_output=True, text=True)
    if out.returncode:
        tail = "\n".join("    " + line for line in out.stderr.strip().splitlines()[-6:])
        print(f"  {kind} FAILED:\n{tail}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(kind: str, size_dir: str) -> None:
    result = {"tierwise": _tierwise, "lifetimes": _lifetimes}[kind](Path(size_dir))
    print(json.dumps(result))


def _bench_size(base: Path, customers: int, args: argparse.Namespace) -> dict[str, Any]:
    size_dir = base / str(customers)
    print(f"== {customers:,} customers ({size_dir})", flush=True)
    prep = _prepare(size_dir, customers)
    _discrete(size_dir)
    print(
        f"  data: {prep['order_lines']:,} order lines ({prep['order_lines'] / customers:.2f} per customer), "
        f"generated in {prep['generate_s']:.0f} s",
        flush=True,
    )
    (size_dir / "out").mkdir(exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for kind in args.only or KINDS:
        if kind == "lifetimes" and customers > args.lifetimes_max:
            print(f"  lifetimes skipped: more than --lifetimes-max {args.lifetimes_max:,} customers", flush=True)
            continue
        python = str(_lifetimes_python(base, args.lifetimes_python)) if kind == "lifetimes" else sys.executable
        load = os.getloadavg()[0]
        tries = [r for _ in range(args.repeat) if (r := _in_child(kind, size_dir, python)) is not None]
        if not tries:
            continue
        best = min(tries, key=lambda r: r["seconds"])
        best["all_seconds"] = [round(r["seconds"], 2) for r in tries]
        best["load_before"] = load
        results[kind] = best
        steps = ", ".join(f"{s} {v:.2f}" for s, v in best["steps"].items())
        print(
            f"  {kind:9s} {best['seconds']:7.2f} s ({steps})  cpu {best['cpu_s']:6.1f} s  "
            f"peak {best['peak_mb']:>7,.0f} MB  customers {best['rows']:,} ({best['repeat']:,} repeat)  "
            f"tries {best['all_seconds']}  load {load:.1f}",
            flush=True,
        )
        if best.get("unique_rows"):
            print(f"    rows after compression: {best['unique_rows']}", flush=True)
        for w in best.get("warnings", []):
            print(f"    warning: {w}", flush=True)

    agreement = _agreement(size_dir, results) if len(results) == 2 else None
    tw, lt = results.get("tierwise"), results.get("lifetimes")
    print(f"\n  {'step':8s} {'tierwise s':>10s} {'lifetimes s':>11s} {'ratio':>7s}")
    for step in [*STEPS, "total"]:

        def sec(r: dict[str, Any] | None, step: str = step) -> float | None:
            return None if r is None else (r["seconds"] if step == "total" else r["steps"].get(step))

        a, b = sec(tw), sec(lt)
        ratio = f"{b / a:7.1f}" if a and b else f"{'-':>7s}"
        print(f"  {step:8s} {'-' if a is None else f'{a:.2f}':>10s} {'-' if b is None else f'{b:.2f}':>11s} {ratio}")
    print(flush=True)
    return {"customers": customers, "prepared": prep, "results": results, "agreement": agreement}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, nargs="+", default=[1_000_000], help="customers to generate")
    ap.add_argument("--keep", type=Path, help="reuse/keep generated data and the lifetimes venv in this folder")
    ap.add_argument("--only", nargs="+", choices=KINDS, help="run only these measurements")
    ap.add_argument("--lifetimes-max", type=int, default=1_000_000, help="run lifetimes up to this many customers")
    ap.add_argument("--lifetimes-python", type=Path, help="a python with lifetimes 0.11.3 (default: a side venv)")
    ap.add_argument("--repeat", type=int, default=1, help="run each measurement N times, report the fastest")
    ap.add_argument("--json", action="store_true", help="print all results as one JSON document at the end")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    base = args.keep or Path(tempfile.mkdtemp(prefix="tw-bench-clv-"))
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}", flush=True)
    try:
        report = [_bench_size(base, n, args) for n in args.customers]
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
