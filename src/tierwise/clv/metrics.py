"""How well predictions and rankings hold up on a holdout period: the numbers a backtest reports.

- Predicted vs actual repeat purchases, in total and per bucket of calibration frequency (0, 1, …, 7+), the
  table and chart of the BG/NBD paper (Fader, Hardie & Lee 2005, figure 4).
- Mean absolute error and Pearson correlation of predicted vs actual purchases per customer.
- For any ranking (predicted CLV, composite score, monetary alone, RFM score): the share of holdout revenue
  brought by the top 10% and 20% of customers by that ranking, and a Gini coefficient of the capture curve
  (0: no better than chance; the larger, the more the ranking puts tomorrow's revenue at the top). Customers
  a ranking cannot tell apart (equal scores) share their revenue evenly along the curve — the expected capture
  of a random order among them — so a constant ranking scores exactly 0, whatever the row order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Bucket:
    frequency: str  # "0", "1", …, "7+"
    customers: int
    predicted: float
    actual: float


@dataclass(frozen=True)
class Capture:
    ranking: str
    top10_share: float
    top20_share: float
    gini: float


def purchase_buckets(frequency: np.ndarray, predicted: np.ndarray, actual: np.ndarray, last: int = 7) -> list[Bucket]:
    """Mean predicted and actual holdout purchases per calibration frequency; `last` collects `last`+."""
    frequency = np.asarray(frequency, dtype=np.int64)
    buckets = np.minimum(frequency, last)
    out = []
    for k in range(last + 1):
        mask = buckets == k
        n = int(mask.sum())
        out.append(
            Bucket(
                frequency=f"{k}+" if k == last else str(k),
                customers=n,
                predicted=float(np.mean(predicted[mask])) if n else 0.0,
                actual=float(np.mean(actual[mask])) if n else 0.0,
            )
        )
    return out


def accuracy(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    predicted, actual = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    corr = float(np.corrcoef(predicted, actual)[0, 1]) if predicted.std() > 0 and actual.std() > 0 else float("nan")
    return {
        "predicted_total": float(predicted.sum()),
        "actual_total": float(actual.sum()),
        "mean_absolute_error": float(np.mean(np.abs(predicted - actual))),
        "correlation": corr,
    }


def capture(ranking_name: str, score: np.ndarray, revenue: np.ndarray) -> Capture:
    """Share of holdout revenue in the top 10% / 20% of customers by `score`, and the capture curve's Gini."""
    score = np.nan_to_num(np.asarray(score, dtype=float), nan=-np.inf)
    revenue = np.clip(np.asarray(revenue, dtype=float), 0, None)
    n, total = score.size, revenue.sum()
    if n == 0 or total <= 0:
        return Capture(ranking_name, 0.0, 0.0, 0.0)
    order = np.argsort(-score, kind="stable")
    ranked_score, ranked = score[order], revenue[order]
    # Equal scores: each member gets the group's mean revenue (the expectation over orders within the group).
    starts = np.flatnonzero(np.r_[True, ranked_score[1:] != ranked_score[:-1]])
    sizes = np.diff(np.r_[starts, n])
    means = np.add.reduceat(ranked, starts) / sizes
    cumulative = np.cumsum(np.repeat(means, sizes)) / total

    def top(share: float) -> float:
        k = int(np.ceil(share * n))
        return float(cumulative[k - 1]) if k else 0.0

    # Area under the capture curve by the trapezoid rule over customers; chance gives 1/2.
    area = (np.sum(cumulative) - cumulative[-1] / 2) / n
    return Capture(ranking_name, top(0.10), top(0.20), float(2 * area - 1))


def as_dicts(items: list[Bucket] | list[Capture]) -> list[dict[str, object]]:
    return [asdict(i) for i in items]
