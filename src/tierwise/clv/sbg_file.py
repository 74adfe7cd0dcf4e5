"""`tierwise clv fit FILE --model sbg`: the shifted-beta-geometric retention model on a file.

Two layouts, told apart by their column names (case and spaces ignored):
- a retention table: a column ``alive`` (customers of one cohort alive at the start of periods 0, 1, …, one row
  per period), optionally with ``period`` (0, 1, 2, … in any row order);
- contract records: ``periods`` (times the contract was renewed) and ``active`` (true/false, 1/0, yes/no, 是/否).
The file is read like an ingest (CSV in any encoding or separator, Excel, Parquet); a value that cannot be read
stops the fit with its line and column.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tierwise.clv._fit import fit_notes
from tierwise.clv.fit_file import LINE, _read
from tierwise.clv.sbg import ShiftedBetaGeoModel
from tierwise.errors import UserError

_TRUE = {"true", "t", "1", "yes", "y", "active", "是", "有效", "在约"}
_FALSE = {"false", "f", "0", "no", "n", "cancelled", "canceled", "churned", "否", "无效", "已取消", "流失"}
LAYOUTS = (
    "a column 'alive' (customers alive at the start of each period 0, 1, …; optionally 'period'), or columns "
    "'periods' (renewals per contract) and 'active' (true/false)"
)


def _numbers(path: Path, frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    raw = frame[column]
    text = raw.astype("string").str.strip().str.replace(",", "", regex=False)
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype("float64").fillna(np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"cannot read '{raw.iloc[i]}' as {what}; fix the value",
            file=str(path),
            line=int(frame[LINE].iloc[i]),
            column=column,
        )
    return np.asarray(values.to_numpy(dtype=np.float64))


def _flags(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    raw = frame[column]
    text = raw.astype("string").str.strip().str.lower()
    known = text.isin(_TRUE | _FALSE)
    if not known.all():
        i = int(np.flatnonzero(~known.to_numpy())[0])
        raise UserError(
            f"cannot read '{raw.iloc[i]}' as active or not; write true/false (1/0, yes/no, 是/否)",
            file=str(path),
            line=int(frame[LINE].iloc[i]),
            column=column,
        )
    return text.isin(_TRUE).to_numpy().astype(np.float64)


def fit_sbg_file(path: Path, *, horizon: int = 5, header: bool = True) -> dict[str, Any]:
    """Fit sBG on a retention table or contract records; the estimates and the next ``horizon`` periods."""
    if not header:
        raise UserError(f"--model sbg finds its columns by name; give the file a header row with {LAYOUTS}")
    if horizon < 1:
        raise UserError(f"--horizon must be at least 1 period, got {horizon}")
    table, columns = _read(path, header)
    by_name = {c.strip().lower(): c for c in columns}
    frame = table.to_pandas()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if "alive" in by_name:
            result = _table(path, frame, by_name, horizon)
        elif "periods" in by_name and "active" in by_name:
            result = _contracts(path, frame, by_name, horizon)
        else:
            raise UserError(
                f"cannot read this file for --model sbg: its columns are {', '.join(columns) or 'none'}; it needs "
                f"{LAYOUTS}",
                file=str(path),
            )
    result["notes"] = fit_notes(caught)
    return result


def _summary(model: ShiftedBetaGeoModel, path: Path, layout: str) -> dict[str, Any]:
    return {
        "model": "sbg",
        "file": str(path),
        "input": layout,
        "params": dict(model.params_),
        "standard_errors": dict(model.standard_errors_),
        "log_likelihood": float(model.log_likelihood_),
        "n_customers": float(model.n_customers_),
        "at_boundary": list(model.at_boundary_),
    }


def _table(path: Path, frame: pd.DataFrame, by_name: dict[str, str], horizon: int) -> dict[str, Any]:
    if frame.empty:
        raise UserError("the retention table has no rows", file=str(path))
    alive = _numbers(path, frame, by_name["alive"], "a number of customers")
    if "period" in by_name:
        period = _numbers(path, frame, by_name["period"], "a period number 0, 1, 2, …")
        order = np.argsort(period, kind="stable")
        period, alive = period[order], alive[order]
        if not np.array_equal(period, np.arange(period.size)):
            raise UserError(
                "column 'period' must number the rows 0, 1, 2, … once each (period 0: the cohort's size)",
                file=str(path),
            )
    model = ShiftedBetaGeoModel().fit(alive)
    last = alive.size - 1
    future = np.arange(last + 1, last + 1 + horizon)
    result = _summary(model, path, "retention_table")
    result["periods_observed"] = last
    result["projection"] = [
        {"period": int(t), "survival": float(s), "retention_rate": float(r), "expected_alive": float(e)}
        for t, s, r, e in zip(
            future, model.survival(future), model.retention_rate(future), model.expected_alive(future), strict=True
        )
    ]
    return result


def _contracts(path: Path, frame: pd.DataFrame, by_name: dict[str, str], horizon: int) -> dict[str, Any]:
    if frame.empty:
        raise UserError("the file has no contract rows", file=str(path))
    column = by_name["periods"]
    renewals = _numbers(path, frame, column, "a whole number of renewals ≥ 0")
    bad = (renewals < 0) | (renewals != np.round(renewals))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"cannot read '{frame[column].iloc[i]}' as a whole number of renewals ≥ 0; fix the value",
            file=str(path),
            line=int(frame[LINE].iloc[i]),
            column=column,
        )
    active = _flags(path, frame, by_name["active"])
    model = ShiftedBetaGeoModel().fit_contracts(renewals, active)
    result = _summary(model, path, "contracts")
    result["periods_observed"] = int(renewals.max())
    # Today's active customers k periods on: Σ S(n+k)/S(n) over their renewals n, once per distinct n.
    counts = pd.Series(renewals[active == 1]).value_counts()
    n, how_many = counts.index.to_numpy(dtype=np.float64), counts.to_numpy(dtype=np.float64)
    before = float(how_many.sum())
    rows = []
    for k in range(1, horizon + 1):
        expected = float(how_many @ (model.survival(n + k) / model.survival(n))) if n.size else 0.0
        rows.append(
            {
                "periods_ahead": k,
                "retention_rate": expected / before if before > 0 else float("nan"),
                "expected_alive": expected,
            }
        )
        before = expected
    result["active_now"] = float(how_many.sum())
    result["projection"] = rows
    return result
