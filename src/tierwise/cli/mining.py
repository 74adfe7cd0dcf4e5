"""`tierwise cluster` (explore clusters of a run's customers) and `tierwise classify` (learn classes and store
every customer's learned class): the data-mining commands."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, Lang, WorkspaceOpt, date_option, err, out, print_json
from tierwise.i18n import column_label, label
from tierwise.progress import delayed_status


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster)
    app.command("classify")(classify_command)


class LearnModel(StrEnum):
    tree = "tree"
    boosting = "boosting"
    mlp = "mlp"


# The --lang of these two commands: they also name features and write rules in the language.
LangOpt = Annotated[
    Lang | None,
    typer.Option("--lang", help="Names and rule text in zh or en (default: language in tierwise.toml)."),
]


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


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
    from tierwise.pipeline.learn import cluster_settings, explore_clusters  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    numeric, text = _names(features), _names(categorical)
    with Workspace.open(workspace, read_only=True) as ws:
        settings = cluster_settings(
            ws.config.cluster, k=k, k_min=k_min, k_max=k_max, features=numeric, categorical=text,
            sample_size=sample_size, seed=seed,
        )  # fmt: skip
        with delayed_status(err, "clustering") as step:
            data = explore_clusters(
                ws, settings, run_id=run_id, language=lang.value if lang else None,
                strict=(numeric or [], text or []), on_step=step,
            )  # fmt: skip
    if as_json:
        print_json(data)
        return
    _print_clusters(data)


def _print_clusters(data: dict[str, Any]) -> None:

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
    from tierwise.pipeline.learn import classify_settings, learn_and_store  # lazy: see tierwise.cli
    from tierwise.workspace import Workspace

    start = date_option(calibration_end, "--calibration-end")
    with Workspace.open(workspace) as ws:
        settings = classify_settings(
            ws.config.classify, target=target, model=model.value if model else None, holdout_days=holdout_days
        )
        language = lang.value if lang else ws.config.workspace.language
        with delayed_status(err, "classify") as step:
            learned = learn_and_store(
                ws, settings, compare=compare, calibration_end=start, holdout_days_given=holdout_days is not None,
                run_id=run_id, save_rules=save_rules, on_step=step,
            )  # fmt: skip
    data = learned.as_json(language)
    if as_json:
        print_json(data)
        return
    _print_learned(data, language)


def _print_learned(data: dict[str, Any], language: str) -> None:
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
