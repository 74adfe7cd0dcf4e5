"""Value parsers as Ibis expressions: amounts, numbers, booleans, dates and times.

Each returns NULL where a value cannot be read (the pipeline turns that into a quarantine reason), never an
error at execution time. They are plain Ibis string functions and regular expressions (no engine-specific
SQL, no Python UDFs), so they run on millions of rows inside the engine.

Decisions (docs/ingest.md repeats them for users):
- A comma is always a thousands separator, a dot always the decimal point (`1,234.50`); `1.234,50` is
  unreadable rather than guessed.
- Two-digit years below the pivot (default 70) are 20xx, the others 19xx.
- A time-zone offset (`Z`, `+08:00`) is dropped: the wall-clock time as written is kept, because what matters
  for classification is the business day on which the customer bought.
- Excel serial day numbers are 5-digit numbers between 20000 and 80000 (1954–2119), counted from 1899-12-30.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir

from tierwise import money

DateOrder = Literal["ymd", "dmy", "mdy"]

_FULL_WIDTH = "０１２３４５６７８９．，－＋（）￥：／"
_HALF_WIDTH = "0123456789.,-+()¥:/"
_CURRENCY = r"(?i)(¥|\$|€|£|cny|rmb|usd|eur|gbp|元)"
_NUMBER = r"^[+-]?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)?(\.[0-9]+)?([eE][+-]?[0-9]+)?$"

# Dates: Chinese marks become separators (年/月 → '-', 日 → ' ', 时/点/分 → ':', 秒 dropped).
_DATE_FROM = "０１２３４５６７８９．：－／年月日时点分秒"
_DATE_TO = "0123456789.:-/-- :::"
_DATE_PART = r"^([0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}|[0-9]{8}|[0-9]{5}(\.[0-9]+)?)"
_THREE_PARTS = r"^([0-9]{1,4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,4})$"
_TIME = r"^([0-9]{1,2}):([0-9]{1,2})(:([0-9]{1,2}(\.[0-9]+)?)?)?\s*([AaPp][Mm])?\s*(Z|[+-][0-9]{2}:?[0-9]{2})?$"
_OFFSET_ONLY = r"^(Z|[+-][0-9]{2}:?[0-9]{2})$"
_YEAR_LAST = r"^\s*([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{2}|[0-9]{4})(\s|T|$)"


# Parsers are written as stages: each stage adds columns computed from the previous ones. Written as one
# nested expression, a timestamp parser compiles to almost a megabyte of SQL (every reuse of a
# sub-expression is inlined); in stages each helper is computed once.
Stage = Callable[[ir.Table], dict[str, ir.Value]]


def one_of(value: ir.StringValue, options: list[str]) -> ir.BooleanValue:
    """`value IN (...)` as an array lookup: DuckDB plans a long IN list inside a projection as a join, which
    took 2–3 s per column on ten million rows; the array lookup takes a tenth of that. NULL stays NULL."""
    return ibis.literal(sorted(set(options)), type="array<string>").contains(value)


# The characters Ibis' strip() removes (its SQL: trim(x, ' \t\n\r\v\f')).
_SPACES = " \t\n\r\x0b\x0c"


def strip(value: ir.StringValue) -> ir.StringValue:
    """`value.strip()`, evaluated only for the values that start or end with a space. Trimming with a set of
    characters cost 1 s per column of ten million values, testing both ends a tenth of that, and almost no
    value has anything to strip."""
    edge = value.ascii_str() <= 32  # the first character: every space, and a few control characters
    for space in _SPACES:
        edge = edge | value.endswith(space)
    return ibis.ifelse(edge, value.strip(), value)


def apply_stages(t: ir.Table, parsers: list[list[Stage]]) -> ir.Table:
    """Run several parsers side by side: stage k of every parser in one projection; helpers dropped."""
    before = set(t.columns)
    depth = max((len(p) for p in parsers), default=0)
    for k in range(depth):
        new: dict[str, ir.Value] = {}
        for p in parsers:
            if k < len(p):
                new.update(p[k](t))
        t = t.mutate(**new)
    helpers = [c for c in t.columns if c not in before and "__" in c]
    return t.drop(*helpers) if helpers else t


_PLAIN_NUMBER = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_PLAIN_TIMESTAMP = r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([ T]([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?)?$"


def _with_fast_path(src: str, out: str, kind: str, plain: str, slow: Callable[[str, str], list[Stage]]) -> list[Stage]:
    """Plain values (`1234.5`, `2024-03-05 14:30:00`) are cast directly; only the others go through the
    slow stages, which the engine evaluates just for the rows where the fast cast found nothing."""
    fast, slow_out = f"{out}__fast", f"{out}__slow"

    def first(t: ir.Table) -> dict[str, ir.Value]:
        x = t[src]
        return {fast: ibis.ifelse(x.re_search(plain), x.try_cast(kind), ibis.null(kind))}

    def guarded(stage: Stage) -> Stage:
        def run(t: ir.Table) -> dict[str, ir.Value]:
            return {
                name: ibis.ifelse(t[fast].isnull(), expr, ibis.null(expr.type())) for name, expr in stage(t).items()
            }

        return run

    def last(t: ir.Table) -> dict[str, ir.Value]:
        return {out: t[fast].coalesce(t[slow_out])}

    return [first, *[guarded(st) for st in slow(src, slow_out)], last]


# Money: exact decimals (tierwise.workspace.MONEY). The text is cast straight to the decimal type, never through
# a float, so `2816389.49` is stored as written. More places than the type has are rounded half away from zero
# (DuckDB's cast: 0.00005 → 0.0001, -0.00005 → -0.0001), the rounding of commercial invoices.
MONEY = str(money.MONEY)
# `1.5万` is multiplied after reading, and `5E-7` is read, with more places first: `1.23456万` is 12345.6 exactly,
# and DuckDB's direct cast of an exponent form rounds by the wrong digit (`5E-7` became 0.0001).
_WIDE = "decimal(38,16)"
_PLAIN_DECIMAL = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)$"


def amount_stages(src: str, out: str) -> list[Stage]:
    """`¥1,234.50`, `1234.50元`, `(12.30)`, `１２３．４５`, `1.5万`, `-3`, `1e3` → exact decimal(18,4); anything
    else (and anything beyond ±99,999,999,999,999.9999) NULL."""
    return _with_fast_path(src, out, MONEY, _PLAIN_DECIMAL, lambda s, o: _amount_slow(s, o, MONEY))


def number_stages(src: str, out: str) -> list[Stage]:
    """The forms of `amount_stages` → float (quantities, discounts, scores: not money)."""
    return _with_fast_path(src, out, "float64", _PLAIN_NUMBER, lambda s, o: _amount_slow(s, o, "float64"))


def _amount_slow(src: str, out: str, kind: str) -> list[Stage]:
    h = f"{out}__"

    def clean(t: ir.Table) -> dict[str, ir.Value]:
        return {h + "t": t[src].strip().translate(_FULL_WIDTH, _HALF_WIDTH).re_replace(_CURRENCY, "").strip()}

    def parens(t: ir.Table) -> dict[str, ir.Value]:
        x = t[h + "t"]
        neg = x.startswith("(") & x.endswith(")")
        return {h + "neg": neg, h + "u": ibis.ifelse(neg, x.substr(1, x.length() - 2).strip(), x)}

    def wan(t: ir.Table) -> dict[str, ir.Value]:
        x = t[h + "u"]
        w = x.endswith("万")
        return {h + "wan": w, h + "w": ibis.ifelse(w, x.substr(0, x.length() - 1).strip(), x)}

    def number(t: ir.Table) -> dict[str, ir.Value]:
        x = t[h + "w"]
        ok = x.re_search(_NUMBER) & x.re_search("[0-9]")
        digits = ibis.ifelse(ok, x.replace(",", ""), ibis.null("string"))
        if kind == "float64":
            v = digits.try_cast("float64")
            return {h + "v": ibis.ifelse(t[h + "wan"], v * 10000, v)}
        wide = digits.try_cast(_WIDE)
        # Guarded: beyond MONEY's range either way, and the product would overflow DuckDB's 38 digits (an error).
        fits = wide.abs() < 10**18
        wan = ibis.ifelse(fits, wide * 10000, ibis.null(_WIDE))
        scaled = ibis.ifelse(t[h + "wan"], wan, wide).try_cast(kind)
        return {h + "v": ibis.ifelse(t[h + "wan"] | x.re_search("[eE]"), scaled, digits.try_cast(kind))}

    def sign(t: ir.Table) -> dict[str, ir.Value]:
        v = t[h + "v"]
        # A parenthesised amount is negative; "(-5)" is not a form anyone writes, so it stays unreadable.
        return {out: ibis.ifelse(t[h + "neg"], ibis.ifelse(v < 0, ibis.null(kind), -v), v)}

    return [clean, parens, wan, number, sign]


def integer_stages(src: str, out: str) -> list[Stage]:
    def whole(t: ir.Table) -> dict[str, ir.Value]:
        v = t[out + "__f"]
        # try_cast: a whole number beyond 64 bits (1E100) is unreadable as an integer, not a crash.
        return {out: ibis.ifelse(v % 1 == 0, v.try_cast("int64"), ibis.null("int64"))}

    return [*number_stages(src, out + "__f"), whole]


_TRUE = ["是", "有", "对", "yes", "y", "true", "t", "1", "responded", "响应"]
_FALSE = ["否", "无", "错", "no", "n", "false", "f", "0", "未响应"]


def boolean_stages(src: str, out: str) -> list[Stage]:
    def flag(t: ir.Table) -> dict[str, ir.Value]:
        x = t[src].strip().lower()
        return {out: ibis.cases((one_of(x, _TRUE), True), (one_of(x, _FALSE), False), else_=ibis.null("boolean"))}

    return [flag]


def _int(s: ir.StringValue) -> ir.IntegerValue:
    return ibis.ifelse(s == "", ibis.null("int64"), s.try_cast("int64"))


def timestamp_stages(
    src: str, out: str, order: DateOrder = "ymd", pivot: int = 70, as_date: bool = False
) -> list[Stage]:
    """Dates and times in the forms of docs/ingest.md, mixed in one column → naive timestamp, else NULL."""
    ts_out = f"{out}__ts" if as_date else out
    stages = _with_fast_path(
        src, ts_out, "timestamp", _PLAIN_TIMESTAMP, lambda s, o: _timestamp_slow(s, o, order, pivot)
    )
    if as_date:
        stages.append(lambda t: {out: t[ts_out].date()})
    return stages


def _timestamp_slow(src: str, out: str, order: DateOrder, pivot: int) -> list[Stage]:
    h = f"{out}__"

    def normalise(t: ir.Table) -> dict[str, ir.Value]:
        return {h + "n": t[src].strip().translate(_DATE_FROM, _DATE_TO).strip()}

    def split(t: ir.Table) -> dict[str, ir.Value]:
        return {h + "d": t[h + "n"].re_extract(_DATE_PART, 1)}

    def parts(t: ir.Table) -> dict[str, ir.Value]:
        d = t[h + "d"]
        rest = t[h + "n"].substr(d.length()).strip()
        return {
            h + "r0": ibis.ifelse(rest.startswith("T"), rest.substr(1), rest).strip(),
            h + "a": d.re_extract(_THREE_PARTS, 1),
            h + "b": d.re_extract(_THREE_PARTS, 2),
            h + "c": d.re_extract(_THREE_PARTS, 3),
        }

    def pieces(t: ir.Table) -> dict[str, ir.Value]:
        d, a, b, c, r0 = (t[h + k] for k in ("d", "a", "b", "c", "r0"))
        year_first = (a.length() == 4) & (c.length() <= 2) & (c.length() > 0)
        year_last = (a.length() <= 2) & (a.length() > 0) & ((c.length() == 2) | (c.length() == 4))
        compact = d.length() == 8
        yy = _int(c)
        last_year = ibis.ifelse(c.length() == 2, ibis.ifelse(yy < pivot, yy + 2000, yy + 1900), yy)
        if order == "dmy":
            ylast_day, ylast_month = _int(a), _int(b)
        elif order == "mdy":
            ylast_day, ylast_month = _int(b), _int(a)
        else:
            ylast_day, ylast_month = ibis.null("int64"), ibis.null("int64")
        rest = ibis.ifelse(r0.re_search(_OFFSET_ONLY), ibis.literal(""), r0)
        none = ibis.null("int64")
        return {
            h + "rest": rest,
            h + "y": ibis.cases(
                (year_first, _int(a)), (year_last, last_year), (compact, _int(d.substr(0, 4))), else_=none
            ),
            h + "m": ibis.cases(
                (year_first, _int(b)), (year_last, ylast_month), (compact, _int(d.substr(4, 2))), else_=none
            ),
            h + "dd": ibis.cases(
                (year_first, _int(c)), (year_last, ylast_day), (compact, _int(d.substr(6, 2))), else_=none
            ),
            h + "serial": ibis.ifelse(
                d.re_search(r"^[0-9]{5}(\.[0-9]+)?$"), d.try_cast("float64"), ibis.null("float64")
            ),
        }

    def clock(t: ir.Table) -> dict[str, ir.Value]:
        rest = t[h + "rest"]
        return {
            h + "hh": _int(rest.re_extract(_TIME, 1)),
            h + "mi": rest.re_extract(_TIME, 2),
            h + "ss": rest.re_extract(_TIME, 4),
            h + "ampm": rest.re_extract(_TIME, 6).upper(),
            h + "tok": (rest == "") | rest.re_search(_TIME),
        }

    def assemble(t: ir.Table) -> dict[str, ir.Value]:
        hh, mi, ss, ampm, rest = (t[h + k] for k in ("hh", "mi", "ss", "ampm", "rest"))
        y, m, d, serial = t[h + "y"], t[h + "m"], t[h + "dd"], t[h + "serial"]
        hour = ibis.cases(((ampm == "PM") & (hh < 12), hh + 12), ((ampm == "AM") & (hh == 12), 0), else_=hh)
        hms = ibis.ifelse(
            rest == "",
            ibis.literal("00:00:00"),
            hour.cast("string") + ":" + mi + ":" + ibis.ifelse(ss == "", ibis.literal("00"), ss),
        )
        valid = t[h + "tok"] & (y >= 1000) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= 31) & ((rest == "") | (hour <= 23))
        iso = y.cast("string") + "-" + m.cast("string") + "-" + d.cast("string") + " " + hms
        # Ibis' floor() casts to BIGINT, which overflows on numbers like 1E100; serials that count are positive,
        # where x − x % 1 is the floor.
        fraction = serial % 1
        whole = (serial - fraction).try_cast("int64")
        seconds = (fraction * 86400).round().try_cast("int64")
        from_serial = ibis.timestamp("1899-12-30 00:00:00") + whole.as_interval("D") + seconds.as_interval("s")
        value = ibis.cases(
            (y.notnull() & valid, iso.try_cast("timestamp")),
            (serial.notnull() & (rest == "") & (serial >= 20000) & (serial < 80000), from_serial),
            else_=ibis.null("timestamp"),
        ).cast("timestamp")
        return {out: value}

    return [normalise, split, parts, pieces, clock, assemble]


def parse_column(t: ir.Table, src: str, kind: str, order: DateOrder = "ymd", pivot: int = 70) -> ir.Table:
    """Convenience for one column: t with `src` replaced by its parsed value (tests and ad-hoc use)."""
    stages = stages_for(kind, src, "_parsed", order, pivot)
    return apply_stages(t, [stages]).mutate(**{src: ibis._["_parsed"]}).drop("_parsed")


def stages_for(kind: str, src: str, out: str, order: DateOrder = "ymd", pivot: int = 70) -> list[Stage]:
    if kind == "amount":
        return amount_stages(src, out)
    if kind == "number":
        return number_stages(src, out)
    if kind == "integer":
        return integer_stages(src, out)
    if kind == "boolean":
        return boolean_stages(src, out)
    if kind in ("date", "timestamp"):
        return timestamp_stages(src, out, order, pivot, as_date=kind == "date")
    raise ValueError(f"no parser for kind '{kind}'")


@dataclass(frozen=True)
class DateOrderEvidence:
    year_last: int
    first_over_12: int
    second_over_12: int
    ambiguous: int
    example_first: str | None
    example_second: str | None
    example_ambiguous: str | None


@dataclass(frozen=True)
class DateOrderProblem:
    kind: Literal["conflict", "ambiguous"]
    example: str | None


def date_order_evidence(t: ir.Table, column: str) -> DateOrderEvidence:
    """How the year-last dates of a column (`03/04/2024`) read: only day-first, only month-first, or either."""
    # Cheap pre-filter: a year-last date has its first separator at position 2 or 3.
    seps = ["/", ".", "-", "／", "．", "－"]
    t = t.filter(one_of(t[column].substr(1, 1), seps) | one_of(t[column].substr(2, 1), seps))
    s = t[column].translate(_FULL_WIDTH, _HALF_WIDTH)
    a = _int(s.re_extract(_YEAR_LAST, 1))
    b = _int(s.re_extract(_YEAR_LAST, 2))
    shaped = s.re_search(_YEAR_LAST)
    first = shaped & (a > 12) & (b <= 12)
    second = shaped & (b > 12) & (a <= 12)
    either = shaped & (a <= 12) & (b <= 12) & (a != b)
    row = (
        t.aggregate(
            year_last=shaped.cast("int64").sum(),
            first_over_12=first.cast("int64").sum(),
            second_over_12=second.cast("int64").sum(),
            ambiguous=either.cast("int64").sum(),
            example_first=ibis.ifelse(first, t[column], ibis.null("string")).min(),
            example_second=ibis.ifelse(second, t[column], ibis.null("string")).min(),
            example_ambiguous=ibis.ifelse(either, t[column], ibis.null("string")).min(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    return DateOrderEvidence(
        year_last=int(row["year_last"] or 0),
        first_over_12=int(row["first_over_12"] or 0),
        second_over_12=int(row["second_over_12"] or 0),
        ambiguous=int(row["ambiguous"] or 0),
        example_first=row["example_first"],
        example_second=row["example_second"],
        example_ambiguous=row["example_ambiguous"],
    )


def decide_date_order(
    evidence: DateOrderEvidence, configured: Literal["auto", "ymd", "dmy", "mdy"]
) -> DateOrder | DateOrderProblem:
    if configured != "auto":
        return configured
    if evidence.year_last == 0:
        return "ymd"
    if evidence.first_over_12 and evidence.second_over_12:
        return DateOrderProblem("conflict", evidence.example_first)
    if evidence.first_over_12:
        return "dmy"
    if evidence.second_over_12:
        return "mdy"
    if evidence.ambiguous:
        return DateOrderProblem("ambiguous", evidence.example_ambiguous)
    return "mdy"  # every year-last value has day == month: either reading gives the same date
