"""The clusters page: the segments k-means found among the buyers (mining.in_run), with their sizes, what sets
them apart, the choice of k and how stable the clusters are."""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir

from tierwise.report import data as report_data
from tierwise.report.charts import dist_caption, dist_chart
from tierwise.report.language import ReportLanguage, card, pct, share
from tierwise.report.pages import PageParts
from tierwise.report.pages.notes import feature, mining_note
from tierwise.store.runs import run_clusters

DOMINANT_COLUMNS = ("rfm_segment", "grade", "province", "main_industry")

# one colour per cluster, the same in the table, the scatter plot and its legend
CLUSTER_COLORS = [
    "#1f4e8c", "#e07b39", "#3a9d5d", "#c0392b", "#8e6bbf", "#8c6d31", "#d35fa0", "#5f6b7a", "#17a2b8", "#b5a642",
]  # fmt: skip

TOP_CLUSTER_FEATURES = 3


def _std_diff_text(column: str, diff: float, lang: ReportLanguage) -> str:
    return f"{feature(column, lang)} {diff:+.1f}σ"


def _dominant_text(column: str, value: Any, lang: ReportLanguage) -> str:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return ""
    code, share = value
    name = str(code) if column == "province" else lang.label(column, code)
    return f"{name} · {share:.0%}"


def _cluster_name(p: dict[str, Any], lang: ReportLanguage) -> str:
    return str(p.get("name_zh" if lang.zh else "name_en") or p.get("name_en") or p.get("cluster"))


def _cluster_rows(
    profiles: list[dict[str, Any]], counts: dict[int, dict[str, float]], lang: ReportLanguage
) -> list[dict[str, Any]]:
    """One row per cluster: the snapshot's counts where it has the cluster column, else the profile's."""
    n = sum(c["customers"] for c in counts.values())
    revenue = sum(c["revenue"] for c in counts.values())
    rows: list[dict[str, Any]] = []
    for p in sorted(profiles, key=lambda p: int(p["cluster"])):
        number = int(p["cluster"])
        if counts:
            c = counts.get(number, {"customers": 0, "revenue": 0.0})
            size, rev = int(c["customers"]), float(c["revenue"])
            size_share, rev_share = share(size, n), share(rev, revenue)
        else:
            size, rev = int(p.get("size") or 0), float(p.get("revenue") or 0.0)
            size_share, rev_share = float(p.get("share") or 0.0), float(p.get("revenue_share") or 0.0)
        dominant = p.get("dominant") or {}
        means, base = p.get("means") or {}, p.get("base_means") or {}
        features = []
        for column, diff in (p.get("top_features") or [])[:TOP_CLUSTER_FEATURES]:
            mean, whole = means.get(column), base.get(column)
            detail = (
                lang.pick(f"mean {mean:,.1f}, all {whole:,.1f}", f"均值 {mean:,.1f}，整体 {whole:,.1f}")
                if isinstance(mean, int | float) and isinstance(whole, int | float)
                else ""
            )
            features.append({"text": _std_diff_text(column, float(diff), lang), "detail": detail})
        rows.append(
            {
                "cluster": number,
                "label": f"{number} · {_cluster_name(p, lang)}",
                "color": CLUSTER_COLORS[len(rows) % len(CLUSTER_COLORS)],
                "name": _cluster_name(p, lang),
                "code": number,
                "customers": size,
                "customer_share": size_share,
                "revenue": rev,
                "revenue_share": rev_share,
                "dominant": [_dominant_text(c, dominant.get(c), lang) for c in DOMINANT_COLUMNS],
                "features": features,
            }
        )
    return rows


def _k_curve(values: dict[str, Any], k: int, axis: str, name: str, lang: ReportLanguage, fmt: str) -> dict[str, Any]:
    points = sorted((int(key), float(v)) for key, v in values.items() if isinstance(v, int | float))
    return {
        "kind": "curve",
        "x": [p[0] for p in points],
        "y": [p[1] for p in points],
        "chosen": k,
        "chosen_name": lang.pick(f"chosen k = {k}", f"选定 k = {k}"),
        "name": name,
        "x_axis": lang.pick("Number of clusters k", "簇数 k"),
        "y_axis": axis,
        "format": fmt,
    }


def _cluster_kpis(c: dict[str, Any], rows: list[dict[str, Any]], lang: ReportLanguage) -> list[dict[str, str]]:
    p, k = lang.pick, int(c["k"])
    silhouette = (c.get("silhouette") or {}).get(str(k))
    tried = sorted(int(key) for key in c.get("silhouette") or {})
    if c.get("k_fixed"):
        how = p("fixed in tierwise.toml ([cluster] k)", "在 tierwise.toml 中固定（[cluster] k）")
    elif tried:
        sil = f"{silhouette:.2f}" if isinstance(silhouette, int | float) else "?"
        how = p(
            f"best silhouette ({sil}) of k = {tried[0]}–{tried[-1]}",
            f"在 k = {tried[0]}–{tried[-1]} 中轮廓系数最高（{sil}）",
        )
    else:
        how = p("chosen by silhouette", "按轮廓系数选择")
    stability, runs = c.get("stability"), len(c.get("stability_runs") or [])
    if isinstance(stability, int | float):
        unstable = bool(c.get("warning"))
        value = f"{stability:.2f}"
        note = p(
            f"adjusted Rand index, {runs} bootstrap refits" + ("; unstable" if unstable else ""),
            f"调整兰德指数，{runs} 次重抽样" + ("；不稳定" if unstable else ""),
        )
    else:
        value, note = "—", p("not measured ([cluster] bootstrap = 0)", "未评估（[cluster] bootstrap = 0）")
    clustered, excluded = int(c.get("clustered") or 0), int(c.get("excluded") or 0)
    features = [feature(f, lang) for f in c.get("features") or []]
    algorithm = {"kmeans": "k-means", "minibatch": "MiniBatch k-means"}.get(str(c.get("algorithm")), "k-means")
    return [
        card(p("Clusters", "簇数"), f"k = {k}", how),
        card(p("Stability", "稳定性"), value, note),
        card(
            p("Customers clustered", "参与聚类的客户"),
            f"{clustered:,}",
            p(f"{excluded:,} not clustered (no purchase)", f"{excluded:,} 位未参与（无购买）"),
        ),
        card(
            p("Features", "聚类特征"),
            f"{len(features)}",
            f"{algorithm}: " + ("、" if lang.zh else ", ").join(features),
        ),
    ]


def _scatter_chart(c: dict[str, Any], rows: list[dict[str, Any]], lang: ReportLanguage) -> dict[str, Any] | None:
    projection = c.get("projection") or {}
    xs, ys, cs = projection.get("x") or [], projection.get("y") or [], projection.get("cluster") or []
    if not xs or len(xs) != len(ys) or len(xs) != len(cs):
        return None
    series = []
    for r in rows:
        pick = [j for j, label in enumerate(cs) if label == r["cluster"]]
        series.append({"name": r["label"], "x": [xs[j] for j in pick], "y": [ys[j] for j in pick], "color": r["color"]})
    return {
        "kind": "scatter",
        "series": series,
        "n": len(xs),
        "x_axis": lang.pick("First principal component", "第一主成分"),
        "y_axis": lang.pick("Second principal component", "第二主成分"),
    }


def cluster_page(snap: ir.Table, meta: dict[str, Any], lang: ReportLanguage) -> PageParts | None:
    """The clusters section's caption, content and charts; None when the run has no clustering kept."""
    c = run_clusters(meta)
    if c is None:
        return None
    notes = [mining_note(str(n), lang) for n in c.get("notes") or [] if n]
    profiles = [p for p in c.get("profiles") or [] if isinstance(p, dict) and p.get("cluster") is not None]
    if c.get("k") is None or not profiles:
        headline = lang.pick("This run's customers were not clustered.", "本次运行没有对客户聚类。")
        return headline, {"kpis": [], "warning": None, "notes": notes, "rows": [], "figures": [], "curves": []}, {}
    rows = _cluster_rows(profiles, report_data.cluster_counts(snap), lang)
    charts: dict[str, dict[str, Any]] = {}
    figures = _figures(c, rows, charts, lang)
    curves = _curves(c, charts, lang)
    warning = mining_note(str(c["warning"]), lang) if c.get("warning") else None
    content = {
        "kpis": _cluster_kpis(c, rows, lang),
        "warning": warning,
        "notes": [n for n in notes if n != warning],
        "head": _head(lang),
        "rows": rows,
        "figures": figures,
        "curves": curves,
    }
    return _headline(c, rows, lang), content, charts


def _figures(
    c: dict[str, Any], rows: list[dict[str, Any]], charts: dict[str, dict[str, Any]], lang: ReportLanguage
) -> list[dict[str, str]]:
    """The scatter plot (when the run kept a projection) and the sizes chart: their charts go into `charts`."""
    figures: list[dict[str, str]] = []
    scatter = _scatter_chart(c, rows, lang)
    if scatter is not None:
        charts["clusters_scatter"] = scatter
        figures.append(
            {
                "id": "clusters_scatter",
                "title": lang.pick("The clusters in two dimensions", "聚类二维投影"),
                "caption": lang.pick(
                    f"A sample of {scatter['n']:,} customers on the first two principal components of the "
                    "standardised features, coloured by cluster.",
                    f"抽样 {scatter['n']:,} 位客户，按标准化特征的前两个主成分作图，颜色表示所属簇。",
                ),
            }
        )
    charts["clusters_sizes"] = dist_chart(rows, lang)
    figures.append(
        {
            "id": "clusters_sizes",
            "title": lang.pick("Size and revenue", "规模与收入"),
            "caption": dist_caption(rows, lang),
        }
    )
    return figures


def _curves(c: dict[str, Any], charts: dict[str, dict[str, Any]], lang: ReportLanguage) -> list[dict[str, str]]:
    """The silhouette and elbow curves over the k tried (when more than one was): their charts go into `charts`."""
    k = int(c["k"])
    curves: list[dict[str, str]] = []
    silhouette, inertia = c.get("silhouette") or {}, c.get("inertia") or {}
    if len(silhouette) > 1:
        charts["clusters_silhouette"] = _k_curve(
            silhouette,
            k,
            lang.pick("Silhouette (higher: better separated)", "轮廓系数（越高分得越开）"),
            lang.pick("Silhouette", "轮廓系数"),
            lang,
            ".2f",
        )
        curves.append(
            {
                "id": "clusters_silhouette",
                "title": lang.pick("Silhouette by k", "各 k 的轮廓系数"),
                "caption": lang.pick(
                    "How well separated the clusters are for each k tried, on a sample"
                    + ("." if c.get("k_fixed") else "; the highest was chosen."),
                    "每个候选 k 的轮廓系数（抽样计算）" + ("。" if c.get("k_fixed") else "，取最高者。"),
                ),
            }
        )
    if len(inertia) > 1:
        charts["clusters_elbow"] = _k_curve(
            inertia,
            k,
            lang.pick("Within-cluster sum of squares", "簇内平方和"),
            lang.pick("Inertia", "簇内平方和"),
            lang,
            ",.0f",
        )
        curves.append(
            {
                "id": "clusters_elbow",
                "title": lang.pick("Elbow curve", "肘部曲线"),
                "caption": lang.pick(
                    "Within-cluster spread for each k: past the bend, more clusters add little.",
                    "各 k 的簇内离散程度：拐点之后，再增加簇数收益不大。",
                ),
            }
        )
    return curves


def _headline(c: dict[str, Any], rows: list[dict[str, Any]], lang: ReportLanguage) -> str:
    k = int(c["k"])
    biggest = max(rows, key=lambda r: r["revenue_share"])
    return lang.pick(
        f"k-means found {k} groups among the {int(c.get('clustered') or 0):,} buyers; "
        f"{biggest['name']} (cluster {biggest['cluster']}) brings {pct(biggest['revenue_share'])} of revenue "
        f"with {pct(biggest['customer_share'])} of the customers.",
        f"k均值聚类把 {int(c.get('clustered') or 0):,} 位有购买的客户自然分成 {k} 群；"
        f"第 {biggest['cluster']} 群“{biggest['name']}”以 {pct(biggest['customer_share'])} 的客户贡献了 "
        f"{pct(biggest['revenue_share'])} 的收入。",
    )


def _head(lang: ReportLanguage) -> list[str]:
    return [
        "#",
        lang.pick("Cluster", "分群名称"),
        lang.t("customers"),
        lang.t("customer_share"),
        lang.t("revenue_share"),
        lang.t("rfm_segment"),
        lang.pick("Grade", "等级"),
        lang.pick("Region", "地区"),
        lang.t("industry_name"),
        lang.pick("Stands out by (vs all, in sd)", "显著特征（与整体相比，标准差）"),
    ]
