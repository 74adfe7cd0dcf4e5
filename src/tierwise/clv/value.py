"""Predictive customer lifetime value: a transaction model's expected purchases times a spend model's
expected value per purchase, discounted month by month.

CLV = Σ_{m=1..H} (R_m − C_m) / (1 + d)^m, the same form as the historical CLV of tierwise.classify.value, with

    R_m − C_m = (E[purchases in (0, m months]] − E[purchases in (0, m−1 months]]) × E[spend] × margin

where a month is 30.4375 days (365.25 / 12) and the models work in units of `time_unit_days` days. Month m's
value is discounted for m whole months (paid at the end of the month), as in lifetimes'
`customer_lifetime_value`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

DAYS_PER_MONTH = 365.25 / 12  # 30.4375


class TransactionModel(Protocol):
    """What CLV needs of BG/NBD or Pareto/NBD: expected purchases in the next t time units (called positionally,
    with one float t and float64 arrays)."""

    def expected_purchases(
        self, t: float, frequency: NDArray[np.float64], recency: NDArray[np.float64], T: NDArray[np.float64], /
    ) -> ArrayLike: ...


class SpendModel(Protocol):
    """What CLV needs of Gamma-Gamma: the expected value of a customer's future purchase."""

    def expected_spend(self, frequency: NDArray[np.float64], monetary_value: NDArray[np.float64], /) -> ArrayLike: ...


def customer_lifetime_value(
    transaction_model: TransactionModel,
    spend_model: SpendModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon_months: int = 12,
    discount_rate_monthly: float = 0.01,
    time_unit_days: float = 1.0,
    margin: float | ArrayLike = 1.0,
) -> NDArray[np.float64]:
    """Discounted expected margin of each customer over the next `horizon_months` months.

    frequency, recency, T and monetary_value are per customer, as `rfm_summary` gives them (in the time unit
    the models were fitted in: `time_unit_days` days). `margin` is the share of revenue kept, one number or
    one per customer. Returns one value per customer (float64).
    """
    if int(horizon_months) != horizon_months or horizon_months < 0:
        raise ValueError(f"horizon_months must be a whole number ≥ 0, got {horizon_months}")
    if not discount_rate_monthly > -1:
        raise ValueError(f"discount_rate_monthly must be greater than -1, got {discount_rate_monthly}")
    if not time_unit_days > 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")

    f, r, age, m = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (frequency, recency, T, monetary_value))
    )
    # Value of one future purchase, kept after costs: the same every month, so computed once.
    per_purchase = np.asarray(spend_model.expected_spend(f, m), dtype=np.float64) * np.asarray(margin, np.float64)

    months = range(1, int(horizon_months) + 1)
    horizons = [month * DAYS_PER_MONTH / time_unit_days for month in months]
    discounts = [1.0 / (1.0 + discount_rate_monthly) ** month for month in months]
    discounted = getattr(transaction_model, "discounted_purchases", None)
    if discounted is not None and f.ndim == 1:
        return np.asarray(discounted(horizons, discounts, f, r, age) * per_purchase, dtype=np.float64)
    clv = np.zeros(np.broadcast_shapes(f.shape, per_purchase.shape), dtype=np.float64)
    purchases_before = np.zeros_like(clv)  # E[purchases in (0, 0]] = 0: no need to ask the model
    for t, discount in zip(horizons, discounts, strict=True):
        # The models give cumulative expectations; the month's own purchases are the difference.
        purchases_by = np.asarray(transaction_model.expected_purchases(t, f, r, age), dtype=np.float64)
        clv += (purchases_by - purchases_before) * per_purchase * discount
        purchases_before = purchases_by
    return clv
