"""Rows a report-style export adds that are not records: totals and subtotals (合计, 小计, Total …), and records
whose key repeats within one file. Both go to quarantine with their own reason, never loaded, never guessed."""

from __future__ import annotations

import re
import uuid

import ibis
import ibis.expr.types as ir
from ibis.backends.duckdb import Backend as DuckDBBackend

from tierwise.ingest import parse
from tierwise.ingest.source import LINE, SHEET

# What a totals row says in its label column, compared after lower-casing and removing spaces and colons.
TOTAL_LABELS = [
    "合计",
    "总计",
    "小计",
    "总合计",
    "本页合计",
    "本页小计",
    "本页总计",
    "合计金额",
    "总计金额",
    "total",
    "totals",
    "subtotal",
    "sub-total",
    "grandtotal",
    "pagetotal",
]
_LONGEST = max(len(label) for label in TOTAL_LABELS) + 4  # room for the spaces and colons removed


def is_total_label(text: ir.StringValue) -> ir.BooleanValue:
    """True where a cell reads like 合计 / Subtotal: / 本页 小计. Only short values are normalised (ids and names
    that are longer cannot be a label), which keeps this to a length test for almost every row."""
    folded = text.lower()
    for ch in (" ", ":", "：", "\u3000"):
        folded = folded.replace(ch, "")
    return ibis.ifelse(text.length() <= _LONGEST, parse.one_of(folded, TOTAL_LABELS), False).fill_null(False)


def total_label_re() -> re.Pattern[str]:
    """The same test in Python, for tests and docs."""
    return re.compile("^(" + "|".join(re.escape(label) for label in TOTAL_LABELS) + ")$")


def _segments(t: ir.Table) -> list[ir.Value]:
    return [t[SHEET]] if SHEET in t.columns else []


def mark_sum_totals(con: DuckDBBackend, clean_name: str, missing_code: str, total_code: str) -> int:
    """Rows quarantined for a missing customer id whose amount equals the sum of the rows above them — since the
    previous such row (a subtotal) or since the top (a total) — are totals rows, not records: their reason becomes
    `total_code`. Amounts count every copy of a collapsed duplicate line, as the report's own sum did."""
    clean = con.table(clean_name)
    is_candidate = (clean._reason == missing_code) & clean._v_amount.notnull()
    if not int(clean.filter(is_candidate).count().execute()):
        return 0
    amount = ibis.ifelse(
        is_candidate | (clean._reason == total_code).fill_null(False), 0, clean._v_amount.fill_null(0) * clean._copies
    )
    flagged = clean.select(LINE, *_segments(clean), _cand=is_candidate, _amount=amount, _v=clean._v_amount)
    order = ibis.window(group_by=_segments(flagged), order_by=flagged[LINE], preceding=None, following=0)
    running = flagged.mutate(
        _above=flagged._amount.sum().over(order),
        _segment=flagged._cand.cast("int64").sum().over(order) - flagged._cand.cast("int64"),
    )
    by = [*([SHEET] if SHEET in clean.columns else []), "_segment"]
    per_segment = running.group_by(by).aggregate(
        _in_segment=running._amount.sum(), _rows=(~running._cand).cast("int64").sum()
    )
    cands = running.filter(running._cand).join(per_segment, by)
    # A zero amount "equals" an empty sum: free lines without a customer (Online Retail) are not totals.
    close = (cands._v != 0) & (
        ((cands._v - cands._above).abs() < 0.005) | (((cands._v - cands._in_segment).abs() < 0.005) & (cands._rows > 0))
    )
    matched = cands.filter(close).select(LINE, *by[:-1])
    name = f"_totals_{uuid.uuid4().hex[:12]}"
    con.create_table(name, matched, temp=True)
    try:
        n = int(con.table(name).count().execute())
        if n:
            on = " AND ".join(f'c."{col}" = m."{col}"' for col in [LINE, *([SHEET] if SHEET in clean.columns else [])])
            con.raw_sql(
                f"UPDATE \"{clean_name}\" AS c SET _reason = '{total_code}', "
                "_message = 'a totals row: its amount is the sum of the rows above it; not a record', "
                f'_bad_value = CAST(c._v_amount AS VARCHAR) FROM "{name}" AS m WHERE {on}'
            )
        return n
    finally:
        con.drop_table(name, force=True)


def mark_conflicting_keys(con: DuckDBBackend, clean_name: str, fields: tuple[str, ...], column: str, code: str) -> int:
    """Loadable rows of one file that share a per-row key (differing values: exact duplicates were removed) go to
    quarantine together, each naming every line involved; none is picked."""
    clean = con.table(clean_name)
    values = [clean[f"_v_{f}"] for f in fields]
    ok = clean._reason.isnull()
    for v in values:
        ok = ok & v.notnull()
    rows = clean.filter(ok)
    place = rows[LINE].cast("string")
    if SHEET in rows.columns:
        place = rows[SHEET] + ibis.literal(" ") + place
    groups = rows.group_by([f"_v_{f}" for f in fields]).aggregate(
        _n=rows.count(), _lines=place.collect(order_by=rows[LINE]).join(", ")
    )
    conflicts = groups.filter(groups._n > 1)
    if not int(conflicts.count().execute()):
        return 0
    name = f"_conflicts_{uuid.uuid4().hex[:12]}"
    con.create_table(name, conflicts, temp=True)
    try:
        label = " + ".join(fields)
        on = " AND ".join(f'c."_v_{f}" = k."_v_{f}"' for f in fields)
        key_text = " || ' / ' || ".join(f'CAST(c."_v_{f}" AS VARCHAR)' for f in fields)
        con.raw_sql(
            f"UPDATE \"{clean_name}\" AS c SET _reason = '{code}', "
            f"_message = '{label} ' || {key_text} || ' is on lines ' || k._lines || "
            "' with different values; keep the right line in the source and load it again', "
            f"_column = '{column.replace(chr(39), chr(39) * 2)}', _bad_value = {key_text} "
            f'FROM "{name}" AS k WHERE c._reason IS NULL AND {on}'
        )
        return int(con.table(name)._n.sum().execute())
    finally:
        con.drop_table(name, force=True)
