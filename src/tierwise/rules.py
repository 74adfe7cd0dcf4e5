"""User rules (标签规则): boolean SQL expressions over snapshot columns, checked with sqlglot, compiled to Ibis.

Used by `[[rules]]` in tierwise.toml (the names of the matching rules go into the `tags` column) and by
`tierwise export --where`. No SQL text ever reaches the backend: the sqlglot tree is walked node by node and
turned into Ibis expressions, so a rule means the same on DuckDB and on PySpark. Grammar: docs/rules.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import ibis
import ibis.expr.types as ir
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from tierwise.errors import UserError

FUNCTIONS = ("abs", "round", "lower", "upper", "length", "coalesce", "least", "greatest")
ALLOWED = (
    "allowed are column names, 'text', numbers, DATE '2024-01-01', TRUE/FALSE, and/or/not, ( ), "
    "= != <> < <= > >=, + - * / %, IS [NOT] NULL, [NOT] IN (values), [NOT] BETWEEN, [NOT] LIKE/ILIKE, "
    "CASE WHEN, and the functions " + ", ".join(FUNCTIONS) + " (see docs/rules.md)"
)
SAME_KIND = "compare like with like: text with 'quoted text', numbers with numbers, dates with DATE '2024-01-01'"

# DuckDB's dialect: the engine tierwise runs on by default, and close to what users know from SQL tutorials.
_DIALECT = Dialect.get_or_raise("duckdb")
_COMPARE: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.LT: operator.lt,
    exp.LTE: operator.le, exp.GT: operator.gt, exp.GTE: operator.ge,
}  # fmt: skip
_ARITHMETIC: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.Add: operator.add, exp.Sub: operator.sub, exp.Mul: operator.mul,
    exp.Div: operator.truediv, exp.Mod: operator.mod,
}  # fmt: skip
_FUNCTION_NODES: dict[type[exp.Expression], str] = {
    exp.Abs: "abs", exp.Round: "round", exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length",
    exp.Coalesce: "coalesce", exp.Least: "least", exp.Greatest: "greatest",
}  # fmt: skip
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FULL_WIDTH = "‘’“”（），＝＜＞！；：　"  # what a Chinese input method types instead of SQL punctuation
CONDITION, NUMBER, TEXT, DATE = "a condition (true/false)", "a number", "text", "a date"


def _kind(value: ir.Value) -> str:
    t = value.type()
    if t.is_boolean():
        return CONDITION
    if t.is_numeric():
        return NUMBER
    if t.is_string():
        return TEXT
    if t.is_date() or t.is_timestamp():
        return DATE
    return str(t)


def compile_expression(text: str, schema: ibis.Schema, *, what: str) -> Callable[[ir.Table], ir.BooleanValue]:
    """Check `text` against `schema` now (UserError on any problem); return table -> boolean filter.

    The filter is never NULL: where SQL's answer is unknown (NULL) it is False, i.e. "does not match"."""
    build = _compile(text, schema, what, CONDITION)
    return lambda t: build(t).fill_null(False)


def compile_value(text: str, schema: ibis.Schema, *, what: str) -> Callable[[ir.Table], ir.NumericValue]:
    """The same language for a number (grade indicators, e.g. "monetary * 365.0 / greatest(tenure_days, 30)").

    NULL stays NULL (e.g. coalesce(revenue_trend, 0) when a missing value should count as 0)."""
    return _compile(text, schema, what, NUMBER)


def _compile(text: str, schema: ibis.Schema, what: str, kind: str) -> Callable[[ir.Table], Any]:
    tokens, root = _parse(text, what)
    _Compiler(text, what, tokens, root, ibis.table(schema, name="snapshot")).result(kind)  # check before running
    return lambda t: _Compiler(text, what, tokens, root, t).result(kind)


def columns_in(text: str, columns: Sequence[str]) -> set[str]:
    """The columns (of `columns`) an expression mentions; unquoted names match regardless of case."""
    _, root = _parse(text, "expression")
    by_lower = {c.lower(): c for c in columns}
    named = {(col.name, col.this.args.get("quoted", False)) for col in root.find_all(exp.Column)}
    return {name if quoted or name in columns else by_lower.get(name.lower(), name) for name, quoted in named} & set(
        columns
    )


def check_rules(rules: Sequence[tuple[str, str]], schema: ibis.Schema) -> None:
    """Check every (name, expression) rule; the first bad one raises UserError naming it."""
    for name, expression in rules:
        compile_expression(expression, schema, what=f"rule '{name}'")


def add_tags(t: ir.Table, rules: Sequence[tuple[str, str]]) -> ir.Table:
    """Add `tags`: names of the matching rules in the given order joined by '; ', NULL when none match."""
    schema = t.schema()
    filters = [(name, compile_expression(expression, schema, what=f"rule '{name}'")) for name, expression in rules]
    none = ibis.null("string")
    if not filters:
        return t.mutate(tags=none)
    # concat_ws skips NULLs on DuckDB and Spark alike, so only the matching names are joined.
    pieces = [f(t).ifelse(ibis.literal(name, type="string"), none) for name, f in filters]
    return t.mutate(tags=ibis.literal("; ").join(pieces).nullif(""))


def _parse(text: str, what: str) -> tuple[list[Token], exp.Expression]:
    tokenizer = _DIALECT.tokenizer()
    try:
        tokens = tokenizer.tokenize(text)
    except TokenError:
        start = getattr(tokenizer, "_start", 0)  # where the token that could not be read begins
        quote = text[start : start + 1] in ("'", '"')
        problem = f"the quote {text[start]} is not closed" if quote else "this cannot be read"
        _fail(text, what, (start, len(text) - 1), problem, "text goes in '…' (write ' inside text as '')")
    if not tokens:
        raise UserError(f"{what}: the expression is empty; write a condition, e.g. province = '浙江'")
    for tok in tokens:
        wide = next((i for i, c in enumerate(tok.text) if c in _FULL_WIDTH), None)
        if wide is not None and tok.token_type not in (TokenType.STRING, TokenType.IDENTIFIER):
            at = tok.start + wide
            problem, fix = (
                f"full-width '{text[at]}' (全角) is not SQL",
                "type SQL punctuation half-width (半角): ' ( ) , = < >",
            )
            _fail(text, what, (at, at), problem, fix)
        if tok.token_type == TokenType.SEMICOLON:
            problem = "';' is not allowed (one condition only)"
            _fail(text, what, (tok.start, tok.end), problem, "join conditions with and/or")
    try:
        root = _DIALECT.parser().parse(tokens, text)[0]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        description, highlight = str(error.get("description", exc)), str(error.get("highlight") or "")
        offsets = [0, *(m.end() for m in re.finditer("\n", text))]
        line = min(max(int(error.get("line") or 1), 1), len(offsets))
        start = offsets[line - 1] + max(int(error.get("col") or 1) - len(highlight), 0)  # sqlglot gives the end
        if description.startswith("Expecting )"):
            problem, fix = "a '(' is not closed", "add the missing ')'"
            opened = _unclosed(tokens)
            if opened is not None:
                start, highlight = opened.start, "("
        elif description.startswith("Required keyword"):
            problem, fix = f"something is missing around '{highlight}'", "each operator needs a value on both sides"
        elif description.startswith("Expected END"):
            problem, fix = "CASE without END", "finish it: CASE WHEN … THEN … ELSE … END"
        else:
            problem, fix = f"unexpected '{highlight}'", "is an 'and'/'or' missing, or a ')' too many?"
        _fail(text, what, (start, start + max(len(highlight), 1) - 1), problem, fix)
    if root is None:
        raise UserError(f"{what}: the expression is empty; write a condition, e.g. province = '浙江'")
    return tokens, root


def _unclosed(tokens: list[Token]) -> Token | None:
    stack: list[Token] = []
    for tok in tokens:
        if tok.token_type == TokenType.L_PAREN:
            stack.append(tok)
        elif tok.token_type == TokenType.R_PAREN and stack:
            stack.pop()
    return stack[-1] if stack else None


def _fail(text: str, what: str, span: tuple[int, int], problem: str, fix: str) -> NoReturn:
    start, end = span
    line = text.count("\n", 0, start) + 1
    column = start - text.rfind("\n", 0, start)
    snippet = text[start : end + 1]
    while snippet.count("(") > snippet.count(")") and ")" in text[end + 1 :]:  # show "foo(x)", not "foo(x"
        end = text.index(")", end + 1)
        snippet = text[start : end + 1]
    snippet = " ".join(snippet.split())
    snippet = snippet if len(snippet) <= 40 else snippet[:39] + "…"
    raise UserError(f"{what}: {problem} at line {line}, column {column}: {snippet}; {fix}")


class _Compiler:
    """Builds the Ibis expression of one parsed rule against one table; checks types on the way."""

    def __init__(self, text: str, what: str, tokens: list[Token], root: exp.Expression, table: ir.Table) -> None:
        self.text, self.what, self.tokens, self.root, self.table = text, what, tokens, root, table

    def result(self, kind: str) -> Any:
        value = self.build(self.root)
        if _kind(value) != kind:
            fix = "compare it, e.g. monetary > 50000" if kind == CONDITION else "e.g. monetary * 0.1"
            self.fail(self.root, f"the expression must be {kind}, but this is {_kind(value)}", fix)
        return value

    def fail(self, node: exp.Expression, problem: str, fix: str) -> NoReturn:
        _fail(self.text, self.what, self.span(node), problem, fix)

    def span(self, node: exp.Expression) -> tuple[int, int]:
        """Source offsets of a node. sqlglot records them on identifiers, literals and function names only."""
        if node is self.root:
            return self.tokens[0].start, self.tokens[-1].end
        spans = [(n.meta["start"], n.meta["end"]) for n in node.walk() if "start" in n.meta]
        keyword = None
        if "start" not in node.meta:
            if isinstance(node, exp.Query):
                keyword = "SELECT"
            elif isinstance(node, exp.Func) and not isinstance(node, exp.Cast):
                keyword = node.sql_name()
            elif not spans:
                keyword = node.sql(dialect=_DIALECT).upper()  # NULL, TRUE, …
        if keyword:
            after = self._end_before(node)
            limit = min(s for s, _ in spans) if spans else len(self.text)
            tok = next((t for t in self.tokens if after < t.start <= limit and t.text.upper() == keyword), None)
            if tok is not None:
                spans.append((tok.start, tok.end))
        if not spans:
            return self.tokens[0].start, self.tokens[-1].end
        return min(s for s, _ in spans), max(e for _, e in spans)

    def _end_before(self, node: exp.Expression) -> int:
        last = -1
        for n in self.root.walk(bfs=False):  # depth-first follows the source order of operands
            if n is node:
                break
            last = max(last, n.meta.get("end", -1))
        return last

    def expect(self, node: exp.Expression, kind: str, purpose: str, fix: str) -> ir.Value:
        value = self.build(node)
        if _kind(value) != kind:
            self.fail(node, f"{purpose} needs {kind}, but this is {_kind(value)}", fix)
        return value

    def condition(self, node: exp.Expression, purpose: str) -> ir.BooleanValue:
        value: Any = self.expect(node, CONDITION, purpose, "compare it, e.g. province = '浙江' or monetary > 50000")
        return value

    def like(self, node: exp.Expression, other: ir.Value, purpose: str) -> ir.Value:
        """Build `node` as a value `other` can be compared with: a 'YYYY-MM-DD' string next to a date is a date."""
        if _kind(other) == DATE and isinstance(node, exp.Literal) and node.is_string:
            return self.date(node)
        value = self.build(node)
        if _kind(value) != _kind(other):
            self.fail(node, f"{purpose} {_kind(other)} with {_kind(value)}", SAME_KIND)
        return value

    def date(self, node: exp.Literal) -> ir.Value:
        try:
            if not _ISO_DATE.fullmatch(node.this):
                raise ValueError(node.this)
            return ibis.literal(dt.date.fromisoformat(node.this), type="date")
        except ValueError:
            self.fail(node, f"'{node.this}' is not a date", "write dates as 'YYYY-MM-DD', e.g. DATE '2024-01-31'")

    def build(self, node: exp.Expression) -> ir.Value:
        kind = type(node)
        if isinstance(node, exp.Paren):
            return self.build(node.this)
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Literal):
            return self.literal(node)
        if isinstance(node, exp.Boolean):
            return ibis.literal(bool(node.this), type="boolean")
        if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE) and node.this.is_string:
            return self.date(node.this)
        if isinstance(node, exp.Null):
            fix = "e.g. city IS NULL (= NULL is never true)"
            self.fail(node, "NULL can only be used in IS NULL / IS NOT NULL", fix)
        if isinstance(node, (exp.And, exp.Or)):
            left, right = self.condition(node.this, f"'{node.key}'"), self.condition(node.expression, f"'{node.key}'")
            return left & right if isinstance(node, exp.And) else left | right
        if isinstance(node, exp.Not):
            return ~self.condition(node.this, "'not'")
        if kind in _COMPARE:
            left = self.build(node.this)
            return _COMPARE[kind](left, self.like(node.expression, left, "cannot compare"))
        if kind in _ARITHMETIC or isinstance(node, exp.Neg):
            fix = "arithmetic (+ - * / %) works on numbers only"
            operands: list[Any] = [self.expect(n, NUMBER, "arithmetic", fix) for n in (node.this, node.expression) if n]
            return -operands[0] if len(operands) == 1 else _ARITHMETIC[kind](*operands)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return self.build(node.this).isnull()
        if isinstance(node, exp.In) and node.args.get("query"):
            self.not_allowed(node.args["query"])
        if isinstance(node, exp.In) and not node.args.get("unnest"):
            left = self.build(node.this)
            if not node.expressions:
                self.fail(node, "IN needs at least one value", "e.g. province IN ('浙江', '江苏')")
            return left.isin([self.in_value(item, left) for item in node.expressions])
        if isinstance(node, exp.Between):
            left = self.build(node.this)
            low, high = (self.like(node.args[k], left, "BETWEEN cannot compare") for k in ("low", "high"))
            return left.between(low, high)
        if isinstance(node, (exp.Like, exp.ILike)):
            fix = "e.g. name LIKE '%贸易%' (% = any text, _ = one character)"
            subject: Any = self.expect(node.this, TEXT, node.key.upper(), fix)
            pattern = self.expect(node.expression, TEXT, node.key.upper(), fix)
            return subject.like(pattern) if isinstance(node, exp.Like) else subject.ilike(pattern)
        if isinstance(node, exp.Case) and not node.args.get("this"):
            return self.case(node)
        if kind in _FUNCTION_NODES:
            return self.function(node, _FUNCTION_NODES[kind])
        self.not_allowed(node)

    def column(self, node: exp.Column) -> ir.Value:
        name, names = node.name, self.table.columns
        if node.table or not isinstance(node.this, exp.Identifier):
            self.fail(node, "qualified names (x.y) are not allowed", "write just the column name")
        if name in names:
            return self.table[name]
        same = [c for c in names if c.lower() == name.lower()]
        if len(same) == 1 and not node.this.quoted:
            return self.table[same[0]]
        hints = []
        if node.this.quoted:
            hints.append(f"text values take single quotes: '{name}'")
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) or same
        if close:
            hints.append("did you mean " + " or ".join(f"'{c}'" for c in close) + "?")
        else:
            hints.append("list the columns with 'tierwise export --list-columns' (see docs/rules.md)")
        self.fail(node, f"unknown column '{name}'", "; ".join(hints))

    def literal(self, node: exp.Literal) -> ir.Value:
        if node.is_string:
            return ibis.literal(node.this, type="string")
        try:
            number = int(node.this)
            if -(2**63) <= number < 2**63:
                return ibis.literal(number, type="int64")
        except ValueError:
            pass
        try:
            return ibis.literal(float(node.this), type="float64")
        except ValueError:
            self.fail(node, f"'{node.this}' is not a number", "write numbers like 50000 or 0.25")

    def in_value(self, node: exp.Expression, left: ir.Value) -> ir.Value:
        value = self.like(node, left, "IN cannot compare")
        inner = node.this if isinstance(node, exp.Neg) else node
        if not isinstance(inner, (exp.Literal, exp.Boolean, exp.Cast)):
            self.fail(node, "IN takes a list of values, not expressions", "e.g. province IN ('浙江', '江苏')")
        return value

    def case(self, node: exp.Case) -> ir.Value:
        branches, nodes = [], []
        for branch in node.args.get("ifs") or []:
            branches.append((self.condition(branch.this, "WHEN"), self.build(branch.args["true"])))
            nodes.append(branch.args["true"])
        default = node.args.get("default")
        values = [v for _, v in branches]
        if default is not None:
            values.append(self.build(default))
            nodes.append(default)
        for n, v in zip(nodes[1:], values[1:], strict=True):
            if _kind(v) != _kind(values[0]):
                self.fail(n, f"CASE mixes {_kind(values[0])} with {_kind(v)}", "give every THEN/ELSE the same kind")
        return ibis.cases(*branches, else_=values[-1] if default is not None else None)

    def function(self, node: exp.Expression, name: str) -> ir.Value:
        purpose = f"{name}()"
        if name in ("abs", "round"):
            value: Any = self.expect(node.this, NUMBER, purpose, f"e.g. {name}(monetary)")
            if name == "abs":
                return value.abs()
            digits = node.args.get("decimals")
            if digits is None:
                return value.round()
            number = digits.this if isinstance(digits, exp.Neg) else digits
            if not (isinstance(number, exp.Literal) and number.this.isdigit()):
                self.fail(digits, "round() takes a whole number of decimals", "e.g. round(monetary, 2)")
            return value.round(-int(number.this) if number is not digits else int(number.this))
        if name in ("lower", "upper", "length"):
            text: Any = self.expect(node.this, TEXT, purpose, f"e.g. {name}(name)")
            return text.lower() if name == "lower" else text.upper() if name == "upper" else text.length()
        first = self.build(node.this)
        rest = [self.like(n, first, f"{purpose} cannot mix") for n in node.expressions]
        return {"coalesce": ibis.coalesce, "least": ibis.least, "greatest": ibis.greatest}[name](first, *rest)

    def not_allowed(self, node: exp.Expression) -> NoReturn:
        if isinstance(node, exp.Alias):  # "a > 1 b" parses as an alias
            alias = node.args["alias"]
            self.fail(alias, f"unexpected '{alias.name}'", "is an 'and', 'or' or operator missing before it?")
        if isinstance(node, exp.Query):
            problem = "subqueries (SELECT) are not allowed"
        elif isinstance(node, exp.Window):
            problem = "window functions (OVER) are not allowed"
        elif isinstance(node, exp.Cast):
            problem = "casts are not allowed (only DATE 'YYYY-MM-DD')"
        elif isinstance(node, exp.Case):
            problem = "CASE value WHEN … is not supported"
            self.fail(node, problem, "write CASE WHEN column = value THEN … ELSE … END")
        elif isinstance(node, exp.Is):
            self.fail(node, "IS must be followed by NULL or NOT NULL", "e.g. city IS NULL; compare values with =")
        elif isinstance(node, exp.Func):
            function = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            problem = f"function {function.lower()}() is not allowed"
            self.fail(node, problem, "allowed functions: " + ", ".join(FUNCTIONS) + " (see docs/rules.md)")
        elif isinstance(node, exp.Star):
            problem = "'*' is not allowed"
        elif isinstance(node, exp.Binary) and isinstance(node.this, exp.Expression):
            # Point at the operator itself (e.g. the second '>' of "a > > 5"), not at the whole expression.
            left_end = self.span(node.this)[1]
            ops = [t for t in self.tokens if t.start >= left_end]
            if ops:
                first, last = ops[0], ops[0]
                for t in ops[1:]:
                    if t.start > last.end + 2 or t.token_type in (TokenType.NUMBER, TokenType.VAR, TokenType.STRING):
                        break
                    last = t
                problem = f"operator '{self.text[first.start : last.end + 1]}' is not allowed"
                _fail(self.text, self.what, (first.start, last.end), problem, ALLOWED)
            problem = "this is not allowed"
        else:
            problem = "this is not allowed"
        self.fail(node, problem, ALLOWED)
