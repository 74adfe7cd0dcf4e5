"""Synthetic customers and transactions with known ground truth, written streaming in chunks of customers.

Purchases follow a BG/NBD process (Fader, Hardie & Lee 2005): each customer buys at rate λ ~ Gamma(r, α)
per day while alive and, after each purchase, drops out with probability p ~ Beta(a, b). The value of each
purchase occasion follows the Gamma-Gamma model: ν ~ Gamma(q, γ) per customer, z ~ Gamma(p, ν). The
parameters are written to truth.json and every customer's latent values to truth_customers.parquet, so model
tests can check what they recover.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tierwise.schema import TABLES

Profile = Literal["b2b", "b2c"]
Fmt = Literal["csv", "parquet"]

CHUNK = 20_000

PARAMS: dict[str, dict[str, float]] = {
    # BG/NBD in days; Gamma-Gamma on the value of a purchase occasion (CNY).
    "b2b": {"r": 0.9, "alpha": 22.5, "a": 0.3, "b": 6.0, "p": 6.0, "q": 4.0, "gamma": 10000.0},
    "b2c": {"r": 0.25, "alpha": 25.0, "a": 0.6, "b": 3.0, "p": 6.0, "q": 4.0, "gamma": 150.0},
}
PROSPECT_SHARE = 0.10

PROVINCES: list[tuple[str, list[str], float]] = [
    ("广东", ["广州", "深圳", "东莞", "佛山"], 12.0),
    ("江苏", ["南京", "苏州", "无锡", "常州"], 10.0),
    ("浙江", ["杭州", "宁波", "温州", "绍兴"], 9.0),
    ("山东", ["济南", "青岛", "烟台"], 8.0),
    ("河南", ["郑州", "洛阳"], 5.5),
    ("四川", ["成都", "绵阳"], 5.5),
    ("湖北", ["武汉", "宜昌"], 5.0),
    ("福建", ["福州", "厦门", "泉州"], 5.0),
    ("湖南", ["长沙", "株洲"], 4.5),
    ("上海", ["上海"], 4.5),
    ("北京", ["北京"], 4.0),
    ("安徽", ["合肥", "芜湖"], 4.0),
    ("河北", ["石家庄", "唐山"], 4.0),
    ("陕西", ["西安", "宝鸡"], 3.0),
    ("重庆", ["重庆"], 3.0),
    ("江西", ["南昌", "赣州"], 2.8),
    ("辽宁", ["沈阳", "大连"], 2.8),
    ("天津", ["天津"], 2.0),
    ("云南", ["昆明"], 2.0),
    ("广西", ["南宁", "柳州"], 2.0),
    ("山西", ["太原"], 1.6),
    ("内蒙古", ["呼和浩特", "包头"], 1.5),
    ("贵州", ["贵阳"], 1.5),
    ("吉林", ["长春"], 1.2),
    ("黑龙江", ["哈尔滨"], 1.2),
    ("新疆", ["乌鲁木齐"], 1.0),
    ("海南", ["海口"], 0.6),
]
# GB/T 4754-2017 sections most often found among B2B buyers.
INDUSTRIES = {
    "C": "制造业",
    "F": "批发和零售业",
    "E": "建筑业",
    "I": "信息传输、软件和信息技术服务业",
    "G": "交通运输、仓储和邮政业",
    "K": "房地产业",
    "M": "科学研究和技术服务业",
    "H": "住宿和餐饮业",
    "Q": "卫生和社会工作",
    "P": "教育",
}
INDUSTRY_WEIGHTS = [30, 22, 10, 9, 7, 4, 6, 5, 4, 3]
CATEGORIES: dict[Profile, list[tuple[str, float, float, int]]] = {
    # name, typical unit price, margin, typical quantity
    "b2b": [
        ("电子元器件", 35.0, 0.22, 120),
        ("办公用品", 18.0, 0.30, 60),
        ("工业耗材", 55.0, 0.25, 80),
        ("包装材料", 6.0, 0.18, 400),
        ("机械配件", 260.0, 0.28, 12),
        ("化工原料", 90.0, 0.15, 40),
        ("劳保用品", 25.0, 0.35, 90),
        ("软件服务", 3000.0, 0.45, 2),
        ("物流服务", 800.0, 0.12, 5),
        ("清洁用品", 12.0, 0.32, 100),
    ],
    "b2c": [
        ("服装", 159.0, 0.45, 1),
        ("食品", 39.0, 0.25, 3),
        ("美妆", 199.0, 0.50, 1),
        ("数码", 899.0, 0.12, 1),
        ("家居", 129.0, 0.35, 2),
        ("母婴", 89.0, 0.30, 2),
        ("图书", 45.0, 0.28, 2),
        ("运动户外", 239.0, 0.40, 1),
        ("生鲜", 59.0, 0.20, 2),
        ("宠物用品", 79.0, 0.33, 2),
    ],
}
CHANNELS: dict[Profile, list[str]] = {
    "b2b": ["线下", "电话", "线上", "经销商"],
    "b2c": ["线上", "小程序", "线下", "天猫"],
}
PAYMENT_METHODS: dict[Profile, list[str]] = {
    "b2b": ["银行转账", "承兑汇票", "支付宝", "现金"],
    "b2c": ["支付宝", "微信支付", "信用卡", "现金"],
}
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国志文斌波宇浩凯鹏飞鑫雪梅琳晨欣怡佳")
COMPANY_WORDS = [
    "华信",
    "明达",
    "远航",
    "恒通",
    "金泰",
    "鼎盛",
    "新锐",
    "宏图",
    "瑞丰",
    "天成",
    "中科",
    "博远",
    "盛世",
    "永安",
    "正泰",
    "海纳",
    "万联",
    "东方",
    "诚信",
    "嘉禾",
    "光明",
    "安泰",
    "凯达",
    "腾飞",
]
COMPANY_KINDS = [
    "贸易有限公司",
    "科技有限公司",
    "实业有限公司",
    "制造有限公司",
    "商贸有限公司",
    "工程有限公司",
    "物流有限公司",
    "电子有限公司",
]
OCCUPATIONS = ["职员", "教师", "工程师", "医生", "销售", "学生", "自由职业", "公务员", "个体经营", "退休"]
MEMBERSHIP = ["普通会员", "银卡会员", "金卡会员", "钻石会员"]
OWNERS = 20


@dataclass
class GenerationSummary:
    outdir: Path
    profile: str
    fmt: str
    customers: int
    seed: int
    files: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    messy: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outdir"] = str(self.outdir)
        d["files"] = {k: str(v) for k, v in self.files.items()}
        return d


class _Writer:
    """Appends chunks of one table to a CSV (optionally GBK with Chinese headers) or Parquet file."""

    def __init__(self, path: Path, fmt: Fmt, messy: bool, table: str) -> None:
        self.path, self.fmt, self.messy, self.table = path, fmt, messy, table
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh: Any = None

    def write(self, t: pa.Table) -> None:
        self.rows += t.num_rows
        if self.fmt == "parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(str(self.path), t.schema)
            self._pq.write_table(t)
            return
        first = self._fh is None
        if first:
            self._fh = self.path.open("wb")
        if self.messy:
            spec = TABLES[self.table]
            t = t.rename_columns([spec.field(c).label_zh if c in spec.names else c for c in t.column_names])
            buf = pa.BufferOutputStream()
            pacsv.write_csv(t, buf, pacsv.WriteOptions(include_header=first, quoting_style="needed"))
            self._fh.write(buf.getvalue().to_pybytes().decode("utf-8").encode("gbk"))
        else:
            pacsv.write_csv(t, self._fh, pacsv.WriteOptions(include_header=first, quoting_style="needed"))

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()


def _pick(rng: np.random.Generator, values: list[str], n: int, p: list[float] | np.ndarray | None = None) -> Any:
    probs = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=probs)]


def _simulate_purchases(
    rng: np.random.Generator, lam: np.ndarray, pdrop: np.ndarray, first: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times (days from the period start); returns (customer, time, alive_at_end, dropout)."""
    n = lam.size
    cust = [np.arange(n)]
    times = [first.copy()]
    t = first.copy()
    active = np.ones(n, dtype=bool)
    dropout = np.full(n, np.inf)
    first_purchase = True
    while True:
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        # BG/NBD: a customer may drop out after each *repeat* purchase, not right after the first (Fader,
        # Hardie & Lee 2005: a customer without repeat purchases is alive), so x = 0 never means gone.
        if not first_purchase:
            dies = rng.random(idx.size) < pdrop[idx]
            dropout[idx[dies]] = t[idx[dies]]
            active[idx[dies]] = False
            idx = idx[~dies]
        first_purchase = False
        gap = rng.exponential(1.0 / lam[idx])
        t[idx] = t[idx] + gap
        beyond = t[idx] > horizon
        active[idx[beyond]] = False
        idx = idx[~beyond]
        cust.append(idx)
        times.append(t[idx].copy())
    c = np.concatenate(cust)
    tt = np.concatenate(times)
    order = np.lexsort((tt, c))
    alive = ~np.isfinite(dropout)
    return c[order], tt[order], alive, dropout


def _dates(start: dt.date, days: np.ndarray) -> np.ndarray:
    return np.datetime64(start, "D") + np.floor(days).astype("timedelta64[D]")


def generate(
    outdir: Path,
    *,
    customers: int,
    seed: int,
    profile: Profile = "b2b",
    fmt: Fmt = "csv",
    messy: bool = False,
    start: dt.date = dt.date(2023, 1, 1),
    end: dt.date = dt.date(2024, 12, 31),
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    if messy and fmt != "csv":
        raise ValueError("--messy writes CSV exports as real systems do; use --format csv with --messy")
    if customers < 1:
        raise ValueError("--customers must be at least 1")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    params = PARAMS[profile]
    tables = ["customers", "orders", "interactions"] + (["payments"] if profile == "b2b" else [])
    writers = {t: _Writer(outdir / f"{t}.{fmt}", fmt, messy, t) for t in tables}
    truth_writer: pq.ParquetWriter | None = None
    mess_counts = {t: {"lines": 0, "exact_duplicates": 0, "missing_customer_id": 0, "returns": 0} for t in tables}
    order_seq = 0
    try:
        for lo in range(0, customers, CHUNK):
            n = min(CHUNK, customers - lo)
            rng = np.random.default_rng([seed, lo])
            chunk, truth, order_seq = _chunk(rng, lo, n, profile, params, start, end, order_seq)
            if messy:
                chunk = {t: _make_messy(rng, t, tab, mess_counts[t]) for t, tab in chunk.items()}
            for t, tab in chunk.items():
                writers[t].write(tab)
            if truth_writer is None:
                truth_writer = pq.ParquetWriter(str(outdir / "truth_customers.parquet"), truth.schema)
            truth_writer.write_table(truth)
            if progress is not None:
                progress(lo + n, customers)
    finally:
        for w in writers.values():
            w.close()
        if truth_writer is not None:
            truth_writer.close()
    summary = GenerationSummary(
        outdir=outdir,
        profile=profile,
        fmt=fmt,
        customers=customers,
        seed=seed,
        files={t: w.path for t, w in writers.items()},
        rows={t: w.rows for t, w in writers.items()},
        params=dict(params),
        messy=mess_counts if messy else {},
    )
    truth_doc: dict[str, Any] = {
        "profile": profile,
        "seed": seed,
        "customers": customers,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "time_unit": "days",
        "bgnbd": {k: params[k] for k in ("r", "alpha", "a", "b")},
        "gamma_gamma": {"p": params["p"], "q": params["q"], "gamma": params["gamma"]},
        "prospect_share": PROSPECT_SHARE,
        "rows": summary.rows,
    }
    if messy:
        truth_doc["messy"] = mess_counts
    (outdir / "truth.json").write_text(json.dumps(truth_doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def _chunk(
    rng: np.random.Generator,
    lo: int,
    n: int,
    profile: Profile,
    params: dict[str, float],
    start: dt.date,
    end: dt.date,
    order_seq: int,
) -> tuple[dict[str, pa.Table], pa.Table, int]:
    horizon = float((end - start).days + 1)
    ids = np.char.add("C", np.char.zfill(np.arange(lo + 1, lo + n + 1).astype(str), 7))
    prospect = rng.random(n) < PROSPECT_SHARE
    lam = np.minimum(rng.gamma(params["r"], 1.0 / params["alpha"], n), 1.0)
    pdrop = rng.beta(params["a"], params["b"], n)
    nu = rng.gamma(params["q"], 1.0 / params["gamma"], n)
    first = rng.uniform(0, 0.6 * horizon, n)

    buyers = np.flatnonzero(~prospect)
    c_local, t_days, alive_b, dropout_b = _simulate_purchases(rng, lam[buyers], pdrop[buyers], first[buyers], horizon)
    occ_cust = buyers[c_local]
    alive = np.zeros(n, dtype=bool)
    alive[buyers] = alive_b
    dropout_days = np.full(n, np.nan)
    dropout_days[buyers] = np.where(np.isfinite(dropout_b), dropout_b, np.nan)

    cats = CATEGORIES[profile]
    ncat = len(cats)
    pref = rng.dirichlet(np.full(ncat, 0.6), n)
    channels, payments = CHANNELS[profile], PAYMENT_METHODS[profile]
    pref_channel = rng.choice(len(channels), n, p=[0.45, 0.25, 0.2, 0.1])
    pref_pay = rng.choice(len(payments), n, p=[0.5, 0.25, 0.15, 0.1])

    # Industries: one main section; a fifth of B2B customers buy for 2–3 sections with revenue shares.
    ind_codes = list(INDUSTRIES)
    main_ind = rng.choice(len(ind_codes), n, p=np.array(INDUSTRY_WEIGHTS) / sum(INDUSTRY_WEIGHTS))
    multi = (rng.random(n) < 0.2) if profile == "b2b" else np.zeros(n, dtype=bool)
    ind_share = np.zeros((n, len(ind_codes)))
    ind_share[np.arange(n), main_ind] = 1.0
    for i in np.flatnonzero(multi):
        k = rng.integers(2, 4)
        others = rng.choice([j for j in range(len(ind_codes)) if j != main_ind[i]], k - 1, replace=False)
        shares = rng.dirichlet(np.full(k, 2.0))
        shares.sort()
        ind_share[i] = 0
        ind_share[i, main_ind[i]] = shares[-1]
        ind_share[i, others] = shares[:-1][::-1]

    # Occasions → order lines (1–3 distinct categories per order).
    n_occ = occ_cust.size
    z = rng.gamma(params["p"], 1.0 / nu[occ_cust])
    nlines = rng.choice([1, 2, 3], n_occ, p=[0.6, 0.25, 0.15])
    line_occ = np.repeat(np.arange(n_occ), nlines)
    line_no = np.arange(line_occ.size) - np.repeat(np.cumsum(nlines) - nlines, nlines)
    cust_line = occ_cust[line_occ]
    cum = np.cumsum(pref[cust_line], axis=1)
    base_cat = np.minimum((rng.random(line_occ.size)[:, None] > cum).sum(axis=1), ncat - 1)
    first_cat = np.repeat(base_cat[np.cumsum(nlines) - nlines], nlines)
    cat = (first_cat + line_no * 3) % ncat
    # The occasion's value is split over its lines by Dirichlet(1, …, 1) shares.
    w = rng.gamma(1.0, 1.0, line_occ.size)
    line_value = z[line_occ] * w / np.bincount(line_occ, weights=w, minlength=n_occ)[line_occ]
    typical_q = np.array([c[3] for c in cats])[cat]
    qty = np.maximum(1, np.round(typical_q * rng.lognormal(0, 0.5, line_occ.size))).astype(np.int64)
    unit_price = np.maximum(0.01, np.round(line_value / qty, 2))
    amount = np.round(qty * unit_price, 2)
    margin = np.clip(np.array([c[2] for c in cats])[cat] + rng.normal(0, 0.04, line_occ.size), 0.02, 0.7)
    cost = np.round(amount * (1 - margin), 2)
    occ_ids = order_seq + np.arange(n_occ) + 1
    order_id = np.char.add("SO", np.char.zfill(occ_ids[line_occ].astype(str), 9))
    order_seq += n_occ
    # The simulated instant itself (to the second): the continuous-time data the CLV models describe; a
    # summary by day (the usual one) rounds it as real order systems' dates do.
    occ_ts = np.datetime64(start, "s") + np.round(t_days * 86400).astype("timedelta64[s]")
    line_ts = occ_ts[line_occ]
    ch = np.where(
        rng.random(line_occ.size) < 0.8, pref_channel[cust_line], rng.integers(0, len(channels), line_occ.size)
    )
    pay_idx = np.where(rng.random(n_occ) < 0.85, pref_pay[occ_cust], rng.integers(0, len(payments), n_occ))
    cumi = np.cumsum(ind_share[cust_line], axis=1)
    line_ind = np.minimum((rng.random(line_occ.size)[:, None] > cumi).sum(axis=1), len(ind_codes) - 1)
    status = np.full(line_occ.size, "已完成", dtype=object)

    # Returns: about 2% of lines come back 1–30 days later, with negative quantity and amount.
    ret = np.flatnonzero(rng.random(line_occ.size) < 0.02)
    ret_ts = line_ts[ret] + (rng.integers(1, 31, ret.size) * 86400).astype("timedelta64[s]")
    keep = ret_ts < np.datetime64(end + dt.timedelta(days=1), "s")
    ret, ret_ts = ret[keep], ret_ts[keep]
    ret_qty = -np.maximum(1, np.floor(qty[ret] * rng.uniform(0.1, 1.0, ret.size))).astype(np.int64)

    def cat_names(idx: np.ndarray) -> np.ndarray:
        return np.asarray([c[0] for c in cats], dtype=object)[idx]

    orders = pa.table(
        {
            "order_id": np.concatenate([order_id, np.char.add(order_id[ret], "-R")]),
            "customer_id": np.concatenate([ids[cust_line], ids[cust_line[ret]]]),
            "order_date": np.concatenate([line_ts, ret_ts]),
            "amount": np.concatenate([amount, np.round(ret_qty * unit_price[ret], 2)]),
            "cost": np.concatenate([cost, np.round(ret_qty * unit_price[ret] * (1 - margin[ret]), 2)]),
            "quantity": np.concatenate([qty, ret_qty]),
            "unit_price": np.concatenate([unit_price, unit_price[ret]]),
            "product_category": np.concatenate([cat_names(cat), cat_names(cat[ret])]),
            "channel": np.concatenate(
                [np.asarray(channels, dtype=object)[ch], np.asarray(channels, dtype=object)[ch[ret]]]
            ),
            "payment_method": np.concatenate(
                [
                    np.asarray(payments, dtype=object)[pay_idx[line_occ]],
                    np.asarray(payments, dtype=object)[pay_idx[line_occ[ret]]],
                ]
            ),
            "status": np.concatenate([status, np.full(ret.size, "退货", dtype=object)]),
            "currency": np.full(line_occ.size + ret.size, "CNY", dtype=object),
            "industry_code": np.concatenate(
                [np.asarray(ind_codes, dtype=object)[line_ind], np.asarray(ind_codes, dtype=object)[line_ind[ret]]]
            )
            if profile == "b2b"
            else np.full(line_occ.size + ret.size, None, dtype=object),
        }
    )
    orders = orders.sort_by([("order_date", "ascending"), ("order_id", "ascending")])

    customers_t = _customers(rng, ids, n, profile, prospect, first, start, main_ind, ind_codes, pref_channel)
    out = {
        "customers": customers_t,
        "orders": orders,
        "interactions": _interactions(rng, ids, n, prospect, first, horizon, nu, params, start),
    }
    if profile == "b2b":
        terms = customers_t.column("payment_terms_days").to_numpy(zero_copy_only=False)
        occ_amount = np.bincount(line_occ, weights=amount, minlength=n_occ)
        out["payments"] = _payments(
            rng, ids, occ_cust, occ_ts, occ_amount, order_id[np.cumsum(nlines) - nlines], terms, end
        )

    first_purchase = np.full(n, None, dtype=object)
    first_purchase[buyers] = _dates(start, first[buyers]).astype(object)
    shares_json = [
        json.dumps({ind_codes[j]: round(float(s), 4) for j, s in enumerate(row) if s > 0}) for row in ind_share
    ]
    truth = pa.table(
        {
            "customer_id": ids,
            "lambda": lam,
            "p_dropout": pdrop,
            "nu": nu,
            "expected_spend": params["p"] / nu,
            "first_purchase_date": pa.array(first_purchase, type=pa.date32()),
            "alive_at_end": alive & ~prospect,
            "dropout_days": dropout_days,
            "is_prospect": prospect,
            "industry_shares": shares_json,
        }
    )
    return out, truth, order_seq


def _customers(
    rng: np.random.Generator,
    ids: np.ndarray,
    n: int,
    profile: Profile,
    prospect: np.ndarray,
    first: np.ndarray,
    start: dt.date,
    main_ind: np.ndarray,
    ind_codes: list[str],
    pref_channel: np.ndarray,
) -> pa.Table:
    pweights = np.array([p[2] for p in PROVINCES])
    prov_idx = rng.choice(len(PROVINCES), n, p=pweights / pweights.sum())
    prov = np.asarray([p[0] for p in PROVINCES], dtype=object)[prov_idx]
    city = np.asarray([PROVINCES[i][1][rng.integers(len(PROVINCES[i][1]))] for i in prov_idx], dtype=object)
    signup = _dates(start, first - rng.uniform(0, 365, n))
    channels = np.asarray(CHANNELS[profile], dtype=object)
    phone = np.char.add(
        np.char.add("1", _pick(rng, ["3", "5", "7", "8", "9"], n).astype(str)),
        np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9),
    )
    kind = np.where(prospect, "prospect", "customer").astype(object)
    if profile == "b2b":
        r = rng.random(n)
        kind = np.where(~prospect & (r < 0.08), "distributor", np.where(~prospect & (r > 0.96), "partner", kind))
        name = (
            np.asarray(city, dtype=str)
            + _pick(rng, COMPANY_WORDS, n).astype(str)
            + _pick(rng, COMPANY_KINDS, n).astype(str)
        )
        owner_names = [SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)] for i in range(OWNERS)]
        cols: dict[str, Any] = {
            "customer_id": ids,
            "name": name.astype(object),
            "type": np.full(n, "company", dtype=object),
            "customer_kind": kind,
            "country": np.full(n, "中国", dtype=object),
            "province": prov,
            "city": city,
            "industry_code": np.asarray(ind_codes, dtype=object)[main_ind],
            "signup_date": signup,
            "owner": _pick(rng, owner_names, n),
            "credit_limit": np.round(rng.lognormal(12, 0.8, n), -3),
            "payment_terms_days": rng.choice([30, 60, 90], n, p=[0.5, 0.35, 0.15]),
            "preferred_channel": channels[pref_channel],
            "phone": phone,
            "email": np.char.add(np.char.lower(ids.astype(str)), "@example.cn").astype(object),
        }
    else:
        name = _pick(rng, SURNAMES, n).astype(str) + _pick(rng, GIVEN, n).astype(str)
        two = rng.random(n) < 0.6
        name = np.where(two, np.char.add(name, _pick(rng, GIVEN, n).astype(str)), name)
        age = np.clip(np.round(rng.normal(36, 11, n)), 18, 80).astype(np.int64)
        birth = np.datetime64(start, "D") - (age * 365.25 + rng.uniform(0, 365, n)).astype("timedelta64[D]")
        cols = {
            "customer_id": ids,
            "name": name.astype(object),
            "type": np.full(n, "person", dtype=object),
            "customer_kind": kind,
            "country": np.full(n, "中国", dtype=object),
            "province": prov,
            "city": city,
            "signup_date": signup,
            "preferred_channel": channels[pref_channel],
            "phone": phone,
            "email": np.char.add(np.char.lower(ids.astype(str)), "@example.com").astype(object),
            "birth_date": birth,
            "age": age,
            "gender": _pick(rng, ["男", "女"], n),
            "occupation": _pick(rng, OCCUPATIONS, n),
            "membership_level": _pick(rng, MEMBERSHIP, n, [55, 25, 15, 5]),
        }
    return pa.table(cols)


def _interactions(
    rng: np.random.Generator,
    ids: np.ndarray,
    n: int,
    prospect: np.ndarray,
    first: np.ndarray,
    horizon: float,
    nu: np.ndarray,
    params: dict[str, float],
    start: dt.date,
) -> pa.Table:
    count = rng.poisson(np.where(prospect, 0.5, 2.0))
    who = np.repeat(np.arange(n), count)
    when = rng.uniform(np.where(prospect, 0, first)[who], horizon)
    # Satisfaction rises with the customer's spending level (low ν = high spend) plus noise.
    quality = -np.log(nu / (params["q"] / params["gamma"]))
    score = np.clip(np.round(3.6 + 0.5 * quality[who] + rng.normal(0, 0.8, who.size)), 1, 5)
    ts = np.datetime64(start, "s") + (when * 86400).astype("timedelta64[s]")
    table = pa.table(
        {
            "customer_id": ids[who],
            "date": ts,
            "kind": _pick(rng, ["visit", "ticket", "survey"], who.size, [5, 2, 3]),
            "satisfaction": score,
        }
    )
    return table.sort_by([("date", "ascending"), ("customer_id", "ascending")])


def _payments(
    rng: np.random.Generator,
    ids: np.ndarray,
    occ_cust: np.ndarray,
    occ_ts: np.ndarray,
    occ_amount: np.ndarray,
    invoice_ids: np.ndarray,
    terms: np.ndarray,
    end: dt.date,
) -> pa.Table:
    n = ids.size
    behaviour = rng.choice(3, n, p=[0.7, 0.2, 0.1])  # punctual, sometimes late, chronically late
    inv_date = occ_ts.astype("datetime64[D]")
    due = inv_date + terms[occ_cust].astype("timedelta64[D]")
    b = behaviour[occ_cust]
    late = np.where(
        b == 0,
        -rng.integers(0, 10, occ_cust.size),
        np.where(b == 1, np.round(rng.gamma(2, 8, occ_cust.size)), np.round(rng.gamma(2, 30, occ_cust.size))),
    )
    paid = due + late.astype("timedelta64[D]")
    paid = np.maximum(paid, inv_date)
    unpaid = (paid > np.datetime64(end, "D")) | (rng.random(occ_cust.size) < 0.01)
    paid_col = pa.array(paid, type=pa.date32())
    paid_col = pa.array([None if u else v for u, v in zip(unpaid, paid_col.to_pylist(), strict=True)], type=pa.date32())
    return pa.table(
        {
            "invoice_id": invoice_ids,
            "customer_id": ids[occ_cust],
            "invoice_date": pa.array(inv_date, type=pa.date32()),
            "due_date": pa.array(due, type=pa.date32()),
            "paid_date": paid_col,
            "amount": np.round(occ_amount, 2),
        }
    )


# ---------------------------------------------------------------- messy exports

_FULL = str.maketrans("0123456789.", "０１２３４５６７８９．")


def _messy_dates(rng: np.random.Generator, col: pa.ChunkedArray) -> list[str | None]:
    out: list[str | None] = []
    forms = rng.integers(0, 4, len(col))
    for form, v in zip(forms, col.to_pylist(), strict=True):
        if v is None:
            out.append(None)
        elif form == 0:
            out.append(v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, dt.datetime) else v.isoformat())
        elif form == 1:
            out.append(f"{v.year}/{v.month}/{v.day}")
        elif form == 2:
            out.append(f"{v.year}年{v.month}月{v.day}日")
        else:
            out.append(f"{v.year}{v.month:02d}{v.day:02d}")
    return out


def _messy_amounts(rng: np.random.Generator, col: pa.ChunkedArray) -> list[str | None]:
    out: list[str | None] = []
    forms = rng.integers(0, 5, len(col))
    for form, v in zip(forms, col.to_pylist(), strict=True):
        if v is None:
            out.append(None)
        elif v < 0:
            out.append(f"({-v:,.2f})")
        elif form == 0:
            out.append(f"￥{v:,.2f}")
        elif form == 1:
            out.append(f"{v:.2f}元")
        elif form == 2:
            out.append(f"{v:.2f}".translate(_FULL))
        elif form == 3:
            out.append(f"{v:,.2f}")
        else:
            out.append(f"{v:.2f}")
    return out


def _make_messy(rng: np.random.Generator, table: str, t: pa.Table, counts: dict[str, int]) -> pa.Table:
    spec = TABLES[table]
    cols: dict[str, Any] = {}
    for name in t.column_names:
        kind = spec.field(name).kind
        if kind in ("date", "timestamp"):
            cols[name] = pa.array(_messy_dates(rng, t[name]), type=pa.string())
        elif kind == "amount":
            cols[name] = pa.array(_messy_amounts(rng, t[name]), type=pa.string())
        else:
            cols[name] = t[name].cast(pa.string())
    messy = pa.table(cols)
    n = messy.num_rows
    if table in ("orders", "payments") and n:
        if table == "orders":
            counts["returns"] += int(sum(1 for s in t["status"].to_pylist() if s == "退货"))
        pick = rng.permutation(n)
        n_missing = round(n * 0.005)
        n_dup = round(n * 0.01)
        missing = np.sort(pick[:n_missing])
        dup_src = np.sort(pick[n_missing : n_missing + n_dup])
        ids = messy["customer_id"].to_pylist()
        for i in missing:
            ids[i] = ""
        messy = messy.set_column(messy.column_names.index("customer_id"), "customer_id", pa.array(ids, pa.string()))
        # Copies land later in the file, as when an export is appended twice.
        messy = pa.concat_tables([messy, messy.take(pa.array(dup_src, type=pa.int64()))])
        counts["missing_customer_id"] += n_missing
    # Counted from what is written, not from what was injected: dates written without their time can make
    # two interactions of one customer on one day identical, and those are duplicates to an ingest too.
    distinct = messy.group_by(messy.column_names).aggregate([]).num_rows
    counts["exact_duplicates"] += messy.num_rows - distinct
    counts["lines"] += messy.num_rows
    return messy
