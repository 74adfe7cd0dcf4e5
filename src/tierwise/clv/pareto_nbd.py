"""Pareto/NBD model (Schmittlein, Morrison & Colombo 1987), fitted by maximum likelihood.

While active a customer buys as a Poisson process with rate λ ~ Gamma(r, α) and has an exponential lifetime with rate
μ ~ Gamma(s, β). Integrating the individual likelihood λ^x e^-(λ+μ)T + λ^x μ/(λ+μ) (e^-(λ+μ)t_x − e^-(λ+μ)T) over
the two gamma distributions gives (Fader & Hardie, "A note on deriving the Pareto/NBD model and related
expressions", 2005; "... implementing the Pareto/NBD model", 2013):

    L = Γ(r+x) α^r β^s / Γ(r) · [ (α+T)^-(r+x) (β+T)^-s  +  s · I ],
    I = ∫_{t_x}^{T} (α+u)^-(r+x) (β+u)^-(s+1) du = F(t_x) − F(T),   F(t) = ∫_t^∞ (α+u)^-(r+x) (β+u)^-(s+1) du.

Fader & Hardie write F(t) with Gauss's hypergeometric function:
F(t) = ₂F₁(r+s+x, s+1; r+s+x+1; (α−β)/(α+t)) / ((r+s+x) (α+t)^(r+s+x)). We sum that series (positive terms, or
alternating with |z| ≤ 0.6) where it converges fast, i.e. when α and β are not too different relative to α+t —
which covers typical data near the optimum. Elsewhere (|z| → 1, where the series crawls and where lifetimes' hyp2f1
loses accuracy) F(t) is integrated directly: Gauss-Legendre on ψ = log(max(α,β)+u) with geometrically widening
panels. Both branches return log F(t) and its analytic derivatives (series: termwise; quadrature: differentiation
under the integral sign), within 8e-15 of mpmath's (tests/test_clv_special.py). Not scipy.special.hyp2f1: it has no
derivatives in the parameters, and on 2,304 points of the parameter range it returned NaN or inf on 337 (mostly
z ≪ −1, α ≪ β, which the quadrature covers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln

from tierwise.clv._fit import (
    Data,
    FloatArray,
    Model,
    ObjectiveFn,
    check_rfm,
    compress_with_index,
    expm1_over,
    not_fitted,
    rising_tables,
)
from tierwise.clv.bgnbd import _horizon

_NAMES = ("r", "alpha", "s", "beta")

# Series branch while the hypergeometric argument z = (α−β)/(α+t) is in this range (terms shrink at least as
# 0.75^n) and b = s+1 is moderate (terms grow ~ n^s before they shrink).
_Z_LO, _Z_HI, _B_MAX = -0.6, 0.75, 30.0
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(12)


def _log_f_series(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """log F(t) and d log F / d(r, α, s, β) from the ₂F₁ series, as F = J / (α+t)^K with K = r+s+x, b = s+1,
    J = Σ_n u_n / (K+n), u_n = (b)_n z^n / n!."""
    b = s + 1.0
    k_all = r + s + x
    z_all = (alpha - beta) / (alpha + t)
    # Results for every row; the loop works on compact copies of the rows still summing and writes a row back
    # once its terms are negligible (checked every 8 terms, to keep the loop cheap).
    j = np.empty_like(z_all)  # J
    j_k = np.empty_like(z_all)  # dJ/dK
    j_b = np.empty_like(z_all)  # dJ/db
    j_z = np.empty_like(z_all)  # dJ/dz = Σ_{n≥1} u_{n-1} (b+n-1) / (K+n)
    rows = np.arange(z_all.size)
    z, k = z_all, k_all
    u = np.ones_like(z)
    psi = 0.0  # Σ_{j<n} 1/(b+j) = d log (b)_n / db: the same for every row
    sj, sk, sb, sz = 1.0 / k, -1.0 / (k * k), np.zeros_like(z), np.zeros_like(z)
    n = 0
    while rows.size and n < 5000:
        n += 1
        grow = u * (b + n - 1)
        sz = sz + grow / (k + n)
        psi += 1.0 / (b + n - 1)
        u = grow * z / n
        term = u / (k + n)
        sj = sj + term
        sk = sk - term / (k + n)
        sb = sb + term * psi
        if n % 8 == 0 or n >= 5000:
            done = np.abs(term) * (1.0 + psi) <= 1e-17 * sj
            if n >= 5000:
                done[:] = True
            if done.any():
                idx = rows[done]
                j[idx], j_k[idx], j_b[idx], j_z[idx] = sj[done], sk[done], sb[done], sz[done]
                keep = ~done
                rows = rows[keep]
                z, k, u, sj, sk, sb, sz = (v[keep] for v in (z, k, u, sj, sk, sb, sz))
    z, k = z_all, k_all
    log_at = np.log(alpha + t)
    log_f = np.log(j) - k * log_at
    d_k = j_k / j
    d_z = j_z / j
    grad = np.empty((z.size, 4))
    grad[:, 0] = -log_at + d_k
    grad[:, 1] = -k / (alpha + t) + d_z * (beta + t) / (alpha + t) ** 2
    grad[:, 2] = -log_at + d_k + j_b / j
    grad[:, 3] = -d_z / (alpha + t)
    return log_f, grad


def _log_f_quadrature(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """log F(t) and its gradient by Gauss-Legendre quadrature of ∫_t^∞ (α+u)^-a (β+u)^-b du, a = r+x, b = s+1.

    With ψ = log(M+u), M = max(α, β), the log-integrand decreases at rate (M+u)(a/(α+u) + b/(β+u)) − 1, which
    starts at rate0 and falls monotonically to K = a+b−1. Panels start at most 1/rate0 wide and double, so every panel
    sees at most a few e-folds of the integrand; the range ends where the tail is below e^-40 of the total.
    """
    a = r + x
    b = s + 1.0
    big_k = a + b - 1.0
    m = max(alpha, beta)
    rate0 = a * (m + t) / (alpha + t) + b * (m + t) / (beta + t) - 1.0
    span = (40.0 + np.log(rate0 / big_k)) / big_k
    # The first panel is also no wider than the scale on which log(α+u) changes, (α+t)/(M+t) in ψ: with a small
    # (r+x ≪ 1, rate0 then small) and α ≪ β that bend is sharp though weak, and wider panels miss it (3.8e-7 off
    # in log F at r = 0.001, α/β = 0.01, against mpmath; 8e-15 with this bound). Since rate0 ≥ a(M+t)/(α+t) this adds
    # at most log2(1/a) panels: none for repeat buyers, one at CDNOW's r = 0.55.
    first = np.maximum(rate0, (m + t) / (alpha + t))
    needed = np.minimum(np.ceil(np.log2(span * first + 1.0)), 60).astype(np.int64)
    log_f = np.empty(t.size)
    grad = np.empty((t.size, 4))
    # Rows needing the same number of panels are integrated together (the count ranges from ~6 to ~35).
    for n_panels in np.unique(needed):
        sel = needed == n_panels
        log_f[sel], grad[sel] = _quadrature_panels(
            r, alpha, s, beta, a[sel], t[sel], first[sel], span[sel], int(n_panels)
        )
    return log_f, grad


def _quadrature_panels(
    r: float,
    alpha: float,
    s: float,
    beta: float,
    a: FloatArray,
    t: FloatArray,
    rate0: FloatArray,
    span: FloatArray,
    n_panels: int,
) -> tuple[FloatArray, FloatArray]:
    b = s + 1.0
    m = max(alpha, beta)
    j = np.arange(n_panels + 1, dtype=np.float64)
    edges = np.minimum(span[:, None], (np.exp2(j)[None, :] - 1.0) / rate0[:, None])
    edges[:, -1] = span
    half = 0.5 * np.diff(edges, axis=1)  # (rows, panels)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    delta = (mid[:, :, None] + half[:, :, None] * _GL_NODES[None, None, :]).reshape(t.size, -1)
    log_w = np.log(np.maximum(half[:, :, None] * _GL_WEIGHTS[None, None, :], 1e-300)).reshape(t.size, -1)
    tt = t[:, None]
    base = m + tt
    # log(c + u) with u = t + (M+t)(e^δ − 1): directly for small δ, factored as (M+t)e^δ(1 − (M−c)e^-δ/(M+t))
    # for large δ, so nothing overflows and nothing cancels.
    small = delta <= 1.0
    grown = tt + base * np.expm1(np.minimum(delta, 1.0))

    def log_shift(c: float) -> FloatArray:
        direct = np.log(c + grown)
        far = np.log(base) + delta + np.log1p(-(m - c) * np.exp(-np.maximum(delta, 1.0)) / base)
        return np.asarray(np.where(small, direct, far), dtype=np.float64)

    log_au = log_shift(alpha)
    log_bu = log_shift(beta)
    log_g = np.log(base) + delta - a[:, None] * log_au - b * log_bu + log_w
    top = np.max(log_g, axis=1, keepdims=True)
    wts = np.exp(log_g - top)
    total = wts.sum(axis=1)
    log_f = top[:, 0] + np.log(total)
    wts /= total[:, None]
    inv_au = np.exp(-log_au)
    inv_bu = np.exp(-log_bu)
    grad = np.empty((t.size, 4))
    grad[:, 0] = -(wts * log_au).sum(axis=1)
    grad[:, 1] = -a * (wts * inv_au).sum(axis=1)
    grad[:, 2] = -(wts * log_bu).sum(axis=1)
    grad[:, 3] = -b * (wts * inv_bu).sum(axis=1)
    return log_f, grad


def log_f(r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """log F(t) for each (x, t) and d log F / d(r, α, s, β), choosing the branch per row."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    z = (alpha - beta) / (alpha + t)
    # Small b = s+1 (the usual case) keeps the terms monotone, so the series stays accurate further out.
    z_lo, z_hi = (-0.85, 0.85) if s + 1.0 <= 4.0 else (_Z_LO, _Z_HI)
    use_series = (z >= z_lo) & (z <= z_hi) & (s + 1.0 <= _B_MAX)
    out = np.empty(t.size)
    grad = np.empty((t.size, 4))
    if use_series.any():
        out[use_series], grad[use_series] = _log_f_series(r, alpha, s, beta, x[use_series], t[use_series])
    quad = ~use_series
    if quad.any():
        # Chunks keep the (rows × nodes) work arrays small.
        idx = np.flatnonzero(quad)
        for start in range(0, idx.size, 20_000):
            part = idx[start : start + 20_000]
            out[part], grad[part] = _log_f_quadrature(r, alpha, s, beta, x[part], t[part])
    return out, grad


def _log_parts(
    params: tuple[float, float, float, float], x: FloatArray, t_x: FloatArray, age: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """log P = log[(α+T)^-(r+x) (β+T)^-s] and log(s·I) per customer (−inf when t_x = T)."""
    r, alpha, s, beta = params
    log_p = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    lf_x, _ = log_f(r, alpha, s, beta, x, t_x)
    lf_t, _ = log_f(r, alpha, s, beta, x, age)
    with np.errstate(divide="ignore"):
        log_si = np.log(s) + lf_x + np.log1p(-np.minimum(np.exp(lf_t - lf_x), 1.0))
    return log_p, log_si


class ParetoNBDModel(Model):
    """Pareto/NBD purchase/dropout model; lifetimes' ``ParetoNBDFitter`` parameter names (r, alpha, s, beta)."""

    label = "Pareto/NBD"
    names = _NAMES

    def fit(self, frequency: Any, recency: Any, T: Any, weights: Any = None) -> ParetoNBDModel:
        x, _, t_x, age, w = self._compressed_rfm(frequency, recency, T, weights)
        alpha0, mean_t = self._rate_start(x, age, w)
        self._maximize(_objective, (x, t_x, age, w), [1.0, alpha0, 1.0, mean_t])
        self.n_unique_rows_ = int(x.size)
        return self

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise not_fitted("ParetoNBDModel")
        p = self.params_
        return p["r"], p["alpha"], p["s"], p["beta"]

    def log_likelihood(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Each customer's log-likelihood at the fitted parameters."""
        x, t_x, age = check_rfm(frequency, recency, T)
        r, alpha, s, beta = params = self._params()
        xf = x.astype(np.float64)
        log_p, log_si = _log_parts(params, xf, t_x, age)
        common = gammaln(r + xf) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return np.asarray(common + np.logaddexp(log_p, log_si), dtype=np.float64)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """P(alive at T | x, t_x, T) = P-term / (P-term + s·I)  (Fader & Hardie 2005 note, eq. 18)."""
        x, t_x, age = check_rfm(frequency, recency, T)
        log_p, log_si = _log_parts(self._params(), x.astype(np.float64), t_x, age)
        return np.asarray(np.exp(log_p - np.logaddexp(log_p, log_si)), dtype=np.float64)

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] = (r+x)(β+T)/((α+T)(s−1)) [1 − ((β+T)/(β+T+t))^(s−1)] P(alive)
        (Schmittlein et al. 1987; Fader & Hardie 2005 note, eq. 20), continuous at s = 1."""
        horizon = _horizon(t)
        alive = self.probability_alive(frequency, recency, T)
        x, _, age = check_rfm(frequency, recency, T)
        r, alpha, s, beta = self._params()
        x, age, horizon, alive = np.broadcast_arrays(x.astype(np.float64), age, horizon, alive)
        growth = -expm1_over(s - 1.0, -np.log1p(horizon / (beta + age)))
        return np.asarray((r + x) / (alpha + age) * (beta + age) * growth * alive, dtype=np.float64)

    def expected_purchases_new_customer(self, t: Any) -> FloatArray:
        """E[X(t)] = rβ/(α(s−1)) [1 − (β/(β+t))^(s−1)]  (Fader & Hardie 2005 note, eq. 17)."""
        horizon = _horizon(t)
        r, alpha, s, beta = self._params()
        growth = -expm1_over(s - 1.0, -np.log1p(np.atleast_1d(horizon) / beta))
        return np.asarray(r / alpha * beta * growth, dtype=np.float64)


def _objective(data: Data) -> ObjectiveFn:
    """Mean negative log-likelihood of the rows ``(x, t_x, T, weights)`` and its gradient in log-parameters."""
    x, t_x, age, w = data
    xf = x.astype(np.float64)
    total = float(w.sum())
    count_w = np.bincount(x, weights=w)
    x_max = int(x.max())
    # F(t) depends on (x, t) only: evaluate it once per distinct pair among (x, t_x) and (x, T).
    open_ = t_x < age  # rows with an integral I over a non-empty interval
    pair_x = np.concatenate([xf[open_], xf[open_]])
    pair_t = np.concatenate([t_x[open_], age[open_]])
    (ux, ut), _, pair_index = compress_with_index([pair_x, pair_t], np.ones(pair_x.size))
    n_open = int(open_.sum())
    ix_x, ix_t = pair_index[:n_open], pair_index[n_open:]
    w_open = w[open_]

    def neg_mean_ll(phi: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, s, beta = np.exp(phi)
        lr, ir = rising_tables(r, x_max)
        log_aT = np.log(alpha + age)
        log_bT = np.log(beta + age)
        log_p = -(r + x) * log_aT - s * log_bT
        d_p = np.stack([-log_aT, -(r + x) / (alpha + age), -log_bT, -s / (beta + age)], axis=1)
        lf, dlf = log_f(r, alpha, s, beta, ux, ut)
        lfx, lft = lf[ix_x], lf[ix_t]
        rho = np.minimum(np.exp(lft - lfx), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_si = np.log(s) + lfx + np.log1p(-rho)
            d_i = (dlf[ix_x] - rho[:, None] * dlf[ix_t]) / (1.0 - rho)[:, None]
        d_i[:, 2] += 1.0 / s
        lp_open = log_p[open_]
        top = np.maximum(lp_open, log_si)
        e_p = np.exp(lp_open - top)
        e_i = np.exp(log_si - top)
        omega = e_i / (e_p + e_i)  # share of the "dropped out in (t_x, T]" branch
        bracket = log_p.copy()
        bracket[open_] = top + np.log(e_p + e_i)
        ll = count_w @ lr + total * (r * np.log(alpha) + s * np.log(beta)) + w @ bracket
        grad = w @ d_p
        safe = omega > 0
        grad += (w_open[safe] * omega[safe]) @ (d_i[safe] - d_p[open_][safe])
        grad += np.array(
            [count_w @ ir + total * np.log(alpha), total * r / alpha, total * np.log(beta), total * s / beta]
        )
        return -float(ll) / total, -grad * np.exp(phi) / total

    return neg_mean_ll
