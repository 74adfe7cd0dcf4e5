"""Shifted-beta-geometric (sBG) retention model: the published estimates and projections of Fader & Hardie 2007,
DERL against public code that reproduces Fader & Hardie 2010 and against a plain truncated sum, the likelihood and
its standard errors against a second implementation in plain Python, parameter recovery on simulated contracts,
boundary fits, bad input, and `tierwise clv fit --model sbg`.

Sources of the reference numbers:
- Fader & Hardie (2007), "How to project customer retention", Journal of Interactive Marketing 21(1), 76-90: the
  two cohorts of 1,000 customers (the "regular" and "high end" subscriptions) alive at years 0..12, the model
  fitted on years 0..7, MLE regular α = 0.704, β = 1.182; high end α = 0.668, β = 3.806. The high-end values are
  also the ones the test of jdmaturen/shifted_beta_geometric_py (sbg.py, `test()`) checks; PyMC-Marketing's
  tests/clv/models/test_shifted_beta_geo.py uses the regular cohort's β = 1.182.
- jdmaturen/shifted_beta_geometric_py README (an implementation of the paper and of Fader & Hardie 2010's DERL):
  high end projected survival for years 8..12 = 0.460, 0.436, 0.414, 0.395, 0.378, and DERL at a 10% discount
  rate for a customer who has renewed 7 times = 7.530.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import run_cli

from tierwise.clv import ShiftedBetaGeoModel
from tierwise.clv._fit import BoundaryWarning
from tierwise.clv.sbg_file import fit_sbg_file
from tierwise.errors import UserError

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241, 223, 207, 194, 183, 173]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491, 468, 445, 427, 409, 394]
CALIBRATION = 8  # years 0..7 are the fitting data, 8..12 the holdout (FH 2007)


# ---------------------------------------------------------------------------------------------------------------
# A second implementation in plain Python (math only)
# ---------------------------------------------------------------------------------------------------------------


def plain_survival(a: float, b: float, t: int) -> float:
    """S(t) = Π_{j=1..t} (β+j−1)/(α+β+j−1): the product of the retention rates."""
    s = 1.0
    for j in range(1, t + 1):
        s *= (b + j - 1) / (a + b + j - 1)
    return s


def plain_log_likelihood(a: float, b: float, alive: list[float]) -> float:
    """FH 2007 eq. 5: churners of period t weigh P(T=t) = S(t−1) − S(t), the last period's survivors S(T)."""
    ll = 0.0
    for t in range(1, len(alive)):
        ll += (alive[t - 1] - alive[t]) * math.log(plain_survival(a, b, t - 1) - plain_survival(a, b, t))
    return ll + alive[-1] * math.log(plain_survival(a, b, len(alive) - 1))


def plain_derl(a: float, b: float, d: float, n: int, terms: int = 20_000) -> float:
    """Σ_{k≥1} S(n+k)/S(n) / (1+d)^(k−1), truncated: the payments still to come after n renewals."""
    total, ratio, discount = 0.0, 1.0, 1.0
    for k in range(1, terms + 1):
        ratio *= (b + n + k - 1) / (a + b + n + k - 1)
        total += ratio * discount
        discount /= 1 + d
    return total


def plain_del(a: float, b: float, d: float, terms: int = 20_000) -> float:
    """Σ_{t≥0} S(t) / (1+d)^t, truncated."""
    total, survival, discount = 0.0, 1.0, 1.0
    for t in range(terms):
        total += survival * discount
        survival *= (b + t) / (a + b + t)
        discount /= 1 + d
    return total


# ---------------------------------------------------------------------------------------------------------------
# Published estimates (FH 2007)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alive", "alpha", "beta"), [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)], ids=["regular", "high_end"]
)
def test_reproduces_fader_hardie_2007(alive: list[int], alpha: float, beta: float) -> None:
    model = ShiftedBetaGeoModel().fit(alive[:CALIBRATION])
    assert model.params_["alpha"] == pytest.approx(alpha, rel=0.01)
    assert model.params_["beta"] == pytest.approx(beta, rel=0.01)
    assert model.converged_ and model.at_boundary_ == ()
    assert model.n_customers_ == 1000
    # The optimum is the optimum of the plain-Python likelihood: equal value there, lower around it.
    a, b = model.params_["alpha"], model.params_["beta"]
    best = plain_log_likelihood(a, b, alive[:CALIBRATION])
    assert model.log_likelihood_ == pytest.approx(best, abs=1e-6)
    for da, db in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)):
        assert plain_log_likelihood(a + da, b + db, alive[:CALIBRATION]) < best


def test_high_end_projection_matches_published_and_tracks_the_holdout() -> None:
    model = ShiftedBetaGeoModel().fit(HIGH_END[:CALIBRATION])
    years = np.arange(8, 13)
    projected = model.survival(years)
    np.testing.assert_allclose(projected, [0.460, 0.436, 0.414, 0.395, 0.378], rtol=0.01)  # jdmaturen README
    np.testing.assert_allclose(model.expected_alive(years), 1000 * projected)
    # FH 2007 fig. 4: the sBG projection stays within a few percent of the actual counts over the five holdout
    # years (the paper's point against curve fitting); 4.1% is the largest miss, in year 12.
    np.testing.assert_allclose(model.expected_alive(years), HIGH_END[8:], rtol=0.045)


def test_regular_projection_tracks_the_holdout() -> None:
    model = ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])
    years = np.arange(8, 13)
    expected = [1000 * plain_survival(model.params_["alpha"], model.params_["beta"], int(t)) for t in years]
    np.testing.assert_allclose(model.expected_alive(years), expected, rtol=1e-12)
    np.testing.assert_allclose(model.expected_alive(years), REGULAR[8:], rtol=0.02)


def test_derl_matches_published_and_a_truncated_sum() -> None:
    model = ShiftedBetaGeoModel().fit(HIGH_END[:CALIBRATION])
    assert float(model.discounted_expected_residual_lifetime(0.1, 7)) == pytest.approx(7.530, rel=1e-3)
    a, b = model.params_["alpha"], model.params_["beta"]
    for d in (0.05, 0.1, 0.3):
        got = model.discounted_expected_residual_lifetime(d, [0, 1, 7, 7, 30])
        want = [plain_derl(a, b, d, n) for n in (0, 1, 7, 7, 30)]
        np.testing.assert_allclose(got, want, rtol=1e-10)
        assert model.discounted_expected_lifetime(d) == pytest.approx(plain_del(a, b, d), rel=1e-10)
    # DEL counts the payment at acquisition, then a renewal-0 customer's DERL one period later.
    assert model.discounted_expected_lifetime(0.1) == pytest.approx(
        1 + float(model.discounted_expected_residual_lifetime(0.1, 0)) / 1.1, rel=1e-12
    )
    np.testing.assert_allclose(
        model.residual_value([10.0, 25.0], 0.1, [7, 7]), [75.2963, 188.2407], rtol=1e-4
    )  # README: $75.30 per customer at 10 a period
    # Longer-tenured customers are worth more: the sorting effect FH 2010 warn about.
    assert np.all(np.diff(model.discounted_expected_residual_lifetime(0.1, np.arange(12))) > 0)


def test_small_discount_rate_converges() -> None:
    model = ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])
    a, b = model.params_["alpha"], model.params_["beta"]
    # 0.1% a period: the series needs ~40,000 terms; the plain sum with 200,000 is the reference.
    got = float(model.discounted_expected_residual_lifetime(0.001, 3))
    assert got == pytest.approx(plain_derl(a, b, 0.001, 3, 200_000), rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# The model's functions, their identities and closed forms
# ---------------------------------------------------------------------------------------------------------------


def fitted(alpha: float, beta: float) -> ShiftedBetaGeoModel:
    model = ShiftedBetaGeoModel()
    model.params_ = {"alpha": alpha, "beta": beta}
    return model


def test_distribution_identities() -> None:
    model = fitted(1.3, 2.7)
    t = np.arange(1, 40)
    s = model.survival(np.arange(0, 40))
    assert s[0] == 1.0
    np.testing.assert_allclose(model.churn_probability(t), s[:-1] - s[1:], rtol=1e-12)
    np.testing.assert_allclose(model.retention_rate(t), s[1:] / s[:-1], rtol=1e-12)
    np.testing.assert_allclose(s[1:], [plain_survival(1.3, 2.7, int(k)) for k in t], rtol=1e-12)
    assert float(model.churn_probability(1)) == pytest.approx(1.3 / 4.0)
    # E[T] = (α+β−1)/(α−1) for α > 1; a truncated Σ S(t) converges to it slowly (tail ~ t^−α).
    mean = model.expected_lifetime()
    assert mean == pytest.approx(3.0 / 0.3)
    partial = float(model.survival(np.arange(0, 2_000_000)).sum())
    assert partial < mean and partial == pytest.approx(mean, rel=0.02)
    assert fitted(0.7, 1.2).expected_lifetime() == math.inf


def test_extreme_parameters_raise_no_floating_point_errors() -> None:
    with np.errstate(all="raise"):
        for a, b in ((1e-8, 1e-8), (1e8, 1e8), (1e-8, 1e8), (1e8, 1e-8)):
            model = fitted(a, b)
            assert np.isfinite(model.survival([0, 1, 1000, 10**6])).all()
            assert np.isfinite(model.churn_probability([1, 1000])).all()
            assert np.isfinite(model.discounted_expected_residual_lifetime(0.1, [0, 100])).all()
        ShiftedBetaGeoModel().fit(REGULAR)


# ---------------------------------------------------------------------------------------------------------------
# Contract records, standard errors, simulation
# ---------------------------------------------------------------------------------------------------------------


def table_to_contracts(alive: list[int]) -> tuple[np.ndarray, np.ndarray]:
    renewals, active = [], []
    for t in range(1, len(alive)):
        renewals += [t - 1] * (alive[t - 1] - alive[t])  # cancelled in period t: renewed t−1 times
        active += [False] * (alive[t - 1] - alive[t])
    renewals += [len(alive) - 1] * alive[-1]
    active += [True] * alive[-1]
    return np.array(renewals), np.array(active)


def test_contract_records_equal_the_retention_table() -> None:
    table = ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])
    renewals, active = table_to_contracts(REGULAR[:CALIBRATION])
    assert renewals.size == 1000
    records = ShiftedBetaGeoModel().fit_contracts(renewals, active)
    for name in ("alpha", "beta"):
        assert records.params_[name] == pytest.approx(table.params_[name], rel=1e-6)
        assert records.standard_errors_[name] == pytest.approx(table.standard_errors_[name], rel=1e-3)
    assert records.log_likelihood_ == pytest.approx(table.log_likelihood_, rel=1e-10)
    # Weights are customers: half the rows with weight 2 give the same fit.
    weighted = ShiftedBetaGeoModel().fit_contracts(renewals[::2], active[::2], weights=np.full(500, 2.0))
    assert weighted.params_["alpha"] == pytest.approx(table.params_["alpha"], rel=0.05)


def test_standard_errors_match_a_plain_hessian() -> None:
    model = ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])
    a, b = model.params_["alpha"], model.params_["beta"]
    h = 1e-4

    def ll(x: float, y: float) -> float:
        return plain_log_likelihood(x, y, REGULAR[:CALIBRATION])

    haa = (ll(a + h, b) - 2 * ll(a, b) + ll(a - h, b)) / h**2
    hbb = (ll(a, b + h) - 2 * ll(a, b) + ll(a, b - h)) / h**2
    hab = (ll(a + h, b + h) - ll(a + h, b - h) - ll(a - h, b + h) + ll(a - h, b - h)) / (4 * h * h)
    det = haa * hbb - hab * hab
    se_a, se_b = math.sqrt(-hbb / det), math.sqrt(-haa / det)
    assert model.standard_errors_["alpha"] == pytest.approx(se_a, rel=1e-3)
    assert model.standard_errors_["beta"] == pytest.approx(se_b, rel=1e-3)


def test_recovers_parameters_from_simulated_contracts() -> None:
    rng = np.random.default_rng(24)
    alpha, beta = 1.2, 3.0
    n = 30_000
    theta = rng.beta(alpha, beta, n)
    lifetime = rng.geometric(theta)  # T: the period of cancellation, 1, 2, …
    tenure = rng.integers(1, 13, n)  # cohorts acquired 1..12 periods ago: periods they could have renewed
    active = lifetime > tenure
    renewals = np.where(active, tenure, lifetime - 1)
    model = ShiftedBetaGeoModel().fit_contracts(renewals, active)
    for name, truth in (("alpha", alpha), ("beta", beta)):
        assert abs(model.params_[name] - truth) < 3 * model.standard_errors_[name]
        assert model.standard_errors_[name] < 0.15 * truth


def test_boundary_fits_are_reported() -> None:
    # Everyone with the same churn probability 0.3: the exact geometric table; heterogeneity runs to 0.
    geometric = [1000 * 0.7**t for t in range(8)]
    with pytest.warns(BoundaryWarning, match="do not differ"):
        model = ShiftedBetaGeoModel().fit(geometric)
    mean = model.params_["alpha"] / (model.params_["alpha"] + model.params_["beta"])
    assert mean == pytest.approx(0.3, rel=1e-4)
    np.testing.assert_allclose(model.retention_rate([1, 5, 50]), 0.7, rtol=1e-4)
    assert any(math.isnan(model.standard_errors_[n]) for n in model.at_boundary_)
    # Nobody ever cancels: the churn probabilities run to 0.
    with pytest.warns(BoundaryWarning, match="almost no customer cancels"):
        never = ShiftedBetaGeoModel().fit([500, 500, 500, 500])
    assert never.at_boundary_ and float(never.survival(100)) > 0.999


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.fit([1000]), "at least one later period"),
        (lambda m: m.fit([1000, 600]), "at least two renewal periods"),
        (lambda m: m.fit([1000, 600, 700]), "rises from period 1 to 2"),
        (lambda m: m.fit([0, 0, 0]), "positive cohort size"),
        (lambda m: m.fit([1000, float("nan"), 3]), "missing or non-finite"),
        (lambda m: m.fit_contracts([], []), "no contracts"),
        (lambda m: m.fit_contracts([1.5, 2], [0, 1]), "whole numbers"),
        (lambda m: m.fit_contracts([1, 2], [0, 2]), "true/false"),
        (lambda m: m.fit_contracts([1, 2], [0]), "same length"),
        (lambda m: m.fit_contracts([0, 0, 0], [1, 1, 1]), "no customer has reached a renewal decision"),
        (lambda m: m.fit_contracts([0, 0, 1], [0, 1, 1]), "at least two renewal periods"),
        (lambda m: m.survival(3), "not fitted"),
    ],
)
def test_bad_input_is_one_clear_error(call, message: str) -> None:
    with pytest.raises(UserError, match=message):
        call(ShiftedBetaGeoModel())


def test_bad_prediction_arguments() -> None:
    model = fitted(0.7, 1.2)
    with pytest.raises(UserError, match="discount_rate must be > 0"):
        model.discounted_expected_lifetime(0)
    with pytest.raises(UserError, match="whole numbers of periods ≥ 1"):
        model.churn_probability(0)
    with pytest.raises(UserError, match="whole numbers of periods ≥ 0"):
        model.discounted_expected_residual_lifetime(0.1, 2.5)
    with pytest.raises(UserError, match="needs cohort_size"):
        model.expected_alive(3)
    assert float(model.expected_alive(0, cohort_size=50)) == 50.0


def test_public_name_and_repr() -> None:
    import tierwise.clv as clv

    assert "ShiftedBetaGeoModel" in clv.__all__ and clv.ShiftedBetaGeoModel is ShiftedBetaGeoModel
    model = ShiftedBetaGeoModel().fit(HIGH_END[:CALIBRATION])
    assert repr(model) == "ShiftedBetaGeoModel(alpha=0.6681, beta=3.806)"


# ---------------------------------------------------------------------------------------------------------------
# tierwise clv fit --model sbg
# ---------------------------------------------------------------------------------------------------------------


def test_cli_retention_table(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    rows = [(t, n) for t, n in enumerate(HIGH_END[:CALIBRATION])]
    path.write_text("period,alive\n" + "\n".join(f"{t},{n}" for t, n in reversed(rows)) + "\n")  # any row order
    result = run_cli("clv", "fit", path, "--model", "sbg", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert isinstance(data, dict)
    assert data["input"] == "retention_table" and data["periods_observed"] == 7
    assert data["params"]["alpha"] == pytest.approx(0.668, rel=0.01)
    assert data["params"]["beta"] == pytest.approx(3.806, rel=0.01)
    assert data["standard_errors"]["alpha"] > 0
    assert [p["period"] for p in data["projection"]] == [8, 9, 10, 11, 12]
    np.testing.assert_allclose([p["expected_alive"] for p in data["projection"]], [460, 436, 414, 395, 378], rtol=0.01)
    text = run_cli("clv", "fit", path, "--model", "sbg", "--horizon", "2")
    assert text.code == 0, text.stderr
    assert "alpha" in text.stdout and "0.6681" in text.stdout and "projected retention" in text.stdout
    assert "460.4" in text.stdout and "12 " not in text.stdout.split("projected retention")[1]


def test_cli_contract_records(tmp_path: Path) -> None:
    renewals, active = table_to_contracts(REGULAR[:CALIBRATION])
    path = tmp_path / "contracts.csv"
    words = {True: "yes", False: "否"}
    path.write_text(
        "Customer,Periods,Active\n"
        + "\n".join(f"c{i},{n},{words[bool(a)]}" for i, (n, a) in enumerate(zip(renewals, active, strict=True)))
        + "\n",
        encoding="utf-8",
    )
    result = run_cli("clv", "fit", path, "--model", "sbg", "--json", "--horizon", "3")
    assert result.code == 0, result.stderr
    data = result.json()
    assert isinstance(data, dict)
    assert data["input"] == "contracts" and data["n_customers"] == 1000 and data["active_now"] == 241
    assert data["params"]["alpha"] == pytest.approx(0.704, rel=0.01)
    model = ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])
    # All 241 active customers renewed 7 times: next period 241 · r(8), then · r(9), …
    expected = 241 * model.survival([8, 9, 10]) / float(model.survival(7))
    np.testing.assert_allclose([p["expected_alive"] for p in data["projection"]], expected, rtol=1e-5)
    np.testing.assert_allclose(
        [p["retention_rate"] for p in data["projection"]], model.retention_rate([8, 9, 10]), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("customer,amount\na,3\n", "cannot read this file for --model sbg: its columns are customer, amount"),
        ("alive\n1000\nmany\n", "line 3, column 'alive': cannot read 'many' as a number of customers"),
        ("periods,active\n1,yes\n2,maybe\n", "cannot read 'maybe' as active or not"),
        ("periods,active\n1,yes\n-2,no\n", "cannot read '-2' as a whole number of renewals"),
        ("period,alive\n0,1000\n2,500\n", "must number the rows 0, 1, 2"),
        ("alive\n1000\n1200\n900\n", "alive rises from period 0 to 1"),
        ("alive\n1000\n", "at least one later period"),
    ],
)
def test_bad_file_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError) as caught:
        fit_sbg_file(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_cli_bad_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("alive\n1000\nmany\n")
    result = run_cli("clv", "fit", path, "--model", "sbg")
    assert result.code == 2
    assert "line 3, column 'alive': cannot read 'many' as a number of customers" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_without_header_and_missing_options(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1000\n600\n400\n")
    result = run_cli("clv", "fit", path, "--model", "sbg", "--no-header")
    assert result.code == 2 and "give the file a header row" in result.stderr
    # The transaction models still need their columns, now told in one line instead of by Typer.
    result = run_cli("clv", "fit", path, "--date-col", "1", "--calibration-end", "2024-01-01")
    assert result.code == 2 and "--customer-col" in result.stderr and "Traceback" not in result.stderr


def test_json_is_plain(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text("alive\n" + "\n".join(str(n) for n in REGULAR[:CALIBRATION]) + "\n")
    result = run_cli("clv", "fit", path, "--model", "sbg", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "sbg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ShiftedBetaGeoModel().fit(REGULAR[:CALIBRATION])  # an interior fit warns nothing


def test_the_docs_example_runs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "clv.md").read_text(encoding="utf-8")
    section = text[text.index("## Contracts: the shifted-beta-geometric model") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    code = code[: code.index("```")]
    names: dict[str, object] = {}
    exec(compile(code, "docs/clv.md", "exec"), names)  # the doc's own example, as a reader would paste it
    model = names["model"]
    assert isinstance(model, ShiftedBetaGeoModel)
    np.testing.assert_allclose(model.expected_alive([8, 9, 10]), [220.1, 204.4, 191.2], atol=0.05)
    assert isinstance(names["records"], ShiftedBetaGeoModel) and names["records"].converged_


def test_horizon_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text("alive\n1000\n600\n450\n")
    with pytest.raises(UserError, match="--horizon must be at least 1"):
        fit_sbg_file(path, horizon=0)
    assert len(fit_sbg_file(path, horizon=1)["projection"]) == 1


def test_parquet_contracts_with_typed_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    renewals, active = table_to_contracts(HIGH_END[:CALIBRATION])
    path = tmp_path / "contracts.parquet"
    pq.write_table(pa.table({"periods": renewals.astype(np.int32), "active": active.astype(bool)}), path)
    result = fit_sbg_file(path)
    assert result["input"] == "contracts" and result["active_now"] == 491
    assert result["params"]["beta"] == pytest.approx(3.806, rel=0.01)
