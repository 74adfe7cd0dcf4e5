"""`tierwise clv fit FILE`: the CLV models on a transaction file, without a workspace.

For analysts who only want the models: the file is read like an ingest (CSV in any encoding or separator,
Excel, Parquet; `--no-header` files name their columns by position, 1, 2, …), dates and amounts are parsed by
the ingest parsers, a value that cannot be read stops the fit with its line and column (nothing is guessed),
and the summary, the fit and the optional holdout check run as in the main job.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from tierwise.clv import metrics
from tierwise.clv._fit import fit_notes
from tierwise.clv.bgbb import BetaGeoBetaBinomModel
from tierwise.clv.gamma_gamma import GammaGammaModel
from tierwise.clv.predict import TRANSACTION_MODELS
from tierwise.clv.summary import rfm_summary
from tierwise.errors import UserError
from tierwise.ingest.parse import apply_stages, date_order_evidence, decide_date_order, stages_for
from tierwise.ingest.readers import open_source

Model = Literal["bgnbd", "mbgnbd", "pnbd", "gg"]
LINE = "_line"


def _column(name: str, columns: list[str], option: str, header: bool) -> str:
    if name in columns:
        return name
    if not header and name.isdigit() and 1 <= int(name) <= len(columns):
        return columns[int(name) - 1]
    hint = "its position 1, 2, …" if not header else ", ".join(c for c in columns if c != LINE)
    raise UserError(f"{option} '{name}': no such column; use {hint}")


def _read(path: Path, header: bool) -> tuple[pa.Table, list[str]]:
    source = open_source(path, header=header)
    try:
        table = pa.Table.from_batches(list(source.batches))
    finally:
        source.close()
    return table, [c for c in source.columns if c != LINE]


def _parsed(path: Path, table: pa.Table, date_col: str, amount_col: str | None, customer_col: str) -> ibis.Table:
    """customer_id, order_date (timestamp), amount: parsed, or a UserError naming the first unreadable value."""
    t = ibis.memtable(table).mutate(customer_id=ibis._[customer_col].cast("string").strip())
    date_src = ibis._[date_col].cast("string")
    t = t.mutate(_date_raw=date_src)
    order = decide_date_order(date_order_evidence(t, "_date_raw"), "auto")
    if not isinstance(order, str):
        order = "ymd"
    stages = [stages_for("timestamp", "_date_raw", "order_date", order)]
    if amount_col:
        t = t.mutate(_amount_raw=ibis._[amount_col].cast("string"))
        stages.append(stages_for("amount", "_amount_raw", "amount"))
    t = apply_stages(t, stages)
    checks = [("order_date", "_date_raw", date_col, "a date like 2024-03-05")]
    if amount_col:
        checks.append(("amount", "_amount_raw", amount_col, "an amount like 129.90"))
    for parsed, raw, column, expected in checks:
        bad = t.filter(t[parsed].isnull() & t[raw].notnull() & (t[raw].strip() != "")).order_by(LINE).limit(1)
        rows = bad.select(LINE, raw).to_pyarrow().to_pylist()
        if rows:
            raise UserError(
                f"cannot read '{rows[0][raw]}' as {expected}; fix the value or choose another column",
                file=str(path),
                line=rows[0][LINE],
                column=column,
            )
    missing = t.filter(t.customer_id.isnull() | (t.customer_id == "")).order_by(LINE).limit(1).to_pyarrow()
    if missing.num_rows:
        raise UserError("no customer id; every transaction needs one", file=str(path), line=missing[LINE][0].as_py())
    keep = ["customer_id", "order_date", *(["amount"] if amount_col else [])]
    return t.select(*keep)


def fit_file(
    path: Path,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    calibration_end: dt.date,
    holdout_end: dt.date | None,
    time_unit_days: float,
    model: Model,
    header: bool = True,
) -> dict[str, Any]:
    if model == "gg" and not amount_col:
        raise UserError("--model gg fits spend: name the amount column with --amount-col")
    table, columns = _read(path, header)
    customer = _column(customer_col, columns, "--customer-col", header)
    date = _column(date_col, columns, "--date-col", header)
    amount = _column(amount_col, columns, "--amount-col", header) if amount_col else None
    orders = _parsed(path, table, date, amount, customer)
    summary = (
        rfm_summary(
            orders,
            amount_col="amount" if amount else None,
            calibration_end=calibration_end,
            observation_end=holdout_end,
            time_unit_days=time_unit_days,
        )
        .to_pyarrow()
        .sort_by("customer_id")
    )
    if summary.num_rows == 0:
        raise UserError(f"no customer bought by {calibration_end}; choose a later --calibration-end", file=str(path))
    f = summary["frequency"].to_numpy().astype(np.float64)
    r, age = summary["recency"].to_numpy(), summary["T"].to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if model == "gg":
            m = summary["monetary_value"].to_numpy()
            repeat = (f > 0) & (m > 0)
            fitted: Any = GammaGammaModel().fit(f[repeat], m[repeat])
        else:
            fitted = TRANSACTION_MODELS[model]().fit(f, r, age)
    result: dict[str, Any] = {
        "model": model,
        "file": str(path),
        "calibration_end": calibration_end.isoformat(),
        "time_unit_days": time_unit_days,
        "params": dict(fitted.params_),
        "standard_errors": dict(fitted.standard_errors_),
        "log_likelihood": float(fitted.log_likelihood_),
        "n_customers": int(fitted.n_customers_),
        "notes": fit_notes(caught),
        "backtest": None,
    }
    if holdout_end is not None and model != "gg":
        actual = summary["frequency_holdout"].to_numpy().astype(np.float64)
        duration = float(summary["duration_holdout"][0].as_py())
        predicted = np.asarray(fitted.expected_purchases(duration, f, r, age), dtype=np.float64)
        result["backtest"] = {
            "holdout_end": holdout_end.isoformat(),
            "holdout_length": duration,
            "purchases": metrics.accuracy(predicted, actual),
            "buckets": metrics.as_dicts(metrics.purchase_buckets(f, predicted, actual)),
        }
    return result


DISCRETE_COLUMNS = ("frequency", "recency", "periods")


def fit_discrete_file(path: Path) -> dict[str, Any]:
    """`tierwise clv fit FILE --model bgbb`: BG/BB on a discrete summary (one row per customer or per pattern:
    frequency, recency, periods and optionally weights, the number of customers with the pattern)."""
    table, columns = _read(path, header=True)
    missing = [c for c in DISCRETE_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"--model bgbb reads a discrete summary with columns frequency, recency, periods (and optionally "
            f"weights); missing: {', '.join(missing)} (found: {', '.join(columns) or 'none'})",
            file=str(path),
        )
    if table.num_rows == 0:
        raise UserError("no rows: the summary is empty", file=str(path))
    values = {c: _numbers(path, table, c) for c in (*DISCRETE_COLUMNS, *(["weights"] if "weights" in columns else []))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = BetaGeoBetaBinomModel().fit(
            values["frequency"], values["recency"], values["periods"], values.get("weights")
        )
    return {
        "model": "bgbb",
        "file": str(path),
        "params": dict(fitted.params_),
        "standard_errors": dict(fitted.standard_errors_),
        "log_likelihood": float(fitted.log_likelihood_),
        "n_customers": int(fitted.n_customers_) if float(fitted.n_customers_).is_integer() else fitted.n_customers_,
        "n_rows": table.num_rows,
        "notes": fit_notes(caught),
    }


def _numbers(path: Path, table: pa.Table, column: str) -> Any:
    """A column as floats; a value that is not a number stops with its line (blank cells count as missing)."""
    raw = pd.Series(table[column].cast(pa.string()).to_pylist(), dtype="object")
    parsed = pd.to_numeric(raw.str.strip(), errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        shown = raw.iloc[first]
        what = "a missing value" if shown is None or str(shown).strip() == "" else f"'{shown}', not a number"
        raise UserError(f"{what}; every row needs a whole number ≥ 0", file=str(path), line=_line_of(table, first),
                        column=column)  # fmt: skip
    return parsed.to_numpy(dtype=np.float64)


def _line_of(table: pa.Table, row: int) -> int | None:
    return int(table[LINE][row].as_py()) if LINE in table.column_names else None
