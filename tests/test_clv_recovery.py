"""Parameter recovery: the models fitted on `tierwise generate` data find the parameters it simulated with."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import ibis
import pytest

from tierwise.clv import BetaGeoModel, GammaGammaModel, rfm_summary
from tierwise.generate import generate


@pytest.mark.slow
def test_bgnbd_and_gamma_gamma_recover_the_generators_parameters(tmp_path: Path) -> None:
    generate(tmp_path, customers=100_000, seed=1, profile="b2c", fmt="parquet")
    truth = json.loads((tmp_path / "truth.json").read_text())
    con = ibis.duckdb.connect()
    orders = con.read_parquet(str(tmp_path / "orders.parquet"))
    sales = orders.filter(orders.amount > 0)  # returns are separate negative lines
    # The generator's clock is continuous (its time unit is days): occasions by order time, not by day.
    summary = rfm_summary(
        sales,
        amount_col="amount",
        calibration_end=dt.date.fromisoformat(truth["end"]),
        time_unit_days=1.0,
        occasion="timestamp",
    ).to_pyarrow()
    f, r, age, m = (summary[c].to_numpy().astype(float) for c in ("frequency", "recency", "T", "monetary_value"))
    bg = BetaGeoModel().fit(f, r, age)
    for name, true in truth["bgnbd"].items():
        assert abs(bg.params_[name] - true) <= 1.96 * bg.standard_errors_[name], (name, bg.params_, true)
    repeat = (f > 0) & (m > 0)
    gg = GammaGammaModel().fit(f[repeat], m[repeat])
    expected = {"p": truth["gamma_gamma"]["p"], "q": truth["gamma_gamma"]["q"], "v": truth["gamma_gamma"]["gamma"]}
    for name, true in expected.items():
        assert abs(gg.params_[name] - true) <= 1.96 * gg.standard_errors_[name], (name, gg.params_, true)
    # The usual summary by day rounds the clock: close, but no longer exact (the reason for occasion="timestamp").
    by_day = rfm_summary(sales, calibration_end=dt.date.fromisoformat(truth["end"])).to_pyarrow()
    assert by_day.num_rows == summary.num_rows
    assert by_day["frequency"].to_numpy().sum() <= f.sum()
