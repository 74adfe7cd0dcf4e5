"""Shifted-beta-geometric (sBG) model for contractual customers (subscriptions, B2B contracts): Fader & Hardie
2007, "How to project customer retention", Journal of Interactive Marketing 21(1); discounted expected (residual)
lifetime from Fader & Hardie 2010, "Customer-base valuation in a contractual setting: the perils of ignoring
heterogeneity", Marketing Science 29(1).

At the end of every period an active customer cancels with probability θ, θ ~ Beta(α, β) across customers. With
T the period in which a customer cancels (T = 1: never renewed), the model's distribution is

    P(T = t) = B(α+1, β+t−1) / B(α, β)          S(t) = P(T > t) = B(α, β+t) / B(α, β)
    r(t) = S(t) / S(t−1) = (β+t−1) / (α+β+t−1)  (retention rate, rising with t: the sorting effect)

A customer seen to cancel in period t contributes log P(T = t), one still active after n renewals log S(n). Both
inputs — a retention table (customers alive at the start of periods 0..T) and contract records (renewals, active)
— reduce to two weighted counts per period, so a fit costs O(longest tenure) whatever the number of customers.
Both terms are sums of logs of integer-shifted parameters (the rising-factorial tables of _fit), accurate up to
the 1e8 bound a parameter runs to in a boundary fit.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.special import betaln

from tierwise.clv._fit import (
    BoundaryWarning,
    Data,
    FloatArray,
    Model,
    ObjectiveFn,
    as_float_array,
    check_finite,
    check_weights,
    not_fitted,
    rising_tables,
)
from tierwise.errors import UserError

_NAMES = ("alpha", "beta")
# Terms of the DEL/DERL series summed per block; the series stops when what is left is below this share of the sum.
_BLOCK = 4096
_SERIES_TOL = 1e-16
_SERIES_MAX_TERMS = 50_000_000


class ShiftedBetaGeoModel(Model):
    """sBG retention model; parameters ``alpha``, ``beta`` of the Beta distribution of the per-period churn
    probability (PyMC-Marketing's and the paper's names).

    >>> model = ShiftedBetaGeoModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])  # doctest: +SKIP
    >>> model.params_, model.survival([8, 9, 10])                                       # doctest: +SKIP
    """

    label = "sBG"
    names = _NAMES

    # -- fitting --------------------------------------------------------------------------------------------------

    def fit(self, alive: Any) -> ShiftedBetaGeoModel:
        """Fit on a retention table: ``alive[t]`` customers of one cohort still active at the start of period t,
        t = 0..T (``alive[0]`` is the cohort's size; counts, not shares — the standard errors depend on them)."""
        self._check_options()
        counts = as_float_array(alive, "alive")
        check_finite(counts, "alive")
        if counts.size < 2:
            raise UserError("alive needs the cohort size and at least one later period (customers alive at 0, 1, …)")
        if (counts < 0).any() or counts[0] <= 0:
            raise UserError("alive must be ≥ 0 with a positive cohort size (customers alive at the start of period 0)")
        rise = np.flatnonzero(np.diff(counts) > 0)
        if rise.size:
            raise UserError(
                f"alive rises from period {int(rise[0])} to {int(rise[0]) + 1}: a cohort only loses customers; "
                "give one cohort's customers alive at the start of each period"
            )
        horizon = counts.size - 1
        churned = np.zeros(horizon + 1)
        churned[1:] = counts[:-1] - counts[1:]
        survived = np.zeros(horizon + 1)
        survived[horizon] = counts[horizon]
        self._fit_counts(churned, survived)
        self.alive_ = counts
        return self

    def fit_contracts(self, renewals: Any, active: Any, weights: Any = None) -> ShiftedBetaGeoModel:
        """Fit on contract records, one per customer: ``renewals`` the number of times the contract was renewed
        (0: never), ``active`` whether it still runs (True: right-censored, the customer may renew again).
        Customers of different cohorts (different tenures) may be mixed."""
        self._check_options()
        n = as_float_array(renewals, "renewals")
        check_finite(n, "renewals")
        if n.size == 0:
            raise UserError("no contracts: renewals and active are empty")
        if (n < 0).any() or (n != np.round(n)).any():
            raise UserError("renewals must be whole numbers ≥ 0 (the times each contract was renewed)")
        flags = as_float_array(active, "active")
        if flags.size != n.size:
            raise UserError(f"renewals and active must have the same length (got {n.size}, {flags.size})")
        check_finite(flags, "active")
        if not np.isin(flags, (0.0, 1.0)).all():
            raise UserError("active must be true/false (1/0): whether the contract still runs")
        w = check_weights(weights, n.size)
        k = n.astype(np.int64)
        horizon = int(k.max()) + 1
        # A cancelled contract renewed k times ended in period k+1; an active one has survived k renewals.
        churned = np.bincount(k[flags == 0] + 1, weights=w[flags == 0], minlength=horizon + 1).astype(np.float64)
        survived = np.bincount(k[flags == 1], weights=w[flags == 1], minlength=horizon + 1).astype(np.float64)
        self._fit_counts(churned, survived)
        if hasattr(self, "alive_"):  # a retention table fitted before: its cohort size is no default any more
            del self.alive_
        return self

    def _fit_counts(self, churned: FloatArray, survived: FloatArray) -> None:
        """Maximise Σ_t churned[t]·log P(T=t) + survived[t]·log S(t) (FH 2007, eq. 5 for one cohort)."""
        informative = np.flatnonzero((churned > 0) | ((survived > 0) & (np.arange(survived.size) > 0)))
        if informative.size == 0:
            raise UserError(
                "no customer has reached a renewal decision yet (every contract is active in its first period); "
                "the model needs customers who renewed or cancelled"
            )
        if informative.max() < 2:
            raise UserError(
                "only the first renewal is observed: that fixes the mean churn probability α/(α+β) but not α and β "
                "apart; the model needs customers observed over at least two renewal periods"
            )
        t = np.concatenate([np.flatnonzero(churned), np.flatnonzero(survived)])
        is_churn = np.concatenate([np.ones(np.count_nonzero(churned)), np.zeros(np.count_nonzero(survived))])
        w = np.concatenate([churned[churned != 0], survived[survived != 0]])
        at_risk = float(churned[1:].sum() + survived[1:].sum())  # customers who reached the first renewal
        p1 = min(max(churned[1] / max(at_risk, 1e-12), 0.05), 0.95)  # their share lost then: α/(α+β) to start
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._maximize(_objective, (t.astype(np.int64), is_churn, w), [1.0, (1 - p1) / p1])
        for message in caught:
            if issubclass(message.category, BoundaryWarning):
                warnings.warn(self._boundary_note(), BoundaryWarning, stacklevel=3)
            else:
                warnings.warn_explicit(message.message, message.category, message.filename, message.lineno)
        self.churned_ = churned
        self.survived_ = survived

    def _boundary_note(self) -> str:
        """The generic boundary warning of _fit speaks of purchases and P(alive); this says what it means here."""
        a, b = self._params()
        mean = a / (a + b)
        if "alpha" in self.at_boundary_ and a < 1:
            what = "almost no customer cancels: the churn probabilities run to 0 (retention ≈ 1)"
        elif "beta" in self.at_boundary_ and b < 1:
            what = "almost every customer cancels at the first renewal: the churn probabilities run to 1"
        elif a > 1 and b > 1:
            what = (
                f"the customers do not differ in their churn probability: all appear to cancel with the same "
                f"probability {mean:.3g} per period (a plain geometric model, retention flat at {1 - mean:.3g})"
            )
        else:
            what = f"the data pin down only the mean churn probability α/(α+β) = {mean:.3g}"
        return (
            f"sBG: the maximum-likelihood estimate is on the boundary of the parameter space "
            f"({', '.join(f'{n}={self.params_[n]:.3g}' for n in self.at_boundary_)}): {what}. Standard errors of "
            "boundary parameters are NaN."
        )

    # -- predictions ----------------------------------------------------------------------------------------------

    def _params(self) -> tuple[float, float]:
        if not hasattr(self, "params_"):
            raise not_fitted("ShiftedBetaGeoModel")
        return self.params_["alpha"], self.params_["beta"]

    def churn_probability(self, t: Any) -> FloatArray:
        """P(T = t): a new customer cancels in period t (t = 1: at the first renewal), FH 2007 eq. 3."""
        a, b = self._params()
        tt = _periods(t, "t", 1)
        return _exp(betaln(a + 1, b + tt - 1) - betaln(a, b))

    def survival(self, t: Any) -> FloatArray:
        """S(t) = P(T > t): a new customer is still active after t renewals, FH 2007 eq. 4."""
        a, b = self._params()
        tt = _periods(t, "t", 0)
        return _exp(betaln(a, b + tt) - betaln(a, b))

    def retention_rate(self, t: Any) -> FloatArray:
        """r(t) = S(t)/S(t−1) = (β+t−1)/(α+β+t−1): the share of period t−1's customers who renew in period t
        (FH 2007 eq. 8); it rises with t as the customers likely to cancel leave first."""
        a, b = self._params()
        tt = _periods(t, "t", 1)
        return np.asarray((b + tt - 1) / (a + b + tt - 1), dtype=np.float64)

    def expected_alive(self, t: Any, cohort_size: float | None = None) -> FloatArray:
        """Expected customers of a cohort alive at the start of period t: cohort_size · S(t) (default: the size
        of the cohort the model was fitted on, for a retention table)."""
        if cohort_size is None:
            if not hasattr(self, "alive_"):
                raise UserError("expected_alive needs cohort_size when the model was fitted on contract records")
            cohort_size = float(self.alive_[0])
        return float(cohort_size) * self.survival(t)

    def expected_lifetime(self) -> float:
        """E[T] = Σ_{t≥0} S(t) = (α+β−1)/(α−1), the expected number of periods a new customer pays for; infinite
        when α ≤ 1 (a heavy tail of customers who almost never cancel) — use the discounted lifetime then."""
        a, b = self._params()
        return math.inf if a <= 1 else (a + b - 1) / (a - 1)

    def discounted_expected_lifetime(self, discount_rate: float) -> float:
        """DEL = Σ_{t≥0} S(t)/(1+d)^t = ₂F₁(1, β; α+β; 1/(1+d)) (FH 2010, eq. 4): a new customer's expected
        discounted number of payments, the first (at acquisition) undiscounted."""
        a, b = self._params()
        return _hyp_one(b, a + b, _log_z(discount_rate))

    def discounted_expected_residual_lifetime(self, discount_rate: float, renewals: Any = 0) -> FloatArray:
        """DERL = Σ_{k≥1} S(n+k)/S(n) / (1+d)^(k−1) = (β+n)/(α+β+n) · ₂F₁(1, β+n+1; α+β+n+1; 1/(1+d)) (FH 2010,
        eq. 6, with n − 1 renewals there being n here): for a customer active after n renewals, just before the
        next renewal decision, the expected discounted number of payments still to come (the next undiscounted)."""
        a, b = self._params()
        log_z = _log_z(discount_rate)
        n = _periods(renewals, "renewals", 0)
        flat = np.atleast_1d(n)
        values, inverse = np.unique(flat, return_inverse=True)
        per_value = np.array([(b + v) / (a + b + v) * _hyp_one(b + v + 1, a + b + v + 1, log_z) for v in values])
        out = per_value[inverse].reshape(flat.shape)
        return np.asarray(out.reshape(np.shape(n)) if np.ndim(n) else out[0], dtype=np.float64)

    def residual_value(self, margin: Any, discount_rate: float, renewals: Any = 0) -> FloatArray:
        """DERL × margin per period: the value still to come from a customer active after ``renewals``."""
        m = np.asarray(margin, dtype=np.float64)
        if not np.isfinite(m).all():
            raise UserError("margin must be a finite amount per period")
        return np.asarray(m * self.discounted_expected_residual_lifetime(discount_rate, renewals), dtype=np.float64)


def _exp(x: Any) -> FloatArray:
    """exp, with what is below the smallest normal double (e^−708) as 0 rather than an underflow, which
    np.seterr(all="raise") turns into an error."""
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(np.where(x < -708.0, 0.0, np.exp(np.maximum(x, -708.0))), dtype=np.float64)


def _periods(t: Any, name: str, lowest: int) -> FloatArray:
    values = np.asarray(as_float_array(t, name) if np.ndim(t) else float(t), dtype=np.float64)
    if not np.isfinite(values).all() or (values < lowest).any() or (values != np.round(values)).any():
        raise UserError(f"{name} must be whole numbers of periods ≥ {lowest}")
    return values


def _log_z(discount_rate: float) -> float:
    d = float(discount_rate)
    if not (math.isfinite(d) and d > 0):
        raise UserError(
            f"discount_rate must be > 0 per period (e.g. 0.1 for 10% a year), got {discount_rate}; without "
            "discounting use expected_lifetime"
        )
    return -math.log1p(d)


def _hyp_one(b: float, c: float, log_z: float) -> float:
    """₂F₁(1, b; c; z) = Σ_{k≥0} (b)_k/(c)_k z^k for 0 < b < c, 0 < z < 1.

    Summed in blocks with the terms' logs accumulated (no overflow or underflow of the running product). Every
    term ratio (b+k)/(c+k)·z is below z, so from a term t on, the rest sums to less than t/(1−z): that is the stop rule.
    scipy's hyp2f1 is not used: it is inaccurate in parts of this range (see bgnbd._conditional_mean).
    """
    total = 0.0
    log_term = 0.0  # log of the k-th term, k = start
    start = 0
    log_tail = math.log(-math.expm1(log_z))  # log(1 − z)
    while start < _SERIES_MAX_TERMS:
        k = np.arange(start, start + _BLOCK, dtype=np.float64)
        steps = np.log(b + k) - np.log(c + k) + log_z
        logs = log_term + np.concatenate(([0.0], np.cumsum(steps)))
        total += float(_exp(logs[:-1]).sum())
        log_term = float(logs[-1])
        start += _BLOCK
        if log_term - log_tail < math.log(_SERIES_TOL) + math.log(total):
            return total
    raise UserError("the discount rate is too small for the discounted lifetime to converge; use a larger one")


def _objective(data: Data) -> ObjectiveFn:
    """Mean negative log-likelihood of rows (t, churned?, weight) and its gradient in (log α, log β).

    With rising-factorial tables L_c[t] = log Γ(c+t)/Γ(c): log S(t) = L_β[t] − L_{α+β}[t] and
    log P(T=t) = log α − log(α+β+t−1) + log S(t−1).
    """
    t, is_churn, w = data
    total = float(w.sum())
    t_max = int(t.max())
    churn = is_churn == 1
    tc, wc = t[churn], w[churn]
    ts, ws = t[~churn], w[~churn]
    w_churn = float(wc.sum())

    def neg_mean_ll(phi: FloatArray) -> tuple[float, FloatArray]:
        a, b = np.exp(phi)
        lb, ib = rising_tables(b, t_max)
        lab, iab = rising_tables(a + b, t_max)
        last = a + b + tc - 1.0
        ll = float(ws @ (lb[ts] - lab[ts]))
        ll += w_churn * math.log(a) - float(wc @ np.log(last)) + float(wc @ (lb[tc - 1] - lab[tc - 1]))
        d_a = -float(ws @ iab[ts]) + w_churn / a - float(wc @ (1.0 / last)) - float(wc @ iab[tc - 1])
        d_b = float(ws @ (ib[ts] - iab[ts])) - float(wc @ (1.0 / last)) + float(wc @ (ib[tc - 1] - iab[tc - 1]))
        grad = np.array([d_a * a, d_b * b])
        return -ll / total, -grad / total

    return neg_mean_ll
