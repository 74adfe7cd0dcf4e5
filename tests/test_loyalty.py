"""Loyalty and satisfaction classes against cases worked out by hand, boundaries included."""

from __future__ import annotations

import ibis

from tierwise.classify.loyalty import LoyaltySettings, add_loyalty

# id, purchases, tenure_days, lifecycle_stage, satisfaction → loyalty, satisfaction_level
CASES = [
    ("L1", 5, 400, "active", None, "loyal", None),  # unknown satisfaction does not count against
    ("L2", 5, 400, "at_risk", 5.0, "potential_loyal", "satisfied"),  # slipping: cultivate, not loyal
    ("L3", 5, 400, "mature", 2.0, "potential_loyal", "dissatisfied"),
    ("L4", 1, 20, "new", 4.5, "potential_loyal", "satisfied"),  # one purchase, new and happy
    ("L5", 1, 20, "new", 3.0, "occasional", "neutral"),
    ("L6", 3, 500, "churned", 5.0, "lapsed", "satisfied"),
    ("L7", 0, None, "prospect", None, "prospect", None),
    ("L8", 4, 179, "active", 4.0, "potential_loyal", "satisfied"),  # one day short of the tenure needed
    ("L9", 4, 180, "active", 4.0, "loyal", "satisfied"),  # exactly on both boundaries
    ("L10", 3, 900, "mature", 2.5, "potential_loyal", "dissatisfied"),  # 2.5 is dissatisfied
    ("L11", 1, 300, "at_risk", None, "occasional", None),
]


def test_every_case() -> None:
    cols = ["customer_id", "purchases", "tenure_days", "lifecycle_stage", "satisfaction"]
    t = ibis.memtable({c: [r[i] for r in CASES] for i, c in enumerate(cols)})
    got = {r["customer_id"]: r for r in add_loyalty(t, LoyaltySettings()).to_pyarrow().to_pylist()}
    for cid, *_, loyalty, level in CASES:
        assert (got[cid]["loyalty"], got[cid]["satisfaction_level"]) == (loyalty, level), cid


def test_thresholds_are_settings() -> None:
    t = ibis.memtable(
        {
            "customer_id": ["A"],
            "purchases": [2],
            "tenure_days": [30],
            "lifecycle_stage": ["new"],
            "satisfaction": [3.0],
        }
    )
    s = LoyaltySettings(loyal_min_purchases=2, loyal_min_tenure_days=30, satisfied_min=3.0)
    row = add_loyalty(t, s).to_pyarrow().to_pylist()[0]
    assert (row["loyalty"], row["satisfaction_level"]) == ("loyal", "satisfied")
