"""`tierwise report`: one offline HTML file whose numbers match the snapshot, with user data escaped."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pytest

from conftest import run_cli

EVIL = "<script>alert(1)</script>"
EVIL_PROVINCE = "</script><b>省</b>"
NEW_COLUMNS = ["grade", "composite_score", "priority_rank", "loyalty", "clv_historical", "main_industry"]
PREDICTIVE_COLUMNS = ["p_alive", "expected_purchases", "expected_spend", "clv_predicted"]
BACKTEST_CALIBRATION_END = "2024-06-30"
MODEL_CHARTS = {"model_palive", "model_clv", "backtest_buckets", "backtest_rankings"}
CLUSTER_CHARTS = {"clusters_scatter", "clusters_sizes", "clusters_silhouette", "clusters_elbow"}
LEARNED_CHARTS = {"learned_importance", "learned_classes"}
HISTORY_CHARTS = {"history_sankey", "history_matrix", "history_trend_grade", "history_trend_rfm_segment"}
CAMPAIGN_CHARTS = {"campaign_0", "campaign_1"}
HISTORY_DATES = ("2024-04-01", "2024-07-01")
CAMPAIGN, NO_CONTROL = "winback", "vip-no-control"
DATA_RE = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def _plant_evil_names(data: Path, n: int = 10) -> None:
    """The n customers who bought the most get a script for a name (so they are in the top list)."""
    revenue: dict[str, float] = defaultdict(float)
    with open(data / "orders.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            revenue[row["customer_id"]] += float(row["amount"] or 0)
    top = set(sorted(revenue, key=revenue.__getitem__, reverse=True)[:n])
    path = data / "customers.csv"
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    for row in rows:
        if row["customer_id"] in top:
            row["name"], row["province"] = EVIL, EVIL_PROVINCE
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)


def _plan_campaigns(ws: Path, root: Path) -> None:
    """A campaign with a control group and responses (every 4th treated, every 6th control customer bought
    for 300, as in docs/campaigns.md), and one without a control group and without responses yet."""
    treated, control = root / "winback.csv", root / "winback-control.csv"
    where = "rfm_segment in ('at_risk', 'hibernating', 'about_to_sleep')"
    r = run_cli(
        "campaign", "plan", CAMPAIGN, "-w", ws, "--where", where, "--control", "10%", "--seed", "42",
        "--cost-per-contact", "5", "--output", treated, "--control-output", control,
    )  # fmt: skip
    assert r.code == 0, r.stderr
    rows = []
    for path in (treated, control):
        with open(path, encoding="utf-8-sig") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                bought = i % 4 == 0 if row["group"] == "treatment" else i % 6 == 0
                rows.append(
                    {"活动编号": row["campaign_id"], "客户编号": row["customer_id"], "分组": row["group"],
                     "是否响应": "是" if bought else "否", "响应金额": 300 if bought else ""}
                )  # fmt: skip
    responses = root / "responses.csv"
    with open(responses, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    r = run_cli("ingest", "campaigns", responses, "-w", ws)
    assert r.code == 0, r.stderr
    r = run_cli("campaign", "plan", NO_CONTROL, "-w", ws, "--where", "grade = 'A'", "--control", "0%", "--seed", "1")
    assert r.code == 0, r.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data, ws = root / "data", root / "ws"
    assert run_cli("generate", data, "--customers", "600", "--seed", "11").code == 0
    _plant_evil_names(data)
    assert run_cli("init", ws).code == 0
    for table in ("customers", "orders", "payments", "interactions"):
        r = run_cli("ingest", table, data / f"{table}.csv", "-w", ws)
        assert r.code == 0, r.stderr
    # past runs first (so the main run is the one made last): the history page has trends and a migration
    r = run_cli("backfill", "-w", ws, "--from", HISTORY_DATES[0], "--to", HISTORY_DATES[1], "--every", "quarter")
    assert r.code == 0, r.stderr
    r = run_cli("run", "-w", ws)
    assert r.code == 0, r.stderr
    _plan_campaigns(ws, root)
    r = run_cli("backtest", "-w", ws, "--calibration-end", BACKTEST_CALIBRATION_END)
    assert r.code == 0, r.stderr
    r = run_cli("classify", "-w", ws, "--compare", "--json")  # a learned model for the latest run
    assert r.code == 0, r.stderr
    return ws


@pytest.fixture(scope="module")
def zh_report(workspace: Path) -> tuple[Path, dict[str, Any]]:
    out = workspace.parent / "report.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--json")
    assert r.code == 0, r.stderr
    summary = r.json()
    assert isinstance(summary, dict)
    return out, summary


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _own_markup(html: str) -> str:
    """The page without the inlined plotly.js, whose source mentions map-tile URLs it never loads here."""
    start = html.index("<script>", html.index('id="report-data"'))
    end = html.index("</script>", start)
    return html[:start] + html[end:]


def _chart_data(html: str) -> dict[str, Any]:
    match = DATA_RE.search(html)
    assert match, "no chart data block"
    return json.loads(match.group(1))


def _snapshot_rows(ws_dir: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    from tierwise.store.runs import latest_snapshot
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        return latest_snapshot(ws, run_id)[1].to_pyarrow().to_pylist()
    finally:
        ws.close()


def _derived_run(ws_dir: Path, run_id: str, change: Callable[[ir.Table], ir.Table]) -> str:
    """Store a copy of the latest run with its snapshot changed, dated in the past so it never becomes the latest."""
    from tierwise.store.runs import latest_snapshot
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        runs = ws.table("runs")
        meta, snap = latest_snapshot(ws)
        name = f"snapshot_{run_id.replace('-', '_')}"
        ws.con.create_table(name, change(snap).mutate(run_id=ibis.literal(run_id)))
        row = runs.filter(runs.run_id == meta["run_id"]).to_pyarrow().to_pylist()[0]
        row.update(run_id=run_id, snapshot_table=name, created_at=dt.datetime(2000, 1, 1))
        ws.con.insert("runs", ibis.memtable([row], schema=runs.schema()))
    finally:
        ws.close()
    return run_id


def test_report_is_one_offline_file_with_plotly_and_chinese_labels(zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    assert out.is_file()
    assert summary["path"] == str(out.resolve())
    assert summary["bytes"] == out.stat().st_size
    html = _page(out)
    assert not re.search(r"""\bsrc\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower()
    assert "@import" not in html
    own = _own_markup(html)
    assert "http://" not in own and "https://" not in own
    assert "Plotly.newPlot" in html and "plotly.js v" in html  # plotly's own code is inlined
    assert len(html) > 3_000_000
    assert '<html lang="zh-CN">' in html
    for text in ("客户分类报告", "关键指标", "冠军客户", "帕累托曲线", "重点客户", summary["run_id"]):
        assert text in html
    assert summary["sections"][:1] == ["kpis"]
    for section in ("rfm_segment", "rf_heatmap", "pareto", "lifecycle_stage", "region", "industry", "top_customers"):
        assert section in summary["sections"]
        assert f'data-section="{section}"' in html


def test_english_labels_with_language_option(workspace: Path) -> None:
    out = workspace.parent / "report_en.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--language", "en")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == str(out.resolve())
    html = _own_markup(_page(out))
    assert '<html lang="en">' in html
    for text in ("Customer classification report", "Key figures", "Champions", "Top customers"):
        assert text in html
    assert "冠军客户" not in html
    for text in ("Predictive models", "This run&#39;s predictions", "Backtest", "Predicted CLV", "Top 20%"):
        assert text in html
    assert "预测模型" not in html


def test_heatmap_and_region_numbers_match_the_snapshot(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    charts = _chart_data(_page(out))["charts"]
    rows = _snapshot_rows(workspace, summary["run_id"])

    cells = Counter((r["r_score"], r["f_score"]) for r in rows if r["r_score"] is not None)
    revenue: dict[tuple[int, int], float] = defaultdict(float)
    for r in rows:
        if r["r_score"] is not None:
            revenue[(r["r_score"], r["f_score"])] += r["monetary"]
    heat = charts["rf_heatmap"]
    assert heat["r"] == [5, 4, 3, 2, 1] and heat["f"] == [1, 2, 3, 4, 5]
    for i, rs in enumerate(heat["r"]):
        for j, fs in enumerate(heat["f"]):
            assert heat["customers"][i][j] == cells[(rs, fs)]
            assert heat["revenue"][i][j] == pytest.approx(revenue[(rs, fs)])
    assert sum(map(sum, heat["customers"])) == sum(cells.values()) > 0

    by_province = Counter(r["province"] for r in rows)
    province_revenue: dict[str, float] = defaultdict(float)
    for r in rows:
        province_revenue[r["province"]] += r["monetary"]
    region = charts["region"]
    labels, counts = region["labels"], region["series"][0]["counts"]
    top = sorted(by_province, key=lambda p: (-province_revenue[p], -by_province[p], p))[:15]
    assert labels[:15] == top
    assert counts[:15] == [by_province[p] for p in top]
    if len(by_province) > 15:
        assert labels[15] == "其他"
        assert counts[15] == len(rows) - sum(by_province[p] for p in top)
    assert sum(counts) == len(rows)


def test_customer_data_is_escaped(zh_report: tuple[Path, dict[str, Any]]) -> None:
    html = _page(zh_report[0])
    assert EVIL not in html
    assert EVIL_PROVINCE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the top-customer table
    assert "&lt;/script&gt;&lt;b&gt;省&lt;/b&gt;" in html  # the region table
    data = _chart_data(html)  # the chart data block still parses and holds the names verbatim
    assert EVIL_PROVINCE in data["charts"]["region"]["labels"]


def test_old_style_run_leaves_new_sections_out(workspace: Path) -> None:
    run_id = _derived_run(
        workspace, "20000101000000-old001", lambda t: t.drop(*[c for c in NEW_COLUMNS if c in t.columns])
    )
    out = workspace.parent / "old.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--run", run_id, "--json")
    assert r.code == 0, r.stderr
    summary = r.json()
    assert isinstance(summary, dict)
    assert summary["run_id"] == run_id
    for section in ("grade", "loyalty", "clv"):
        assert section not in summary["sections"]
    assert "industry" in summary["sections"]  # from industry_code
    html = _page(out)
    assert run_id in html
    assert 'data-section="grade"' not in html and 'id="chart-clv"' not in html
    assert set(_chart_data(html)["charts"]) >= {"rfm_segment", "rf_heatmap", "pareto", "region"}


def _with_new_columns(t: ir.Table) -> ir.Table:
    """The columns the weighted grade, loyalty and CLV add, made up where the run does not have them yet."""
    if "grade" not in t.columns:
        t = t.mutate(grade=ibis.cases((t.abc_class == "A", "A"), (t.abc_class == "B", "B"), else_="D"))
    if "composite_score" not in t.columns:
        t = t.mutate(composite_score=(t.m_score.fill_null(0) * 20).cast("float64"))
    if "priority_rank" not in t.columns:
        t = t.mutate(priority_rank=ibis.row_number().over(order_by=[ibis.desc(t.composite_score), t.customer_id]) + 1)
    if "loyalty" not in t.columns:
        t = t.mutate(
            loyalty=ibis.ifelse(t.frequency > 3, "loyal", ibis.ifelse(t.frequency > 0, "occasional", "prospect"))
        )
    if "clv_historical" not in t.columns:
        t = t.mutate(clv_historical=t.monetary * 1.5)
    if "main_industry" not in t.columns:
        t = t.mutate(main_industry=t.industry_code)
    return t


def test_new_columns_add_grade_loyalty_and_clv_sections(workspace: Path) -> None:
    run_id = _derived_run(workspace, "20000101000000-new001", _with_new_columns)
    out = workspace.parent / "new.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--run", run_id, "--json")
    assert r.code == 0, r.stderr
    summary = r.json()
    assert isinstance(summary, dict)
    for section in ("grade", "loyalty", "clv", "industry"):
        assert section in summary["sections"]
    html = _page(out)
    charts = _chart_data(html)["charts"]
    rows = _snapshot_rows(workspace, run_id)

    grades = Counter(r["grade"] for r in rows)
    grade_chart = charts["grade"]
    assert sum(grade_chart["series"][0]["counts"]) == len(rows)
    assert sorted(grade_chart["series"][0]["counts"]) == sorted(grades.values())

    clv = charts["clv"]
    positive = [r["clv_historical"] for r in rows if (r["clv_historical"] or 0) > 0]
    assert len(clv["customers"]) == 30
    assert sum(clv["customers"]) == clv["n"] == len(positive)

    # top customers follow priority_rank: the table's first column is the rank, 1..20
    top = html.split('data-section="top_customers"', 1)[1]
    ranks = re.findall(r'<tr><td class="num">(\d+)</td>', top)
    assert ranks == [str(i) for i in range(1, 21)]
    first = min((r for r in rows if r["priority_rank"] is not None), key=lambda r: r["priority_rank"])
    assert f"<td>{first['customer_id']}</td>" in top


def test_errors_are_one_line_with_exit_code_2(workspace: Path, ws_dir: Path, tmp_path: Path) -> None:
    cases = [
        (("report", "-w", ws_dir, "--out", tmp_path / "a.html"), "no run yet"),
        (("report", "-w", workspace, "--out", tmp_path / "b.html", "--run", "nope"), "no run 'nope'"),
        (("report", "-w", workspace, "--out", tmp_path / "missing" / "c.html"), "does not exist"),
        (("report", "-w", workspace, "--out", tmp_path), "is a folder"),
        (("report", "-w", workspace, "--out", tmp_path / "d.html", "--language", "fr"), "zh or en"),
    ]
    for args, message in cases:
        r = run_cli(*args)
        assert r.code == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.html"))


# The page's own script, run with stand-ins for the browser and plotly: every chart container gets one chart.
NODE_HARNESS = r"""
const fs = require("fs");
const html = fs.readFileSync(process.argv[2], "utf8");
const data = html.match(/<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/)[1];
const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
const own = scripts[scripts.length - 1];
const ids = new Set([...html.matchAll(/id="(chart-[^"]+)"/g)].map((m) => m[1]));
const plotted = [];
const errors = [];
const attrs = {};
// The script catches a failing chart and marks its element; the harness collects those marks.
const element = (id) => ({ id, setAttribute(k, v) { if (k === "data-chart-error") errors.push(id + ": " + v); } });
global.window = { addEventListener() {}, matchMedia: () => ({ addEventListener() {} }) };
global.getComputedStyle = () => ({ fontFamily: "sans-serif" });
global.document = {
  body: {},
  documentElement: { setAttribute: (k, v) => { attrs[k] = v; }, getAttribute: (k) => attrs[k] },
  getElementById: (id) => (id === "report-data" ? { textContent: data } : ids.has(id) ? element(id) : null),
};
global.Plotly = {
  newPlot(el, traces, layout, config) {
    JSON.stringify([traces, layout, config]);
    for (const t of traces) { if (!t.type) throw new Error("trace without type in " + el.id); }
    plotted.push(el.id);
  },
  Plots: { resize() {} },
};
new Function(own)();
console.log(JSON.stringify({ ids: [...ids], plotted, errors, rendered: attrs["data-charts-rendered"] }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_chart_script_draws_every_chart(zh_report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS, encoding="utf-8")
    proc = subprocess.run(["node", harness, zh_report[0]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["errors"] == []
    assert sorted(result["plotted"]) == sorted(result["ids"])
    assert len(result["plotted"]) == len(set(result["plotted"])) >= 7
    wanted = MODEL_CHARTS | CLUSTER_CHARTS | LEARNED_CHARTS | HISTORY_CHARTS | CAMPAIGN_CHARTS
    assert {f"chart-{key}" for key in wanted} <= set(result["plotted"])
    assert result["rendered"] == str(len(result["plotted"]))


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("TIERWISE_REQUIRE_CHROMIUM"), reason="no headless chromium here"
)
def test_opens_in_headless_chromium_without_errors(zh_report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            zh_report[0].as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors = re.search(r'data-js-errors="([^"]*)"', proc.stdout)
    assert errors is None, errors.group(1)
    match = re.search(r'data-charts-rendered="(\d+)"', proc.stdout)
    assert match and int(match.group(1)) >= 7
    assert int(match.group(1)) == len(_chart_data(_page(zh_report[0]))["charts"]) + 1  # R×F: two charts
    for key in MODEL_CHARTS | CLUSTER_CHARTS | LEARNED_CHARTS | HISTORY_CHARTS | CAMPAIGN_CHARTS:  # plotly drew
        tag = re.search(rf'<div[^>]*id="chart-{key}"[^>]*>', proc.stdout)
        assert tag and "js-plotly-plot" in tag.group(0), key


def test_stored_pareto_table_is_used(workspace: Path) -> None:
    from tierwise.workspace import Workspace

    run_id = _derived_run(workspace, "20000101000000-par001", lambda t: t)
    ws = Workspace.open(workspace)
    try:
        curve = {"customer_share": [0.0, 0.5, 1.0], "value_share": [0.0, 0.9, 1.0]}
        ws.con.create_table("pareto_20000101000000_par001", ibis.memtable(curve))
    finally:
        ws.close()
    out = workspace.parent / "pareto.html"
    assert run_cli("report", "-w", workspace, "--out", out, "--run", run_id).code == 0
    pareto = _chart_data(_page(out))["charts"]["pareto"]
    assert pareto["x"] == [0.0, 0.5, 1.0] and pareto["y"] == [0.0, 0.9, 1.0]
    assert "前 20% 的客户贡献了 36.0% 的收入" in _page(out)  # interpolated on the stored curve


# --- the model page -----------------------------------------------------------------------------------------


def _stored_backtests(ws_dir: Path) -> list[dict[str, Any]]:
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        t = ws.table("backtests")
        return t.order_by(t.created_at.desc()).to_pyarrow().to_pylist()
    finally:
        ws.close()


def _run_models(ws_dir: Path, run_id: str) -> dict[str, Any]:
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        runs = ws.table("runs")
        return json.loads(runs.filter(runs.run_id == run_id).models.to_pyarrow().to_pylist()[0])
    finally:
        ws.close()


@pytest.fixture
def workspace_copy(workspace: Path, tmp_path: Path) -> Path:
    """A copy of the module's workspace, for changes the other tests must not see."""
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    return copy


def test_model_section_shows_the_backtest_and_the_predictions(
    workspace: Path, zh_report: tuple[Path, dict[str, Any]]
) -> None:
    out, summary = zh_report
    assert "models" in summary["sections"]
    assert summary["sections"].index("models") < summary["sections"].index("top_customers")
    html = _page(out)
    page = html.split('data-section="models"', 1)[1].split("</section>", 1)[0]
    for text in ("预测模型", "本次运行的预测", "模型参数", "回测", "按校准期购买次数分组：预测与实际的留存期购买次数"):
        assert text in html
    for key in MODEL_CHARTS:
        assert f'id="chart-{key}"' in page
    charts = _chart_data(html)["charts"]
    assert set(charts) >= MODEL_CHARTS

    # the backtest part is the stored result, number for number
    stored = _stored_backtests(workspace)
    assert len(stored) == 1
    result = json.loads(stored[0]["result"])
    assert result["calibration_end"] == BACKTEST_CALIBRATION_END
    buckets = charts["backtest_buckets"]
    assert buckets["labels"] == [b["frequency"] for b in result["buckets"]] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert buckets["customers"] == [b["customers"] for b in result["buckets"]]
    assert buckets["series"][0]["values"] == [b["predicted"] for b in result["buckets"]]
    assert buckets["series"][1]["values"] == [b["actual"] for b in result["buckets"]]
    assert sum(buckets["customers"]) == result["customers"]
    rankings = charts["backtest_rankings"]
    assert rankings["series"][0]["values"] == [r["top10_share"] for r in result["rankings"]]
    assert rankings["series"][1]["values"] == [r["top20_share"] for r in result["rankings"]]
    assert rankings["gini"] == [r["gini"] for r in result["rankings"]]
    assert rankings["labels"][0] == "预测CLV"
    assert f"校准期截至 {BACKTEST_CALIBRATION_END}" in page

    # the run part: the parameters of runs.models, and the histograms counted from the snapshot
    params = _run_models(workspace, summary["run_id"])["params"]
    assert set(params["transactions"]) == {"r", "alpha", "a", "b"}
    assert "BG/NBD" in page and "Gamma-Gamma" in page
    assert f"α = {params['transactions']['alpha']:.4g}" in page
    assert f"q = {params['spend']['q']:.4g}" in page
    rows = _snapshot_rows(workspace, summary["run_id"])
    scored = [r["p_alive"] for r in rows if r["p_alive"] is not None]
    buyers = [r for r in rows if r["recency_days"] is not None]
    assert len(scored) == len(buyers) > 50
    palive = charts["model_palive"]
    assert len(palive["customers"]) == 20
    assert sum(palive["customers"]) == len(scored)
    expected = Counter(min(int(p * 20), 19) for p in scored)
    assert palive["customers"] == [expected[i] for i in range(20)]
    clv = charts["model_clv"]
    positive = [r["clv_predicted"] for r in rows if (r["clv_predicted"] or 0) > 0]
    assert len(clv["customers"]) == 30
    assert sum(clv["customers"]) == clv["n"] == len(positive)
    total = sum(r["clv_predicted"] or 0 for r in rows)
    assert f"{len(scored):,} 位有购买的客户" in page
    from tierwise.report.language import ReportLanguage

    assert ReportLanguage("zh", "").money(total) in page


def test_model_section_is_absent_for_an_old_run_without_backtests(workspace_copy: Path) -> None:
    from tierwise.report.render import build_context
    from tierwise.workspace import Workspace

    run_id = _derived_run(
        workspace_copy,
        "20000101000000-old002",
        lambda t: t.drop(*[c for c in [*NEW_COLUMNS, *PREDICTIVE_COLUMNS] if c in t.columns]),
    )
    ws = Workspace.open(workspace_copy)
    try:
        ws.con.drop_table("backtests")  # a workspace from before backtests were kept
        context = build_context(ws, run_id=run_id)
    finally:
        ws.close()
    assert "models" not in [s["id"] for s in context["sections"]]
    assert not set(context["charts"]) & MODEL_CHARTS

    out = workspace_copy.parent / "old-models.html"
    r = run_cli("report", "-w", workspace_copy, "--out", out, "--run", run_id, "--json")
    assert r.code == 0, r.stderr
    summary = r.json()
    assert isinstance(summary, dict) and "models" not in summary["sections"]
    html = _page(out)
    assert 'data-section="models"' not in html and "预测模型" not in html


def test_backtest_alone_and_skipped_models_say_so(workspace_copy: Path) -> None:
    """Old run + a backtest: only the backtest part. A run whose models were skipped: its note, no charts."""
    old = _derived_run(
        workspace_copy, "20000101000000-old003", lambda t: t.drop(*[c for c in PREDICTIVE_COLUMNS if c in t.columns])
    )
    out = workspace_copy.parent / "backtest-only.html"
    assert run_cli("report", "-w", workspace_copy, "--out", out, "--run", old, "--language", "en").code == 0
    html = _page(out)
    charts = _chart_data(html)["charts"]
    assert {"backtest_buckets", "backtest_rankings"} <= set(charts)
    assert not {"model_palive", "model_clv"} & set(charts)
    assert 'data-part="model_backtest"' in html and 'data-part="model_run"' not in html

    skipped = _derived_run(
        workspace_copy,
        "20000101000000-skip01",
        lambda t: t.mutate(**{c: ibis.null("float64") for c in PREDICTIVE_COLUMNS}),
    )
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace_copy)
    try:
        note = "predictive CLV skipped: 30 buyers, the models need at least 50"
        ws.con.raw_sql(
            "UPDATE runs SET models = ? WHERE run_id = ?",
            parameters=[json.dumps({"params": {}, "notes": [note]}), skipped],
        )
        ws.con.raw_sql("DELETE FROM backtests")
    finally:
        ws.close()
    for language, text in (
        ("zh", "本次未做预测：只有 30 位有购买的客户，模型至少需要 50 位。"),
        ("en", "Predictive CLV skipped: 30 buyers, the models need at least 50."),
    ):
        out = workspace_copy.parent / f"skipped-{language}.html"
        r = run_cli("report", "-w", workspace_copy, "--out", out, "--run", skipped, "--language", language, "--json")
        assert r.code == 0, r.stderr
        summary = r.json()
        assert isinstance(summary, dict) and "models" in summary["sections"]
        html = _page(out)
        page = html.split('data-section="models"', 1)[1].split("</section>", 1)[0]
        assert text in page
        assert 'class="chart"' not in page
        assert not set(_chart_data(html)["charts"]) & MODEL_CHARTS


def test_latest_backtest_is_the_newest(workspace_copy: Path) -> None:
    from tierwise.report import data as report_data
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace_copy)
    try:
        stored = json.loads(ws.table("backtests").result.to_pyarrow().to_pylist()[0])
        older = {**stored, "calibration_end": "2024-01-31", "buckets": stored["buckets"][:1]}
        row = {
            "backtest_id": "19990101000000-aaaaaa",
            "created_at": dt.datetime(1999, 1, 1),
            "calibration_end": dt.date(2024, 1, 31),
            "holdout_end": dt.date(2024, 12, 31),
            "result": json.dumps(older),
        }
        ws.con.insert("backtests", ibis.memtable([row], schema=ws.table("backtests").schema()))
        latest = report_data.latest_backtest(ws)
        assert latest is not None and latest["calibration_end"] == BACKTEST_CALIBRATION_END
        ws.con.raw_sql("DELETE FROM backtests WHERE backtest_id <> '19990101000000-aaaaaa'")
        latest = report_data.latest_backtest(ws)
        assert latest is not None and latest["calibration_end"] == "2024-01-31"
        ws.con.drop_table("backtests")
        assert report_data.latest_backtest(ws) is None
    finally:
        ws.close()


# --- the mining pages: clusters and learned rules ------------------------------------------------------------

PROFILE_ROW_RE = re.compile(
    r'<tr data-cluster="(\d+)">\s*<td class="num"><span[^>]*></span>\d+</td>\s*<td>([^<]*)</td>\s*'
    r'<td class="num">([\d,]+)</td>'
)


def _section(html: str, key: str) -> str:
    return html.split(f'data-section="{key}"', 1)[1].split("</section>", 1)[0]


def _learned_payload(ws_dir: Path, run_id: str) -> dict[str, Any]:
    from tierwise.store.learned import latest_learned
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        row = latest_learned(ws, run_id)
    finally:
        ws.close()
    assert row is not None
    return dict(row["payload"], predictions_table=row["predictions_table"])


def test_cluster_section_matches_the_snapshot(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    assert "clusters" in summary["sections"]
    assert summary["sections"].index("models") < summary["sections"].index("clusters")
    html = _page(out)
    page = _section(html, "clusters")
    assert "数据挖掘分群" in html and "轮廓系数" in page and "调整兰德指数" in page

    clusters = _run_models(workspace, summary["run_id"])["clusters"]
    k = clusters["k"]
    assert k >= 2 and len(clusters["profiles"]) == k
    rows = _snapshot_rows(workspace, summary["run_id"])
    sizes = Counter(r["cluster"] for r in rows if r["cluster"] is not None)
    names = {r["cluster"]: r["cluster_name"] for r in rows if r["cluster"] is not None}
    revenue: dict[int, float] = defaultdict(float)
    for r in rows:
        if r["cluster"] is not None:
            revenue[r["cluster"]] += r["monetary"] or 0.0

    # the profiles table: k rows, sizes and names as a group-by of the snapshot says
    table = PROFILE_ROW_RE.findall(page)
    assert len(table) == k == len(sizes)
    for number, name, customers in table:
        assert int(customers.replace(",", "")) == sizes[int(number)]
        assert name == names[int(number)]  # the workspace is Chinese: cluster_name is the Chinese name
    assert f"k = {k}" in page
    assert f"{clusters['clustered']:,}" in page and f"{clusters['excluded']:,} 位未参与" in page
    assert clusters["clustered"] == sum(sizes.values())
    assert "σ" in page  # distinguishing features as standardised differences
    first = clusters["profiles"][0]
    column, diff = first["top_features"][0]
    from tierwise.i18n import column_label

    assert f"{column_label(column, 'zh')} {diff:+.1f}σ" in page

    charts = _chart_data(html)["charts"]
    assert set(charts) >= CLUSTER_CHARTS
    for key in CLUSTER_CHARTS:
        assert f'id="chart-{key}"' in page
    order = sorted(sizes)
    bars = charts["clusters_sizes"]
    assert bars["series"][0]["counts"] == [sizes[c] for c in order]
    assert bars["series"][1]["counts"] == pytest.approx([revenue[c] for c in order])
    scatter = charts["clusters_scatter"]
    assert [s["name"] for s in scatter["series"]] == [f"{c} · {names[c]}" for c in order]  # the legend
    assert sum(len(s["x"]) for s in scatter["series"]) == len(clusters["projection"]["x"]) > 0
    assert scatter["series"][0]["x"] == [
        x for x, c in zip(clusters["projection"]["x"], clusters["projection"]["cluster"], strict=True) if c == order[0]
    ]
    silhouette = charts["clusters_silhouette"]
    assert silhouette["x"] == sorted(int(key) for key in clusters["silhouette"])
    assert silhouette["y"] == [clusters["silhouette"][str(x)] for x in silhouette["x"]]
    assert silhouette["chosen"] == k
    assert charts["clusters_elbow"]["y"] == [clusters["inertia"][str(x)] for x in charts["clusters_elbow"]["x"]]


def test_learned_section_shows_the_stored_model(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    assert "learned" in summary["sections"]
    html = _page(out)
    page = _section(html, "learned")
    payload = _learned_payload(workspace, summary["run_id"])
    assert payload["model"] == "tree" and set(payload["models"]) == {"tree", "boosting", "mlp"}
    assert "学习到的分类规则" in html and "决策树" in page and "混淆矩阵" in page

    # the rule list: one row per stored rule, in Chinese, with its class, confidence and customers
    rules = payload["rules"]
    assert len(rules) > 1
    assert len(re.findall(r'<tr data-rule="\d+">', page)) == len(rules)
    for rule in rules:
        condition = rule["text_zh"].split(" 则 ", 1)[0]
        assert condition.startswith("如果 ")
        assert condition.replace("<", "&lt;").replace(">", "&gt;") in page
    assert "if " not in page.split('data-part="learned_rules"', 1)[1]

    metrics = payload["models"]["tree"]["metrics"]
    assert f"{metrics['accuracy']:.1%}" in page
    assert metrics["roc_auc"] is not None and f"{metrics['roc_auc']:.3f}" in page
    for kind in ("boosting", "mlp"):  # the comparison table
        assert f"{payload['models'][kind]['metrics']['accuracy']:.1%}" in page
    assert "梯度提升" in page and "神经网络" in page
    matrix = metrics["confusion_matrix"]["matrix"]
    confusion = page.split('data-part="learned_confusion"', 1)[1].split("</table>", 1)[0]
    assert [int(n.replace(",", "")) for n in re.findall(r'<td class="num" style="[^"]*">([\d,]+)</td>', confusion)] == [
        n for row in matrix for n in row
    ]

    charts = _chart_data(html)["charts"]
    importance = charts["learned_importance"]
    from tierwise.i18n import column_label

    importances = payload["models"]["tree"]["importances"]
    top = [f for f, v in sorted(importances.items(), key=lambda fv: -fv[1]) if v > 0][:15]
    assert importance["labels"] == [column_label(f, "zh") for f in top]
    assert importance["values"] == pytest.approx([importances[f] for f in top])
    classes = charts["learned_classes"]
    assert (
        sum(classes["series"][0]["counts"])
        == payload["applied"]["customers"]
        == len(_snapshot_rows(workspace, summary["run_id"]))
    )
    assert sorted(classes["series"][0]["counts"]) == sorted(payload["applied"]["classes"].values())


def test_mining_sections_in_english(workspace: Path) -> None:
    out = workspace.parent / "report_mining_en.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--language", "en", "--json")
    assert r.code == 0, r.stderr
    summary = r.json()
    assert isinstance(summary, dict) and {"clusters", "learned"} <= set(summary["sections"])
    html = _page(out)
    clusters = _run_models(workspace, summary["run_id"])["clusters"]
    page = _section(html, "clusters")
    assert "Segments found in the data" in html and "数据挖掘分群" not in html
    table = PROFILE_ROW_RE.findall(page)
    assert len(table) == clusters["k"]
    names = {p["cluster"]: p["name_en"] for p in clusters["profiles"]}
    assert [name for _, name, _ in table] == [names[int(n)] for n, _, _ in table]
    assert "Silhouette by k" in page and "Elbow curve" in page

    learned = _section(html, "learned")
    payload = _learned_payload(workspace, summary["run_id"])
    assert "Learned rules" in html and "学习到的分类规则" not in html
    assert len(re.findall(r'<tr data-rule="\d+">', learned)) == len(payload["rules"])
    for rule in payload["rules"]:
        condition = rule["text_en"].split(" then ", 1)[0]
        assert condition.replace("<", "&lt;").replace(">", "&gt;") in learned
    assert "Decision tree" in learned and "Confusion matrix" in learned and "High value next period" in learned
    charts = _chart_data(html)["charts"]
    from tierwise.i18n import column_label

    assert charts["learned_importance"]["labels"][0] == column_label(
        next(iter(payload["models"]["tree"]["importances"])), "en"
    )


def test_mining_sections_absent_without_clusters_or_learned_model(workspace_copy: Path) -> None:
    """Clustering switched off: a new run has no cluster section, and no learned model yet: no rules section."""
    config = workspace_copy / "tierwise.toml"
    text = config.read_text(encoding="utf-8")
    assert "[cluster]" in text
    config.write_text(re.sub(r"(?m)^(\[cluster\]\s*\n(?:#.*\n)*)enabled = true", r"\1enabled = false", text))
    assert "enabled = false" in config.read_text(encoding="utf-8")
    r = run_cli("run", "-w", workspace_copy)
    assert r.code == 0, r.stderr
    for language in ("zh", "en"):
        out = workspace_copy.parent / f"no-mining-{language}.html"
        r = run_cli("report", "-w", workspace_copy, "--out", out, "--language", language, "--json")
        assert r.code == 0, r.stderr
        summary = r.json()
        assert isinstance(summary, dict)
        assert "clusters" not in summary["sections"] and "learned" not in summary["sections"]
        html = _page(out)
        assert 'data-section="clusters"' not in html and 'data-section="learned"' not in html
        assert not set(_chart_data(html)["charts"]) & (CLUSTER_CHARTS | LEARNED_CHARTS)
        assert _run_models(workspace_copy, summary["run_id"]).get("clusters") is None
    for text in ("数据挖掘分群", "学习到的分类规则"):
        assert text not in _page(workspace_copy.parent / "no-mining-zh.html")


def test_learned_section_from_a_stored_row(workspace_copy: Path) -> None:
    """A model stored in `learned_models` by hand (only the payload's essentials): shown for its run only."""
    from tierwise.report.render import build_context
    from tierwise.store.learned import learned_payload
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace_copy)
    try:
        ws.con.raw_sql("DELETE FROM learned_models")
        meta_run = ws.table("runs").order_by(ibis.desc("created_at")).limit(1).run_id.to_pyarrow().to_pylist()[0]
        assert learned_payload(ws, meta_run) is None
        assert "learned" not in [s["id"] for s in build_context(ws)["sections"]]
        payload = {
            "target": "grade",
            "model": "boosting",
            "features": ["monetary"],
            "models": {
                "boosting": {
                    "metrics": {
                        "accuracy": 0.75,
                        "per_class": {},
                        "confusion_matrix": {"labels": ["A", "B"], "matrix": [[3, 1], [0, 4]]},
                        "roc_auc": None,
                    },
                    "importances": {"monetary": 0.2},
                    "importance_kind": "permutation",
                }
            },
            "rules": [],
            "notes": [],
        }
        row = {
            "model_id": "20000101000000-abcdef",
            "run_id": meta_run,
            "created_at": dt.datetime(2000, 1, 1),
            "target": "grade",
            "model": "boosting",
            "calibration_end": None,
            "holdout_end": None,
            "predictions_table": "learned_missing",
            "payload": json.dumps(payload),
        }
        ws.con.insert("learned_models", ibis.memtable([row], schema=ws.table("learned_models").schema()))
        context = build_context(ws, language="en")
    finally:
        ws.close()
    section = next(s for s in context["sections"] if s["id"] == "learned")
    assert "75.0%" in section["caption"] and "rules below" not in section["caption"]
    assert section["learned"]["rules"] == [] and section["learned"]["comparison"] == []
    assert [[c["n"] for c in r["cells"]] for r in section["learned"]["confusion"]["rows"]] == [[3, 1], [0, 4]]
    assert context["charts"]["learned_importance"]["labels"] == ["monetary"]
    assert "learned_classes" not in context["charts"]  # its predictions table is gone


# --- the history page: trends, migration, campaigns ---------------------------------------------------------


def _cli_json(*args: str | Path) -> Any:
    r = run_cli(*args, "--json")
    assert r.code == 0, r.stderr
    return r.json()


def _cell_key(code: Any, kind: str, side: str) -> str:
    if side == "from" and kind == "entry":
        return "__new__"
    if side == "to" and kind == "exit":
        return "__gone__"
    return "__none__" if code is None else str(code)


def _check_migration(charts: dict[str, Any], data: dict[str, Any]) -> None:
    """The Sankey and the heatmap hold exactly the cells of `tierwise compare --json`."""
    heat, sankey = charts["history_matrix"], charts["history_sankey"]
    seen = 0
    for cell in data["matrix"]:
        i = heat["row_keys"].index(_cell_key(cell["from"], cell["kind"], "from"))
        j = heat["col_keys"].index(_cell_key(cell["to"], cell["kind"], "to"))
        assert heat["customers"][i][j] == cell["customers"]
        assert heat["revenue_from"][i][j] == pytest.approx(cell["revenue_from"])
        assert heat["revenue_to"][i][j] == pytest.approx(cell["revenue_to"])
        seen += 1
    assert sum(v is not None for row in heat["customers"] for v in row) == seen == len(sankey["links"]["value"])
    total = sum(v or 0 for row in heat["customers"] for v in row)
    t = data["totals"]
    assert total == sum(sankey["links"]["value"]) == data["in_both"] + t["entry"] + t["exit"]
    # rows without "new" are run A's customers, columns without "gone" run B's
    new_row = heat["row_keys"].index("__new__") if "__new__" in heat["row_keys"] else None
    gone_col = heat["col_keys"].index("__gone__") if "__gone__" in heat["col_keys"] else None
    in_a = sum(v or 0 for i, row in enumerate(heat["customers"]) if i != new_row for v in row)
    in_b = sum(v or 0 for row in heat["customers"] for j, v in enumerate(row) if j != gone_col)
    assert in_a == data["run_a"]["customers"] and in_b == data["run_b"]["customers"]
    assert in_a - t["exit"] == in_b - t["entry"] == data["in_both"]


def test_history_section_matches_compare_and_trends(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    assert "history" in summary["sections"]
    assert summary["sections"].index("history") < summary["sections"].index("top_customers")
    html = _page(out)
    page = _section(html, "history")
    charts = _chart_data(html)["charts"]
    data = _cli_json("compare", "-w", workspace, "--top", "0")
    assert data["run_b"]["run_id"] == summary["run_id"] and data["run_a"]["as_of"] == HISTORY_DATES[1]
    _check_migration(charts, data)
    assert charts["history_sankey"]["left"] == HISTORY_DATES[1]
    t = data["totals"]
    for title, value in (
        ("升级", t["upgrade"]),
        ("降级", t["downgrade"]),
        ("新进入", t["entry"]),
        ("已离开", t["exit"]),
    ):
        assert re.search(rf'<div class="label">{title}</div><div class="value">{value:,}</div>', page), title
    top = data["new_in_top"]
    assert f'<div class="value">{top["this_run"]:,}</div><div class="note">上一次为 {top["previous_run"]:,} 位' in page
    assert "历史与迁移" in html and "迁移矩阵" in page
    assert f"两次都在的 {data['in_both']:,} 位客户中，{t['stayed']:,} 位类别未变" in page

    for column in ("grade", "rfm_segment"):
        trend = _cli_json("trends", "-w", workspace, "--by", column)
        chart = charts[f"history_trend_{column}"]
        assert chart["x"] == [r["as_of"] for r in trend["runs"]] == [*HISTORY_DATES, data["run_b"]["as_of"]]
        assert len(chart["series"]) == len(trend["classes"])
        for series, c in zip(chart["series"], trend["classes"], strict=True):
            assert series["values"] == [r["sizes"].get(str(c["code"]), 0) for r in trend["runs"]]
        assert [sum(col) for col in zip(*(s["values"] for s in chart["series"]), strict=True)] == [
            r["customers"] for r in trend["runs"]
        ]


def _move_customers(ws_dir: Path, run_id: str, drop: int, add: int) -> None:
    """Take `drop` customers out of a run's snapshot and put `add` made-up ones in: entries and exits."""
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        runs = ws.table("runs")
        table = runs.filter(runs.run_id == run_id).snapshot_table.to_pyarrow().to_pylist()[0]
        snap = ws.table(table)
        ids = snap.order_by("customer_id").customer_id.to_pyarrow().to_pylist()
        gone = snap.filter(snap.customer_id.isin(ids[-add:])).mutate(customer_id="X" + snap.customer_id)
        ws.con.insert(table, gone.to_pyarrow())
        ws.con.raw_sql(f"DELETE FROM {table} WHERE customer_id IN ({', '.join(repr(i) for i in ids[:drop])})")
        ws.con.raw_sql(f"UPDATE runs SET customers = customers - {drop} + {add} WHERE run_id = '{run_id}'")
    finally:
        ws.close()


def test_history_counts_entries_and_exits_in_english(workspace_copy: Path) -> None:
    before = _cli_json("compare", "-w", workspace_copy, "--top", "0")["run_a"]
    _move_customers(workspace_copy, before["run_id"], drop=12, add=5)
    data = _cli_json("compare", "-w", workspace_copy, "--top", "0")
    assert (data["totals"]["entry"], data["totals"]["exit"]) == (12, 5)
    out = workspace_copy.parent / "history-en.html"
    r = run_cli("report", "-w", workspace_copy, "--out", out, "--language", "en")
    assert r.code == 0, r.stderr
    html = _page(out)
    _check_migration(_chart_data(html)["charts"], data)
    page = _section(html, "history")
    assert "History and migration" in html and "Migration matrix" in page and "Segment sizes over runs" in page
    assert re.search(r'<div class="label">Entered</div><div class="value">12</div>', page)
    assert re.search(r'<div class="label">Left</div><div class="value">5</div>', page)
    assert "12 entered and 5 left" in page and "历史与迁移" not in html
    assert "New" in _chart_data(html)["charts"]["history_sankey"]["labels"]


def test_history_section_absent_with_one_run(workspace_copy: Path) -> None:
    from tierwise.report.render import build_context
    from tierwise.store.runs import latest_snapshot
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace_copy)
    try:
        latest = str(latest_snapshot(ws)[0]["run_id"])
        ws.con.raw_sql(f"DELETE FROM runs WHERE run_id <> '{latest}'")
        for language in ("zh", "en"):
            context = build_context(ws, language=language)
            assert "history" not in [s["id"] for s in context["sections"]]
            assert not set(context["charts"]) & HISTORY_CHARTS
            assert "campaigns" in [s["id"] for s in context["sections"]]  # campaigns need no history
    finally:
        ws.close()


def _campaign_part(html: str, name: str) -> str:
    page = _section(html, "campaigns")
    return page.split(f'data-campaign="{name}"', 1)[1].split('data-part="campaign"', 1)[0]


def _campaign_rows(part: str) -> dict[str, list[str]]:
    rows = re.findall(r'<tr(?: class="chosen")? data-segment="([^"]*)">(.*?)</tr>', part, re.S)
    return {label: re.findall(r"<td[^>]*>([^<]*)</td>", body)[1:] for label, body in rows}


def _pct1(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def test_campaign_section_matches_campaign_report(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    out, summary = zh_report
    assert "campaigns" in summary["sections"]
    html = _page(out)
    charts = _chart_data(html)["charts"]
    data = _cli_json("campaign", "report", CAMPAIGN, "-w", workspace, "--lang", "zh")
    assert data["has_control"] and data["segments"]
    part = _campaign_part(html, CAMPAIGN)
    rows = _campaign_rows(part)
    assert list(rows) == [s["label"] for s in data["segments"]] + ["合计"]
    for line, label in [*((s, s["label"]) for s in data["segments"]), (data["overall"], "合计")]:
        cells = rows[label]
        assert cells[0] == f"{line['contacted']:,}" and cells[1] == f"{line['responded']:,}"
        assert cells[2] == _pct1(line["response_rate"])
        lo, hi = line["response_rate_ci"]
        assert cells[3] == f"{lo:.1%} – {hi:.1%}"
        assert cells[4] == f"{line['revenue_per_contact']:,.2f}"
        assert cells[5] == f"{line['control_customers']:,}"
        assert cells[6] == _pct1(line["control_response_rate"])
        assert cells[8] == ("—" if line["lift"] is None else f"{line['lift'] * 100:+.1f}")
        roi = line["incremental_roi"] if line["incremental_roi"] is not None else line["roi"]
        assert cells[10] == _pct1(roi)
    key = re.search(r'id="chart-(campaign_\d+)"', part)
    assert key
    chart = charts[key.group(1)]
    treated, control = chart["series"]
    lines = [*data["segments"], data["overall"]]
    assert treated["values"] == [s["response_rate"] for s in lines]
    assert control["values"] == [s["control_response_rate"] for s in lines]
    for s, plus, minus in zip(lines, treated["plus"], treated["minus"], strict=True):
        assert s["response_rate"] + plus == pytest.approx(s["response_rate_ci"][1])
        assert s["response_rate"] - minus == pytest.approx(s["response_rate_ci"][0])
    assert "营销活动" in html and "没有对照组" not in part


def test_campaign_without_control_group_says_no_lift(workspace: Path, zh_report: tuple[Path, dict[str, Any]]) -> None:
    part = _campaign_part(_page(zh_report[0]), NO_CONTROL)
    assert "没有对照组：无法计算相对对照组的提升" in part
    assert all(cells[8] == "—" for cells in _campaign_rows(part).values())  # no lift anywhere
    out = workspace.parent / "campaigns-en.html"
    r = run_cli("report", "-w", workspace, "--out", out, "--language", "en")
    assert r.code == 0, r.stderr
    html = _page(out)
    part = _campaign_part(html, NO_CONTROL)
    assert "No control group: lift over control cannot be measured" in part
    assert "Campaigns" in html and "营销活动" not in _own_markup(html)
    data = _cli_json("campaign", "report", CAMPAIGN, "-w", workspace, "--lang", "en")
    assert list(_campaign_rows(_campaign_part(html, CAMPAIGN))) == [s["label"] for s in data["segments"]] + ["Overall"]


# --- the one set of headline figures ---------------------------------------------------------------------------


def test_headline_figures_are_the_snapshot_totals_for_report_and_dashboard(workspace: Path) -> None:
    """report.figures is the one source of the key figures: its values are counts and sums over the snapshot's
    rows, the dashboard's KPI values are the same numbers, and the report's cards show them."""
    from tierwise.report.figures import headline_figures
    from tierwise.report.language import ReportLanguage
    from tierwise.report.pages.key_figures import key_figures
    from tierwise.store.runs import latest_snapshot
    from tierwise.web.services.overview import overview
    from tierwise.workspace import Workspace

    rows = _snapshot_rows(workspace)
    ws = Workspace.open(workspace)
    try:
        snap = latest_snapshot(ws)[1]
        figures = headline_figures(snap)
        dashboard = {k["key"]: k["value"] for k in overview(ws, language="en")["kpis"]}
        cards = {c["label"]: c for c in key_figures(snap, ReportLanguage("en", ""))}
    finally:
        ws.close()
    stages = Counter(r["lifecycle_stage"] for r in rows)
    expected_counts = {
        "customers": len(rows),
        "buyers": sum(r["recency_days"] is not None for r in rows),
        "grade_a": sum(r["grade"] == "A" for r in rows),
        "abc_a": sum(r["abc_class"] == "A" for r in rows),
        "active": stages["new"] + stages["active"] + stages["mature"],
        "at_risk": stages["at_risk"],
        "churned": stages["churned"],
        "overdue_customers": sum((r["overdue_amount"] or 0) > 0 for r in rows),
    }
    for key, n in expected_counts.items():
        assert figures[key] == n and type(figures[key]) is int, key
    assert 0 < figures["at_risk"] + figures["churned"] < figures["customers"]  # the sum below is not trivial
    assert figures["revenue"] == pytest.approx(sum(r["monetary"] for r in rows), rel=1e-12)
    assert figures["abc_a_revenue"] == pytest.approx(
        sum(r["monetary"] for r in rows if r["abc_class"] == "A"), rel=1e-12
    )
    assert figures["clv_historical"] == pytest.approx(sum(r["clv_historical"] or 0 for r in rows), rel=1e-9)
    scores = [r["composite_score"] for r in rows if r["composite_score"] is not None]
    assert figures["avg_score"] == pytest.approx(sum(scores) / len(scores), rel=1e-12)
    # the dashboard's KPIs are these figures under the same keys
    assert dashboard and all(dashboard[k] == figures[k] for k in dashboard)
    assert {"customers", "revenue", "at_risk", "churned", "abc_a", "avg_score"} <= set(dashboard)
    # the report's cards: "at risk or churned" adds the two lifecycle counts
    assert cards["Customers"]["value"] == f"{len(rows):,}"
    assert cards["At risk or churned"]["value"] == f"{stages['at_risk'] + stages['churned']:,}"
    assert cards["Key (A) customers"]["value"] == f"{expected_counts['abc_a']:,}"
