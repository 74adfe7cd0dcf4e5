"""The generator: determinism, files, ground truth, messy exports that reconcile exactly."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyarrow import csv as pacsv

from tierwise.generate import generate
from tierwise.ingest.mapping import resolve_mapping
from tierwise.schema import TABLES


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "a", customers=500, seed=3)
    generate(tmp_path / "b", customers=500, seed=3)
    generate(tmp_path / "c", customers=500, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["orders.csv"] != digest(tmp_path / "c")["orders.csv"]
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "customers.csv",
        "orders.csv",
        "payments.csv",
        "interactions.csv",
        "truth.json",
        "truth_customers.parquet",
    }


def test_csv_and_parquet_hold_the_same_data(tmp_path: Path) -> None:
    generate(tmp_path / "csv", customers=400, seed=5)
    generate(tmp_path / "pq", customers=400, seed=5, fmt="parquet")
    a = pacsv.read_csv(tmp_path / "csv" / "orders.csv")
    b = pq.read_table(tmp_path / "pq" / "orders.parquet")
    # the schema's fields in its order; the generator writes no line numbers or products
    assert a.column_names == b.column_names == [f for f in TABLES["orders"].names if f in a.column_names]
    assert set(TABLES["orders"].names) - set(a.column_names) == {"line_number", "product_id", "product_name"}
    assert a["order_id"].to_pylist() == b["order_id"].to_pylist()
    assert a["amount"].to_pylist() == pytest.approx(b["amount"].to_pylist())


@pytest.fixture(scope="module")
def b2b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b2b")
    generate(out, customers=4000, seed=11, fmt="parquet")
    return out


def test_orders_are_consistent(b2b: Path) -> None:
    o = pq.read_table(b2b / "orders.parquet").to_pylist()
    customers = pq.read_table(b2b / "customers.parquet").to_pylist()
    ids = {c["customer_id"] for c in customers}
    prospects = {c["customer_id"] for c in customers if c["customer_kind"] == "prospect"}
    assert all(r["customer_id"] in ids for r in o)
    assert not prospects & {r["customer_id"] for r in o}
    assert all(abs(r["amount"] - round(r["quantity"] * r["unit_price"], 2)) < 0.011 for r in o)
    sales = [r for r in o if r["status"] != "退货"]
    returns = [r for r in o if r["status"] == "退货"]
    assert all(0 < r["cost"] <= r["amount"] for r in sales)
    assert all(r["amount"] < 0 and r["quantity"] < 0 for r in returns)
    assert 0.01 < len(returns) / len(o) < 0.03
    keys = [tuple(r.values()) for r in o]
    assert len(set(keys)) == len(keys)  # clean data has no identical lines
    truth = json.loads((b2b / "truth.json").read_text())
    assert truth["rows"]["orders"] == len(o)
    assert {c["province"] for c in customers} >= {"广东", "浙江", "北京"}
    assert {c["customer_kind"] for c in customers} == {"customer", "prospect", "distributor", "partner"}


def test_purchases_follow_bgnbd(b2b: Path) -> None:
    """Mean purchase occasions per buyer = 1 + E[X(τ) | λ, p], with E[X(τ)|λ,p] = (1 − e^(−λpτ)) / p."""
    truth = pq.read_table(b2b / "truth_customers.parquet").to_pylist()
    o = pq.read_table(b2b / "orders.parquet")
    sales = o.filter(pc.not_equal(o["status"], "退货"))
    occasions: dict[str, set[str]] = {}
    for cid, oid in zip(sales["customer_id"].to_pylist(), sales["order_id"].to_pylist(), strict=True):
        occasions.setdefault(cid, set()).add(oid)
    end = dt.date(2025, 1, 1)
    expected, observed = [], []
    for t in truth:
        if t["is_prospect"]:
            continue
        tau = (end - t["first_purchase_date"]).days - 0.5
        lam, p = t["lambda"], t["p_dropout"]
        expected.append(1 + (1 - np.exp(-lam * p * tau)) / p)
        observed.append(len(occasions.get(t["customer_id"], ())))
    assert np.mean(observed) == pytest.approx(np.mean(expected), rel=0.05)


def test_spend_follows_gamma_gamma(b2b: Path) -> None:
    truth = {t["customer_id"]: t for t in pq.read_table(b2b / "truth_customers.parquet").to_pylist()}
    o = pq.read_table(b2b / "orders.parquet")
    sales = o.filter(pc.not_equal(o["status"], "退货")).to_pylist()
    per_occasion: dict[str, float] = {}
    owner: dict[str, str] = {}
    for r in sales:
        per_occasion[r["order_id"]] = per_occasion.get(r["order_id"], 0.0) + r["amount"]
        owner[r["order_id"]] = r["customer_id"]
    # E[z] = p / ν per customer: the average of z − p/ν over all occasions is near zero.
    resid = [v - truth[owner[k]]["expected_spend"] for k, v in per_occasion.items()]
    assert abs(np.mean(resid)) < 0.05 * np.mean(list(per_occasion.values()))


def test_b2c_persons(tmp_path: Path) -> None:
    generate(tmp_path, customers=300, seed=2, profile="b2c", fmt="parquet")
    c = pq.read_table(tmp_path / "customers.parquet").to_pylist()
    assert all(r["gender"] in ("男", "女") and 18 <= r["age"] <= 80 and r["type"] == "person" for r in c)
    assert not (tmp_path / "payments.parquet").exists()


def test_messy_exports_reconcile_exactly(tmp_path: Path) -> None:
    generate(tmp_path, customers=1500, seed=9, messy=True)
    truth = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))["messy"]
    for table in ("customers", "orders", "payments", "interactions"):
        raw = (tmp_path / f"{table}.csv").read_bytes()
        text = raw.decode("gbk")
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        rows = list(csv.reader(text.splitlines()))
        header, body = rows[0], rows[1:]
        mapping = resolve_mapping(header, TABLES[table], {}, {}, file=table)
        assert mapping.unmapped == [] and len(mapping.fields) == len(header), table
        seen: set[tuple[str, ...]] = set()
        dups = 0
        for r in body:
            dups += tuple(r) in seen
            seen.add(tuple(r))
        id_col = header.index("客户编号")
        missing = sum(1 for r in body if r[id_col] == "")
        assert truth[table]["lines"] == len(body)
        assert truth[table]["exact_duplicates"] == dups
        assert truth[table]["missing_customer_id"] == missing
    assert truth["orders"]["exact_duplicates"] > 0 and truth["orders"]["missing_customer_id"] > 0
    orders_text = (tmp_path / "orders.csv").read_bytes().decode("gbk")
    assert "年" in orders_text and "￥" in orders_text and "元" in orders_text and "(" in orders_text


def test_messy_needs_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--format csv"):
        generate(tmp_path, customers=10, seed=1, fmt="parquet", messy=True)
