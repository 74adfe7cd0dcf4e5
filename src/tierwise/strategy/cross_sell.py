"""Cross-sell suggestions (交叉销售): what similar customers buy that this customer has not bought yet.

Similar customers are the other members of the customer's group: the same `cluster` when the snapshot has
one, else the same `rfm_segment` (or any column given as `by`). For a category X not yet bought by customer
c in group G, with n = |G| − 1 other members of whom b bought X:

    support = b / n        (the share of the similar customers who bought X; `buyers` = b)

and c gets the k categories of highest support (ties: more buyers, then the category name). "Bought" means an
order line with a positive amount (returns do not count). Everything is Ibis over the snapshot and the
canonical `orders` table, so it runs on DuckDB and Spark alike. Docs: docs/strategy.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis

from tierwise.errors import UserError
from tierwise.store.runs import snapshot_suffix

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from tierwise.workspace import Workspace


def similarity_column(snapshot: ir.Table, by: str | None = None) -> str:
    """The column that defines "similar": `by`, or cluster (when it has values), else rfm_segment."""
    if by and by != "auto":
        if by not in snapshot.columns:
            raise UserError(
                f"cross-sell by '{by}': the snapshot has no such column; use cluster, rfm_segment or another class"
            )
        return by
    if "cluster" in snapshot.columns and int(snapshot.cluster.notnull().sum().execute() or 0) > 0:
        return "cluster"
    if "rfm_segment" in snapshot.columns:
        return "rfm_segment"
    raise UserError("cross-sell needs a 'cluster' or 'rfm_segment' column in the snapshot, or say which column")


def bought_categories(orders: ir.Table, as_of: dt.date | None = None) -> ir.Table:
    """Distinct (customer_id, category) pairs with a positive order line (before `as_of` when given)."""
    if "product_category" not in orders.columns:
        raise UserError("cross-sell needs orders with a product_category column; load orders that have one")
    o = orders.filter(orders.product_category.notnull(), orders.customer_id.notnull())
    if "amount" in o.columns:
        o = o.filter(o.amount > 0)
    if as_of is not None:
        o = o.filter(o.order_date.date() < ibis.date(as_of.isoformat()))
    return o.select("customer_id", category=o.product_category).distinct()


def cross_sell(
    snapshot: ir.Table,
    orders: ir.Table,
    k: int = 3,
    by: str | None = None,
    *,
    min_support: float = 0.0,
    as_of: dt.date | None = None,
    targets: ir.Table | None = None,
) -> ir.Table:
    """customer_id, rank (1..k), category, support, buyers: the top-k categories bought by similar customers
    and not by this one. `targets` (a table with customer_id on the same engine) limits whom suggestions are
    made for; the groups and supports are always those of the whole snapshot."""
    column = similarity_column(snapshot, by)
    members = snapshot.select("customer_id", group=snapshot[column]).filter(ibis._.group.notnull())
    sizes = members.group_by("group").aggregate(members=ibis._.count())
    bought = bought_categories(orders, as_of)
    buyers = (
        members.join(bought, "customer_id")
        .group_by(["group", "category"])
        .aggregate(buyers=ibis._.customer_id.nunique())
        .join(sizes, "group")
    )
    buyers = buyers.filter(buyers.members > 1).mutate(
        support=buyers.buyers.cast("float64") / (buyers.members - 1).cast("float64")
    )
    if min_support > 0:
        buyers = buyers.filter(buyers.support >= min_support)
    who = members if targets is None else members.semi_join(targets.select("customer_id"), "customer_id")
    candidates = who.join(buyers, "group").anti_join(bought, ["customer_id", "category"])
    rank = ibis.row_number().over(
        group_by=candidates.customer_id,
        order_by=[ibis.desc(candidates.support), ibis.desc(candidates.buyers), candidates.category],
    )
    ranked = candidates.mutate(rank=rank + 1)
    return ranked.filter(ranked.rank <= k).select(
        "customer_id", "rank", "category", "support", buyers=ranked.buyers.cast("int64")
    )


def stored_cross_sell(ws: Workspace, meta: dict[str, Any], k: int, by: str | None, min_support: float) -> str:
    """The name of a table holding the run's suggestions for every customer (customer_id, rank, category,
    support, buyers, similar_by), made the first time it is asked for and kept: a run never changes, and
    finding one customer's suggestions in it is a lookup instead of a pass over every order line. The name
    carries the settings (k, by, min_support), so other settings get their own table."""
    settings = hashlib.sha1(f"{k}|{by or 'auto'}|{min_support!r}".encode()).hexdigest()[:8]
    name = f"cross_sell_{snapshot_suffix(str(meta['run_id']))}_{settings}"
    with _building_lock:
        lock = _building.setdefault((ws.root, name), threading.Lock())
    with lock:
        if name in ws.con.list_tables():
            return name
        snap = ws.table(str(meta["snapshot_table"]))
        column = similarity_column(snap, by)
        as_of = meta.get("as_of")
        if isinstance(as_of, str):
            as_of = dt.date.fromisoformat(as_of)
        t = cross_sell(snap, ws.table("orders"), k, column, min_support=min_support, as_of=as_of)
        t = t.mutate(similar_by=ibis.literal(column)).order_by(["customer_id", "rank"])
        ws.con.create_table(name, t)
        ws.con.raw_sql(f'CREATE INDEX "{name}_customer" ON "{name}" (customer_id)')
        return name


_building_lock = threading.Lock()
_building: dict[tuple[Path, str], threading.Lock] = {}
