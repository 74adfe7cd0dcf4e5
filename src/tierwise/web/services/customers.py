"""Customers of a run: the filtered, sorted, paged list, one customer in full, and the masking of contact data.

Rows come from the run's snapshot; the contact columns of the `customers` table that the snapshot does not
carry (phone, email, signup_date …) can be asked for by name and are joined from there. Viewers get phone
numbers and e-mail addresses masked (`mask_personal=True`): every column whose name mentions phone, mobile,
email, 手机, 电话 or 邮箱/邮件, and such keys of the customers' extra `attributes`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.i18n import LABELS, label, strategy_label
from tierwise.report.explain import explain_customer
from tierwise.report.summaries import class8_reference
from tierwise.rules import compile_expression
from tierwise.web.cache import BUILDING, cache_for
from tierwise.web.services._common import check_page, cluster_names, jsonable, language_of, pages
from tierwise.workspace import Workspace

DEFAULT_COLUMNS = (
    "customer_id",
    "name",
    "province",
    "main_industry",
    "owner",
    "priority_rank",
    "grade",
    "composite_score",
    "monetary",
    "frequency",
    "recency_days",
    "rfm_segment",
    "abc_class",
    "value_tier",
    "lifecycle_stage",
    "clv_predicted",
    "next_action",
)
# Columns of the customers table never offered as customer columns (lineage and ingest bookkeeping).
_NOT_CONTACT = {"batch_id", "source_line", "is_minimal", "attributes"}

_PERSONAL = re.compile(r"phone|mobile|e-?mail|手机|电话|邮箱|邮件", re.IGNORECASE)
_EMAIL_COLUMN = re.compile(r"mail|邮", re.IGNORECASE)


# --- masking ------------------------------------------------------------------------------------------------


def is_personal(column: str) -> bool:
    """Whether a column (or attribute) holds phone numbers or e-mail addresses, judged by its name."""
    return bool(_PERSONAL.search(column))


def mask_phone(value: object) -> str | None:
    """138****5678: of n digits, the first 3 stay when n ≥ 11 and the last 4 when n ≥ 7 (else the last n // 3);
    every other digit becomes '*'. Separators (+, -, spaces, brackets) stay where they are, so the length and
    shape are kept. A value without digits is masked whole (all but spaces)."""
    if value is None:
        return None
    text = str(value)
    positions = [i for i, ch in enumerate(text) if ch.isdigit()]
    n = len(positions)
    if n == 0:
        return "".join(ch if ch.isspace() else "*" for ch in text)
    head = 3 if n >= 11 else 0
    tail = 4 if n >= 7 else n // 3
    hidden = set(positions[head : n - tail])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def mask_email(value: object) -> str | None:
    """z****@example.com: the first character of the name stays, the rest of it becomes '*' (same length); the
    domain stays. Text without '@' is masked like a name without a domain."""
    if value is None:
        return None
    text = str(value)
    at = text.rfind("@")
    local, domain = (text, "") if at < 0 else (text[:at], text[at:])
    if len(local) <= 1:
        return "*" * len(local) + domain
    return local[0] + "*" * (len(local) - 1) + domain


def mask_value(column: str, value: object) -> object:
    if value is None:
        return None
    if _EMAIL_COLUMN.search(column) or "@" in str(value):
        return mask_email(value)
    return mask_phone(value)


def mask_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with personal columns masked, and personal keys of `attributes` (a map) masked too."""
    out = {}
    for key, value in row.items():
        if is_personal(key):
            out[key] = mask_value(key, value)
        elif key == "attributes" and value is not None:
            pairs = value.items() if isinstance(value, dict) else value
            out[key] = {str(k): mask_value(str(k), v) if is_personal(str(k)) else v for k, v in pairs}
        else:
            out[key] = value
    return out


# --- the list -----------------------------------------------------------------------------------------------


def contact_columns(ws: Workspace, snapshot: ir.Table) -> list[str]:
    """Columns of the customers table a list may show besides the snapshot's (phone, email, signup_date …)."""
    return [c for c in ws.table("customers").columns if c not in snapshot.columns and c not in _NOT_CONTACT]


def available_columns(ws: Workspace, snapshot: ir.Table) -> list[str]:
    return [*snapshot.columns, *contact_columns(ws, snapshot)]


def unknown_column(what: str, name: str, known: Sequence[str]) -> UserError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "see the columns listed by GET /api/v1/customers/columns"
    return UserError(f"{what}: no column '{name}' in this run; {hint}")


def with_contacts(ws: Workspace, snapshot: ir.Table, wanted: Sequence[str]) -> ir.Table:
    """The snapshot, with those of `wanted` that only the customers table has joined from there."""
    extra = [c for c in contact_columns(ws, snapshot) if c in wanted]
    if not extra:
        return snapshot
    customers = ws.table("customers").select("customer_id", *extra).distinct(on="customer_id", keep="first")
    return snapshot.left_join(customers, "customer_id").drop("customer_id_right")


def parse_sort(sort: str | None, known: Sequence[str]) -> tuple[str, bool]:
    """'col' or '-col' (descending) → (column, descending), the column checked against `known`."""
    text = (sort or "priority_rank").strip()
    descending = text.startswith("-")
    column = text.lstrip("-+").strip()
    if column not in known:
        raise unknown_column(f"sort '{text}'", column, known)
    return column, descending


def search_filter(t: ir.Table, search: str) -> ir.BooleanValue:
    """Customer id or name containing `search`, ignoring case."""
    needle = search.strip().lower()
    found = t.customer_id.lower().contains(needle)
    if "name" in t.columns:
        found = found | t.name.lower().contains(needle).fill_null(False)
    return found


def add_labels(row: dict[str, Any], language: str, clusters: dict[str, str] | None = None) -> dict[str, Any]:
    """`<column>_label` beside each class column; `clusters`: the cluster names in `language` by stored name
    (services._common.cluster_names), as the snapshot holds them in the workspace's language."""
    for column in list(row):
        if column == "cluster_name":
            row["cluster_name_label"] = cluster_label(row[column], language, clusters)
        elif column in LABELS:
            row[f"{column}_label"] = label(column, row[column], language)
        elif column == "next_action":
            row["next_action_label"] = strategy_label("action", row[column], language)
    return row


def cluster_label(name: object, language: str, clusters: dict[str, str] | None) -> str:
    """A snapshot's cluster_name in `language` (the run's name for it), or the empty label."""
    if name is None:
        return label("cluster_name", None, language)
    return (clusters or {}).get(str(name), str(name))


def query_customers(
    ws: Workspace,
    meta: dict[str, Any],
    snapshot: ir.Table,
    *,
    where: str | None = None,
    search: str | None = None,
    sort: str | None = "priority_rank",
    page: int = 1,
    page_size: int = 50,
    columns: Sequence[str] | None = None,
    mask_personal: bool = False,
    language: str = "zh",
    restrict: Callable[[ir.Table], ir.BooleanValue] | None = None,
    restrict_key: Hashable | None = None,
) -> dict[str, Any]:
    """One page of a snapshot's customers (see list_customers); `restrict` narrows them further (`restrict_key`
    names that restriction, so its query can be kept compiled)."""
    check_page(page, page_size)
    known = available_columns(ws, snapshot)
    chosen = list(dict.fromkeys(columns)) if columns else [c for c in DEFAULT_COLUMNS if c in snapshot.columns]
    for c in chosen:
        if c not in known:
            raise unknown_column("columns", c, known)
    if "customer_id" in chosen:
        chosen.remove("customer_id")
    chosen.insert(0, "customer_id")
    sort_column, descending = parse_sort(sort, known)
    if mask_personal:
        refuse_personal(where, sort_column, known)
    where = where if where and where.strip() else None
    search = search if search and search.strip() else None

    def matching() -> ir.Table:
        wanted = [*chosen, sort_column, *where_columns(where, contact_columns(ws, snapshot))]
        t = with_contacts(ws, snapshot, wanted)
        if restrict is not None:
            t = t.filter(restrict(t))
        if where:
            t = t.filter(compile_expression(where, t.schema(), what="where")(t))
        if search:
            t = t.filter(search_filter(t, search))
        return t

    # Compiled once per kind of list (the order and page are added when it runs); a caller's own restriction
    # without a key is compiled every time.
    cache = cache_for(ws)
    kind = None if restrict is not None and restrict_key is None else (meta["run_id"], where, search, restrict_key)
    if kind is None:
        total = int(matching().count().execute())
    else:  # a run never changes: the count of one condition holds for every page and sort of it
        total = int(cache.value(("count", kind), lambda: matching().count().execute()))
    offset = (page - 1) * page_size
    rows: list[dict[str, Any]] = []
    if offset < total:
        # empty values last in either direction, then by customer_id: pages never overlap or skip a customer
        order = [(sort_column, descending), *([("customer_id", False)] if sort_column != "customer_id" else [])]
        wanted = [*chosen, *([sort_column] if sort_column not in chosen else [])]
        rows = cache.page(
            ws,
            None if kind is None else ("page", kind, tuple(wanted)),
            lambda: matching().select(*wanted),
            order=order,
            limit=page_size,
            offset=offset,
        )
        if sort_column not in chosen:
            rows = [{k: v for k, v in r.items() if k != sort_column} for r in rows]
    if mask_personal:
        rows = [mask_row(r) for r in rows]
    clusters = cluster_names([meta], language) if "cluster_name" in chosen else None
    rows = [add_labels(r, language, clusters) for r in rows]
    return jsonable(
        {
            "run_id": meta["run_id"],
            "as_of": meta["as_of"],
            "total": total,
            "page": page,
            "page_size": page_size,
            "pages": pages(total, page_size),
            "sort": ("-" if descending else "") + sort_column,
            "columns": chosen,
            "rows": rows,
        }
    )


def refuse_personal(where: str | None, sort_column: str | None, known: Sequence[str]) -> None:
    """With masking on, filtering or sorting by phone or e-mail would reveal them bit by bit: refused."""
    personal = [c for c in known if is_personal(c)]
    used = set(where_columns(where, personal))
    if sort_column in personal:
        used.add(sort_column)
    if used:
        raise UserError(
            f"filtering or sorting by {', '.join(sorted(used))} is not allowed with masked contact data; "
            "ask an analyst or an admin"
        )


def where_columns(where: str | None, contacts: list[str]) -> list[str]:
    """Contact columns a condition mentions (they must be joined before it is compiled)."""
    if not where or not contacts:
        return []
    from tierwise.rules import columns_in

    try:
        return sorted(columns_in(where, contacts))
    except UserError:
        return []  # the syntax error is reported when the condition is compiled


def list_customers(
    ws: Workspace,
    *,
    where: str | None = None,
    search: str | None = None,
    sort: str | None = "priority_rank",
    page: int = 1,
    page_size: int = 50,
    columns: Sequence[str] | None = None,
    mask_personal: bool = False,
    run_id: str | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """A page of the run's customers.

    `where`: a condition in the rule language (docs/rules.md), checked against the run's columns; `search`: a
    piece of the customer id or name (case ignored); `sort`: a column, '-column' for descending (empty values
    last either way; ties by customer_id); `columns`: which (default DEFAULT_COLUMNS), snapshot columns or
    contact columns of the customers table. Class columns get a `<column>_label` beside them.

    {run_id, as_of, total, page, page_size, pages, sort, columns, rows}; a page beyond the end has no rows."""
    lang = language_of(ws, language)
    meta, snap = cache_for(ws).snapshot(ws, run_id)
    return query_customers(
        ws,
        meta,
        snap,
        where=where,
        search=search,
        sort=sort,
        page=page,
        page_size=page_size,
        columns=columns,
        mask_personal=mask_personal,
        language=lang,
    )


def customer_columns(ws: Workspace, run_id: str | None = None) -> list[dict[str, str]]:
    """Every column a list, a filter or an export can use: name, type and where it comes from."""
    _, snap = cache_for(ws).snapshot(ws, run_id)
    schema = snap.schema()
    out = [{"name": n, "type": str(schema[n]), "source": "snapshot"} for n in schema.names]
    customers = ws.table("customers").schema()
    out += [{"name": n, "type": str(customers[n]), "source": "customers"} for n in contact_columns(ws, snap)]
    return out


# --- one customer -------------------------------------------------------------------------------------------

_NEXT_ACTION = ("strategy", "next_action", "service_level", "channel", "contact_every_days", "budget_per_customer")


def customer_detail(
    ws: Workspace,
    customer_id: str,
    *,
    run_id: str | None = None,
    language: str | None = None,
    mask_personal: bool = False,
    with_timeline: bool = True,
    with_cross_sell: bool = True,
) -> dict[str, Any]:
    """Everything about one customer in a run.

    {run_id, as_of, customer_id, profile (the customers-table record: contact data, attributes), scores (the
    snapshot row: every measure, score and class), labels ({class column: label}), grade ({score, grade,
    priority_rank, indicators: [{name, label, weight, weight_share, score, points}]} or None for runs without
    the composite grade), reasons (report.explain.explain_customer), timeline (history.trends.timeline, or None),
    next_action ({strategy, strategy_label, action, action_label, service_level(_label), channel(_label),
    contact_every_days, budget_per_customer, reason} or None), cross_sell ([{rank, category, support, buyers}]),
    learned ({model_id, target, model, class, confidence} or None), notes}."""
    lang = language_of(ws, language)
    cache = cache_for(ws)
    runs = cache.runs(ws)
    meta, snap = cache.snapshot(ws, run_id, runs)
    run = str(meta["run_id"])
    config = cache.config(ws, run)
    found = cache.rows(ws, ("row", run), lambda key: snap.filter(snap.customer_id == key), customer_id)
    basis = config.rfm.class8_basis
    explained = explain_customer(
        snap,
        meta,
        customer_id,
        config,
        lang,
        row=found[0] if found else None,
        reference=lambda: cache.value(("class8", run, basis), lambda: class8_reference(snap, basis)),
    )
    row: dict[str, Any] = explained["customer"]
    notes: list[str] = []

    customers = ws.table("customers")
    profile_rows = cache.rows(
        ws,
        ("profile", tuple(customers.columns)),
        lambda key: customers.filter(customers.customer_id == key).drop("batch_id", "source_line").limit(1),
        customer_id,
    )
    profile = profile_rows[0] if profile_rows else None
    if profile is not None and isinstance(profile.get("attributes"), list):
        profile["attributes"] = {str(k): v for k, v in profile["attributes"]}

    labels = {c: label(c, row[c], lang) for c in LABELS if c in row}
    if "cluster_name" in row:
        labels["cluster_name"] = cluster_label(row["cluster_name"], lang, cluster_names([meta], lang))
    data: dict[str, Any] = {
        "run_id": run,
        "as_of": meta["as_of"],
        "customer_id": customer_id,
        "profile": profile,
        "scores": row,
        "labels": labels,
        "grade": _grade(row, config, lang),
        "reasons": explained["reasons"],
        "timeline": None,
        "next_action": _next_action(ws, snap, row, config, customer_id, lang),
        "cross_sell": [],
        "learned": _learned(ws, run, row, customer_id),
        "notes": notes,
    }
    if with_timeline:
        from tierwise.history.trends import timeline
        from tierwise.store.runs import latest_per_date

        dated = latest_per_date(runs)
        key = ("timeline", tuple(str(r["run_id"]) for r in dated))
        data["timeline"] = timeline(
            ws, customer_id, lang, runs=dated, fetch=lambda build: cache.rows(ws, key, build, customer_id)
        )
    if with_cross_sell:
        data["cross_sell"] = _cross_sell(ws, meta, customer_id, notes)
    if mask_personal:
        if data["profile"] is not None:
            data["profile"] = mask_row(data["profile"])
        data["scores"] = mask_row(row)
    return jsonable(data)


def _grade(row: dict[str, Any], config: Any, language: str) -> dict[str, Any] | None:
    if "composite_score" not in row:
        return None
    indicators = config.grade.indicators
    total = sum(i.weight for i in indicators) or 1.0
    return {
        "score": row.get("composite_score"),
        "grade": row.get("grade"),
        "grade_label": label("grade", row.get("grade"), language),
        "priority_rank": row.get("priority_rank"),
        "method": config.grade.method,
        "indicators": [
            {
                "name": i.name,
                "label": i.label or i.name,
                "expression": i.expression,
                "weight": i.weight,
                "weight_share": i.weight / total,
                "score": row.get(f"score_{i.name}"),
                "points": row.get(f"contrib_{i.name}"),
            }
            for i in indicators
        ],
    }


def _next_action(
    ws: Workspace, snap: ir.Table, row: dict[str, Any], config: Any, customer_id: str, language: str
) -> dict[str, Any] | None:
    from tierwise.strategy.worklist import with_strategy

    rules = config.playbook
    source = row
    if "next_action" not in row or language != config.workspace.language:
        # runs made before the playbook, or reasons wanted in the other language: the run's playbook applied now
        def build(key: ir.Value) -> ir.Table:
            t = with_strategy(snap, rules, budget=config.strategy.budget, language=language, reapply=True)
            return t.filter(t.customer_id == key).select(*_NEXT_ACTION, "action_reason")

        found = cache_for(ws).rows(ws, ("next_action", str(row.get("run_id")), language), build, customer_id)
        if not found:
            return None
        source = found[0]
    names = {r.name: r.display_label(language) for r in rules}
    strategy = source.get("strategy")
    return {
        "strategy": strategy,
        "strategy_label": names.get(strategy or "", strategy or "—"),
        "action": source.get("next_action"),
        "action_label": strategy_label("action", source.get("next_action"), language),
        "service_level": source.get("service_level"),
        "service_level_label": strategy_label("service_level", source.get("service_level"), language),
        "channel": source.get("channel"),
        "channel_label": strategy_label("channel", source.get("channel"), language),
        "contact_every_days": source.get("contact_every_days"),
        "budget_per_customer": source.get("budget_per_customer"),
        "reason": source.get("action_reason"),
    }


def _cross_sell(ws: Workspace, meta: dict[str, Any], customer_id: str, notes: list[str]) -> list[dict[str, Any]]:
    """The customer's suggestions from the run's cross-sell table (strategy.cross_sell.stored_cross_sell, made
    the first time a run's suggestions are asked for)."""
    s = ws.config.strategy
    if s.cross_sell_top <= 0:
        return []
    cache = cache_for(ws)
    run = str(meta["run_id"])
    settings = (s.cross_sell_top, s.cross_sell_by, s.cross_sell_min_support)
    # Made once per run for all customers (seconds at a million): while the server makes it after a run, a page
    # shows a note instead of waiting, so lookups keep answering at once during and after runs.
    name = cache.value(("cross_sell", run, settings), lambda: _cross_sell_table(ws, meta, *settings), wait=False)
    if name is BUILDING:
        notes.append("cross-sell suggestions of this run are being prepared; reload the page in a moment")
        return []
    if isinstance(name, UserError):
        notes.append(f"no cross-sell suggestions: {name}")
        return []
    t = ws.table(name)
    return cache.rows(
        ws,
        ("cross_sell", name),
        lambda key: t.filter(t.customer_id == key).order_by("rank").drop("customer_id"),
        customer_id,
    )


def index_lookups(ws: Workspace) -> None:
    """An index on customer_id of the customers table and of the snapshots of runs made before runs had one:
    what makes one customer's page a handful of index lookups. The server does this when it starts, before it
    answers (creating an index beside a running ingest could make one of them fail)."""
    con = ws.con.con
    indexed = {r[0] for r in con.execute("SELECT table_name FROM duckdb_indexes()").fetchall()}
    for table in ("customers", *(str(r["snapshot_table"]) for r in cache_for(ws).runs(ws))):
        if table not in indexed:
            con.execute(f'CREATE INDEX IF NOT EXISTS "{table}_customer" ON "{table}" (customer_id)')


def prepare_cross_sell(ws: Workspace) -> None:
    """The latest run's cross-sell table, made now rather than on the first customer's page (the server does
    this in the background when it starts and after each run; until then a page waits for it)."""
    if cache_for(ws).runs(ws):
        _cross_sell(ws, cache_for(ws).meta(ws), "", [])


def _cross_sell_table(
    ws: Workspace, meta: dict[str, Any], k: int, by: str | None, min_support: float
) -> str | UserError:
    from tierwise.strategy.cross_sell import stored_cross_sell

    try:
        return stored_cross_sell(ws, meta, k, by, min_support)
    except UserError as exc:
        return exc  # kept like a table name: the reason is the same for every customer of the run


def _learned(ws: Workspace, run_id: str, row: dict[str, Any], customer_id: str) -> dict[str, Any] | None:
    from tierwise.store.learned import latest_learned

    cache = cache_for(ws)
    model = cache.value(("learned", run_id), lambda: latest_learned(ws, run_id))
    if model is None:
        return None
    found: dict[str, Any] | None = None
    if "learned_class" in row:
        found = {"learned_class": row.get("learned_class"), "learned_confidence": row.get("learned_confidence")}
    else:
        table = str(model.get("predictions_table") or "")
        exists = bool(table) and cache.value(("table", table), lambda: table in ws.con.list_tables())
        if exists:
            p = ws.table(table)
            hits = cache.rows(ws, ("learned", table), lambda key: p.filter(p.customer_id == key).limit(1), customer_id)
            found = hits[0] if hits else None
    return {
        "model_id": model.get("model_id"),
        "target": model.get("target"),
        "model": model.get("model"),
        "class": None if found is None else found.get("learned_class"),
        "confidence": None if found is None else found.get("learned_confidence"),
    }
