"""The [cluster] and [classify] sections of tierwise.toml (kept apart from the modules that import
scikit-learn, so that reading the configuration stays fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLUSTER_FEATURES = ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"]
# Raw measures of the snapshot; classes and scores computed from them are left out so that a model learns
# from behaviour, not from another classifier's verdict.
LEARN_FEATURES = [
    "recency_days", "frequency", "monetary", "avg_order_value", "tenure_days", "purchases", "ipt_mean_days",
    "ipt_cv", "category_count", "profit", "margin", "revenue_trend", "top_category_share", "online_share",
    "credit_limit", "on_time_rate", "avg_days_late", "overdue_amount", "open_amount", "credit_utilisation",
    "satisfaction", "interactions",
]  # fmt: skip
ModelKind = Literal["tree", "boosting", "mlp"]


class ClusterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(True, description="Cluster customers in every run / 每次运行时进行聚类")
    features: list[str] = Field(
        default_factory=lambda: list(CLUSTER_FEATURES),
        description="Numeric snapshot columns to cluster on; missing ones are skipped / 参与聚类的数值列，缺失的列跳过",
    )
    categorical: list[str] = Field(
        default_factory=list,
        description="Text columns added as one-hot codes, e.g. province / 以独热编码加入的分类列，如 province",
    )
    categorical_weight: float = Field(
        0.5, ge=0, description="Weight of a one-hot code against a standardised feature / 独热编码的权重"
    )
    k: int | None = Field(
        None, ge=2, description="Fixed number of clusters; empty = by silhouette / 固定簇数，留空则自动选择"
    )
    k_min: int = Field(2, ge=2, description="Smallest k tried / 自动选择时的最小簇数")
    k_max: int = Field(8, ge=2, description="Largest k tried / 自动选择时的最大簇数")
    sample_size: int = Field(
        20000, ge=100, description="Fit on a random sample of this many customers, then assign all / 抽样拟合的客户数"
    )
    minibatch_above: int = Field(
        50000, ge=1, description="MiniBatchKMeans when fitting more rows than this / 超过此行数用小批量k均值"
    )
    seed: int = Field(42, description="Random seed: the same seed gives the same clusters / 随机种子")
    bootstrap: int = Field(5, ge=0, description="Bootstrap refits for stability; 0 = off / 稳定性重抽样次数")
    unstable_ari: float = Field(
        0.6, ge=0, le=1, description="Warn when the mean adjusted Rand index is below this / 调整兰德指数低于此值时警告"
    )
    log_transform: Literal["auto", "always", "never"] = Field(
        "auto",
        description="log1p of non-negative features: auto (skewness > 1), always, never / 对数变换",
    )
    include_prospects: bool = Field(
        False, description="Cluster customers without purchases too / 无购买记录的潜在客户是否参与聚类"
    )

    @model_validator(mode="after")
    def _range(self) -> ClusterSettings:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be at least k_min ({self.k_min})")
        return self


class ClassifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    target: str = Field(
        "future-high-value",
        description="Label column, or future-high-value / future-churn (from history) / 标签列，或未来高价值、未来流失",
    )
    model: ModelKind = Field("tree", description="tree (readable rules), boosting or mlp / 决策树、梯度提升或神经网络")
    features: list[str] = Field(
        default_factory=lambda: list(LEARN_FEATURES),
        description="Numeric snapshot columns the model learns from; missing ones are skipped / 用于学习的数值列",
    )
    max_depth: int = Field(4, ge=1, le=12, description="Depth limit of the tree / 决策树最大深度")
    min_samples_leaf: int = Field(
        50, ge=1, description="Fewest training customers per rule (1% of them if that is fewer) / 每条规则最少客户数"
    )
    test_size: float = Field(0.25, gt=0, lt=1, description="Share of labelled customers held out / 留出验证的比例")
    seed: int = Field(42, description="Random seed / 随机种子")
    high_value_share: float = Field(
        0.2, gt=0, lt=1, description="future-high-value: top share of next-period revenue / 下期收入前多少比例为高价值"
    )
    holdout_days: int | None = Field(
        180, ge=1, description="Days of the future period; empty = [features] window_days / 预测期天数"
    )
