"""Clustering and learned rules on a million customers: tierwise next to scikit-learn used plainly.

    .venv/bin/python benchmarks/bench_mining.py --customers 1000000

The customers' snapshot features are generated in NumPy with the skew real ones have (recency exponential,
frequency geometric, order values log-normal, gaps in payment and satisfaction data). Each measurement runs
in its own child process, so that its peak memory (max RSS, the generated data and imports included) is its
own; the data take the same time and memory in each and are not timed.

  cluster         mining.cluster.fit_clusters with the default [cluster] settings: k from 2 to 8 by silhouette
                  on a 20,000 sample, 5 bootstrap refits, every customer assigned, profiles and names
  kmeans-full     the plain alternative: sklearn KMeans with its defaults on all customers (same transformed
                  features), at the k tierwise chose only, no choice of k, no stability, no profiles
  kmeans-all-k    the same choice of k without sampling: sklearn KMeans with its defaults on all customers for
                  every k from 2 to 8, each scored by sklearn's silhouette_score(sample_size=4000)
  tree            mining.learn.learn_classes, decision tree (depth 4, leaves of 50): 75/25 stratified split,
                  metrics, importances, every customer predicted, rules rendered with rounded thresholds
  tree-default    the plain alternative: sklearn DecisionTreeClassifier with its defaults (no depth limit) fitted
                  on the same 75% and predicting every customer

Targets (issue 5): cluster ≤ 10 s, tree ≤ 15 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

STAGES = ("cluster", "kmeans-full", "kmeans-all-k", "tree", "tree-default")
PROVINCES = ["广东", "浙江", "江苏", "山东", "北京", "上海", "四川", "湖北", "河南", "福建"]


def snapshot(n: int, seed: int = 0) -> pd.DataFrame:
    """Snapshot-like columns for n customers, 8% prospects without purchases."""
    rng = np.random.default_rng(seed)
    buyer = rng.random(n) >= 0.08
    frequency = np.where(buyer, rng.geometric(0.15, n), 0)
    aov = rng.lognormal(8.5, 0.8, n)
    recency = np.minimum(730, np.ceil(rng.exponential(120, n))).astype("float64")
    tenure = np.minimum(1500, recency + rng.exponential(400, n)).round()
    df = pd.DataFrame(
        {
            "customer_id": np.char.add("C", np.arange(n).astype(str)),
            "purchases": frequency,
            "frequency": frequency,
            "monetary": np.where(buyer, frequency * aov * rng.lognormal(0, 0.3, n), 0.0).round(2),
            "avg_order_value": np.where(buyer, aov, np.nan),
            "recency_days": np.where(buyer, recency, np.nan),
            "tenure_days": np.where(buyer, tenure, np.nan),
            "margin": np.where(buyer, rng.beta(5, 14, n), np.nan),
            "online_share": np.where(buyer, rng.beta(0.5, 2, n), np.nan),
            "on_time_rate": np.where(buyer & (rng.random(n) < 0.75), rng.beta(4, 1.5, n), np.nan),
            "satisfaction": np.where(rng.random(n) < 0.6, rng.integers(1, 6, n), np.nan),
            "credit_limit": rng.lognormal(11.5, 0.8, n).round(-3),
            "province": rng.choice(PROVINCES, n),
            "grade": rng.choice(["A", "B", "C", "D"], n, p=[0.1, 0.2, 0.3, 0.4]),
            "rfm_segment": rng.choice(["champions", "loyal_customers", "at_risk", "hibernating"], n),
            "main_industry": rng.choice(["C", "F", "G", "I"], n),
        }
    )
    # a next-period outcome to learn: value to come depends on recency, frequency and spend, with noise
    latent = np.log1p(df["monetary"]) - df["recency_days"].fillna(999) / 150 + rng.normal(0, 0.7, n)
    df["label"] = np.where(latent > np.quantile(latent, 0.8), "high_value", "other")
    return df


def measure(stage: str, n: int) -> dict[str, object]:
    df = snapshot(n)
    started = time.perf_counter()
    cpu = time.process_time()
    out: dict[str, object] = {}
    if stage == "cluster":
        from tierwise.mining.cluster import ClusterSettings, fit_clusters

        result = fit_clusters(df, ClusterSettings())
        out = {"k": result.k, "stability": round(result.stability or 0.0, 3), "fit_rows": result.fit_rows}
        out["names"] = list(result.names("en").values())
    elif stage == "kmeans-full":
        from sklearn.cluster import KMeans

        from tierwise.mining.cluster import ClusterSettings, fit_clusters

        prepared = fit_clusters(df.iloc[:50_000], ClusterSettings(k=_chosen_k(n), bootstrap=0))
        assert prepared.transform is not None
        points = prepared.transform.apply(df[df["purchases"] > 0])
        started, cpu = time.perf_counter(), time.process_time()  # the transform is not what is compared
        model = KMeans(n_clusters=_chosen_k(n)).fit(points)
        out = {"k": model.n_clusters, "rows": len(points), "iterations": int(model.n_iter_)}
    elif stage == "kmeans-all-k":
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        from tierwise.mining.cluster import ClusterSettings, fit_clusters

        prepared = fit_clusters(df.iloc[:50_000], ClusterSettings(k=2, bootstrap=0))
        assert prepared.transform is not None
        points = prepared.transform.apply(df[df["purchases"] > 0])
        started, cpu = time.perf_counter(), time.process_time()
        scores = {}
        for k in range(2, 9):
            labels = KMeans(n_clusters=k).fit_predict(points)
            scores[k] = silhouette_score(points, labels, sample_size=4000, random_state=42)
        out = {"k": max(scores, key=lambda k: scores[k]), "rows": len(points)}
    elif stage == "tree":
        from tierwise.mining.learn import ClassifySettings, learn_classes

        learned = learn_classes(df, df["label"], ClassifySettings(target="label"))
        out = {"accuracy": round(learned.report.accuracy, 4), "roc_auc": round(learned.report.roc_auc or 0, 4)}
        out["rules"] = len(learned.rules)
        out["first_rule"] = learned.rules[0].text("en")
    else:
        from sklearn.model_selection import train_test_split
        from sklearn.tree import DecisionTreeClassifier

        from tierwise.mining.settings import LEARN_FEATURES

        features = [f for f in LEARN_FEATURES if f in df.columns]
        x = df[features].fillna(df[features].median()).to_numpy()
        train, test = train_test_split(np.arange(n), test_size=0.25, random_state=42, stratify=df["label"])
        model = DecisionTreeClassifier(random_state=42).fit(x[train], df["label"].to_numpy()[train])
        predicted = model.predict(x)
        accuracy = float((predicted[test] == df["label"].to_numpy()[test]).mean())
        out = {"accuracy": round(accuracy, 4), "leaves": int(model.get_n_leaves()), "depth": int(model.get_depth())}
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["cpu_seconds"] = round(time.process_time() - cpu, 2)
    out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _chosen_k(n: int) -> int:
    """The k the cluster stage chose (passed on by the parent), 2 when run alone."""
    return int(os.environ.get("BENCH_K", "0")) or 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(measure(args.stage, args.customers), ensure_ascii=False))
        return
    print(f"{args.customers:,} customers; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    env = dict(os.environ)
    results = {}
    for stage in STAGES:
        proc = subprocess.run(
            [sys.executable, __file__, "--customers", str(args.customers), "--stage", stage],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
        if stage == "cluster":
            env["BENCH_K"] = str(results[stage]["k"])  # the plain k-means runs at the k tierwise chose
        r = results[stage]
        extra = {k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds", "peak_mb")}
        timing = f"{r['seconds']:>7.2f} s wall {r['cpu_seconds']:>7.2f} s cpu {r['peak_mb']:>6,} MB peak"
        print(f"{stage:<13} {timing}  {extra}")
    seconds = {stage: r["seconds"] for stage, r in results.items()}
    print(
        f"cluster {seconds['cluster']:.2f} s (target ≤ 10) vs plain KMeans on all rows at one k "
        f"{seconds['kmeans-full']:.2f} s, at every k {seconds['kmeans-all-k']:.2f} s"
    )
    print(f"tree {seconds['tree']:.2f} s (target ≤ 15) vs default tree {seconds['tree-default']:.2f} s")


if __name__ == "__main__":
    main()
