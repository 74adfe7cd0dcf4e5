"""Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves for
customer base analysis", JMR 42(4); Fader & Hardie 2013, "The Gamma-Gamma model of monetary value").

A customer's transaction values are Gamma(p, ν) with ν ~ Gamma(q, γ) across customers (γ is called ``v`` as in
lifetimes). The mean m̄ of x transactions is Gamma(px, νx); integrating over ν gives the likelihood of one
repeat customer (FH 2013 note, eq. 3):

    L(p, q, γ | m̄, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q x^(px) m̄^(px−1) / (γ + x m̄)^(px+q)

and the conditional expected spend per transaction (eq. 5) p(γ + x m̄)/(px + q − 1), a weighted average of the
population mean pγ/(q−1) and the customer's own mean m̄.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from tierwise.clv._fit import (
    Data,
    FloatArray,
    Model,
    ObjectiveFn,
    as_float_array,
    check_finite,
    check_weights,
    not_fitted,
)
from tierwise.errors import UserError

_NAMES = ("p", "q", "v")


def _check_spend(frequency: Any, monetary_value: Any, *, fitting: bool) -> tuple[FloatArray, FloatArray]:
    x = as_float_array(frequency, "frequency")
    m = as_float_array(monetary_value, "monetary_value")
    if x.size != m.size:
        raise UserError(f"frequency and monetary_value must have the same length (got {x.size} and {m.size})")
    if x.size == 0:
        raise UserError("no customers: frequency and monetary_value are empty")
    check_finite(x, "frequency")
    if (x < 0).any() or (x != np.round(x)).any():
        raise UserError("frequency must be whole numbers ≥ 0 (the count of repeat purchases)")
    if fitting:
        if (x == 0).any():
            raise UserError(
                f"the Gamma-Gamma model is fitted on repeat customers only, but {int((x == 0).sum())} row(s) have "
                "frequency 0; pass only the rows with frequency > 0"
            )
        check_finite(m, "monetary_value")
    else:
        m = np.where(x == 0, 0.0, m)  # a one-off customer's spend is not used (and is often NaN or 0)
        check_finite(m, "monetary_value")
    if fitting and (m <= 0).any():
        raise UserError("monetary_value must be > 0 for every repeat customer (mean value of the repeat purchases)")
    if (m < 0).any():
        raise UserError("monetary_value must be ≥ 0")
    return x, m


class GammaGammaModel(Model):
    """Gamma-Gamma spend model; lifetimes' ``GammaGammaFitter`` parameter names (p, q, v)."""

    label = "Gamma-Gamma"
    names = _NAMES

    def fit(self, frequency: Any, monetary_value: Any, weights: Any = None) -> GammaGammaModel:
        self._check_options()
        x, m = _check_spend(frequency, monetary_value, fitting=True)
        w = check_weights(weights, x.size)
        mean_m = float(w @ m) / float(w.sum())
        self._maximize(_objective, (x, m, w), [1.0, 3.0, 2.0 * mean_m])
        return self

    def log_likelihood(self, frequency: Any, monetary_value: Any) -> FloatArray:
        """Each repeat customer's log-likelihood of their mean spend (FH 2013 note, eq. 3) at the fitted parameters."""
        if not hasattr(self, "params_"):
            raise not_fitted("GammaGammaModel")
        x, m = _check_spend(frequency, monetary_value, fitting=True)
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        px = p * x
        return np.asarray(
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(x * m + v),
            dtype=np.float64,
        )

    def expected_spend(self, frequency: Any, monetary_value: Any) -> FloatArray:
        """E[spend per transaction | x, m̄] = p(γ + x m̄)/(px + q − 1) (FH 2013 note, eq. 5); for x = 0 the
        population mean pγ/(q − 1). Infinite where the mean does not exist (px + q ≤ 1)."""
        if not hasattr(self, "params_"):
            raise not_fitted("GammaGammaModel")
        x, m = _check_spend(frequency, monetary_value, fitting=False)
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        den = p * x + q - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(den > 0, p * (v + x * m) / den, np.inf), dtype=np.float64)


def _objective(data: Data) -> ObjectiveFn:
    """Mean negative log-likelihood of the rows ``(x, m̄, weights)`` and its gradient in log-parameters."""
    x, m, w = data
    total = float(w.sum())
    # Γ terms depend on the count only: evaluate them once per distinct count.
    counts, inverse = np.unique(x, return_inverse=True)
    count_w = np.bincount(inverse, weights=w)
    wx = w * x
    log_m = np.log(m)
    s_log_m = float(w @ log_m)
    s_x_log_xm = float(wx @ (log_m + np.log(x)))
    xm = x * m

    def neg_mean_ll(phi: FloatArray) -> tuple[float, FloatArray]:
        p, q, v = np.exp(phi)
        px = p * counts
        log_den = np.log(xm + v)  # log(γ + x m̄), the only per-customer term that moves with the parameters
        ll = (
            count_w @ (gammaln(px + q) - gammaln(px))
            - total * gammaln(q)
            + total * q * np.log(v)
            + p * s_x_log_xm
            - s_log_m
            - (p * wx + q * w) @ log_den
        )
        psi_pxq = digamma(px + q)
        d_p = (count_w * counts) @ (psi_pxq - digamma(px)) + s_x_log_xm - wx @ log_den
        d_q = count_w @ psi_pxq - total * digamma(q) + total * np.log(v) - w @ log_den
        d_v = total * q / v - (p * wx + q * w) @ np.exp(-log_den)
        grad = np.array([d_p, d_q, d_v]) * np.exp(phi)
        return -float(ll) / total, -grad / total

    return neg_mean_ll
