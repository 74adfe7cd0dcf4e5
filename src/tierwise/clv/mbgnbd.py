"""MBG/NBD model (Batislam, Denizel & Filiztekin 2007, "Empirical validation and comparison of models for customer
base analysis", International Journal of Research in Marketing 24(3)), fitted by maximum likelihood.

BG/NBD with one change: the customer may drop out at every purchase *including the first*, i.e. right at time 0,
with probability p ~ Beta(a, b). A one-off buyer is then no longer certainly alive (under BG/NBD P(alive | x = 0)
is 1 whatever T is). For a customer with x repeat purchases, the last at t_x, observed for T:

    L = B(a, b+x+1)/B(a, b) · Γ(r+x) α^r / Γ(r) · [ (α+T)^-(r+x) + a/(b+x) · (α+t_x)^-(r+x) ]

for every x (BG/NBD has the second branch for x > 0 only, with a/(b+x−1)); lifetimes' ModifiedBetaGeoFitter and
BTYDplus' mbgcnbd with k = 1 are this model. The predictions are BG/NBD's with b+1 in place of b (the dropout draw
at time 0 is one more Beta-Bernoulli trial), and a new customer is alive after the first purchase with
probability b/(a+b).

Computed in log space (the bracket with logaddexp) with an analytic gradient; predictions underflow to 0 rather
than raise under np.seterr(all="raise").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln

from tierwise.clv._fit import Data, FloatArray, Model, ObjectiveFn, check_rfm, not_fitted, rising_tables
from tierwise.clv.bgnbd import _conditional_mean, _horizon, _pairs

_NAMES = ("r", "alpha", "a", "b")


class ModifiedBetaGeoModel(Model):
    """MBG/NBD purchase/dropout model; lifetimes' ``ModifiedBetaGeoFitter`` parameter names (r, alpha, a, b).

    >>> model = ModifiedBetaGeoModel().fit(frequency, recency, T)     # doctest: +SKIP
    >>> model.params_, model.probability_alive(frequency, recency, T)  # doctest: +SKIP
    """

    label = "MBG/NBD"
    names = _NAMES

    # -- fitting --------------------------------------------------------------------------------------------------

    def fit(self, frequency: Any, recency: Any, T: Any, weights: Any = None) -> ModifiedBetaGeoModel:
        x, _, t_x, age, w = self._compressed_rfm(frequency, recency, T, weights)
        alpha0, _ = self._rate_start(x, age, w)
        self._maximize(_objective, (x, t_x, age, w), [1.0, alpha0, 1.0, 1.0])
        self.n_unique_rows_ = int(x.size)
        return self

    # -- predictions ----------------------------------------------------------------------------------------------

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise not_fitted("ModifiedBetaGeoModel")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _log_odds_dropped(self, x: Any, t_x: Any, age: Any) -> FloatArray:
        """log of the odds "dropped out right after the last purchase (at t_x, possibly time 0) : alive at T"."""
        r, alpha, a, b = self._params()
        xf = np.asarray(x, dtype=np.float64)
        return np.asarray(
            np.log(a) - np.log(b + xf) + (r + xf) * (np.log(alpha + age) - np.log(alpha + t_x)), dtype=np.float64
        )

    def _alive(self, x: Any, t_x: Any, age: Any) -> FloatArray:
        # 1/(1+e^d) as exp(-log(1+e^d)): huge odds give 0 rather than an overflow.
        with np.errstate(under="ignore"):
            return np.asarray(np.exp(-_log1p_exp(self._log_odds_dropped(x, t_x, age))), dtype=np.float64)

    def log_likelihood(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Each customer's log-likelihood at the fitted parameters."""
        x, t_x, age = check_rfm(frequency, recency, T)
        r, alpha, a, b = self._params()
        xf = x.astype(np.float64)
        common = (
            gammaln(r + xf)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(b + xf + 1)
            - gammaln(b)
            - gammaln(a + b + xf + 1)
            + gammaln(a + b)
        )
        alive = -(r + xf) * np.log(alpha + age)
        return np.asarray(common + alive + _log1p_exp(self._log_odds_dropped(x, t_x, age)), dtype=np.float64)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """P(alive at T | x, t_x, T) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)), for x = 0 too."""
        x, t_x, age = check_rfm(frequency, recency, T)
        return self._alive(x, t_x, age)

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] = P(alive) · BG/NBD's conditional mean with b+1 in place of b."""
        x, t_x, age = check_rfm(frequency, recency, T)
        horizon = _horizon(t)
        r, alpha, a, b = self._params()
        with np.errstate(under="ignore"):
            if horizon.ndim == 0 and np.ndim(x) == 1:  # one horizon: the conditional mean once per (x, T) pair
                alive = self._alive(x, t_x, age)
                xf = x.astype(np.float64)
                inverse, first = _pairs(xf, age)
                by = _conditional_mean(r, alpha, a, b + 1.0, xf[first], age[first], np.full(first.size, float(horizon)))
                return np.asarray(alive * by[inverse], dtype=np.float64)
            x, t_x, age, horizon = np.broadcast_arrays(x, t_x, age, horizon)
            alive = self._alive(x, t_x, age)
            return np.asarray(
                alive * _conditional_mean(r, alpha, a, b + 1.0, x.astype(np.float64), age, horizon), dtype=np.float64
            )

    def discounted_purchases(self, horizons: Any, discounts: Any, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Σ_j discounts[j] · (E[purchases by horizons[j]] − E[purchases by horizons[j−1]]) per customer, horizons
        increasing from 0 (what month-by-month CLV needs); the conditional mean once per distinct (x, T) pair."""
        x, t_x, age = check_rfm(frequency, recency, T)
        r, alpha, a, b = self._params()
        xf = x.astype(np.float64)
        inverse, first = _pairs(xf, age)
        per_pair = np.zeros(first.size)
        before = np.zeros(first.size)
        with np.errstate(under="ignore"):
            alive = self._alive(x, t_x, age)
            for t, discount in zip(horizons, discounts, strict=True):
                by = _conditional_mean(r, alpha, a, b + 1.0, xf[first], age[first], np.full(first.size, float(t)))
                per_pair += float(discount) * (by - before)
                before = by
            return np.asarray(alive * per_pair[inverse], dtype=np.float64)

    def expected_purchases_new_customer(self, t: Any) -> FloatArray:
        """E[X(t)] = b/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b+1; a+b; t/(α+t))]: a new customer survives the first
        purchase with probability b/(a+b), and then expects BG/NBD's conditional mean (b+1, x = 0, T = 0)."""
        horizon = _horizon(t)
        r, alpha, a, b = self._params()
        zeros = np.zeros_like(horizon)
        with np.errstate(under="ignore"):
            return np.asarray(
                b / (a + b) * _conditional_mean(r, alpha, a, b + 1.0, zeros, zeros, horizon), dtype=np.float64
            )

    # -- lifetimes' names, so code written for ModifiedBetaGeoFitter switches with a changed import ----------------

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> FloatArray:
        """lifetimes' name of `expected_purchases`."""
        return self.expected_purchases(t, frequency, recency, T)

    def expected_number_of_purchases_up_to_time(self, t: Any) -> FloatArray:
        """lifetimes' name of `expected_purchases_new_customer`."""
        return self.expected_purchases_new_customer(t)

    def conditional_probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """lifetimes' name of `probability_alive`."""
        return self.probability_alive(frequency, recency, T)


def _log1p_exp(d: FloatArray) -> FloatArray:
    """log(1 + e^d). numpy's logaddexp(0, d) forms e^-|d| inside, which underflows (and so raises under
    np.seterr(all="raise")) for |d| > 745 although the result, d or 0, is exact."""
    with np.errstate(under="ignore"):
        return np.asarray(np.logaddexp(0.0, d), dtype=np.float64)


def _objective(data: Data) -> ObjectiveFn:
    """Mean negative log-likelihood of the rows ``(x, t_x, T, weights)`` and its gradient in log-parameters.

    Unlike BG/NBD every row has both branches (alive at T / dropped out at t_x), one-off buyers included, so
    there is no split by x. With d = log(A2/A1) and w2 = A2/(A1+A2), the posterior weight of "dropped out":

        ll = log Γ(r+x)/Γ(r) + r log α + log (b)_{x+1} − log (a+b)_{x+1} − (r+x) log(α+T) + log(1 + e^d),
        d  = log a − log(b+x) + (r+x) (log(α+T) − log(α+t_x)).
    """
    x, t_x, age, w = data
    total = float(w.sum())
    # Per-count totals let the rising-factorial terms be summed once per distinct count, not once per row.
    count_w = np.bincount(x, weights=w)
    x_max = int(x.max())
    xf = x.astype(np.float64)
    counts = np.arange(x_max + 1, dtype=np.float64)

    def neg_mean_ll(phi: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(phi)
        lr, ir = rising_tables(r, x_max)
        lb, ib = rising_tables(b, x_max + 1)
        lab, iab = rising_tables(a + b, x_max + 1)
        log_aT = np.log(alpha + age)
        log_at = np.log(alpha + t_x)
        gap = log_aT - log_at
        rx = r + xf
        log_bx = np.log(b + counts)
        d = (np.log(a) - log_bx[x]) + rx * gap
        lae = _log1p_exp(d)
        with np.errstate(under="ignore"):  # w2 → 0 for customers certainly alive: exactly what is meant
            w2 = np.exp(d - lae)
        ww2 = w * w2
        # The Beta terms run to x+1: the first purchase is a dropout trial too.
        ll = count_w @ (lr + lb[1:] - lab[1:]) + total * r * np.log(alpha) + float(w @ (lae - rx * log_aT))
        inv_aT = 1.0 / (alpha + age)
        inv_at = 1.0 / (alpha + t_x)
        d_r = count_w @ ir + total * np.log(alpha) - float(w @ log_aT) + float(ww2 @ gap)
        d_alpha = total * r / alpha - float((w * rx) @ inv_aT) + float((ww2 * rx) @ (inv_aT - inv_at))
        d_a = -float(count_w @ iab[1:]) + float(ww2.sum()) / a
        d_b = float(count_w @ (ib[1:] - iab[1:])) - float(ww2 @ (1.0 / (b + xf)))
        grad = np.array([d_r, d_alpha, d_a, d_b]) * np.exp(phi)
        return -float(ll) / total, -grad / total

    return neg_mean_ll
