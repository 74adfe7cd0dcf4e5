"""Clusters (mining.cluster) and their profiles (mining.profiles) on data with planted groups."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import adjusted_rand_score

from tierwise.mining.cluster import ClusterSettings, assign_clusters, fit_clusters
from tierwise.mining.profiles import profile_clusters, profiles_table

FEATURES = ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"]
# Planted groups: centres of recency, frequency, monetary, average order value, tenure; far apart in log space.
GROUPS = {
    "vip": (5, 6, 400_000, 2_500, 500),  # high monetary, low recency; ordinary otherwise
    "lapsed": (400, 2, 1_500, 750, 600),
    "new": (20, 3, 6_000, 2_000, 40),
    "steady": (90, 12, 40_000, 3_300, 350),
}
SIZES = {"vip": 150, "lapsed": 500, "new": 300, "steady": 350}


def planted(seed: int = 7, prospects: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for name, centre in GROUPS.items():
        n = SIZES[name]
        block = {f: c * rng.lognormal(0.0, 0.12, n) for f, c in zip(FEATURES, centre, strict=True)}
        block["recency_days"] = np.maximum(1, np.round(block["recency_days"]))
        block["tenure_days"] = np.maximum(block["recency_days"], np.round(block["tenure_days"]))
        block["frequency"] = np.maximum(1, np.round(block["frequency"]))
        parts.append(pd.DataFrame({"truth": name, **block}))
    df = pd.concat(parts, ignore_index=True)
    df["purchases"] = df["frequency"].astype("int64")
    df["rfm_segment"] = np.where(df["truth"] == "vip", "champions", "others")
    df["grade"] = df["truth"].map({"vip": "A", "steady": "B", "new": "C", "lapsed": "D"})
    df["province"] = np.where(np.arange(len(df)) % 4 == 0, "江苏", "浙江")
    df["main_industry"] = "C"
    none = pd.DataFrame({"truth": "prospect", "purchases": np.zeros(prospects, dtype="int64"), "frequency": 0.0})
    none["monetary"] = 0.0
    df = pd.concat([df, none], ignore_index=True)
    df.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(df))])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # groups not in file order


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return planted()


@pytest.fixture(scope="module")
def result(data: pd.DataFrame):
    return fit_clusters(data, ClusterSettings())


def test_planted_groups_are_recovered_and_k_is_found(data: pd.DataFrame, result) -> None:
    buyers = data["truth"] != "prospect"
    assert result.k == 4 and not result.k_fixed
    assert max(result.silhouette, key=lambda k: result.silhouette[k]) == 4
    assert sorted(result.silhouette) == list(range(2, 9)) == sorted(result.inertia)
    assert adjusted_rand_score(data.loc[buyers, "truth"], result.labels[buyers].astype(int)) >= 0.9
    # the elbow curve only goes down
    inertia = [result.inertia[k] for k in sorted(result.inertia)]
    assert all(a > b for a, b in itertools.pairwise(inertia))


def test_prospects_are_left_out_and_counted(data: pd.DataFrame, result) -> None:
    prospects = data["truth"] == "prospect"
    assert result.labels[prospects].isna().all() and result.labels[~prospects].notna().all()
    assert result.excluded == 25 and result.clustered == 1300
    assert any("25 customers without purchases" in n for n in result.notes)
    with_them = fit_clusters(data, ClusterSettings(include_prospects=True, k=5))
    assert with_them.labels.notna().all() and with_them.excluded == 0
    assert any("median" in n and "avg_order_value (25)" in n for n in with_them.notes)


def test_same_seed_same_clusters_and_numbered_by_revenue(data: pd.DataFrame, result) -> None:
    again = fit_clusters(data, ClusterSettings())
    pd.testing.assert_series_equal(again.labels, result.labels)
    assert again.names() == result.names()
    shares = [p.revenue_share for p in result.profiles]
    assert shares == sorted(shares, reverse=True)
    # cluster 1 is the planted VIP group, which brings most revenue
    vip = data["truth"] == "vip"
    assert (result.labels[vip] == 1).mean() > 0.95
    pd.testing.assert_series_equal(assign_clusters(data, result), result.labels)


def test_profiles_match_a_plain_pandas_computation(data: pd.DataFrame, result) -> None:
    member = result.labels.notna()
    base = data[member]
    lab = result.labels[member].astype(int)
    by = base.groupby(lab)
    assert [p.cluster for p in result.profiles] == [1, 2, 3, 4]
    for p in result.profiles:
        rows = base[lab == p.cluster]
        assert p.size == len(rows) == by.size()[p.cluster]
        assert p.share == pytest.approx(len(rows) / len(base))
        assert p.revenue_share == pytest.approx(rows["monetary"].sum() / base["monetary"].sum())
        for f in FEATURES:
            expected = (rows[f].mean() - base[f].mean()) / base[f].std()
            assert p.std_diff[f] == pytest.approx(expected)
            assert p.medians[f] == pytest.approx(rows[f].median())
            assert p.base_means[f] == pytest.approx(base[f].mean())
        grade, share = p.dominant["grade"]
        counts = rows["grade"].value_counts()
        assert grade == counts.idxmax() and share == pytest.approx(counts.max() / len(rows))
    assert sum(p.revenue_share for p in result.profiles) == pytest.approx(1.0)
    table = profiles_table(result.profiles, "zh")
    assert list(table["customers"]) == [p.size for p in result.profiles]


def test_names_describe_the_planted_groups(result) -> None:
    vip = result.profiles[0]
    assert "高价值" in vip.name_zh and "近期" in vip.name_zh
    assert "high value" in vip.name_en and "recent" in vip.name_en
    assert vip.dominant["rfm_segment"] == ("champions", pytest.approx(1.0))
    lapsed = next(p for p in result.profiles if p.dominant["grade"][0] == "D")
    assert "久未购买" in lapsed.name_zh and "lapsed" in lapsed.name_en
    new = next(p for p in result.profiles if p.dominant["grade"][0] == "C")
    assert "新客户" in new.name_zh
    names = [p.name_zh for p in result.profiles]
    assert len(set(names)) == len(names)
    assert result.name_column("en")[result.labels == 1].eq(vip.name_en).all()


def test_names_stay_unique_and_unknown_features_get_a_plain_word() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"score": rng.normal(0, 1, 400), "monetary": 1.0})
    labels = pd.Series(np.where(np.arange(400) < 200, 1, 2), dtype="Int64")
    df.loc[labels == 2, "score"] += 10
    labels[:100] = 3  # cluster 3: part of the low group, as typical as cluster 1
    profiles = profile_clusters(df, labels, ["score"])
    assert profiles[1].name_en == "score high" and profiles[1].name_zh == "score高"
    assert profiles[0].name_en == "score low" and profiles[2].name_en == "score low (2)"
    assert profiles[2].name_zh == "score低（2）"


def test_fitting_on_a_sample_and_minibatch_still_recover(data: pd.DataFrame) -> None:
    buyers = data["truth"] != "prospect"
    sampled = fit_clusters(data, ClusterSettings(sample_size=400, k=4))
    assert sampled.fit_rows == 400 and sampled.labels[buyers].notna().all()
    assert adjusted_rand_score(data.loc[buyers, "truth"], sampled.labels[buyers].astype(int)) >= 0.9
    mini = fit_clusters(data, ClusterSettings(minibatch_above=100))
    assert mini.algorithm == "minibatch" and mini.k == 4
    assert adjusted_rand_score(data.loc[buyers, "truth"], mini.labels[buyers].astype(int)) >= 0.9


def test_stability_is_reported_and_warned_about(result) -> None:
    assert result.stability is not None and result.stability >= 0.95 and result.warning is None
    assert len(result.stability_runs) == 5
    noise = pd.DataFrame(np.random.default_rng(3).uniform(size=(600, 3)), columns=["a", "b", "c"])
    loose = fit_clusters(noise, ClusterSettings(features=["a", "b", "c"], k=7, unstable_ari=0.999))
    assert loose.stability is not None and loose.stability < 0.999
    assert loose.warning is not None and f"{loose.stability:.2f}" in loose.warning
    off = fit_clusters(noise, ClusterSettings(features=["a", "b", "c"], k=3, bootstrap=0))
    assert off.stability is None and off.warning is None


def test_categorical_features_and_transforms() -> None:
    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame(
        {
            "monetary": rng.lognormal(8, 1.5, n),  # skewed: log-transformed under auto
            "frequency": rng.normal(10, 1, n),  # not skewed
            "province": np.where(np.arange(n) % 2 == 0, "广东", "四川"),
        }
    )
    auto = fit_clusters(df, ClusterSettings(features=["monetary", "frequency", "nope"], k=2, bootstrap=0))
    assert auto.transform is not None and auto.transform.logged == ["monetary"]
    assert auto.skipped == ["nope"] and any("nope" in n for n in auto.notes)
    never = fit_clusters(df, ClusterSettings(features=["monetary"], k=2, log_transform="never", bootstrap=0))
    assert never.transform is not None and never.transform.logged == []
    # two provinces, numerically alike: a heavy one-hot weight splits them exactly
    split = fit_clusters(
        df, ClusterSettings(features=["frequency"], categorical=["province"], categorical_weight=5.0, k=2, bootstrap=0)
    )
    assert adjusted_rand_score(df["province"], split.labels.astype(int)) == 1.0
    # centres come back in the features' own units
    assert never.centers["monetary"].min() > 0 and never.centers.index.tolist() == [1, 2]
    assert len(split.projection) == n and set(split.projection["cluster"]) == {1, 2}


def test_too_few_customers_and_bad_settings() -> None:
    small = fit_clusters(pd.DataFrame({"monetary": [1.0, 2.0, 3.0]}), ClusterSettings(features=["monetary"]))
    assert small.k is None and small.labels.isna().all() and "clustering skipped" in small.notes[-1]
    with pytest.raises(ValidationError, match="k_max"):
        ClusterSettings(k_min=5, k_max=3)
    with pytest.raises(ValidationError):
        ClusterSettings(k=1)


def test_assigning_in_slices_gives_the_labels_of_one_pass(
    data: pd.DataFrame, result, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierwise.mining import cluster

    member = data["purchases"] > 0
    # one pass over every customer, as the model would assign them without slicing
    whole = np.asarray(result.numbering)[result.model.predict(result.transform.apply(data.loc[member]))]
    for rows in (1, 7, int(member.sum()) - 1, int(member.sum())):  # slices of one row, uneven, one short, exact
        monkeypatch.setattr(cluster, "PREDICT_ROWS", rows)
        labels = assign_clusters(data, result)
        assert labels[member].astype("int64").tolist() == whole.tolist()
        assert labels[~member].isna().all()
    monkeypatch.setattr(cluster, "PREDICT_ROWS", 7)
    assert fit_clusters(data, ClusterSettings()).labels.equals(result.labels)
