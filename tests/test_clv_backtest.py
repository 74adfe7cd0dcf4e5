"""Backtest metrics by hand, predictive columns in the main job, and `tierwise backtest` on CDNOW."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import CDNOW_MASTER, run_cli

from tierwise.clv.metrics import accuracy, capture, purchase_buckets


def test_capture_by_hand() -> None:
    c = capture("x", np.array([3.0, 2.0, 1.0, 0.0]), np.array([10.0, 0.0, 5.0, 5.0]))
    # cumulative shares .5, .5, .75, 1; top 10% and 20% of 4 customers = the first one
    assert (c.top10_share, c.top20_share) == (0.5, 0.5)
    assert c.gini == pytest.approx(2 * (0.5 + 0.5 + 0.75 + 1 - 0.5) / 4 - 1)
    assert capture("flat", np.ones(50), np.arange(50.0)).gini == pytest.approx(0.0)
    # equal scores share their revenue: customers 1 and 2 are indistinguishable → 5 each
    tied = capture("tied", np.array([1.0, 1.0, 0.0]), np.array([0.0, 10.0, 0.0]))
    assert tied.top10_share == pytest.approx(0.5)
    perfect = capture("p", np.array([4.0, 3.0, 2.0, 1.0]), np.array([4.0, 3.0, 2.0, 1.0]))
    reverse = capture("r", np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.0, 1.0]))
    assert perfect.gini > 0 > reverse.gini and perfect.gini == pytest.approx(-reverse.gini)
    assert capture("nan", np.array([np.nan, 1.0]), np.array([1.0, 0.0])).top10_share == 0.0  # NaN ranks last


def test_buckets_and_accuracy_by_hand() -> None:
    freq = np.array([0, 0, 1, 8, 9])
    predicted = np.array([0.5, 0.1, 1.0, 5.0, 7.0])
    actual = np.array([1.0, 0.0, 2.0, 4.0, 9.0])
    buckets = {b.frequency: b for b in purchase_buckets(freq, predicted, actual)}
    assert (buckets["0"].customers, buckets["0"].predicted, buckets["0"].actual) == (2, 0.3, 0.5)
    assert (buckets["7+"].customers, buckets["7+"].predicted, buckets["7+"].actual) == (2, 6.0, 6.5)
    assert buckets["3"].customers == 0
    a = accuracy(predicted, actual)
    assert a["mean_absolute_error"] == pytest.approx((0.5 + 0.1 + 1 + 1 + 2) / 5)
    assert a["predicted_total"] == pytest.approx(13.6) and a["actual_total"] == 16.0


@pytest.fixture(scope="module")
def cdnow_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("cdnow-clv") / "ws"
    assert run_cli("init", ws).code == 0
    assert run_cli("ingest", "orders", CDNOW_MASTER, "-w", ws).code == 0
    return ws


def test_backtest_on_cdnow_counts_like_plain_python(cdnow_ws: Path) -> None:
    r = run_cli("backtest", "-w", cdnow_ws, "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--json")
    assert r.code == 0, r.stderr
    result = r.json()
    days: dict[str, set[dt.date]] = defaultdict(set)
    with CDNOW_MASTER.open() as fh:
        for line in fh:
            cid, day, *_ = line.split()
            if day.isdigit():
                days[cid].add(dt.datetime.strptime(day, "%Y%m%d").date())
    cut, end = dt.date(1997, 9, 30), dt.date(1998, 6, 30)
    calibration = {c: len([d for d in ds if d <= cut]) - 1 for c, ds in days.items() if min(ds) <= cut}
    holdout = {c: len([d for d in days[c] if cut < d <= end]) for c in calibration}
    assert result["customers"] == len(calibration) == 23570
    assert result["purchases"]["actual_total"] == sum(holdout.values())
    buckets = {b["frequency"]: b for b in result["buckets"]}
    for k in range(8):
        members = [c for c, x in calibration.items() if (x >= 7 if k == 7 else x == k)]
        key = "7+" if k == 7 else str(k)
        assert buckets[key]["customers"] == len(members)
        assert buckets[key]["actual"] == pytest.approx(sum(holdout[c] for c in members) / len(members))
    # BG/NBD follows the holdout per bucket (the paper's figure): within 40% everywhere, rising with frequency
    predicted = [buckets[str(k)]["predicted"] for k in range(7)]
    assert predicted == sorted(predicted)
    assert all(abs(b["predicted"] - b["actual"]) <= 0.4 * b["actual"] + 0.05 for b in buckets.values())
    rankings = {c["ranking"]: c for c in result["rankings"]}
    assert set(rankings) == {"clv_predicted", "composite_score", "monetary", "rfm_score"}
    assert all(0.3 < c["gini"] < 1 and c["top20_share"] > 0.5 for c in rankings.values())

    bad = run_cli("backtest", "-w", cdnow_ws, "--calibration-end", "1999-01-01", "--holdout-end", "1998-06-30")
    assert bad.code == 2 and "--holdout-end" in bad.stderr
    bad = run_cli("backtest", "-w", cdnow_ws, "--calibration-end", "30/09/1997")
    assert bad.code == 2 and "not a date" in bad.stderr


def test_run_adds_predictive_columns(cdnow_ws: Path) -> None:
    import ibis

    r = run_cli("run", "-w", cdnow_ws, "--json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["model_params"]["transactions"].keys() == {"r", "alpha", "a", "b"}
    con = ibis.duckdb.connect(str(cdnow_ws / "tierwise.duckdb"), read_only=True)
    try:
        snap = con.table(report["snapshot_table"]).to_pyarrow().to_pylist()
    finally:
        con.disconnect()
    assert all(0 <= s["p_alive"] <= 1 and s["expected_purchases"] >= 0 for s in snap)
    assert all(s["expected_spend"] > 0 and s["clv_predicted"] >= 0 for s in snap)
    # more purchases, all else alike, mean more expected purchases: compare the mean by calibration frequency
    by_f: dict[int, list[float]] = defaultdict(list)
    for s in snap:
        by_f[min(s["purchases"], 5)].append(s["expected_purchases"] / max(s["p_alive"], 1e-9))
    means = [float(np.mean(by_f[k])) for k in sorted(by_f)]
    assert means == sorted(means)


def test_tiny_data_runs_without_predictions(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", ws)
    src = tmp_path / "o.csv"
    src.write_text("customer_id,order_date,amount\nC1,2024-01-02,10\nC2,2024-02-03,20\nC1,2024-03-04,5\n")
    assert run_cli("ingest", "orders", src, "-w", ws).code == 0
    r = run_cli("run", "-w", ws)
    assert r.code == 0 and "predictive CLV skipped: 2 buyers" in r.stdout


CDNOW_SAMPLE = CDNOW_MASTER.parent / "CDNOW_sample.txt"


def test_clv_fit_on_the_papers_sample(tmp_path: Path) -> None:
    args = ["--no-header", "--customer-col", "1", "--date-col", "3", "--amount-col", "5"]
    dates = ["--calibration-end", "1997-09-30", "--time-unit-days", "7"]
    r = run_cli("clv", "fit", CDNOW_SAMPLE, *args, *dates, "--holdout-end", "1998-06-30", "--json")
    assert r.code == 0, r.stderr
    result = r.json()
    assert set(result) >= {"model", "params", "standard_errors", "log_likelihood", "n_customers", "backtest"}
    # Fader, Hardie & Lee (2005): r 0.243, alpha 4.414, a 0.793, b 2.426, LL −9582.4 on 2,357 customers
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert result["params"] == pytest.approx(published, rel=0.01)
    assert result["log_likelihood"] == pytest.approx(-9582.4, abs=0.1) and result["n_customers"] == 2357
    # holdout purchase occasions counted independently: distinct (customer, day) after the calibration end
    days: dict[str, set[str]] = defaultdict(set)
    for line in CDNOW_SAMPLE.read_text().splitlines():
        cid, _, day, *_ = line.split()
        days[cid].add(day)
    actual = sum(1 for ds in days.values() for d in ds if "19971001" <= d <= "19980630")
    bt = result["backtest"]
    assert bt["purchases"]["actual_total"] == actual
    assert sum(b["customers"] for b in bt["buckets"]) == 2357

    gg = run_cli("clv", "fit", CDNOW_SAMPLE, *args, *dates, "--model", "gg", "--json").json()
    assert gg["params"] == pytest.approx({"p": 6.25, "q": 3.74, "v": 15.44}, rel=0.01)  # the 946 repeat buyers


def test_clv_fit_bad_input_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text("cust,day,value\nA,2024-01-02,10\nA,2024-02-30,5\nB,2024-03-01,7\n")
    base = ["clv", "fit", src, "--customer-col", "cust", "--date-col", "day", "--calibration-end", "2024-06-30"]
    bad = run_cli(*base)
    assert bad.code == 2 and "line 3" in bad.stderr and "2024-02-30" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = run_cli(*base[:4], "customer", *base[5:])
    assert bad.code == 2 and "'customer'" in bad.stderr and "cust" in bad.stderr
    bad = run_cli(*base, "--model", "gg")
    assert bad.code == 2 and "--amount-col" in bad.stderr


def test_value_tiers_by_predicted_clv(cdnow_ws: Path) -> None:
    import bisect

    import ibis

    config = cdnow_ws / "tierwise.toml"
    text = config.read_text(encoding="utf-8")
    at = text.index("[value]")
    config.write_text(text[:at] + text[at:].replace('by = "monetary"', 'by = "clv_predicted"', 1), encoding="utf-8")
    assert 'by = "clv_predicted"' in config.read_text(encoding="utf-8")
    r = run_cli("run", "-w", cdnow_ws, "--json")
    assert r.code == 0, r.stderr
    con = ibis.duckdb.connect(str(cdnow_ws / "tierwise.duckdb"), read_only=True)
    try:
        snap = con.table(r.json()["snapshot_table"]).select("clv_predicted", "value_tier").to_pyarrow().to_pylist()
    finally:
        con.disconnect()
    values = sorted(s["clv_predicted"] for s in snap)
    n = len(values)
    for s in snap:  # share of buyers worth at most as much: top 20% high, next 30% medium
        share = bisect.bisect_right(values, s["clv_predicted"]) / n
        expected = "high" if share > 0.8 + 1e-12 else "medium" if share > 0.5 + 1e-12 else "low"
        assert s["value_tier"] == expected


def test_clv_for_many_customers_uses_distinct_pairs_and_gives_the_same_values() -> None:
    from tierwise.clv import BetaGeoModel, GammaGammaModel, customer_lifetime_value

    rng = np.random.default_rng(4)
    n = 5000
    x = rng.poisson(1.5, n).astype(float)
    age = np.round(rng.uniform(1, 60, n) * 7) / 7
    t_x = np.where(x > 0, np.round(rng.uniform(0, 1, n) * age * 7) / 7, 0.0)
    m = np.where(x > 0, rng.gamma(6, 25, n), 0.0)
    bg, gg = BetaGeoModel(), GammaGammaModel()
    bg.params_ = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}
    gg.params_ = {"p": 6.25, "q": 3.74, "v": 15.44}

    class OneHorizonAtATime:  # the plain path: the model asked month by month
        def expected_purchases(self, t, f, r, T):  # type: ignore[no-untyped-def]
            return bg.expected_purchases(t, f, r, T)

    fast = customer_lifetime_value(bg, gg, x, t_x, age, m, time_unit_days=7)
    plain = customer_lifetime_value(OneHorizonAtATime(), gg, x, t_x, age, m, time_unit_days=7)
    assert fast == pytest.approx(plain, rel=1e-12)
