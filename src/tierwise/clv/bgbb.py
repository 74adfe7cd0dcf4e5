"""BG/BB model (Fader, Hardie & Shang 2010, "Customer-Base Analysis in a Discrete-Time Noncontractual Setting",
Marketing Science 29(6)) for discrete transaction opportunities: yearly events, donation drives, renewal cycles.

After the first transaction (period 0) a customer has opportunities 1, 2, …, n. While alive they transact at each
opportunity with probability p ~ Beta(α, β); at the start of each opportunity an alive customer dies with
probability θ ~ Beta(γ, δ). A customer with x transactions, the last at opportunity t_x, out of n (paper eq. 5):

    L = B(α+x, β+n−x)/B(α,β) · B(γ, δ+n)/B(γ,δ)
        + Σ_{i=0}^{n−t_x−1} B(α+x, β+t_x−x+i)/B(α,β) · B(γ+1, δ+t_x+i)/B(γ,δ)

The first term is "alive through n", the others "died at the start of opportunity t_x+i+1". Every beta-function
ratio is a ratio of rising factorials at whole-number offsets, e.g. B(α+x, β+k−x)/B(α,β) = (α)_x (β)_{k−x} /
(α+β)_k, so a likelihood evaluation is table look-ups (_fit.rising_tables: exact for parameters up to the 1e8
bound, where differences of log-gamma lose digits) and a log-sum-exp over the terms, vectorised over the distinct
(x, t_x, n) rows with the terms of the sum side by side in a padded matrix.

Predictions use the posterior given "alive at n": p ~ Beta(α+x, β+n−x) and θ ~ Beta(γ, δ+n), independent. So the
expected transactions in the next N opportunities (paper eq. 13) are P(alive at n) · (α+x)/(α+β+n) · S, with
S = Σ_{t=1}^{N} E[(1−θ)^t] = Σ_t Π_{j<t} (δ+n+j)/(γ+δ+n+j), and DERT (eq. 14) is the same with each term
discounted by (1+d)^-t and N = ∞. The sums are formed from their positive terms in log space (the closed forms
divide by γ−1 and cancel near γ = 1); they depend on n only, so they are computed once per distinct n.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln, logsumexp

from tierwise.clv._fit import (
    Data,
    FloatArray,
    Model,
    ObjectiveFn,
    as_float_array,
    check_finite,
    check_weights,
    compress,
    compress_with_index,
    not_fitted,
    rising_tables,
)
from tierwise.errors import UserError

_NAMES = ("alpha", "beta", "gamma", "delta")
IntArray = NDArray[np.int64]

# A padded sum matrix (rows × longest sum) is split into blocks of about this many cells. The fit sorts the rows
# by the length of their sum and takes smaller blocks (less padding; on 5,217 monthly patterns 1.1 ms per
# evaluation against 5.5 ms in one block), keeping their cell indices between evaluations up to _CACHE_CELLS
# cells (8 bytes each).
_BLOCK_CELLS = 1 << 21
_FIT_BLOCK_CELLS = 1 << 13
_CACHE_CELLS = 1 << 23
# The DERT series stops when its remaining tail is below this share of the sum; its terms shrink at least as
# 1/(1+d), so the smallest discount rate accepted keeps the series below a few million terms per distinct n.
_TAIL = 1e-16
_MIN_DISCOUNT = 1e-5


def _whole(arr: FloatArray, name: str) -> IntArray:
    check_finite(arr, name)
    bad = (arr < 0) | (arr != np.round(arr))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"{name} must be whole numbers ≥ 0 ({int(bad.sum())} row(s), first at position {first}, value "
            f"{arr[first]:g})"
        )
    return arr.astype(np.int64)


def _counts(values: Any, name: str) -> IntArray:
    """Whole numbers ≥ 0 as int64; integer numpy input is taken as it is (no float round trip)."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        ints = values.astype(np.int64, copy=False)
        if ints.size and int(ints.min()) < 0:
            return _whole(ints.astype(np.float64), name)  # raises, naming the first negative row
        return ints
    return _whole(as_float_array(values, name), name)


def check_discrete(frequency: Any, recency: Any, n_periods: Any) -> tuple[IntArray, IntArray, IntArray]:
    """Validate the discrete summary: whole numbers with 0 ≤ frequency ≤ recency ≤ n_periods, recency 0 when
    frequency is 0 (transactions fall in distinct opportunities, the last of them at recency)."""
    xi, ti, ni = _counts(frequency, "frequency"), _counts(recency, "recency"), _counts(n_periods, "n_periods")
    if not (xi.size == ti.size == ni.size):
        raise UserError(
            f"frequency, recency and n_periods must have the same length (got {xi.size}, {ti.size}, {ni.size})"
        )
    if xi.size == 0:
        raise UserError("no customers: frequency, recency and n_periods are empty")
    for bad, text in (
        (ti > ni, "recency must not exceed n_periods (the opportunities observed after the first transaction)"),
        (
            xi > ti,
            "frequency must not exceed recency: x repeat transactions take x distinct opportunities, the last of "
            "them at opportunity recency",
        ),
        ((xi == 0) & (ti > 0), "recency must be 0 when frequency is 0"),
    ):
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{text} ({int(bad.sum())} row(s), first at position {first}: frequency {xi[first]}, recency "
                f"{ti[first]}, n_periods {ni[first]})"
            )
    return xi, ti, ni


def _whole_horizon(value: Any, name: str) -> IntArray:
    arr = as_float_array(value, name) if np.ndim(value) else np.asarray([float(value)])
    return _whole(arr, name)


class _Tables:
    """log (c)_k and d/dc log (c)_k for k = 0..k_max, for the six bases the likelihood needs."""

    def __init__(self, theta: FloatArray, k_max: int) -> None:
        alpha, beta, gamma, delta = (float(v) for v in theta)
        self.log_gamma = np.log(gamma)
        self.a, self.ia = rising_tables(alpha, k_max)
        self.b, self.ib = rising_tables(beta, k_max)
        self.ab, self.iab = rising_tables(alpha + beta, k_max)
        self.d, self.id = rising_tables(delta, k_max)
        self.gd, self.igd = rising_tables(gamma + delta, k_max)
        self.inv_gamma = 1.0 / gamma


def _alive_term(tab: _Tables, x: IntArray, n: IntArray, m: IntArray | None = None) -> FloatArray:
    """log of B(α+x, β+n−x)/B(α,β) · B(γ, δ+n+m)/B(γ,δ): transactions as observed, alive through n+m."""
    k = n if m is None else n + m
    return np.asarray(tab.a[x] + tab.b[n - x] - tab.ab[n] + tab.d[k] - tab.gd[k], dtype=np.float64)


def _dropout_cells(x: IntArray, t_x: IntArray, n: IntArray) -> tuple[IntArray, NDArray[np.bool_]]:
    """Opportunity m = t_x + i of each "died at the start of m+1" term (rows × longest sum) and which are real."""
    width = int((n - t_x).max()) if n.size else 0
    m = t_x[:, None] + np.arange(max(width, 0), dtype=np.int64)[None, :]
    valid = m < n[:, None]
    return np.where(valid, m, 0), valid


def _dropout_term(tab: _Tables, x: IntArray, m: IntArray) -> FloatArray:
    """log B(α+x, β+m−x)/B(α,β) · B(γ+1, δ+m)/B(γ,δ) on the matrix m (x broadcast along rows)."""
    xs = x[:, None]
    mx = np.maximum(m - xs, 0)  # padded cells have m = 0; their value is masked out
    return np.asarray(tab.a[xs] + tab.b[mx] - tab.ab[m] + tab.log_gamma + tab.d[m] - tab.gd[m + 1], dtype=np.float64)


def _log_likelihood(theta: FloatArray, x: IntArray, t_x: IntArray, n: IntArray) -> FloatArray:
    """Each row's log-likelihood (eq. 5), rows in blocks so that the padded sum matrix stays small."""
    tab = _Tables(theta, int(n.max()) + 1)
    out = np.empty(x.size)
    width = max(int((n - t_x).max()), 1)
    step = max(_BLOCK_CELLS // width, 1)
    with np.errstate(under="ignore"):  # terms far below a row's largest are negligible: 0 is right for them
        for lo in range(0, x.size, step):
            sl = slice(lo, lo + step)
            m, valid = _dropout_cells(x[sl], t_x[sl], n[sl])
            terms = np.where(valid, _dropout_term(tab, x[sl], m), -np.inf)
            both = np.concatenate([_alive_term(tab, x[sl], n[sl])[:, None], terms], axis=1)
            out[sl] = logsumexp(both, axis=1)
    return out


def _row_blocks(width: IntArray, cells: int) -> list[slice]:
    """Consecutive row ranges of rows sorted by width whose padded matrices have at most ``cells`` cells (at
    least one row each)."""
    blocks = []
    start = 0
    while start < width.size:
        # the widest row of a block is its last; (end − start) · width[end − 1] grows with end: bisect for the
        # longest block that fits
        lo, hi = start + 1, width.size
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (mid - start) * max(int(width[mid - 1]), 1) <= cells:
                lo = mid
            else:
                hi = mid - 1
        blocks.append(slice(start, lo))
        start = lo
    return blocks


def _objective(data: Data) -> ObjectiveFn:
    """Mean negative log-likelihood of the rows ``(x, t_x, n, weights)`` and its gradient in log-parameters.

    A "died at the start of m+1" term depends on (x, m) only, and real summaries repeat those pairs across many
    rows (different t_x and n): each evaluation computes the terms once per pair in a small (x, m) table, gathers
    them into the rows' padded sums, and adds the rows' posterior shares of each term back per pair (bincount),
    where the gradient is formed from the table derivatives Σ_{j<k} 1/(c+j). On 5,000 monthly patterns this is
    4× faster than evaluating every cell. Rows are sorted by the length of their sum and taken in blocks of at
    most _FIT_BLOCK_CELLS cells, so that short sums are not padded to the longest and memory stays bounded; the
    blocks' cell indices are kept between evaluations up to _CACHE_CELLS cells in all.
    """
    order = np.argsort(data[2] - data[1], kind="stable")
    x, t_x, n, w = (np.asarray(a)[order] for a in data)
    total = float(w.sum())
    k_max = int(n.max()) + 1
    x_max = int(x.max())
    # (x, m) pairs numbered x·k_max + m; padded cells point to one extra slot whose log term is −inf
    pad = (x_max + 1) * k_max
    pair_x, pair_m = np.divmod(np.arange(pad), k_max)
    real = pair_m >= pair_x  # m ≥ x: x transactions fit in m opportunities
    pair_mx = np.where(real, pair_m - pair_x, 0)
    pair_m1 = np.minimum(pair_m + 1, k_max)
    nx = n - x

    def cells(sl: slice) -> NDArray[np.intp]:
        m, valid = _dropout_cells(x[sl], t_x[sl], n[sl])
        return np.where(valid, x[sl, None] * k_max + m, pad).astype(np.intp)

    blocks: list[tuple[slice, NDArray[np.intp] | None]] = []
    kept = 0
    for sl in _row_blocks(n - t_x, _FIT_BLOCK_CELLS):
        size = (sl.stop - sl.start) * max(int(n[sl.stop - 1] - t_x[sl.stop - 1]), 1)
        keep = kept + size <= _CACHE_CELLS
        kept += size if keep else 0
        blocks.append((sl, cells(sl) if keep else None))

    def neg_mean_ll(phi: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(under="ignore"):  # negligible terms may underflow to 0, also under np.seterr(all="raise")
            return _evaluate(phi)

    def _evaluate(phi: FloatArray) -> tuple[float, FloatArray]:
        theta = np.exp(phi)
        tab = _Tables(theta, k_max)
        alive = tab.b[nx] - tab.ab[n] + tab.d[n] - tab.gd[n]
        pair_log = np.full(pad + 1, -np.inf)
        pair_log[:pad] = np.where(
            real, tab.b[pair_mx] - tab.ab[pair_m] + tab.log_gamma + tab.d[pair_m] - tab.gd[pair_m1], -np.inf
        )
        ll = np.empty(x.size)
        w_alive = np.empty(x.size)
        share = np.zeros(pad + 1)
        for sl, cached in blocks:
            cell = cells(sl) if cached is None else cached
            died = pair_log[cell]
            top = np.maximum(alive[sl], died.max(axis=1, initial=-np.inf))
            e_alive = np.exp(alive[sl] - top)
            e_died = np.exp(died - top[:, None])
            s = e_alive + e_died.sum(axis=1)
            ll[sl] = top + np.log(s)
            # posterior shares of the terms, weighted by the rows' weights, summed per (x, m) pair
            w_alive[sl] = w[sl] * e_alive / s
            share += np.bincount(cell.ravel(), weights=(e_died * (w[sl] / s)[:, None]).ravel(), minlength=pad + 1)
        share = np.where(real, share[:pad], 0.0)
        ll += tab.a[x]
        d_alpha = float(w @ tab.ia[x]) - float(w_alive @ tab.iab[n]) - float(share @ tab.iab[pair_m])
        d_beta = float(w_alive @ (tab.ib[nx] - tab.iab[n])) + float(share @ (tab.ib[pair_mx] - tab.iab[pair_m]))
        d_gamma = -float(w_alive @ tab.igd[n]) + float(share @ (tab.inv_gamma - tab.igd[pair_m1]))
        d_delta = float(w_alive @ (tab.id[n] - tab.igd[n])) + float(share @ (tab.id[pair_m] - tab.igd[pair_m1]))
        grad = np.array([d_alpha, d_beta, d_gamma, d_delta]) * theta
        return -float(w @ ll) / total, -grad / total

    return neg_mean_ll


def _survival_sums(c: FloatArray, gamma: float, horizon: int) -> FloatArray:
    """S[:, N] = Σ_{t=1}^{N} E[(1−θ)^t], θ ~ Beta(γ, c), for N = 0..horizon: the expected opportunities alive
    among the next N of a customer alive now. Term t is Π_{j<t} (c+j)/(γ+c+j), summed in log space."""
    j = np.arange(horizon, dtype=np.float64)[None, :]
    steps = np.log1p(-gamma / (gamma + c[:, None] + j))  # log((c+j)/(γ+c+j)), exact when c ≫ γ
    out = np.zeros((c.size, horizon + 1))
    with np.errstate(under="ignore"):
        np.cumsum(np.exp(np.cumsum(steps, axis=1)), axis=1, out=out[:, 1:])
    return out


def _discounted_survival(c: FloatArray, gamma: float, discount: float) -> FloatArray:
    """Σ_{t≥1} (1+d)^-t E[(1−θ)^t], θ ~ Beta(γ, c) (paper eq. 14's ₂F₁(1, c+1; γ+c+1; 1/(1+d)) part), from its
    positive terms in blocks. Each term is at most 1/(1+d) times the one before, so the tail after a term is
    at most term/d: the sum stops when that is below _TAIL of the total."""
    log_z = -np.log1p(discount)
    total = np.zeros(c.size)
    last = np.zeros(c.size)  # log of the latest term
    start = 0
    block = int(min(max(4.0 / discount, 64.0), 65536.0))
    with np.errstate(under="ignore"):
        while True:
            j = start + np.arange(block, dtype=np.float64)[None, :]
            steps = np.log1p(-gamma / (gamma + c[:, None] + j)) + log_z
            logs = last[:, None] + np.cumsum(steps, axis=1)
            total += np.exp(logs).sum(axis=1)
            last = logs[:, -1]
            start += block
            if np.all(np.exp(last) / discount <= _TAIL * total):
                return total


def _compress_counts(
    x: IntArray, t_x: IntArray, n: IntArray, w: FloatArray
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Identical (x, t_x, n) rows merged. The counts are small whole numbers, so while x + (n_max+1)·(t_x +
    (n_max+1)·n) stays within a few entries per row it is a direct index for bincount (900,000 customers: 5 ms,
    against 55 ms hashing the columns as _fit.compress does); otherwise _fit.compress."""
    size = int(n.max()) + 1
    if size**3 <= max(4 * x.size, 1 << 16):
        key = x + size * (t_x + size * n)
        summed = np.bincount(key, weights=w, minlength=size**3)
        present = np.flatnonzero(np.bincount(key, minlength=size**3)).astype(np.int64)
        rest, xs = np.divmod(present, size)
        ns, ts = np.divmod(rest, size)
        return xs, ts, ns, np.asarray(summed[present], dtype=np.float64)
    cols, merged = compress([x.astype(np.float64), t_x.astype(np.float64), n.astype(np.float64)], w)
    return cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(np.int64), merged


class BetaGeoBetaBinomModel(Model):
    """BG/BB model for discrete transaction opportunities; lifetimes' ``BetaGeoBetaBinomFitter`` parameter
    names (alpha, beta, gamma, delta).

    >>> model = BetaGeoBetaBinomModel().fit(frequency, recency, n_periods, weights)  # doctest: +SKIP
    >>> model.probability_alive(frequency, recency, n_periods, future=1)  # doctest: +SKIP
    """

    label = "BG/BB"
    names = _NAMES

    # -- fitting --------------------------------------------------------------------------------------------------

    def fit(self, frequency: Any, recency: Any, n_periods: Any, weights: Any = None) -> BetaGeoBetaBinomModel:
        """Fit on one row per customer, or per pattern with ``weights`` = customers with that pattern."""
        self._check_options()
        x, t_x, n = check_discrete(frequency, recency, n_periods)
        w = check_weights(weights, x.size)
        keep = w > 0
        if not (n[keep] > 0).any():
            raise UserError(
                "every customer has n_periods = 0 (no opportunity observed after the first transaction): "
                "the data say nothing about the parameters; use a longer observation period"
            )
        xi, ti, ni, w = _compress_counts(x, t_x, n, w)
        self._maximize(_objective, (xi, ti, ni, w), [1.0, 1.0, 1.0, 1.0])
        self.n_unique_rows_ = int(xi.size)
        return self

    # -- predictions ----------------------------------------------------------------------------------------------

    def _theta(self) -> FloatArray:
        if not hasattr(self, "params_"):
            raise not_fitted("BetaGeoBetaBinomModel")
        return np.array([self.params_[k] for k in _NAMES], dtype=np.float64)

    @staticmethod
    def _distinct(frequency: Any, recency: Any, n_periods: Any, *extra: IntArray) -> tuple[list[IntArray], IntArray]:
        """Checked inputs reduced to their distinct rows (with ``extra`` per-customer columns), and the row of
        every customer."""
        x, t_x, n = check_discrete(frequency, recency, n_periods)
        if any(e.size not in (1, x.size) for e in extra):
            raise UserError(f"the horizon must be one whole number or one per customer ({x.size})")
        cols = [x, t_x, n, *(np.broadcast_to(e, x.shape) for e in extra)]
        uniq, _, index = compress_with_index([c.astype(np.float64) for c in cols], np.ones(x.size))
        return [u.astype(np.int64) for u in uniq], index

    def log_likelihood(self, frequency: Any, recency: Any, n_periods: Any) -> FloatArray:
        """Each customer's log-likelihood (FHS 2010, eq. 5) at the fitted parameters."""
        theta = self._theta()
        (x, t_x, n), index = self._distinct(frequency, recency, n_periods)
        return _log_likelihood(theta, x, t_x, n)[index]

    def probability_alive(self, frequency: Any, recency: Any, n_periods: Any, future: Any = 0) -> FloatArray:
        """P(alive at opportunity n + future | x, t_x, n) (FHS 2010, eq. 11 for future = 1; lifetimes'
        ``conditional_probability_alive(future, ...)``). future = 0: alive after the last observed opportunity;
        the paper's "P(alive in 2002)" for the donors observed to 2001 is future = 1."""
        theta = self._theta()
        ahead = _whole_horizon(future, "future")
        (x, t_x, n, m), index = self._distinct(frequency, recency, n_periods, ahead)
        tab = _Tables(theta, int((n + m).max()) + 1)
        with np.errstate(under="ignore"):
            out = np.exp(_alive_term(tab, x, n, m) - _log_likelihood(theta, x, t_x, n))
        return np.asarray(np.minimum(out, 1.0)[index], dtype=np.float64)

    def _alive_and_rate(self, x: IntArray, t_x: IntArray, n: IntArray) -> FloatArray:
        """P(alive at n | data) · E[p | alive at n, data] = P(alive) · (α+x)/(α+β+n) per distinct row."""
        theta = self._theta()
        alpha, beta = theta[0], theta[1]
        tab = _Tables(theta, int(n.max()) + 1)
        with np.errstate(under="ignore"):
            alive = np.minimum(np.exp(_alive_term(tab, x, n) - _log_likelihood(theta, x, t_x, n)), 1.0)
        return np.asarray(alive * (alpha + x) / (alpha + beta + n), dtype=np.float64)

    def expected_purchases(self, m_periods: Any, frequency: Any, recency: Any, n_periods: Any) -> FloatArray:
        """E[transactions in opportunities n+1 … n+m_periods | x, t_x, n] (FHS 2010, eq. 13; lifetimes'
        ``conditional_expected_number_of_purchases_up_to_time``). ``m_periods``: one whole number, or one per
        customer."""
        theta = self._theta()
        ahead = _whole_horizon(m_periods, "m_periods")
        (x, t_x, n, m), index = self._distinct(frequency, recency, n_periods, ahead)
        ns, n_index = np.unique(n, return_inverse=True)
        sums = _survival_sums(theta[3] + ns.astype(np.float64), float(theta[2]), int(m.max()))
        return np.asarray((self._alive_and_rate(x, t_x, n) * sums[n_index, m])[index], dtype=np.float64)

    def expected_purchases_new_customer(self, n_periods: Any) -> FloatArray:
        """E[X(n)]: expected transactions of a new customer in their first n opportunities (FHS 2010, eq. 9:
        α/(α+β) · Σ_{t=1}^{n} E[(1−θ)^t])."""
        theta = self._theta()
        n = _whole_horizon(n_periods, "n_periods")
        sums = _survival_sums(np.array([theta[3]]), float(theta[2]), int(n.max()))[0]
        out = theta[0] / (theta[0] + theta[1]) * sums[n]
        return np.asarray(out if np.ndim(n_periods) else out[0], dtype=np.float64)

    def probability_of_n_purchases(self, purchases: Any, n_periods: Any) -> FloatArray:
        """P(X(n) = x): probability that a new customer makes ``purchases`` transactions in their first
        ``n_periods`` opportunities (FHS 2010, eq. 7), broadcast over both. n_customers_ times this over
        x = 0..n is the calibration histogram the paper compares with the data."""
        theta = self._theta()
        xs = _whole_horizon(purchases, "purchases")
        ns = _whole_horizon(n_periods, "n_periods")
        xs, ns = np.broadcast_arrays(xs, ns)
        shape = xs.shape
        (x, n), _, index = compress_with_index([xs.astype(np.float64), ns.astype(np.float64)], np.ones(xs.size))
        x, n = x.astype(np.int64), n.astype(np.int64)
        possible = x <= n
        xv, nv = np.where(possible, x, 0), np.where(possible, n, 0)
        tab = _Tables(theta, int(nv.max()) + 1)
        log_choose = gammaln(nv + 1.0) - gammaln(xv + 1.0) - gammaln(nv - xv + 1.0)
        alive = log_choose + _alive_term(tab, xv, nv)
        # died at the start of opportunity i+1 after x transactions in the first i: i = x … n−1
        width = max(int((nv - xv).max()), 1)
        i = xv[:, None] + np.arange(width, dtype=np.int64)[None, :]
        valid = i < nv[:, None]
        i = np.where(valid, i, xv[:, None])
        choose_i = gammaln(i + 1.0) - gammaln(xv[:, None] + 1.0) - gammaln(i - xv[:, None] + 1.0)
        died = np.where(valid, choose_i + _dropout_term(tab, xv, i), -np.inf)
        with np.errstate(under="ignore"):
            p = np.exp(logsumexp(np.concatenate([alive[:, None], died], axis=1), axis=1))
        p = np.where(possible, p, 0.0)
        out = p[index].reshape(shape)
        return np.asarray(out if shape else float(out), dtype=np.float64)

    def discounted_residual_purchases(
        self, discount_rate: float, frequency: Any, recency: Any, n_periods: Any
    ) -> FloatArray:
        """DERT: Σ_{t≥1} E[transactions at opportunity n+t | x, t_x, n] / (1+d)^t, the present value of all
        future transactions counted in transactions (FHS 2010, eq. 14). ``discount_rate`` is per opportunity
        (10% a year for yearly opportunities: 0.1). Times the margin per transaction it is the residual
        lifetime value. d = 0 gives the undiscounted expected residual transactions, infinite when γ ≤ 1 (the
        mean lifetime does not exist)."""
        theta = self._theta()
        d = float(discount_rate)
        if not (np.isfinite(d) and (d == 0 or d >= _MIN_DISCOUNT)):
            raise UserError(
                f"discount_rate must be 0 or at least {_MIN_DISCOUNT:g} per opportunity (got {discount_rate}); it "
                "is the rate per period, e.g. 0.1 for 10% a year with yearly opportunities"
            )
        (x, t_x, n), index = self._distinct(frequency, recency, n_periods)
        ns, n_index = np.unique(n, return_inverse=True)
        gamma, c = float(theta[2]), theta[3] + ns.astype(np.float64)
        if d == 0:
            # Σ_{t≥1} E[(1−θ)^t] = c/(γ−1) for θ ~ Beta(γ, c): the expected remaining lifetime
            per_n = c / (gamma - 1.0) if gamma > 1 else np.full(c.size, np.inf)
        else:
            per_n = _discounted_survival(c, gamma, d)
        return np.asarray((self._alive_and_rate(x, t_x, n) * per_n[n_index])[index], dtype=np.float64)
