"""Natural clusters of customers (聚类): k-means on snapshot features, k chosen by silhouette, then profiled.

Numeric features are imputed (median), log-transformed where skewed, standardised; categorical ones are
one-hot encoded with a weight. The model is fitted on a random sample when the base is large and every
customer is then assigned to the nearest centre. Clusters are numbered by descending revenue share, so
cluster 1 is the one that brings the most revenue and numbers do not shuffle between runs on similar data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, pairwise_distances, silhouette_score
from threadpoolctl import threadpool_limits

from tierwise.cancel import checkpoint
from tierwise.mining.profiles import ClusterProfile, profile_clusters
from tierwise.mining.settings import ClusterSettings

MIN_CUSTOMERS = 10
MAX_LEVELS = 20  # one-hot columns per categorical feature; rarer values share the all-zero code
SILHOUETTE_SAMPLE = 4000  # customers the silhouette is computed on (a 4,000² distance matrix: 128 MB)
PROJECTION_POINTS = 2000
PREDICT_ROWS = 250_000  # customers assigned at a time


@dataclass
class Transform:
    """How a snapshot row becomes a point: the parameters fitted on the clustered base."""

    features: list[str]
    medians: dict[str, float]
    logged: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    categorical: dict[str, list[str]] = field(default_factory=dict)
    categorical_weight: float = 0.5

    def numeric(self, df: pd.DataFrame) -> np.ndarray:
        """Imputed and log-transformed numeric features, before standardising."""
        cols = []
        for f in self.features:
            x = pd.to_numeric(df[f], errors="coerce").astype("float64").to_numpy(na_value=np.nan)
            x = np.where(np.isnan(x), self.medians[f], x)
            cols.append(np.log1p(np.maximum(x, 0.0)) if f in self.logged else x)
        return np.column_stack(cols) if cols else np.empty((len(df), 0))

    def apply(self, df: pd.DataFrame) -> np.ndarray:
        x = self.numeric(df)
        mean = np.array([self.means[f] for f in self.features])
        std = np.array([self.stds[f] for f in self.features])
        parts = [(x - mean) / std]
        for column, levels in self.categorical.items():
            values = df[column].astype("object").to_numpy()
            parts.append(np.column_stack([values == v for v in levels]).astype("float64") * self.categorical_weight)
        return np.hstack(parts)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Numeric features of points in their own units (centres of clusters)."""
        mean = np.array([self.means[f] for f in self.features])
        std = np.array([self.stds[f] for f in self.features])
        x = points[:, : len(self.features)] * std + mean
        for i, f in enumerate(self.features):
            if f in self.logged:
                x[:, i] = np.expm1(x[:, i])
        return x


@dataclass
class ClusterResult:
    labels: pd.Series  # Int64 aligned to the input rows; <NA> = not clustered (prospects, or skipped)
    k: int | None
    k_fixed: bool
    silhouette: dict[int, float]  # candidate k → silhouette on a sample
    inertia: dict[int, float]  # candidate k → within-cluster sum of squares on the fit sample (elbow curve)
    stability: float | None  # mean adjusted Rand index of bootstrap refits against the model
    stability_runs: list[float]
    warning: str | None
    transform: Transform | None
    centers: pd.DataFrame  # cluster → numeric features in their own units
    projection: pd.DataFrame  # x, y (first two principal components), cluster, customer_id of a sample
    profiles: list[ClusterProfile]
    features: list[str]
    skipped: list[str]
    notes: list[str]
    clustered: int
    excluded: int
    fit_rows: int
    algorithm: str
    model: Any = None
    numbering: list[int] = field(default_factory=list)  # the model's cluster index → cluster number
    include_prospects: bool = False

    def names(self, language: str = "zh") -> dict[int, str]:
        return {p.cluster: p.name(language) for p in self.profiles}

    def name_column(self, language: str = "zh") -> pd.Series:
        """`cluster_name` for the snapshot, aligned to `labels`."""
        # A lookup of the whole column (a function called per customer took 18 s for 10 million); missing: NaN.
        return self.labels.map(self.names(language)).astype("object")


def fit_clusters(df: pd.DataFrame, settings: ClusterSettings | None = None) -> ClusterResult:
    """Cluster the customers of a snapshot (pandas) and profile the clusters; deterministic for a seed."""
    # k-means' OpenMP threads spin-wait for each other: on two cores shared with anything else, fitting a
    # 20,000-row sample took 3.6 s with two threads and 0.16 s with one (measured here).
    with threadpool_limits(limits=1, user_api="openmp"):
        return _fit(df, settings or ClusterSettings())


def _fit(df: pd.DataFrame, s: ClusterSettings) -> ClusterResult:
    features = [f for f in s.features if f in df.columns]
    skipped = [f for f in s.features if f not in df.columns] + [c for c in s.categorical if c not in df.columns]
    notes = [f"features not in the snapshot, skipped: {', '.join(skipped)}"] if skipped else []
    member = _members(df, s.include_prospects)
    excluded = int((~member).sum())
    if excluded:
        notes.append(f"{excluded} customers without purchases are not clustered (cluster is empty for them)")
    categorical = [c for c in s.categorical if c in df.columns]
    # Only the columns the fit reads: a copy of every column (ids included) of ten million customers is large.
    base = df.loc[member, list(dict.fromkeys([*features, *categorical, *(["monetary"] if "monetary" in df else [])]))]
    if not (features or categorical) or len(base) < MIN_CUSTOMERS:
        why = "no feature to cluster on" if not (features or categorical) else f"{len(base)} customers"
        notes.append(f"clustering skipped: {why} (needs at least {MIN_CUSTOMERS} customers and one feature)")
        return _empty(df, features, skipped, notes, excluded)

    transform = _fit_transform(base, features, categorical, s, notes)
    rng = np.random.default_rng(s.seed)
    fit_idx = np.sort(rng.choice(len(base), s.sample_size, replace=False)) if len(base) > s.sample_size else None
    fit_rows = base.iloc[fit_idx] if fit_idx is not None else base
    points = transform.apply(fit_rows)
    algorithm = "minibatch" if len(points) > s.minibatch_above else "kmeans"
    if fit_idx is not None:
        notes.append(f"fitted on a random sample of {len(points):,} of {len(base):,} customers, then all assigned")

    candidates = [s.k] if s.k is not None else list(range(s.k_min, s.k_max + 1))
    candidates = [k for k in candidates if k < len(points)]
    models = {}
    for k in candidates:
        checkpoint()  # a dashboard job's cancel button reaches here between two fits (tierwise.cancel)
        models[k] = _model(k, s.seed, algorithm).fit(points)
    inertia = {k: float(m.inertia_) for k, m in models.items()}
    silhouette = _silhouettes(points, models, s.seed)
    k = s.k if s.k is not None else max(candidates, key=lambda c: (np.nan_to_num(silhouette[c], nan=-2.0), -c))
    model = models[k]

    stability, runs = _stability(points, model, k, s, algorithm)
    warning = None
    if stability is not None and stability < s.unstable_ari:
        warning = (
            f"clusters are unstable: bootstrap refits agree with the model at adjusted Rand index {stability:.2f} "
            f"(below {s.unstable_ari}); try a smaller k, other features or more customers"
        )
    raw = _predict(model, transform, base)
    order = _order_by_revenue(base, raw, k)
    labels = pd.Series(pd.NA, index=df.index, dtype="Int64")
    labels[member] = order[raw]
    centers = pd.DataFrame(transform.inverse(model.cluster_centers_), columns=features)
    centers.index = pd.Index(order[np.arange(k)], name="cluster")
    return ClusterResult(
        labels=labels,
        k=k,
        k_fixed=s.k is not None,
        silhouette=silhouette,
        inertia=inertia,
        stability=stability,
        stability_runs=runs,
        warning=warning,
        transform=transform,
        centers=centers.sort_index(),
        projection=_projection(df.loc[fit_rows.index], points, order[np.asarray(model.labels_)], s.seed),
        profiles=profile_clusters(df, labels, features),
        features=features + categorical,
        skipped=skipped,
        notes=notes,
        clustered=len(base),
        excluded=excluded,
        fit_rows=len(points),
        algorithm=algorithm,
        model=model,
        numbering=[int(n) for n in order],
        include_prospects=s.include_prospects,
    )


def assign_clusters(df: pd.DataFrame, result: ClusterResult) -> pd.Series:
    """Cluster numbers of other rows (e.g. a later snapshot) under a fitted result; <NA> where none was fitted."""
    labels = pd.Series(pd.NA, index=df.index, dtype="Int64")
    if result.transform is None or result.model is None or not len(df):
        return labels
    member = _members(df, result.include_prospects)
    if member.any():
        raw = _predict(result.model, result.transform, df.loc[member])
        labels[member] = np.asarray(result.numbering)[raw]
    return labels


def _predict(model: KMeans | MiniBatchKMeans, transform: Transform, rows: pd.DataFrame) -> np.ndarray:
    """The nearest centre of every row, a slice at a time: the points of ten million customers at once took
    gigabytes (each transformation step a full copy)."""
    parts = [
        np.asarray(model.predict(transform.apply(rows.iloc[i : i + PREDICT_ROWS])))
        for i in range(0, len(rows), PREDICT_ROWS)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype="int64")


def _members(df: pd.DataFrame, include_prospects: bool) -> pd.Series:
    if include_prospects:
        return pd.Series(True, index=df.index)
    if "purchases" in df.columns:
        return pd.to_numeric(df["purchases"], errors="coerce").fillna(0).gt(0)
    if "recency_days" in df.columns:
        return df["recency_days"].notna()
    return pd.Series(True, index=df.index)


def _fit_transform(
    base: pd.DataFrame, features: list[str], categorical: list[str], s: ClusterSettings, notes: list[str]
) -> Transform:
    values = base[features].apply(pd.to_numeric, errors="coerce").astype("float64")
    medians = values.median().fillna(0.0)
    missing = values.isna().sum()
    if missing.any():
        listed = ", ".join(f"{f} ({int(n)})" for f, n in missing.items() if n)
        notes.append(f"missing values replaced by the median: {listed}")
    filled = values.fillna(medians)
    logged = [f for f in features if _log(filled[f], s.log_transform)]
    if logged:
        notes.append(f"log-transformed (log1p): {', '.join(logged)}")
    for f in logged:
        filled[f] = np.log1p(filled[f])
    stds = filled.std(ddof=0)
    constant = [f for f in features if not stds[f] > 0]
    if constant:
        notes.append(f"constant features (no effect on the clusters): {', '.join(constant)}")
    levels = {c: [str(v) for v in base[c].value_counts(dropna=True).index[:MAX_LEVELS]] for c in categorical}
    return Transform(
        features=features,
        medians={f: float(medians[f]) for f in features},
        logged=logged,
        means={f: float(filled[f].mean()) for f in features},
        stds={f: float(stds[f]) if stds[f] > 0 else 1.0 for f in features},
        categorical=levels,
        categorical_weight=s.categorical_weight,
    )


def _log(x: pd.Series, mode: str) -> bool:
    if mode == "never" or (x < 0).any():
        return False
    return mode == "always" or bool(x.skew() > 1)


def _model(k: int, seed: int, algorithm: str) -> KMeans | MiniBatchKMeans:
    if algorithm == "minibatch":
        return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    return KMeans(n_clusters=k, random_state=seed, n_init=4)


def _silhouettes(points: np.ndarray, models: dict[int, Any], seed: int) -> dict[int, float]:
    """Silhouette of each candidate on the same random customers; their distances are computed once (they were
    most of the time of choosing k when computed again for every k)."""
    pick = np.sort(
        np.random.default_rng([seed, 3]).choice(len(points), min(len(points), SILHOUETTE_SAMPLE), replace=False)
    )
    distances = pairwise_distances(points[pick])
    out = {}
    for k, model in models.items():
        labels = np.asarray(model.labels_)[pick]
        ok = 2 <= len(np.unique(labels)) < len(pick)
        out[k] = float(silhouette_score(distances, labels, metric="precomputed")) if ok else float("nan")
    return out


def _stability(
    points: np.ndarray, model: KMeans | MiniBatchKMeans, k: int, s: ClusterSettings, algorithm: str
) -> tuple[float | None, list[float]]:
    """Refit on bootstrap resamples and compare each refit's assignment of the fit sample with the model's."""
    if s.bootstrap == 0:
        return None, []
    rng = np.random.default_rng([s.seed, 1])
    reference = np.asarray(model.labels_)
    runs = []
    for b in range(s.bootstrap):
        resample = points[rng.integers(0, len(points), len(points))]
        refit = _model(k, s.seed + 1 + b, algorithm).fit(resample)
        runs.append(float(adjusted_rand_score(reference, refit.predict(points))))
    return float(np.mean(runs)), runs


def _order_by_revenue(base: pd.DataFrame, raw: np.ndarray, k: int) -> np.ndarray:
    """Model index → cluster number: 1 = most revenue, then more customers, then the model's order."""
    revenue: np.ndarray = np.zeros(k)
    if "monetary" in base.columns:
        money = pd.to_numeric(base["monetary"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
        revenue = np.bincount(raw, weights=money, minlength=k)
    sizes = np.bincount(raw, minlength=k)
    ranked = sorted(range(k), key=lambda i: (-round(float(revenue[i]), 6), -int(sizes[i]), i))
    order = np.empty(k, dtype="int64")
    order[ranked] = np.arange(1, k + 1)
    return order


def _projection(rows: pd.DataFrame, points: np.ndarray, labels: np.ndarray, seed: int) -> pd.DataFrame:
    n = min(len(points), PROJECTION_POINTS)
    pick = np.sort(np.random.default_rng([seed, 2]).choice(len(points), n, replace=False))
    components = min(2, points.shape[1])
    xy = PCA(n_components=components, random_state=seed).fit(points).transform(points[pick])
    out = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1] if components > 1 else 0.0, "cluster": labels[pick]})
    if "customer_id" in rows.columns:
        out.insert(0, "customer_id", rows["customer_id"].to_numpy()[pick])
    return out


def _empty(df: pd.DataFrame, features: list[str], skipped: list[str], notes: list[str], excluded: int) -> ClusterResult:
    return ClusterResult(
        labels=pd.Series(pd.NA, index=df.index, dtype="Int64"),
        k=None,
        k_fixed=False,
        silhouette={},
        inertia={},
        stability=None,
        stability_runs=[],
        warning=None,
        transform=None,
        centers=pd.DataFrame(columns=features),
        projection=pd.DataFrame(columns=["x", "y", "cluster"]),
        profiles=[],
        features=features,
        skipped=skipped,
        notes=notes,
        clustered=0,
        excluded=excluded,
        fit_rows=0,
        algorithm="none",
    )
