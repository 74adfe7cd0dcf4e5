"""The `tierwise` command line (Typer + Rich). Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, WorkspaceOpt, add_wait_option, err, out, print_json
from tierwise.errors import UserError, out_of_memory

app = typer.Typer(
    name="tierwise",
    help="Customer classification and prioritisation (客户分类与优先排序).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class TableName(StrEnum):
    customers = "customers"
    orders = "orders"
    payments = "payments"
    interactions = "interactions"
    campaigns = "campaigns"


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path(".")) -> None:
    """Create a workspace: tierwise.toml with every setting at its default, and the DuckDB store."""
    from tierwise.workspace import Workspace

    ws = Workspace.init(directory)
    ws.close()
    out.print(f"Workspace ready: {ws.root}")
    out.print(f"  settings: {ws.root / 'tierwise.toml'}")
    out.print(f"  next: tierwise ingest orders FILE --workspace {ws.root}")


@app.command()
def ingest(
    table: Annotated[TableName, typer.Argument(help="Which table the files hold.")],
    files: Annotated[
        list[Path] | None, typer.Argument(help="CSV/TSV/TXT, XLSX/XLS or Parquet files (or --from a database).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A database instead of files: postgresql://user@host:5432/db (or mysql://…); "
            "the password from PGPASSWORD or ~/.pgpass keeps it out of the command.",
        ),
    ] = None,
    db_table: Annotated[
        str | None, typer.Option("--table", help="With --from: the table (or schema.table) to read.")
    ] = None,
    since_column: Annotated[
        str | None,
        typer.Option(
            help="With --from: read only rows whose value in this column is greater than the last load's "
            "greatest (default: [ingest] incremental for the table; none: the whole table)."
        ),
    ] = None,
    sep: Annotated[
        str | None, typer.Option(help="Separator: ',' ';' '\\t' '|' or whitespace (default: sniffed).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding, e.g. gbk, utf-8 (default: detected).")] = None,
    sheet: Annotated[
        str | None,
        typer.Option(
            help="Spreadsheets: a sheet name, its number (1 = first) or 'all' (default: every sheet whose header "
            "is recognised, as one batch)."
        ),
    ] = None,
    header_row: Annotated[
        int | None,
        typer.Option(help="Spreadsheets: the row holding the header (1 = first; default: found automatically).", min=1),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="Fields identifying a record, comma-separated (e.g. order_id,line_number), or 'none' "
            "(default: [ingest.keys], else the table's natural key; docs/ingest.md)."
        ),
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="SOURCE_COLUMN=field, repeatable; 'ignore' skips a column.")
    ] = None,
    date_format: Annotated[
        str | None, typer.Option(help="Order of day and month for dates like 03/04/2024: dmy, mdy or ymd.")
    ] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="The file has no header line.")] = False,
    keep_duplicates: Annotated[
        bool | None,
        typer.Option(
            "--keep-duplicates/--remove-duplicates",
            help="Keep rows identical in every column (default: [ingest] remove_exact_duplicates).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load files into a canonical table, cleaning values; rejected rows go to quarantine."""
    from tierwise.ingest.mapping import parse_map_options
    from tierwise.ingest.pipeline import BatchReport, ingest_database, ingest_file
    from tierwise.progress import progress_bars
    from tierwise.workspace import Workspace

    files = files or []
    if from_ is None and (db_table or since_column):
        raise UserError("--table and --since-column go with --from DATABASE_URL")
    if from_ is not None and (files or not db_table):
        raise UserError("--from reads one database table: give --table NAME and no files")
    if from_ is None and not files:
        raise UserError("name the files to ingest, or --from DATABASE_URL --table NAME")
    maps = parse_map_options(map_ or [])
    keys = [k.strip() for k in key.split(",") if k.strip()] if key is not None else None
    ws = Workspace.open(workspace)
    reports: list[BatchReport] = []
    trying: list[str] = []
    try:
        with progress_bars(err) as bars:
            if from_ is not None and db_table is not None:
                reports.append(
                    ingest_database(
                        ws,
                        table.value,
                        from_,
                        db_table,
                        since_column=since_column,
                        maps=maps,
                        date_format=date_format,
                        keep_duplicates=keep_duplicates,
                        key=keys,
                        progress=lambda name, total: bars.task(f"reading {db_table} (rows)", total),
                    )
                )
            for path in files:
                trying.append(str(path))
                reports.append(
                    ingest_file(
                        ws,
                        table.value,
                        path,
                        sep=sep,
                        encoding=encoding,
                        sheet=sheet,
                        header=not no_header,
                        maps=maps,
                        date_format=date_format,
                        keep_duplicates=keep_duplicates,
                        header_row=header_row,
                        key=keys,
                        progress=lambda name, total: bars.task(f"reading {Path(name).name}", total),
                    )
                )
    except UserError as exc:
        if as_json:
            # Machines learn what was stored before the failure and what was never tried.
            failed = len(trying)
            print_json(
                {
                    "error": str(exc),
                    "committed": [r.as_json() for r in reports],
                    "failed": trying[-1] if trying else (from_ or ""),
                    "not_tried": [str(p) for p in files[failed:]],
                }
            )
        if reports:
            err.print(f"loaded before the error: {', '.join(r.file for r in reports)}")
        raise
    finally:
        ws.close()
    if as_json:
        print_json([r.as_json() for r in reports])
        return
    for r in reports:
        _print_report(r)


def _print_report(r: Any) -> None:
    if r.status == "already_loaded":
        out.print(f"[yellow]{r.file}[/]: already loaded as batch {r.batch_id}; nothing added")
        return
    if r.status == "up_to_date":
        out.print(f"[yellow]{r.file}[/]: no rows newer than the last load; nothing added")
        return
    out.print(
        f"[bold]{r.file}[/] → {r.table}  (batch {r.batch_id}, {r.file_format}"
        + (f", {r.encoding}" if r.encoding else "")
        + (f", separator {r.delimiter!r}" if r.delimiter else "")
        + (f", sheet {r.sheet!r}" if r.sheet else "")
        + ")"
    )
    mapping = Table("field", "column", "how", title="column mapping", title_justify="left")
    fields = r.mapping.get("fields", {})
    how = r.mapping.get("how", {})
    for f, c in fields.items():
        mapping.add_row(f, str(c), how.get(f, "derived"))
    for f, c in r.mapping.get("customer_fields", {}).items():
        mapping.add_row(f"customers.{f}", str(c), "auto")
    out.print(mapping)
    if r.mapping.get("unmapped"):
        keep = " (kept as attributes)" if r.table == "customers" else " (not loaded)"
        out.print(f"unmapped columns{keep}: {', '.join(r.mapping['unmapped'])}")
    if r.date_orders:
        out.print("date order: " + ", ".join(f"{c}={o}" for c, o in r.date_orders.items()))
    rec = Table(
        "rows read",
        "new",
        "updated",
        "unchanged",
        "quarantined",
        "duplicates removed",
        title="reconciliation (read = new + updated + unchanged + quarantined + duplicates)",
        title_justify="left",
    )
    rec.add_row(
        *(
            f"{n:,}"
            for n in (
                r.rows_read,
                r.rows_new,
                r.rows_updated,
                r.rows_unchanged,
                r.rows_quarantined,
                r.duplicates_removed,
            )
        )
    )
    out.print(rec)
    if r.record_key:
        key = " + ".join(r.record_key["fields"]) + ("" if r.record_key["per_row"] else " (all lines of one)")
        extra = f"; {r.rows_replaced:,} stored rows replaced (tierwise unload {r.batch_id} puts them back)"
        out.print(f"record key: {key}" + (extra if r.rows_updated else ""))
    else:
        out.print("record key: none (rows are appended; docs/ingest.md, 'Record identity')")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    notes = []
    if r.reasons:
        notes.append("quarantine: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.reasons.items())))
    if r.returns:
        notes.append(f"returns/cancellations kept as negative revenue: {r.returns:,}")
    if r.outliers_flagged:
        notes.append(f"outliers flagged: {r.outliers_flagged:,}")
    if r.values_blanked:
        notes.append(f"unreadable optional values left empty: {r.values_blanked:,} (tierwise quarantine --blanked)")
    if r.customers_created:
        notes.append(f"minimal customer records created: {r.customers_created:,}")
    if r.customers_updated:
        notes.append(f"customers updated: {r.customers_updated:,}")
    for n in notes:
        out.print("  " + n)


@app.command()
def quarantine(
    workspace: WorkspaceOpt = Path("."),
    batch: Annotated[str | None, typer.Option(help="Only this batch id.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason code, e.g. BAD_DATE.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the rows to a CSV or XLSX file.")] = None,
    blanked: Annotated[bool, typer.Option("--blanked", help="Show unreadable optional values instead.")] = False,
    limit: Annotated[int, typer.Option(help="Rows to show on screen.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List or export rows that were not loaded (with file, line, column and reason)."""
    from tierwise.exports import write_table
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=True)
    try:
        t = ws.table("blanked_values" if blanked else "quarantine")
        if batch:
            t = t.filter(t.batch_id == batch)
        if reason and not blanked:
            t = t.filter(t.reason_code == reason.upper())
        t = t.order_by(["batch_id", "line"])
        total = int(t.count().execute())
        if export is not None:
            write_table(t.to_pyarrow(), export)
            out.print(f"{total:,} rows written to {export}")
            return
        rows = t.limit(limit).to_pyarrow().to_pylist()
        if as_json:
            print_json({"total": total, "rows": rows})
            return
        if not total:
            out.print("Nothing in quarantine." if not blanked else "No unreadable optional values.")
            return
        view = Table(*rows[0].keys(), title=f"{total:,} rows (showing {len(rows)})", title_justify="left")
        for row in rows:
            view.add_row(*["" if v is None else str(v)[:60] for v in row.values()])
        out.print(view)
    finally:
        ws.close()


@app.command()
def status(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """What the workspace holds: rows per table and the batches loaded."""
    from tierwise.cli.batches import batch_rows, batch_table
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=True)
    try:
        counts = {
            name: int(ws.table(name).count().execute())
            for name in ("customers", "orders", "payments", "interactions", "campaign_contacts", "quarantine")
        }
        batches = batch_rows(ws)
    finally:
        ws.close()
    if as_json:
        print_json({"workspace": str(ws.root), "tables": counts, "batches": batches})
        return
    t = Table("table", "rows", title=f"workspace {ws.root}", title_justify="left")
    for name, n in counts.items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    if batches:
        out.print(batch_table(batches, detailed=False))


@app.command("run")
def run_command(
    workspace: WorkspaceOpt = Path("."),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Measure as of this date, YYYY-MM-DD (default: day after last order).")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb or spark (default: [engine] kind; Spark settings in [engine.spark], docs/spark.md)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The main job: features, RFM and ABC classes for every customer, stored as a new run."""
    import datetime as dt

    from tierwise.pipeline.execute import run_in_workspace

    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError as exc:
            raise UserError(f"--as-of '{as_of}' is not a date like 2024-06-30") from exc
    from tierwise.progress import delayed_status

    with delayed_status(err, "run") as step:
        # Waits for another run (cron) rather than failing on the database's single-writer lock.
        report = run_in_workspace(workspace, day, on_stage=step, engine=engine)
    if as_json:
        print_json(report.as_json())
        return
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items() if k != "total")
    out.print(
        f"Run {report.run_id} as of {report.as_of}: {report.customers:,} customers → {report.snapshot_table} "
        f"in {report.timings['total']:.1f}s ({stages})"
    )
    for note in report.notes:
        out.print(f"note: {note}", markup=False)


@app.command()
def runs(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the stored runs with their as-of dates, sizes and timings."""
    from tierwise.store.runs import list_runs
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=True)
    try:
        rows = list_runs(ws)
    finally:
        ws.close()
    if as_json:
        print_json(rows)
        return
    view = Table("run", "as of", "created", "customers", "timings (s)", title="runs", title_justify="left")
    for r in rows:
        view.add_row(str(r["run_id"]), str(r["as_of"]), str(r["created_at"]), f"{r['customers']:,}", str(r["timings"]))
    out.print(view)


@app.command()
def show(
    what: Annotated[str, typer.Argument(help="'summary' (default) or 'customer'.")] = "summary",
    customer_id: Annotated[str | None, typer.Argument(help="Customer id, with 'customer'.")] = None,
    workspace: WorkspaceOpt = Path("."),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    top: Annotated[int, typer.Option(help="How many top customers to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Class summaries of a run and its top customers; 'show customer ID' explains one customer."""
    from tierwise.store.runs import latest_snapshot, run_config
    from tierwise.store.snapshots import SUMMARIES, TITLES, explain_customer, summarise, top_customers
    from tierwise.workspace import Workspace

    if what not in ("summary", "customer"):
        raise UserError(f"'tierwise show {what}': say 'tierwise show' or 'tierwise show customer ID'")
    if what == "customer" and not customer_id:
        raise UserError("'tierwise show customer' needs the customer id, e.g. tierwise show customer C0000001")
    ws = Workspace.open(workspace, read_only=True)
    try:
        if what == "customer":
            meta, snap = latest_snapshot(ws, run_id)
            config = run_config(ws, str(meta["run_id"]))
            detail = explain_customer(snap, meta, str(customer_id), config, ws.config.workspace.language)
            from tierwise.pipeline.learn import learned_for_customer

            learned = learned_for_customer(ws, str(meta["run_id"]), str(customer_id))
            detail["learned"] = learned
            if learned and learned["class"] is not None:
                detail["reasons"].append(
                    f"learned class ({learned['model']} on {learned['target']}, model {learned['model_id']}): "
                    f"{learned['class']} with confidence {learned['confidence']:.0%}"
                )
            if as_json:
                print_json(detail)
            else:
                out.print(f"customer {customer_id} · run {detail['run_id']} · as of {detail['as_of']}")
                for key, value in detail["customer"].items():
                    out.print(f"  {key}: {value}", markup=False)
                out.print("why:")
                for reason in detail["reasons"]:
                    out.print(f"  - {reason}", markup=False)
            return
        lang = ws.config.workspace.language
        meta, snap = latest_snapshot(ws, run_id)
        data = {
            "run_id": meta["run_id"],
            "as_of": str(meta["as_of"]),
            "summaries": {c: summarise(snap, c, lang) for c in SUMMARIES if c in snap.columns},
            "top_customers": top_customers(snap, top, lang),
        }
    finally:
        ws.close()
    if as_json:
        print_json(data)
        return
    zh = lang == "zh"
    out.print(f"run {data['run_id']} · as of {data['as_of']}")
    for column, rows in data["summaries"].items():
        title = TITLES[column][1 if zh else 0]
        view = Table(
            "客户类别" if zh else "class",
            "客户数" if zh else "customers",
            "占比" if zh else "share",
            "收入" if zh else "revenue",
            "收入占比" if zh else "revenue share",
            title=title,
            title_justify="left",
        )
        for r in rows:
            view.add_row(
                r["label"],
                f"{r['customers']:,}",
                f"{r['customer_share']:.1%}",
                f"{r['revenue']:,.0f}",
                f"{r['revenue_share']:.1%}",
            )
        out.print(view)
    view = Table(
        "#",
        "customer_id",
        "名称" if zh else "name",
        "等级" if zh else "grade",
        "得分" if zh else "score",
        "收入" if zh else "revenue",
        "RFM",
        "生命周期" if zh else "lifecycle",
        title="优先客户" if zh else "top priority customers",
        title_justify="left",
    )
    for r in data["top_customers"]:
        score = r.get("composite_score")
        view.add_row(
            str(r.get("priority_rank") or ""),
            str(r["customer_id"]),
            str(r["name"] or ""),
            str(r.get("grade") or ""),
            "" if score is None else f"{score:.1f}",
            f"{r['monetary']:,.0f}",
            r["rfm_segment_label"],
            r.get("lifecycle_stage_label", ""),
        )
    out.print(view)


def _date_option(value: str | None, option: str) -> Any:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{option} '{value}' is not a date like 2024-06-30") from exc


@app.command()
def backtest(
    calibration_end: Annotated[str, typer.Option("--calibration-end", help="Last day the models may see.")],
    holdout_end: Annotated[
        str | None, typer.Option("--holdout-end", help="Last day of the holdout (default: the last order).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Fit on the history up to a date, predict the holdout after it, and compare predictions and rankings."""
    from tierwise.pipeline.backtest import backtest as run_backtest
    from tierwise.pipeline.backtest import store as store_backtest
    from tierwise.progress import delayed_status
    from tierwise.workspace import Workspace

    start = _date_option(calibration_end, "--calibration-end")
    end = _date_option(holdout_end, "--holdout-end")
    ws = Workspace.open(workspace)
    try:
        with delayed_status(err, "backtest"):
            result = run_backtest(ws, start, end)
        result["backtest_id"] = store_backtest(ws, result)
    finally:
        ws.close()
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


class Language(StrEnum):
    zh = "zh"
    en = "en"


class LearnModel(StrEnum):
    tree = "tree"
    boosting = "boosting"
    mlp = "mlp"


LangOpt = Annotated[
    Language | None,
    typer.Option("--lang", help="Names and rule text in zh or en (default: language in tierwise.toml)."),
]


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@app.command()
def cluster(
    workspace: WorkspaceOpt = Path("."),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    k: Annotated[
        int | None, typer.Option("--k", min=2, help="Fixed number of clusters (default: \\[cluster] k).")
    ] = None,
    k_min: Annotated[int | None, typer.Option("--k-min", min=2, help="Smallest k tried when choosing k.")] = None,
    k_max: Annotated[int | None, typer.Option("--k-max", min=2, help="Largest k tried when choosing k.")] = None,
    features: Annotated[
        str | None, typer.Option(help="Comma-separated numeric snapshot columns, e.g. recency_days,monetary.")
    ] = None,
    categorical: Annotated[
        str | None, typer.Option(help="Comma-separated text columns one-hot encoded, e.g. province,main_industry.")
    ] = None,
    sample_size: Annotated[
        int | None, typer.Option("--sample-size", min=100, help="Fit on a random sample of this many customers.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same clusters).")] = None,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Explore clusters of a run's customers: k by silhouette, stability, profiles. Stores nothing."""
    from tierwise.pipeline.learn import cluster_settings, explore_clusters
    from tierwise.progress import delayed_status
    from tierwise.workspace import Workspace

    numeric, text = _names(features), _names(categorical)
    ws = Workspace.open(workspace, read_only=True)
    try:
        settings = cluster_settings(
            ws.config.cluster, k=k, k_min=k_min, k_max=k_max, features=numeric, categorical=text,
            sample_size=sample_size, seed=seed,
        )  # fmt: skip
        with delayed_status(err, "clustering") as step:
            data = explore_clusters(
                ws, settings, run_id=run_id, language=lang.value if lang else None,
                strict=(numeric or [], text or []), on_step=step,
            )  # fmt: skip
    finally:
        ws.close()
    if as_json:
        print_json(data)
        return
    _print_clusters(data)


def _print_clusters(data: dict[str, Any]) -> None:
    from tierwise.mining.labels import column_label
    from tierwise.store.snapshots import label

    zh = data["language"] == "zh"
    out.print(
        f"run {data['run_id']} · as of {data['as_of']} · {data['clustered']:,} customers clustered"
        + (f", {data['excluded']:,} without purchases left out" if data["excluded"] else "")
    )
    if data["k"] is None:
        for note in data["notes"]:
            out.print(f"note: {note}", markup=False)
        return
    curve = Table(
        "k",
        "silhouette",
        "inertia (elbow)",
        "",
        title="轮廓系数与肘部曲线" if zh else "choosing k",
        title_justify="left",
    )
    for key, value in data["silhouette"].items():
        chosen = int(key) == data["k"]
        inertia = data["inertia"].get(key)
        curve.add_row(
            key,
            "—" if value is None else f"{value:.3f}",
            "—" if inertia is None else f"{inertia:,.1f}",
            "← chosen" if chosen else "",
            style="bold" if chosen else None,
        )
    out.print(curve)
    how = "fixed (--k or [cluster] k)" if data["k_fixed"] else "highest silhouette"
    out.print(f"k = {data['k']} ({how}); {data['algorithm']} fitted on {data['fit_rows']:,} customers")
    if data["stability"] is not None:
        runs = ", ".join(f"{r:.2f}" for r in data["stability_runs"])
        out.print(f"stability: mean adjusted Rand index {data['stability']:.2f} over {len(data['stability_runs'])} "
                  f"bootstrap refits ({runs})")  # fmt: skip
    if data["warning"]:
        out.print(f"[yellow]warning:[/] {data['warning']}")
    lang = data["language"]
    view = Table(
        "#",
        "名称" if zh else "name",
        "客户数" if zh else "customers",
        "占比" if zh else "share",
        "收入占比" if zh else "revenue share",
        "显著特征（标准化差异）" if zh else "distinguishing features (standardised difference)",
        title="聚类画像" if zh else "cluster profiles",
        title_justify="left",
    )
    dominant = Table(
        "#",
        "RFM分群" if zh else "RFM segment",
        "等级" if zh else "grade",
        "地区" if zh else "region",
        "行业" if zh else "industry",
        title="主要构成（占该簇比例）" if zh else "most common in each cluster (share of the cluster)",
        title_justify="left",
    )
    for p in data["profiles"]:
        top = "\n".join(f"{column_label(f, lang)} {d:+.2f}" for f, d in p["top_features"][:4])
        view.add_row(
            str(p["cluster"]),
            p["name"],
            f"{p['size']:,}",
            f"{p['share']:.1%}",
            f"{p['revenue_share']:.1%}",
            top or "—",
        )
        cells = []
        for column in ("rfm_segment", "grade", "province", "main_industry"):
            value, share = p["dominant"].get(column, (None, None))
            shown = label(column, value, lang) if column in ("rfm_segment", "grade") else value
            cells.append("" if value is None else f"{shown} ({share:.0%})")
        dominant.add_row(str(p["cluster"]), *cells)
    out.print(view)
    out.print(dominant)
    for note in data["notes"]:
        out.print(f"note: {note}", markup=False)


@app.command("classify")
def classify_command(
    workspace: WorkspaceOpt = Path("."),
    target: Annotated[
        str | None,
        typer.Option(
            help="A label column (of the snapshot or the customers file), future-high-value or future-churn "
            "(default: \\[classify] target)."
        ),
    ] = None,
    model: Annotated[
        LearnModel | None, typer.Option(help="tree (readable rules), boosting or mlp (default: \\[classify] model).")
    ] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Fit and report all three models.")] = False,
    calibration_end: Annotated[
        str | None,
        typer.Option(
            "--calibration-end",
            help="Future targets: features as of this day (default: holdout days before the last order).",
        ),
    ] = None,
    holdout_days: Annotated[
        int | None,
        typer.Option("--holdout-days", min=1, help="Future targets: days of the period the outcome is taken from."),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run whose customers are classified (default: the latest).")
    ] = None,
    lang: LangOpt = None,
    save_rules: Annotated[
        bool, typer.Option("--save-rules", help="Append the tree's rules to tierwise.toml as \\[\\[rules]] tags.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Learn classes (a label column or a future outcome), report the models, store every customer's learned class."""
    from tierwise.pipeline.learn import classify_settings, learn_and_store
    from tierwise.progress import delayed_status
    from tierwise.workspace import Workspace

    start = _date_option(calibration_end, "--calibration-end")
    ws = Workspace.open(workspace)
    try:
        settings = classify_settings(
            ws.config.classify, target=target, model=model.value if model else None, holdout_days=holdout_days
        )
        language = lang.value if lang else ws.config.workspace.language
        with delayed_status(err, "classify") as step:
            learned = learn_and_store(
                ws, settings, compare=compare, calibration_end=start, holdout_days_given=holdout_days is not None,
                run_id=run_id, save_rules=save_rules, on_step=step,
            )  # fmt: skip
    finally:
        ws.close()
    data = learned.as_json(language)
    if as_json:
        print_json(data)
        return
    _print_learned(data, language)


def _print_learned(data: dict[str, Any], language: str) -> None:
    from tierwise.mining.labels import column_label

    zh = language == "zh"
    period = ""
    if data["calibration_end"]:
        period = f"; features as of {data['calibration_end']}, outcome up to {data['holdout_end']} (exclusive)"
    counts = ", ".join(f"{k} {v:,}" for k, v in data["class_counts"].items())
    out.print(f"target '{data['target']}': {data['labelled']:,} labelled customers ({counts}){period}", markup=False)
    for kind, m in data["models"].items():
        metrics = m["metrics"]
        auc = metrics["roc_auc"]
        out.print(
            f"[bold]{kind}[/]: accuracy {metrics['accuracy']:.1%} on {metrics['test_rows']:,} held-out customers"
            + (f", ROC AUC {auc:.3f} ({metrics['positive_class']})" if auc is not None else "")
            + f" · trained on {metrics['train_rows']:,}"
        )
        view = Table("class", "precision", "recall", "F1", "support", title_justify="left")
        for cls, v in metrics["per_class"].items():
            view.add_row(cls, f"{v['precision']:.1%}", f"{v['recall']:.1%}", f"{v['f1']:.1%}", f"{v['support']:,}")
        out.print(view)
        confusion = metrics["confusion_matrix"]
        matrix = Table("true \\ predicted", *confusion["labels"], title="confusion matrix", title_justify="left")
        for cls, row in zip(confusion["labels"], confusion["matrix"], strict=True):
            matrix.add_row(cls, *[f"{n:,}" for n in row])
        out.print(matrix)
        top = list(m["importances"].items())[:8]
        if top:
            out.print(
                f"importance ({m['importance_kind']}): "
                + ", ".join(f"{column_label(f, language)} {v:.3f}" for f, v in top),
                markup=False,
            )
    if data["rules"]:
        out.print("[bold]规则[/]" if zh else "[bold]rules[/]")
        for i, rule in enumerate(data["rules"], 1):
            out.print(f"{i:>3}. {rule['text']}", markup=False, soft_wrap=True)
    applied = ", ".join(f"{k} {v:,}" for k, v in data["applied"]["classes"].items())
    out.print(
        f"learned_class for {data['applied']['customers']:,} customers of run {data['run_id']} ({applied}) "
        f"stored in table {data['predictions_table']} (model {data['model_id']})",
        markup=False,
    )
    saved = data["saved_rules"]
    if saved:
        if saved["note"]:
            out.print(f"rules not saved: {saved['note']}", markup=False)
        else:
            out.print(f"{saved['path']}: added {', '.join(saved['added']) or 'none'}", markup=False)
            if saved["replaced"]:
                out.print(f"  replaced (same name): {', '.join(saved['replaced'])}", markup=False)
            if saved["removed"]:
                out.print(f"  removed (left from an earlier save): {', '.join(saved['removed'])}", markup=False)
            out.print("  the next 'tierwise run' tags customers with them", markup=False)
    for note in data["notes"]:
        out.print(f"note: {note}", markup=False)


clv_app = typer.Typer(help="Predictive CLV models on a transaction file, without a workspace.", no_args_is_help=True)
app.add_typer(clv_app, name="clv")


class ClvModel(StrEnum):
    bgnbd = "bgnbd"
    pnbd = "pnbd"
    gg = "gg"


@clv_app.command("fit")
def clv_fit(
    file: Annotated[Path, typer.Argument(help="Transactions: CSV/TSV/text, Excel or Parquet.")],
    customer_col: Annotated[str, typer.Option("--customer-col", help="Customer id column (name, or 1, 2, …).")],
    date_col: Annotated[str, typer.Option("--date-col", help="Order date column.")],
    calibration_end: Annotated[str, typer.Option("--calibration-end", help="Last day of the fitting period.")],
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="Amount column (needed for gg).")] = None,
    holdout_end: Annotated[
        str | None, typer.Option("--holdout-end", help="Compare predictions with the purchases up to this day.")
    ] = None,
    time_unit_days: Annotated[float, typer.Option("--time-unit-days", help="Time unit in days (7: weeks).")] = 7.0,
    model: Annotated[ClvModel, typer.Option(help="bgnbd, pnbd or gg (Gamma-Gamma spend).")] = ClvModel.bgnbd,
    no_header: Annotated[bool, typer.Option("--no-header", help="The file has no header row.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit BG/NBD, Pareto/NBD or Gamma-Gamma; print parameters, standard errors, log-likelihood (and backtest)."""
    from tierwise.clv.fit_file import fit_file

    result = fit_file(
        file,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        calibration_end=_date_option(calibration_end, "--calibration-end"),
        holdout_end=_date_option(holdout_end, "--holdout-end"),
        time_unit_days=time_unit_days,
        model=model.value,
        header=not no_header,
    )
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result['model']}: {result['n_customers']:,} customers, calibration to {result['calibration_end']}, "
        f"time unit {result['time_unit_days']:g} days; log-likelihood {result['log_likelihood']:,.2f}"
    )
    view = Table("parameter", "estimate", "standard error", title_justify="left")
    for name, value in result["params"].items():
        view.add_row(name, f"{value:.4f}", f"{result['standard_errors'][name]:.4f}")
    out.print(view)
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


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    parquet = "parquet"


@app.command()
def export(
    file: Annotated[Path | None, typer.Argument(help="File to write (.csv, .xlsx or .parquet).")] = None,
    fmt: Annotated[
        ExportFormat | None, typer.Option("--format", help="csv, xlsx or parquet (default: from the file name).")
    ] = None,
    where: Annotated[
        str | None, typer.Option(help="Only customers matching this condition, e.g. \"grade = 'A'\".")
    ] = None,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns (default: all).")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    list_columns: Annotated[bool, typer.Option("--list-columns", help="List the run's columns and stop.")] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write a run's customers (every snapshot column, customer_id first) to CSV, XLSX or Parquet."""
    from tierwise.exports import write_table
    from tierwise.store.runs import latest_snapshot
    from tierwise.store.snapshots import select_customers
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=True)
    try:
        meta, snap = latest_snapshot(ws, run_id)
        if list_columns:
            schema = snap.schema()
            if as_json:
                print_json({name: str(schema[name]) for name in schema.names})
            else:
                for name in schema.names:
                    out.print(f"{name}  [dim]{schema[name]}[/dim]")
            return
        if file is None:
            raise UserError("say where to write, e.g. tierwise export customers.xlsx")
        kind = fmt.value if fmt else file.suffix.lstrip(".").lower()
        if kind not in {f.value for f in ExportFormat}:
            raise UserError(f"{file}: cannot tell the format from the name; add --format csv, xlsx or parquet")
        chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        rows = select_customers(snap, where=where, columns=chosen).to_pyarrow()
        write_table(rows, file, kind)
    finally:
        ws.close()
    summary = {"run_id": meta["run_id"], "file": str(file), "format": kind, "rows": rows.num_rows}
    if as_json:
        print_json(summary)
    else:
        out.print(f"{rows.num_rows:,} customers of run {meta['run_id']} written to {file}")


class Profile(StrEnum):
    b2b = "b2b"
    b2c = "b2c"


class Format(StrEnum):
    csv = "csv"
    parquet = "parquet"


@app.command()
def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    language: Annotated[
        str | None, typer.Option(help="Labels in zh or en (default: language in tierwise.toml, zh unless changed).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One self-contained HTML report of a run that opens offline: KPIs, classes, Pareto, R×F, top customers."""
    from tierwise.progress import delayed_status
    from tierwise.report.render import write_report
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=True)
    try:
        with delayed_status(err, "building the report") as step:
            summary = write_report(ws, out_file, run_id=run_id, language=language, progress=step)
    finally:
        ws.close()
    if as_json:
        print_json(summary.as_json())
        return
    out.print(str(summary.path), markup=False, soft_wrap=True)


@app.command()
def generate(
    outdir: Annotated[Path, typer.Argument(help="Folder to write the data files into.")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    profile: Annotated[Profile, typer.Option(help="b2b (companies) or b2c (persons).")] = Profile.b2b,
    fmt: Annotated[Format, typer.Option("--format", help="csv or parquet.")] = Format.csv,
    messy: Annotated[bool, typer.Option(help="Write GBK CSV with Chinese headers and real-world mess.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate realistic customers, orders, payments and interactions with known ground truth."""
    from tierwise.generate import generate as run_generate
    from tierwise.progress import progress_bars

    with progress_bars(err, bytes_mode=False) as bars:
        tick = bars.task("generating customers", customers)
        try:
            summary = run_generate(
                outdir,
                customers=customers,
                seed=seed,
                profile=profile.value,
                fmt=fmt.value,
                messy=messy,
                progress=lambda done, total: tick(done),
            )
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    data = summary.as_dict()
    if as_json:
        print_json(data)
        return
    out.print(f"Generated {profile.value} data for {customers:,} customers in {outdir}")
    for k, v in data.items():
        if isinstance(v, dict) and k in ("rows", "row_counts"):
            for table, n in v.items():
                out.print(f"  {table}: {n:,} rows")


def _register_areas() -> None:
    """Commands of the larger areas live in their own modules (cli/<area>.py) and add themselves to `app`."""
    from tierwise.cli import batches, campaigns, history, strategy, web

    for module in (batches, strategy, history, campaigns, web):
        module.register(app)


_register_areas()
add_wait_option(app)  # --wait SECONDS on every command that opens a workspace (cli_common)


def main() -> None:
    def invoke() -> None:
        from tierwise.remote import forward

        forward(app, sys.argv[1:])  # exits with the command's code when a `tierwise serve` holds the workspace
        app(standalone_mode=False)

    handle_errors(invoke)


def handle_errors(invoke: Callable[[], object], debug: bool | None = None) -> None:
    """invoke() as the command line runs it: an error is one line on stderr and an exit code (sys.exit), never a
    traceback unless TIERWISE_DEBUG (or `debug`) asks for it. tierwise.remote runs served commands through this."""
    try:
        invoke()
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.exceptions.TyperException as exc:  # usage errors (Typer's own copy of click raises these)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected: one line, never a traceback
        if os.environ.get("TIERWISE_DEBUG") if debug is None else debug:
            raise
        memory = out_of_memory(exc)
        if memory is not None:
            err.print(f"error: {memory}", markup=False, soft_wrap=True)
            sys.exit(1)
        err.print(
            f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(a bug in tierwise; rerun with TIERWISE_DEBUG=1 for details and report it)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)
