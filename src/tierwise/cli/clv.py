"""`tierwise backtest` (the CLV models against a holdout of the workspace's history) and `tierwise clv fit` (the
models on a transaction file, without a workspace)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, WorkspaceOpt, date_option, err, out, print_json
from tierwise.errors import UserError
from tierwise.progress import delayed_status


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
    clv_app = typer.Typer(
        help="Predictive CLV models on a transaction file, without a workspace.", no_args_is_help=True
    )
    clv_app.command("fit")(clv_fit)
    app.add_typer(clv_app, name="clv")


def backtest(
    calibration_end: Annotated[str, typer.Option("--calibration-end", help="Last day the models may see.")],
    holdout_end: Annotated[
        str | None, typer.Option("--holdout-end", help="Last day of the holdout (default: the last order).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Fit on the history up to a date, predict the holdout after it, and compare predictions and rankings."""
    from tierwise.pipeline.backtest import backtest as run_backtest  # lazy: see tierwise.cli
    from tierwise.pipeline.backtest import store as store_backtest
    from tierwise.workspace import Workspace

    start = date_option(calibration_end, "--calibration-end")
    end = date_option(holdout_end, "--holdout-end")
    with Workspace.open(workspace) as ws:
        with delayed_status(err, "backtest"):
            result = run_backtest(ws, start, end)
        result["backtest_id"] = store_backtest(ws, result)
    if as_json:
        print_json(result)
        return
    p = result["purchases"]
    out.print(
        f"{result['model']} fitted on {result['customers']:,} customers up to {result['calibration_end']}; holdout "
        f"to {result['holdout_end']} ({result['holdout_length']:.1f} units of {result['time_unit_days']:g} days)"
    )
    out.print(
        f"repeat purchases in the holdout: predicted {p['predicted_total']:,.0f}, actual {p['actual_total']:,.0f}; "
        f"mean absolute error {p['mean_absolute_error']:.3f}, correlation {p['correlation']:.3f}"
    )
    view = Table("calibration purchases", "customers", "predicted (mean)", "actual (mean)", title_justify="left")
    for b in result["buckets"]:
        view.add_row(b["frequency"], f"{b['customers']:,}", f"{b['predicted']:.3f}", f"{b['actual']:.3f}")
    out.print(view)
    view = Table("ranking", "top 10% share", "top 20% share", "Gini", title="holdout revenue captured")
    for c in result["rankings"]:
        view.add_row(c["ranking"], f"{c['top10_share']:.1%}", f"{c['top20_share']:.1%}", f"{c['gini']:.3f}")
    out.print(view)
    for note in result["notes"]:
        out.print(f"note: {note}", markup=False)


class ClvModel(StrEnum):
    bgnbd = "bgnbd"
    mbgnbd = "mbgnbd"
    pnbd = "pnbd"
    gg = "gg"
    bgbb = "bgbb"
    sbg = "sbg"


def clv_fit(
    file: Annotated[
        Path,
        typer.Argument(
            help="Transactions (bgbb: a summary with frequency, recency, periods; sbg: a retention table or "
            "contracts): CSV/TSV/text, Excel, Parquet."
        ),
    ],
    customer_col: Annotated[
        str | None, typer.Option("--customer-col", help="Customer id column (name, or 1, 2, …).")
    ] = None,
    date_col: Annotated[str | None, typer.Option("--date-col", help="Order date column.")] = None,
    calibration_end: Annotated[
        str | None, typer.Option("--calibration-end", help="Last day of the fitting period.")
    ] = None,
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="Amount column (needed for gg).")] = None,
    holdout_end: Annotated[
        str | None, typer.Option("--holdout-end", help="Compare predictions with the purchases up to this day.")
    ] = None,
    time_unit_days: Annotated[float, typer.Option("--time-unit-days", help="Time unit in days (7: weeks).")] = 7.0,
    model: Annotated[
        ClvModel,
        typer.Option(
            help="bgnbd, mbgnbd, pnbd, gg (Gamma-Gamma spend), bgbb (BG/BB on a discrete summary) or sbg "
            "(contract retention)."
        ),
    ] = ClvModel.bgnbd,
    no_header: Annotated[bool, typer.Option("--no-header", help="The file has no header row.")] = False,
    horizon: Annotated[int, typer.Option("--horizon", help="sbg: future periods to project.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Fit BG/NBD, MBG/NBD, Pareto/NBD or Gamma-Gamma on transactions (parameters, standard errors, log-likelihood, and
    backtest), BG/BB on a discrete summary, or sBG on a retention table or contract records (parameters and
    projected retention)."""
    if model is ClvModel.sbg:
        _clv_fit_sbg(file, horizon, not no_header, as_json)
        return
    if model is ClvModel.bgbb:
        _clv_fit_discrete(file, as_json)
        return
    from tierwise.clv.fit_file import Model, fit_file  # lazy: see tierwise.cli

    for value, option in ((customer_col, "--customer-col"), (date_col, "--date-col")):
        if value is None:
            raise UserError(f"--model {model.value} reads transactions: name the column with {option}")
    if calibration_end is None:
        raise UserError(f"--model {model.value} needs --calibration-end, the last day of the fitting period")
    assert customer_col is not None and date_col is not None
    result = fit_file(
        file,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        calibration_end=date_option(calibration_end, "--calibration-end"),
        holdout_end=date_option(holdout_end, "--holdout-end"),
        time_unit_days=time_unit_days,
        model=cast("Model", model.value),  # the transaction models: bgbb and sbg returned above
        header=not no_header,
    )
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result['model']}: {result['n_customers']:,} customers, calibration to {result['calibration_end']}, "
        f"time unit {result['time_unit_days']:g} days; log-likelihood {result['log_likelihood']:,.2f}"
    )
    out.print(_parameters(result))
    bt = result["backtest"]
    if bt:
        p = bt["purchases"]
        out.print(
            f"holdout to {bt['holdout_end']}: predicted {p['predicted_total']:,.1f} repeat purchases, actual "
            f"{p['actual_total']:,.0f}; mean absolute error {p['mean_absolute_error']:.3f}, correlation "
            f"{p['correlation']:.3f}"
        )
        view = Table("calibration purchases", "customers", "predicted (mean)", "actual (mean)")
        for b in bt["buckets"]:
            view.add_row(b["frequency"], f"{b['customers']:,}", f"{b['predicted']:.3f}", f"{b['actual']:.3f}")
        out.print(view)
    for note in result["notes"]:
        out.print(f"note: {note}", markup=False)


def _clv_fit_sbg(file: Path, horizon: int, header: bool, as_json: bool) -> None:
    """`--model sbg`: a retention table or contract records in, α and β and the next periods' retention out."""
    from tierwise.clv.sbg_file import fit_sbg_file  # lazy: see tierwise.cli

    result = fit_sbg_file(file, horizon=horizon, header=header)
    if as_json:
        print_json(result)
        return
    layout = "retention table" if result["input"] == "retention_table" else "contract records"
    out.print(
        f"sbg: {result['n_customers']:,.0f} customers ({layout}, {result['periods_observed']} periods observed); "
        f"log-likelihood {result['log_likelihood']:,.2f}"
    )
    out.print(_parameters(result))
    if result["input"] == "retention_table":
        view = Table("period", "survival", "retention rate", "expected alive", title="projected retention")
        for p in result["projection"]:
            view.add_row(
                str(p["period"]), f"{p['survival']:.3f}", f"{p['retention_rate']:.3f}", f"{p['expected_alive']:,.1f}"
            )
    else:
        view = Table(
            "periods ahead",
            "retention rate",
            "expected active",
            title=f"projected retention of the {result['active_now']:,.0f} active contracts",
        )
        for p in result["projection"]:
            view.add_row(str(p["periods_ahead"]), f"{p['retention_rate']:.3f}", f"{p['expected_alive']:,.1f}")
    out.print(view)
    for note in result["notes"]:
        out.print(f"note: {note}", markup=False)


def _clv_fit_discrete(file: Path, as_json: bool) -> None:
    """`--model bgbb`: BG/BB on a discrete summary file (frequency, recency, periods, optional weights)."""
    from tierwise.clv.fit_file import fit_discrete_file  # lazy: see tierwise.cli

    result = fit_discrete_file(file)
    if as_json:
        print_json(result)
        return
    out.print(
        f"bgbb: {result['n_customers']:,.0f} customers in {result['n_rows']:,} rows; log-likelihood "
        f"{result['log_likelihood']:,.2f}"
    )
    out.print(_parameters(result))
    for note in result["notes"]:
        out.print(f"note: {note}", markup=False)


def _parameters(result: dict[str, Any]) -> Table:
    view = Table("parameter", "estimate", "standard error", title_justify="left")
    for name, value in result["params"].items():
        view.add_row(name, f"{value:.4f}", f"{result['standard_errors'][name]:.4f}")
    return view
