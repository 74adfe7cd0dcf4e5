"""The service layer behind the REST API and the dashboard (tierwise.web.services): every number is checked
against an independent computation (pandas over the stored snapshot) or the CLI's --json output."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from tierwise.errors import UserError

FIRST_AS_OF = dt.date(2024, 7, 1)
FORMULA_NAME = '=HYPERLINK("http://evil.example","click")'
EXTRA_CUSTOMERS = (
    "customer_id,name,phone,email,customer_kind,province\n"
    f'P9000001,"{FORMULA_NAME.replace(chr(34), chr(34) * 2)}",13812345678,zhang.san@example.com,prospect,浙江\n'
    "P9000002,Acme Prospect Ltd,+86 139-0000-1111,li@example.com,prospect,上海\n"
)
CHANGES = {"grade": {"weights": {"credit": 0.05, "amount": 0.6}}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """600 generated customers (+ two prospects), four tables loaded, runs as of 2024-07-01 and the default date;
    the CLI's --json answers are taken before the workspace is opened here (DuckDB has one writer process)."""
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("web")
    data, ws_dir = root / "data", root / "ws"
    generate(data, customers=600, seed=11)
    (data / "extra_customers.csv").write_text(EXTRA_CUSTOMERS, encoding="utf-8")
    ws = Workspace.init(ws_dir)
    try:
        for table in ("customers", "orders", "payments", "interactions"):
            ingest_file(ws, table, data / f"{table}.csv")
        ingest_file(ws, "customers", data / "extra_customers.csv")
        run(ws, FIRST_AS_OF)
        run(ws)
    finally:
        ws.close()
    cli = {}
    for key, args in {
        "compare": ("compare", "--json", "--lang", "en", "--top", "5"),
        "trends": ("trends", "--json", "--by", "rfm_segment", "--lang", "en"),
    }.items():
        result = run_cli(*args, "-w", ws_dir)
        assert result.code == 0, result.stderr
        cli[key] = result.json()
    return {"root": root, "ws_dir": ws_dir, "cli": cli}


@pytest.fixture(scope="module")
def ws(built: dict[str, Any]):
    from tierwise.workspace import Workspace

    w = Workspace.open(built["ws_dir"])
    yield w
    w.close()


def _snap(ws: Any, which: int = -1) -> pd.DataFrame:
    from tierwise.store.runs import list_runs

    runs = list_runs(ws)
    return ws.table(str(runs[which]["snapshot_table"])).to_pandas()


def _json_roundtrip(data: Any) -> Any:
    return json.loads(json.dumps(data, ensure_ascii=False))  # plain json: no default=, so it must be serialisable


# ---------------------------------------------------------------- overview and segments


def test_overview_agrees_with_the_snapshots(ws: Any) -> None:
    from tierwise.web.services.overview import overview

    data = _json_roundtrip(overview(ws, language="en"))
    snap, prev = _snap(ws, -1), _snap(ws, -2)
    kpi = {k["key"]: k for k in data["kpis"]}
    assert kpi["customers"]["value"] == len(snap) == 602
    assert kpi["buyers"]["value"] == int(snap.recency_days.notna().sum())
    assert kpi["revenue"]["value"] == pytest.approx(snap.monetary.sum())
    assert kpi["revenue"]["previous"] == pytest.approx(prev.monetary.sum())
    assert kpi["revenue"]["change"] == pytest.approx(snap.monetary.sum() - prev.monetary.sum())
    assert kpi["grade_a"]["value"] == int((snap.grade == "A").sum())
    assert kpi["at_risk"]["value"] == int((snap.lifecycle_stage == "at_risk").sum())
    assert kpi["at_risk"]["previous"] == int((prev.lifecycle_stage == "at_risk").sum())
    assert kpi["avg_score"]["value"] == pytest.approx(snap.composite_score.mean())
    assert kpi["clv_predicted"]["value"] == pytest.approx(snap.clv_predicted.sum())
    assert data["run"]["previous_run"]["as_of"] == FIRST_AS_OF.isoformat()

    grades = {r["code"]: r["customers"] for r in data["distributions"]["grade"]["rows"]}
    expected = snap.grade.value_counts(dropna=False).to_dict()
    assert grades == {(None if pd.isna(k) else k): v for k, v in expected.items()}
    assert [r["code"] for r in data["distributions"]["grade"]["rows"]][:4] == ["A", "B", "C", "D"]
    seg = {r["code"]: r["revenue"] for r in data["distributions"]["rfm_segment"]["rows"]}
    for code, revenue in snap.groupby("rfm_segment").monetary.sum().items():
        assert seg[code] == pytest.approx(revenue)

    heat = data["heatmap"]
    assert sum(map(sum, heat["customers"])) == int(snap.r_score.notna().sum())
    cell = heat["customers"][0][4]  # R 5 × F 5
    assert cell == int(((snap.r_score == 5) & (snap.f_score == 5)).sum())
    assert data["pareto"]["y"][-1] == pytest.approx(1.0)
    regions = data["regions"]["rows"]
    assert sum(r["customers"] for r in regions) == len(snap)
    top = snap.groupby("province").monetary.sum().sort_values(ascending=False)
    assert regions[0]["code"] == top.index[0] and regions[0]["revenue"] == pytest.approx(top.iloc[0])

    zh = overview(ws, language="zh")
    assert zh["distributions"]["grade"]["title"] == "客户等级（综合加权评分）"
    with pytest.raises(UserError, match="say zh or en"):
        overview(ws, language="fr")


def test_segments_sizes_and_most_common_strategy(ws: Any) -> None:
    from tierwise.web.services.segments import segment_members, segments

    data = _json_roundtrip(segments(ws, "grade", language="en"))
    snap = _snap(ws)
    for row in data["classes"]:
        members = snap[snap.grade.isna()] if row["code"] is None else snap[snap.grade == row["code"]]
        assert row["customers"] == len(members)
        assert row["revenue"] == pytest.approx(members.monetary.sum())
        counts = members.strategy.value_counts()
        assert counts[row["strategy"]] == counts.max()
        assert row["strategy_share"] == pytest.approx(counts.max() / len(members))
        assert row["strategy_label"] and row["action_label"]
    prospects = segment_members(ws, "grade", None, page_size=10, columns=["customer_id", "name", "grade"])
    assert prospects["total"] == int(snap.grade.isna().sum()) and all(r["grade"] is None for r in prospects["rows"])
    b = segment_members(ws, "grade", "B", page=2, page_size=7)
    assert b["total"] == int((snap.grade == "B").sum()) and len(b["rows"]) == 7
    ranks = snap[snap.grade == "B"].sort_values("priority_rank").customer_id.tolist()
    assert [r["customer_id"] for r in b["rows"]] == ranks[7:14]
    with pytest.raises(UserError, match="not a class column"):
        segments(ws, "monetary")


# ---------------------------------------------------------------- customers


def test_list_customers_filter_total_matches_pandas(ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    snap = _snap(ws)
    where = "grade in ('A', 'B') and monetary > 100000 and lifecycle_stage <> 'churned'"
    data = _json_roundtrip(list_customers(ws, where=where, page_size=500))
    mask = snap.grade.isin(["A", "B"]) & (snap.monetary > 100000) & (snap.lifecycle_stage != "churned")
    assert data["total"] == int(mask.sum()) == len(data["rows"])
    assert {r["customer_id"] for r in data["rows"]} == set(snap[mask].customer_id)
    assert data["rows"][0]["grade_label"] and data["sort"] == "priority_rank"
    with pytest.raises(UserError, match=r"where: unknown column 'monetry'.*did you mean"):
        list_customers(ws, where="monetry > 1")
    with pytest.raises(UserError, match=r"columns: no column 'gade'.*did you mean grade"):
        list_customers(ws, columns=["customer_id", "gade"])


def test_sorting_and_page_boundaries(ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    snap = _snap(ws)
    n = len(snap)
    by_revenue = snap.sort_values(["monetary", "customer_id"], ascending=[False, True]).customer_id.tolist()
    first = list_customers(ws, sort="-monetary", page_size=25, columns=["customer_id", "monetary"])
    assert [r["customer_id"] for r in first["rows"]] == by_revenue[:25]
    assert first["pages"] == -(-n // 25) and first["total"] == n
    last = list_customers(ws, sort="-monetary", page=first["pages"], page_size=25)
    assert len(last["rows"]) == n - 25 * (first["pages"] - 1) > 0
    assert [r["customer_id"] for r in last["rows"]] == by_revenue[25 * (first["pages"] - 1) :]
    beyond = list_customers(ws, page=first["pages"] + 1, page_size=25)
    assert beyond["rows"] == [] and beyond["total"] == n
    # ascending priority: graded customers first in rank order, then the ungraded (no rank) by id
    everyone = list_customers(ws, page_size=500)["rows"] + list_customers(ws, page=2, page_size=500)["rows"]
    ranks = [r["priority_rank"] for r in everyone]
    graded = [r for r in ranks if r is not None]
    assert graded == sorted(graded) and ranks[: len(graded)] == graded and len(everyone) == n
    # descending keeps empty values last too
    desc = list_customers(ws, sort="-priority_rank", page_size=5)["rows"]
    assert desc[0]["priority_rank"] == max(graded)
    assert list_customers(ws, page_size=500)["page_size"] == 500
    for bad in ({"page_size": 501}, {"page_size": 0}, {"page": 0}):
        with pytest.raises(UserError, match="page"):
            list_customers(ws, **bad)
    with pytest.raises(UserError, match=r"sort '-monetry'.*did you mean monetary"):
        list_customers(ws, sort="-monetry")
    by_phone = list_customers(ws, sort="phone", columns=["customer_id", "phone"], page_size=3)
    assert [r["phone"] for r in by_phone["rows"]] == sorted(r["phone"] for r in by_phone["rows"])


def test_search_by_id_or_name_ignoring_case(ws: Any) -> None:
    from tierwise.web.services.customers import list_customers

    snap = _snap(ws)
    found = list_customers(ws, search="acme PROSPECT")
    assert [r["customer_id"] for r in found["rows"]] == ["P9000002"]
    word = snap.name.dropna().iloc[5][2:4]  # a piece of a generated (Chinese) company name
    expected = snap.customer_id.str.lower().str.contains(
        word.lower(), regex=False
    ) | snap.name.str.lower().str.contains(word.lower(), regex=False).fillna(False)
    hits = list_customers(ws, search=word, page_size=500)
    assert hits["total"] == int(expected.sum()) > 0
    by_id = list_customers(ws, search="c000012", where="monetary >= 0", page_size=50)
    assert {r["customer_id"] for r in by_id["rows"]} == {f"C000012{i}" for i in range(10)}


def test_masking_of_contact_data_in_lists_and_detail(ws: Any) -> None:
    from tierwise.web.services.customers import customer_detail, list_customers

    plain = list_customers(ws, search="P9000", columns=["customer_id", "phone", "email"], sort="customer_id")
    assert [r["phone"] for r in plain["rows"]] == ["13812345678", "+86 139-0000-1111"]
    masked = list_customers(
        ws, search="P9000", columns=["customer_id", "phone", "email"], sort="customer_id", mask_personal=True
    )
    assert [r["phone"] for r in masked["rows"]] == ["138****5678", "+86 1**-****-1111"]
    assert [r["email"] for r in masked["rows"]] == ["z********@example.com", "l*@example.com"]
    for probe in ({"where": "phone like '138%'"}, {"sort": "-email"}):
        with pytest.raises(UserError, match="not allowed with masked contact data"):
            list_customers(ws, mask_personal=True, **probe)
    detail = customer_detail(ws, "P9000001", mask_personal=True, with_cross_sell=False)
    assert detail["profile"]["phone"] == "138****5678" and "1234" not in json.dumps(detail["profile"])
    assert customer_detail(ws, "P9000001", with_cross_sell=False)["profile"]["email"] == "zhang.san@example.com"


@given(st.text(alphabet="0123456789 +-()", min_size=0, max_size=24))
@settings(max_examples=200, deadline=None)
def test_mask_phone_hides_the_middle_digits_and_keeps_the_shape(phone: str) -> None:
    from tierwise.web.services.customers import mask_phone

    out = mask_phone(phone)
    assert out is not None and len(out) == len(phone)
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    n = len(digits)
    if n == 0:  # no number at all: nothing of it is shown
        assert out == "".join(" " if ch.isspace() else "*" for ch in phone)
        return
    head = 3 if n >= 11 else 0
    tail = 4 if n >= 7 else n // 3
    for k, i in enumerate(digits):
        assert out[i] == ("*" if head <= k < n - tail else phone[i])
    for i, ch in enumerate(phone):
        if not ch.isdigit():
            assert out[i] == ch  # separators stay: same shape
    hidden = sum(1 for i in digits if out[i] == "*")
    assert hidden >= max(n - 7, -(-n // 3))  # most digits are hidden: at most 3 + 4 show


@given(st.from_regex(r"[A-Za-z0-9._%+\-]{1,20}@[a-z0-9\-]{1,10}\.[a-z]{2,4}", fullmatch=True))
@settings(max_examples=200, deadline=None)
def test_mask_email_keeps_the_first_letter_and_the_domain(email: str) -> None:
    from tierwise.web.services.customers import mask_email

    out = mask_email(email)
    local, domain = email.rsplit("@", 1)
    assert out is not None and len(out) == len(email)
    assert out.endswith("@" + domain)
    masked_local = out[: len(local)]
    if len(local) > 1:
        assert masked_local == local[0] + "*" * (len(local) - 1)
    else:
        assert masked_local == "*"


def test_mask_phone_examples() -> None:
    from tierwise.web.services.customers import is_personal, mask_email, mask_phone

    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0571-8888 1234") == "057*-**** 1234"
    assert mask_phone("无") == "*" and mask_phone(None) is None
    assert mask_email("z@example.com") == "*@example.com" and mask_email("nobody") == "n*****"
    assert all(is_personal(c) for c in ("phone", "email", "手机号", "联系电话", "邮箱", "mobile_no", "E-Mail"))
    assert not any(is_personal(c) for c in ("name", "province", "monetary", "channel"))


def test_detail_of_a_prospect(ws: Any) -> None:
    from tierwise.web.services.customers import customer_detail

    d = _json_roundtrip(customer_detail(ws, "P9000002", language="en"))
    assert d["scores"]["grade"] is None and d["scores"]["lifecycle_stage"] == "prospect"
    assert d["labels"]["grade"] == "Not graded (no purchase)"
    assert any("never bought" in r for r in d["reasons"])
    assert d["next_action"]["action"] == "nurture" and d["next_action"]["action_label"] == "Nurture"
    assert d["next_action"]["reason"] and "rule" in d["next_action"]["reason"]  # the English reason, applied now
    assert [r["present"] for r in d["timeline"]["runs"]] == [True, True]
    assert d["grade"]["score"] is None and len(d["grade"]["indicators"]) == 4
    assert d["learned"] is None
    with pytest.raises(UserError, match="no customer 'NOPE'"):
        customer_detail(ws, "NOPE")


def test_detail_of_a_graded_customer_breaks_down_the_score(ws: Any) -> None:
    from tierwise.web.services.customers import customer_detail

    snap = _snap(ws)
    best = snap.sort_values("priority_rank").iloc[0]
    d = _json_roundtrip(customer_detail(ws, best.customer_id))
    g = d["grade"]
    assert g["grade"] == best.grade and g["priority_rank"] == 1
    assert sum(i["points"] for i in g["indicators"]) == pytest.approx(best.composite_score)
    assert sum(i["weight_share"] for i in g["indicators"]) == pytest.approx(1.0)
    assert d["next_action"]["action"] == best.next_action and d["next_action"]["reason"] == best.action_reason
    assert any(r.startswith("composite score") for r in d["reasons"])
    for s in d["cross_sell"]:
        assert 0 < s["support"] <= 1 and s["rank"] >= 1
    assert d["timeline"]["classes"]["grade"]["current"] == best.grade


# ---------------------------------------------------------------- history


def test_compare_and_trends_match_the_cli(ws: Any, built: dict[str, Any]) -> None:
    from tierwise.web.services.history import compare, timeline, trends

    data = _json_roundtrip(compare(ws, language="en", top=5))
    cli = built["cli"]["compare"]
    for key in ("run_a", "run_b", "in_both", "totals", "matrix", "new_in_top"):
        assert data[key] == cli[key], key
    assert [m["customer_id"] for m in data["moved_customers"]] == [m["customer_id"] for m in cli["moved_customers"]]
    sankey = data["sankey"]
    assert sum(link["value"] for link in sankey["links"]) == sum(c["customers"] for c in cli["matrix"])
    assert {n["side"] for n in sankey["nodes"]} == {"from", "to"}
    for link in sankey["links"]:
        assert sankey["nodes"][link["source"]]["side"] == "from" and sankey["nodes"][link["target"]]["side"] == "to"

    tr = _json_roundtrip(trends(ws, "rfm_segment", language="en"))
    assert tr["runs"] == built["cli"]["trends"]["runs"]
    for series in tr["chart"]["series"]:
        assert series["customers"] == [r["sizes"].get(str(series["code"]), 0) for r in tr["runs"]]
    assert (
        timeline(ws, "C0000001")["classes"]["grade"]["current"] == _snap(ws).set_index("customer_id").grade["C0000001"]
    )
    with pytest.raises(UserError, match="top"):
        compare(ws, top=10_000)


# ---------------------------------------------------------------- exports


def test_export_bytes_parse_back_with_the_same_rows_and_formula_safe_cells(ws: Any) -> None:
    from tierwise.web.services.exports import export

    snap = _snap(ws)
    where = "grade is null or monetary > 500000"
    expected = snap[snap.grade.isna() | (snap.monetary > 500000)].sort_values("customer_id")
    columns = ["name", "grade", "monetary", "phone"]
    csv_file = export(ws, where=where, columns=columns, fmt="csv")
    try:
        raw = csv_file.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and csv_file.filename.endswith(".csv")
        back = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", dtype={"phone": str})
    finally:
        csv_file.cleanup()
    assert not csv_file.path.exists()
    assert list(back.columns) == ["customer_id", *columns]
    assert back.customer_id.tolist() == expected.customer_id.tolist() == sorted(expected.customer_id)
    assert back.monetary.tolist() == pytest.approx(expected.monetary.tolist())
    assert back.set_index("customer_id").name["P9000001"] == "'" + FORMULA_NAME  # neutralised, still readable

    xlsx = export(ws, where=where, columns=columns, fmt="xlsx", mask_personal=True)
    try:
        sheet = pd.read_excel(xlsx.path, engine="calamine", dtype={"phone": str})
    finally:
        xlsx.cleanup()
    assert sheet.customer_id.tolist() == expected.customer_id.tolist()
    assert sheet.set_index("customer_id").phone["P9000001"] == "138****5678"
    assert not sheet.name.astype(str).str.startswith("=").any()

    pq = export(ws, where="grade = 'A'", fmt="parquet")
    try:
        table = pd.read_parquet(pq.path)
    finally:
        pq.cleanup()
    assert len(table) == pq.rows == int((snap.grade == "A").sum()) and list(table.columns) == [
        "customer_id",
        *[c for c in snap.columns if c != "customer_id"],
    ]
    with pytest.raises(UserError, match="csv, xlsx or parquet"):
        export(ws, fmt="pdf")


# ---------------------------------------------------------------- uploads


CUSTOMERS_CSV = (
    "customer_id,name,phone,signup_date\nU1,One Ltd,13800000001,2024-01-05\n,No Id,1,2024-01-06\nU2,Two,,2024-13-45\n"
)


def test_upload_is_checked_and_reported_like_the_cli(ws_dir: Path) -> None:
    from tierwise.web.services.uploads import batches, ingest_upload, quarantine
    from tierwise.workspace import Workspace

    w = Workspace.open(ws_dir)
    try:
        uploads = ws_dir / "uploads"
        for name, data, message in [
            ("list.exe", b"MZ\x90\x00", "'.exe' is not a file type"),
            ("noext", b"a,b\n1,2\n", "the name has no extension"),
            ("list.csv", b"%PDF-1.7 ...", "PDF document"),
            ("list.csv", b"PK\x03\x04rest-of-a-zip", "Excel workbook, not text"),
            ("list.xlsx", b"customer_id,name\n1,a\n", "not an Excel .xlsx workbook"),
            ("list.parquet", b"customer_id\n1\n", "not a Parquet file"),
            ("list.csv", b"a,b\x00\x01\x02\x00\xff\xfe\x00binary" * 50, "binary file"),
            ("list.csv", b"", "empty"),
            ("big.csv", b"customer_id\n" + b"C1\n" * 400, "is 1.2 KB, over the upload limit of 1,000 bytes"),
        ]:
            with pytest.raises(UserError, match=message):
                ingest_upload(w, "customers", name, data, max_bytes=1000)
            assert not uploads.exists() or not any(uploads.iterdir())  # nothing left behind
        with pytest.raises(UserError, match="upload into one of customers, orders"):
            ingest_upload(w, "people", "a.csv", b"x\n1\n")

        stream = io.BytesIO(CUSTOMERS_CSV.encode())
        got = _json_roundtrip(ingest_upload(w, "customers", "../../客户 list.csv", stream, quarantine_rows=1))
        r = got["report"]
        assert r["status"] == "loaded" and r["rows_read"] == 3
        assert r["rows_read"] == r["rows_loaded"] + r["rows_quarantined"] + r["duplicates_removed"]
        assert got["quarantine"]["total"] == r["rows_quarantined"] >= 1 and len(got["quarantine"]["rows"]) == 1
        assert got["file"].endswith("-客户_list.csv") and (uploads / got["file"]).is_file()
        again = ingest_upload(w, "customers", "copy.csv", CUSTOMERS_CSV.encode())
        assert again["report"]["status"] == "already_loaded" and again["file"] is None
        assert len(list(uploads.iterdir())) == 1
        q = quarantine(w, r["batch_id"], page=1, page_size=50)
        assert q["total"] == r["rows_quarantined"] and q["rows"][0]["reason_code"] == "MISSING_CUSTOMER_ID"
        assert quarantine(w, r["batch_id"], page=9)["rows"] == []
        assert batches(w)[0]["batch_id"] == r["batch_id"]
    finally:
        w.close()


# ---------------------------------------------------------------- settings


def test_read_and_validate_settings(ws: Any) -> None:
    from tierwise.web.services.settings import preview_settings, read_settings

    s = _json_roundtrip(read_settings(ws))
    assert s["grade"]["weights"] == {"credit": 0.3, "amount": 0.3, "prospect": 0.2, "profit": 0.2}
    assert (
        s["playbook"][-1]["when"] == "true" and {"code": "nurture", "label": "培育"} in s["choices"]["playbook.action"]
    )
    for changes, message in [
        ({"engine": {"kind": "spark"}}, "'engine' cannot be changed here"),
        ({"grade": {"weights": {"nope": 1}}}, "no indicator 'nope'; the indicators are credit"),
        ({"grade": {"method": "best"}}, "settings 'grade.method': Input should be 'quotas' or 'cutoffs'"),
        ({"abc": {"a_cutoff": 1.5}}, "settings 'abc.a_cutoff'"),
        ({"rules": [{"name": "big", "expression": "monetry > 1"}]}, "rule 'big': unknown column 'monetry'"),
        ({"playbook": [{"name": "x", "when": "grade = 1", "action": "maintain"}]}, "playbook rule 'x'"),
        ({"playbook": [{"name": "x", "when": "true", "action": "dance"}]}, "unknown action 'dance'"),
        ({"grade": {"indicators": [{"name": "m", "expression": "monetry", "weight": 1}]}}, "grade indicator 'm'"),
    ]:
        with pytest.raises(UserError, match=message):
            preview_settings(ws, changes)


@pytest.mark.slow
def test_preview_counts_equal_a_real_run_with_the_saved_settings(ws: Any, built: dict[str, Any]) -> None:
    """Preview on the workspace; then, on a copy, save the same change, run as of the same date in a background
    job, and count the customers whose grade / next action changed between the two stored snapshots."""
    from tierwise.config import load_config
    from tierwise.store.runs import list_runs
    from tierwise.web.services.jobs import JobManager
    from tierwise.web.services.runs import run_job
    from tierwise.web.services.settings import preview_settings, read_settings, save_settings
    from tierwise.workspace import Workspace

    preview = _json_roundtrip(preview_settings(ws, CHANGES))
    assert preview["changed"]["grade"] > 0 and not preview["data_changed"]
    assert preview["settings_changed"] == [
        {"key": "grade.indicators.0.weight", "before": 0.3, "after": 0.05},
        {"key": "grade.indicators.1.weight", "before": 0.3, "after": 0.6},
    ]
    assert sum(c["customers"] for c in preview["grade_matrix"]) == preview["customers"] == 602

    ws.con.raw_sql("CHECKPOINT")
    copy = built["root"] / "copy"
    shutil.copytree(built["ws_dir"], copy)
    other = Workspace.open(copy)
    jobs = JobManager(workers=1)
    try:
        version = read_settings(other)["version"]
        saved = save_settings(other, CHANGES, expected_version=version)
        assert not saved["rewritten"] and "-weight = 0.3\n+weight = 0.05" in saved["diff"]
        text = (copy / "tierwise.toml").read_text(encoding="utf-8")
        assert "# Lowest composite score of A, B, C" in text  # the comments survive
        cfg = load_config(copy / "tierwise.toml")
        assert [i.weight for i in cfg.grade.indicators] == [0.05, 0.6, 0.2, 0.2]
        with pytest.raises(UserError, match="has changed since"):
            save_settings(other, CHANGES, expected_version=version)
        as_of = preview["as_of"]
        job = jobs.start("run", run_job, copy, as_of)
        status = jobs.wait(job, timeout=120)
        assert status["state"] == "done", status
        assert status["progress"] == 1.0 and status["result"]["as_of"] == as_of
        runs = list_runs(other)
        assert runs[-1]["run_id"] == status["result"]["run_id"]
        old = other.table(str(runs[-2]["snapshot_table"])).to_pandas().set_index("customer_id")
        new = other.table(str(runs[-1]["snapshot_table"])).to_pandas().set_index("customer_id")
    finally:
        jobs.shutdown()
        other.close()
    assert str(runs[-2]["as_of"]) == as_of
    both = old.add_suffix("_old").join(new.add_suffix("_new"), how="inner")

    def values(column: str) -> list[Any]:
        return [None if pd.isna(v) else v for v in both[column]]

    def differ(column: str) -> int:
        return sum(1 for a, b in zip(values(f"{column}_old"), values(f"{column}_new"), strict=True) if a != b)

    assert preview["changed"]["grade"] == differ("grade")
    assert preview["changed"]["next_action"] == differ("next_action")
    assert preview["changed"]["strategy"] == differ("strategy")
    assert preview["changed"]["tags"] == differ("tags") == 0
    pairs = Counter(zip(values("grade_old"), values("grade_new"), strict=True))
    assert {(c["from"], c["to"]): c["customers"] for c in preview["grade_matrix"]} == dict(pairs)


def test_save_settings_on_a_fresh_workspace(ws_dir: Path) -> None:
    from tierwise.config import load_config
    from tierwise.web.services.settings import save_settings
    from tierwise.workspace import Workspace

    path = ws_dir / "tierwise.toml"
    w = Workspace.open(ws_dir)
    try:
        before = path.read_text(encoding="utf-8")
        with pytest.raises(UserError, match=r"settings 'abc\.b_cutoff'"):
            save_settings(w, {"abc": {"b_cutoff": 7}})
        assert path.read_text(encoding="utf-8") == before  # nothing written
        rules = [{"name": "浙江大客户", "expression": "province = '浙江' and monetary > 50000"}]
        playbook = [
            {"name": "vip", "when": "grade = 'A'", "action": "vip_care", "reason_en": 'VIP "{grade}"\nline two'},
            {"name": "rest", "when": "true", "action": "maintain"},
        ]
        result = save_settings(
            w,
            {
                "grade": {"method": "cutoffs", "cutoffs": [85, 65, 45]},
                "abc": {"a_cutoff": 0.7},
                "rules": rules,
                "playbook": playbook,
                "strategy": {"budget": 10000},
            },
        )
        assert result["notes"] and "not checked" in result["notes"][0]  # no data yet to check the columns against
        assert w.config.grade.method == "cutoffs"
        cfg = load_config(path)
        assert cfg.grade.cutoffs == [85, 65, 45] and cfg.abc.a_cutoff == 0.7 and cfg.strategy.budget == 10000
        assert [r.name for r in cfg.rules] == ["浙江大客户"] and [p.name for p in cfg.playbook] == ["vip", "rest"]
        assert cfg.playbook[0].reason_en == 'VIP "{grade}"\nline two'
        text = path.read_text(encoding="utf-8")
        assert text.count("\n[[playbook]]\n") == 2 and "# Playbook (策略手册)" in text and not result["rewritten"]
        assert (ws_dir / "tierwise.toml.bak").read_text(encoding="utf-8") == before
        keys = {c["key"] for c in result["settings_changed"]}
        assert {"grade.method", "grade.cutoffs", "abc.a_cutoff", "rules.0.name", "strategy.budget"} <= keys
        # an unusual layout (inline tables) cannot be edited in place: the file is rewritten, and loads
        path.write_text('grade = { method = "quotas" }\n', encoding="utf-8")
        redo = save_settings(w, {"grade": {"weights": {"credit": 1.0}}})
        assert redo["rewritten"] and load_config(path).grade.indicators[0].weight == 1.0
    finally:
        w.close()


# ---------------------------------------------------------------- jobs, runs, campaigns


def test_jobs_report_progress_results_and_errors_without_tracebacks() -> None:
    from tierwise.web.services.jobs import UNEXPECTED, JobManager, ingest_progress, run_progress

    def works(x: int, progress: Any) -> dict[str, Any]:
        progress("counting", 0.5)
        return {"x": x, "when": dt.date(2024, 1, 2)}

    def refuses() -> None:
        raise UserError("orders.csv, line 3: no customer id; fill it in and upload again")

    def crashes() -> None:
        raise RuntimeError("secret /internal/path exploded")

    def runs_out_of_memory() -> None:
        import duckdb

        con = duckdb.connect()
        con.execute("SET memory_limit = '4MB'; SET threads = 1")
        con.execute("SELECT count(DISTINCT range) FROM range(3000000)").fetchall()

    jobs = JobManager(workers=2, keep=3)
    try:
        ok, bad, boom = jobs.start("test", works, 7), jobs.start("ingest", refuses), jobs.start("run", crashes)
        done = jobs.wait(ok, timeout=10)
        assert done["state"] == "done" and done["result"] == {"x": 7, "when": "2024-01-02"}
        assert done["stage"] == "counting" and done["progress"] == 1.0 and done["error"] is None
        failed = jobs.wait(bad, timeout=10)
        assert (
            failed["state"] == "failed"
            and failed["error"] == "orders.csv, line 3: no customer id; fill it in and upload again"
        )
        crashed = jobs.wait(boom, timeout=10)
        assert crashed["state"] == "failed" and crashed["error"] == UNEXPECTED
        short = jobs.wait(jobs.start("run", runs_out_of_memory), timeout=30)
        assert short["state"] == "failed" and short["error"].startswith("out of memory (")
        assert "memory_limit under [engine]" in short["error"]
        assert "Traceback" not in json.dumps(jobs.list()) and "secret" not in json.dumps(jobs.list())
        assert crashed["started_at"] <= crashed["finished_at"]
        jobs.wait(jobs.start("test", works, 8), timeout=10)
        assert len(jobs.list()) == 3 and ok not in {j["job_id"] for j in jobs.list()}  # the oldest finished go
        with pytest.raises(UserError, match="no job 'nope'"):
            jobs.status("nope")
    finally:
        jobs.shutdown()
    seen: list[tuple[str, float | None]] = []
    on_stage = run_progress(lambda stage, fraction=None: seen.append((stage, fraction)), clustering=False)
    for stage in ("models", "measures", "classes", "pareto", "saving"):
        on_stage(stage)
    assert seen == [("models", 0.0), ("measures", 0.2), ("classes", 0.4), ("pareto", 0.6), ("saving", 0.8)]
    seen.clear()
    tick = ingest_progress(lambda stage, fraction=None: seen.append((stage, fraction)))("orders.csv", 1000)
    tick(500)
    tick(1000)
    assert seen == [("reading", 0.0), ("reading", 0.45), ("loading", 0.9)]


def test_runs_models_and_campaigns(ws: Any) -> None:
    from tierwise.campaigns.plan import create_plan
    from tierwise.web.services.campaigns import campaign_report, list_campaigns
    from tierwise.web.services.runs import list_runs, models, run_detail

    runs = _json_roundtrip(list_runs(ws))
    assert len(runs) >= 2 and runs[0]["latest"] and not runs[1]["latest"]
    first = next(r for r in runs if r["as_of"] == FIRST_AS_OF.isoformat())
    assert first["customers"] == 602 and first["seconds"] > 0 and first["input_rows"]["orders"] > 0
    detail = _json_roundtrip(run_detail(ws, first["run_id"]))
    assert detail["config"]["grade"]["method"] == "quotas" and detail["input_batches"]
    with pytest.raises(UserError, match="no run 'nope'"):
        run_detail(ws, "nope")
    m = _json_roundtrip(models(ws))
    assert m["run_id"] == runs[0]["run_id"] and m["clv"]["params"] and m["predicted"]["scored"] > 0

    assert _json_roundtrip(list_campaigns(ws)) == []
    create_plan(ws, "spring", where="grade in ('A', 'B')", control="20%", seed=1)
    listed = _json_roundtrip(list_campaigns(ws))
    assert listed[0]["name"] == "spring" and listed[0]["treatment"] + listed[0]["control"] == listed[0]["customers"]
    report = _json_roundtrip(campaign_report(ws, "spring", language="en"))
    assert report["campaign"] == "spring" and report["source"] == "plan" and "overall" in report
    with pytest.raises(UserError, match="no campaign"):
        campaign_report(ws, "autumn")


# ---------------------------------------------------------------- languages, file names, re-uploads

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def test_cluster_names_follow_the_language_asked_for(ws: Any) -> None:
    from tierwise.store.runs import latest_snapshot, run_clusters
    from tierwise.web.services.customers import customer_detail, list_customers
    from tierwise.web.services.history import trends
    from tierwise.web.services.segments import segments

    meta, _ = latest_snapshot(ws)
    clusters = run_clusters(meta)
    assert clusters is not None and ws.config.workspace.language == "zh"
    names = {str(p["name_zh"]): (p["name_en"], p["name_zh"]) for p in clusters["profiles"]}  # stored: zh
    rows = list_customers(ws, where="cluster_name is not null", columns=["customer_id", "cluster_name"],
                          page_size=5, language="en")["rows"]  # fmt: skip
    assert rows
    for r in rows:
        en, zh = names[r["cluster_name"]]
        assert r["cluster_name_label"] == en and not CJK.search(en)
        assert customer_detail(ws, r["customer_id"], language="en", with_timeline=False)["labels"]["cluster_name"] == en
        assert customer_detail(ws, r["customer_id"], language="zh", with_timeline=False)["labels"]["cluster_name"] == zh
    for lang, pick in (("en", 0), ("zh", 1)):
        labels = {c["code"]: c["label"] for c in segments(ws, "cluster_name", language=lang)["classes"]}
        assert {k: v for k, v in labels.items() if k is not None} == {k: v[pick] for k, v in names.items()}
    en_trend = trends(ws, "cluster_name", language="en")
    assert not any(CJK.search(str(c["label"])) for c in en_trend["classes"])
    assert {s["label"] for s in en_trend["chart"]["series"]} >= {v[0] for v in names.values()}


def test_preview_after_clv_edits_refits_and_leaves_nothing_behind(ws: Any, built: dict[str, Any]) -> None:
    """With tierwise.toml's [clv] edited since the last run, the preview cannot reuse the run's scores: it fits the
    models itself. Those scores, like the preview's own table, are dropped afterwards (the dashboard's connection
    lives as long as the server). Only the grade weights change, so without data changes the CLV edit alone moves
    no grade, and the preview agrees with the one that reuses the run's scores."""
    from tierwise.web.services.settings import preview_settings
    from tierwise.workspace import Workspace

    reused = preview_settings(ws, CHANGES, examples=0)
    ws.con.raw_sql("CHECKPOINT")
    copy = built["root"] / "clv-edited"
    shutil.copytree(built["ws_dir"], copy)
    config = copy / "tierwise.toml"
    text = config.read_text(encoding="utf-8")
    edited = re.sub(r"(?m)^discount_rate_monthly = .*$", "discount_rate_monthly = 0.02", text, count=1)
    assert edited != text
    config.write_text(edited, encoding="utf-8")
    other = Workspace.open(copy)
    try:

        def temporary() -> list[str]:
            rows = other.con.raw_sql("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
            return [n for (n,) in rows]

        for _ in range(2):
            refitted = preview_settings(other, CHANGES, examples=0)
            assert temporary() == []
    finally:
        other.close()
    assert refitted["customers"] == reused["customers"] == 602
    # clv_predicted moves with the discount rate, but it is not a grade indicator by default: grades move alike
    assert refitted["changed"]["grade"] == reused["changed"]["grade"] > 0
    assert refitted["grade_matrix"] == reused["grade_matrix"]


def test_preview_labels_are_in_the_language_asked_for(ws: Any) -> None:
    from tierwise.web.services.settings import preview_settings

    en = _json_roundtrip(preview_settings(ws, CHANGES, examples=0, language="en"))
    assert en["changed_labels"] == {"grade": "Grade", "tags": "Tags (rules)", "next_action": "Next action",
                                    "strategy": "Strategy"}  # fmt: skip
    assert set(en["changed_labels"]) == set(en["changed"])
    assert en["grade_matrix"] and not any(CJK.search(f"{c['from_label']} {c['to_label']}") for c in en["grade_matrix"])
    a = next(c for c in en["grade_matrix"] if c["from"] == "A")
    assert a["from_label"].startswith("A") and "top priority" in a["from_label"]
    zh = _json_roundtrip(preview_settings(ws, CHANGES, examples=0))  # default: the workspace's language
    assert all(CJK.search(v) for v in zh["changed_labels"].values())
    assert any(CJK.search(str(c["from_label"])) for c in zh["grade_matrix"])


def test_settings_and_uploads_name_files_without_server_folders(ws_dir: Path) -> None:
    from tierwise.web.services.settings import read_settings, save_settings
    from tierwise.web.services.uploads import batches, ingest_upload, quarantine
    from tierwise.workspace import Workspace

    w = Workspace.open(ws_dir)
    try:
        root = str(ws_dir.resolve())
        settings = read_settings(w)
        assert settings["path"] == "tierwise.toml" and root not in json.dumps(settings, ensure_ascii=False)
        saved = save_settings(w, {"abc": {"a_cutoff": 0.75}})
        assert saved["path"] == "tierwise.toml" and saved["backup"] == "tierwise.toml.bak"
        assert (ws_dir / saved["backup"]).is_file() and root not in json.dumps(saved, ensure_ascii=False)

        first = _json_roundtrip(ingest_upload(w, "customers", "/home/someone/客户 list.csv", CUSTOMERS_CSV.encode()))
        report = first["report"]
        assert report["status"] == "loaded" and report["file"] == first["file"]
        assert "/" not in report["file"] and (ws_dir / "uploads" / report["file"]).is_file()
        assert first["previous"] is None and first["quarantine"]["batch_id"] == report["batch_id"]
        assert first["quarantine"]["total"] == report["rows_quarantined"] == len(first["quarantine"]["rows"]) >= 1
        listed = batches(w)
        assert listed[0]["file"] == report["file"] and root not in json.dumps(listed, ensure_ascii=False)
        q = quarantine(w, report["batch_id"])
        assert q["rows"] and all(r["file"] == report["file"] for r in q["rows"])
        assert root not in json.dumps(q, ensure_ascii=False)

        # the same content again: nothing new, said so with the earlier batch; its quarantine is not this upload's
        again = _json_roundtrip(ingest_upload(w, "customers", "C:\\exports\\copy.csv", CUSTOMERS_CSV.encode()))
        assert again["report"]["status"] == "already_loaded" and again["report"]["file"] == "copy.csv"
        assert again["report"]["rows_loaded"] == again["report"]["rows_read"] == 0 and again["file"] is None
        assert again["quarantine"] == {"batch_id": None, "total": 0, "rows": []}
        previous = again["previous"]
        assert previous["batch_id"] == report["batch_id"] and previous["file"] == report["file"]
        assert previous["loaded_at"] and previous["rows_quarantined"] == report["rows_quarantined"]
        assert root not in json.dumps(again, ensure_ascii=False)
    finally:
        w.close()
