"""The history page: migration between two runs (with Sankey data), class sizes over runs, one customer's
timeline. The numbers are those of `tierwise compare|trends|timeline --json` (the same functions); the chart
data is added beside them."""

from __future__ import annotations

from typing import Any

from tierwise.errors import UserError
from tierwise.history import compare as history_compare
from tierwise.history import trends as history_trends
from tierwise.web.services._common import cluster_names, jsonable, language_of
from tierwise.workspace import Workspace

MAX_TOP = 200


def compare(
    ws: Workspace,
    run_a: str | None = None,
    run_b: str | None = None,
    column: str = "grade",
    language: str | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """history.compare.compare (run A → run B of `column`: matrix, totals, moved customers and why, new in the
    top class, stability), plus `sankey`: {nodes: [{id, label, side}], links: [{source, target, value, kind}]}
    where source/target index `nodes`; "entry" and "exit" are customers new in run B and gone from it."""
    if not 0 <= top <= MAX_TOP:
        raise UserError(f"top {top}: give 0 to {MAX_TOP} moved customers")
    lang = language_of(ws, language)
    data = history_compare.compare(ws, run_a, run_b, column, lang, top)
    if column == "cluster_name":
        names = _cluster_names(ws, lang)
        for row in [*data["matrix"], *data["moved_customers"]]:
            for side in ("from", "to"):
                if row.get(side) is not None and row.get(f"{side}_label") is not None:
                    row[f"{side}_label"] = names.get(str(row[side]), row[f"{side}_label"])
    data["sankey"] = sankey(data, lang)
    return jsonable(data)


def _cluster_names(ws: Workspace, language: str) -> dict[str, str]:
    """Every run's cluster names in `language`, by the name a snapshot holds (each run names its own clusters)."""
    runs = ws.table("runs")
    if "models" not in runs.columns:
        return {}
    return cluster_names(runs.select("models").to_pyarrow().to_pylist(), language)


def sankey(data: dict[str, Any], language: str) -> dict[str, Any]:
    """Nodes for the classes of run A (left) and run B (right), links for the matrix cells with customers."""
    zh = language == "zh"
    order = {c: i for i, c in enumerate(data.get("order") or [])}

    def key(code: Any) -> tuple[int, str]:
        return (order.get(code, len(order)) if code is not None else len(order) + 1, str(code))

    left: dict[Any, str] = {}
    right: dict[Any, str] = {}
    for c in data["matrix"]:
        if c["kind"] != "entry":
            left.setdefault(c["from"], c["from_label"])
        if c["kind"] != "exit":
            right.setdefault(c["to"], c["to_label"])
    nodes: list[dict[str, Any]] = []
    index: dict[tuple[str, Any], int] = {}
    for code in sorted(left, key=key):
        index[("a", code)] = len(nodes)
        nodes.append({"id": f"a:{code}", "code": code, "label": left[code], "side": "from"})
    if any(c["kind"] == "entry" for c in data["matrix"]):
        index[("a", "__entry__")] = len(nodes)
        nodes.append({"id": "a:__entry__", "code": None, "label": "新进入" if zh else "new", "side": "from"})
    for code in sorted(right, key=key):
        index[("b", code)] = len(nodes)
        nodes.append({"id": f"b:{code}", "code": code, "label": right[code], "side": "to"})
    if any(c["kind"] == "exit" for c in data["matrix"]):
        index[("b", "__exit__")] = len(nodes)
        nodes.append({"id": "b:__exit__", "code": None, "label": "已离开" if zh else "gone", "side": "to"})
    links = []
    for c in data["matrix"]:
        if not c["customers"]:
            continue
        source = index[("a", "__entry__")] if c["kind"] == "entry" else index[("a", c["from"])]
        target = index[("b", "__exit__")] if c["kind"] == "exit" else index[("b", c["to"])]
        links.append({"source": source, "target": target, "value": int(c["customers"]), "kind": c["kind"]})
    return {"nodes": nodes, "links": links}


def trends(ws: Workspace, column: str = "grade", language: str | None = None) -> dict[str, Any]:
    """history.trends.trends (per run: sizes and revenue per class, new in the top class) plus `series`:
    {x: as-of dates, series: [{code, label, customers: [...], revenue: [...]}]}, ready for a line chart."""
    lang = language_of(ws, language)
    data = history_trends.trends(ws, column, lang)
    if column == "cluster_name":
        names = _cluster_names(ws, lang)
        for c in data["classes"]:
            if c["code"] is not None:
                c["label"] = names.get(str(c["code"]), c["label"])
    x = [r["as_of"] for r in data["runs"]]
    series = []
    for c in data["classes"]:
        code = str(c["code"])
        series.append(
            {
                "code": c["code"],
                "label": c["label"],
                "customers": [r["sizes"].get(code, 0) for r in data["runs"]],
                "revenue": [r["revenue"].get(code, 0.0) for r in data["runs"]],
            }
        )
    data["chart"] = {"x": x, "series": series}
    return jsonable(data)


def timeline(ws: Workspace, customer_id: str, language: str | None = None) -> dict[str, Any]:
    """history.trends.timeline: the customer's classes in every run, and per class column since when."""
    return jsonable(history_trends.timeline(ws, customer_id, language_of(ws, language)))
