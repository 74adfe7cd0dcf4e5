"""User rules: every construct on a hand-made table, every error kind with its position, tags, and a property test."""

from __future__ import annotations

import datetime as dt
import operator

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierwise.errors import UserError
from tierwise.rules import add_tags, check_rules, compile_expression, compile_value

D = dt.date
# c5 is a prospect with nothing known: the NULL cases.
CUSTOMERS = pa.table(
    {
        "customer_id": ["c1", "c2", "c3", "c4", "c5"],
        "name": ["杭州贸易有限公司", "南京科技", "Ningbo Trading", "上海贸易", "个人客户"],
        "province": ["浙江", "江苏", "浙江", "上海", None],
        "city": ["杭州", "南京", "宁波", "上海", None],
        "monetary": [80000.0, 20000.0, 3000.0, 55000.5, 0.0],
        "frequency": pa.array([12, 5, 1, 8, 0], pa.int64()),
        "recency_days": pa.array([10, 40, 200, 5, None], pa.int64()),
        "abc_class": ["A", "B", "C", "A", "C"],
        "first_order_date": pa.array([D(2021, 3, 1), D(2023, 6, 15), D(2024, 1, 1), D(2022, 12, 31), None]),
        "城市等级": ["一线", "二线", "二线", "一线", None],
    }
)


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


@pytest.fixture(scope="module")
def t():
    return ibis.memtable(CUSTOMERS)


def ids(con, t, text: str) -> list[str]:
    keep = compile_expression(text, t.schema(), what="--where")
    return sorted(con.execute(t.filter(keep(t)).customer_id))


CASES = [
    # comparisons, and/or/not, parentheses
    ("province = '浙江' and monetary > 50000", ["c1"]),
    ("province = '浙江' or province = '上海'", ["c1", "c3", "c4"]),
    ("(province = '浙江' or province = '上海') and abc_class = 'A'", ["c1", "c4"]),
    ("province != '浙江'", ["c2", "c4"]),
    ("province <> '浙江'", ["c2", "c4"]),
    ("monetary >= 55000.5", ["c1", "c4"]),
    ("monetary < 3000", ["c5"]),
    ("monetary <= 3000", ["c3", "c5"]),
    ("3000 >= monetary", ["c3", "c5"]),
    # IS NULL, IN, BETWEEN, LIKE
    ("province is null", ["c5"]),
    ("province IS NOT NULL", ["c1", "c2", "c3", "c4"]),
    ("province in ('浙江', '上海')", ["c1", "c3", "c4"]),
    ("province not in ('浙江', '上海')", ["c2"]),
    ("frequency in (0, 1, -1)", ["c3", "c5"]),
    ("frequency between 5 and 8", ["c2", "c4"]),
    ("frequency not between 5 and 8", ["c1", "c3", "c5"]),
    ("name like '%贸易%'", ["c1", "c4"]),
    ("name not like '%贸易%'", ["c2", "c3", "c5"]),
    ("name like '__科技'", ["c2"]),
    ("name ilike '%trading%'", ["c3"]),
    ("name like '%trading%'", []),
    # arithmetic
    ("monetary - 1000 * frequency > 10000", ["c1", "c2", "c4"]),
    ("frequency * 2 + 1 = 11", ["c2"]),
    ("(monetary + 0.5) * 2 = 110002", ["c4"]),
    ("monetary / 1000 > 55", ["c1", "c4"]),
    ("-recency_days > -30", ["c1", "c4"]),
    ("frequency % 2 = 0", ["c1", "c4", "c5"]),
    # functions
    ("abs(recency_days - 100) < 70", ["c2"]),
    ("round(monetary / 1000, 1) = 55", ["c4"]),
    ("round(monetary / 1000) = 20", ["c2"]),
    ("lower(name) = 'ningbo trading'", ["c3"]),
    ("upper(name) like 'NINGBO%'", ["c3"]),
    ("length(name) = 4", ["c2", "c4", "c5"]),
    ("coalesce(recency_days, 999) > 100", ["c3", "c5"]),
    ("least(frequency, 3) = 3", ["c1", "c2", "c4"]),
    ("greatest(recency_days, 30) = 30", ["c1", "c4", "c5"]),  # least/greatest skip NULLs
    # dates: DATE literals and 'YYYY-MM-DD' strings next to a date column
    ("first_order_date >= '2023-01-01'", ["c2", "c3"]),
    ("first_order_date < DATE '2022-12-31'", ["c1"]),
    ("first_order_date between '2022-01-01' and '2023-12-31'", ["c2", "c4"]),
    ("first_order_date in ('2024-01-01', '2021-03-01')", ["c1", "c3"]),
    # quoted Chinese column name, unquoted names in another case, comments and several lines
    ("\"城市等级\" = '一线'", ["c1", "c4"]),
    ("name = '杭州贸易有限公司' or city = '上海（浦东）'", ["c1"]),  # full-width inside text is fine
    ("Province = '浙江'", ["c1", "c3"]),
    ("province = '浙江' -- 浙江省\n  and monetary > 50000", ["c1"]),
    # CASE WHEN and boolean literals
    ("case when abc_class = 'A' then monetary else 0 end > 60000", ["c1"]),
    ("true", ["c1", "c2", "c3", "c4", "c5"]),
    ("false", []),
    ("abc_class = 'A' and TRUE", ["c1", "c4"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_constructs(con, t, text: str, expected: list[str]) -> None:
    assert ids(con, t, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # c5's province is NULL: a comparison with it is unknown, and unknown never matches ...
        ("province = '浙江'", ["c1", "c3"]),
        ("not (province = '浙江')", ["c2", "c4"]),
        ("province in ('浙江') or not province in ('浙江')", ["c1", "c2", "c3", "c4"]),
        # ... but SQL's three-valued logic still applies inside the expression
        ("province = '浙江' or monetary = 0", ["c1", "c3", "c5"]),
        ("not (province = '浙江' and monetary > 100)", ["c2", "c4", "c5"]),
        ("case when province = '浙江' then 1 when province = '上海' then 2 else 0 end = 0", ["c2", "c5"]),
        ("coalesce(province, '未知') = '未知'", ["c5"]),
    ],
)
def test_null_semantics(con, t, text: str, expected: list[str]) -> None:
    assert ids(con, t, text) == expected


def test_filter_is_never_null(con, t) -> None:
    keep = compile_expression("province = '浙江'", t.schema(), what="--where")
    assert con.execute(keep(t).name("m")).tolist() == [True, False, True, False, False]


RULE = "rule '浙江大客户'"
ALL_COLUMNS = "tierwise export --list-columns"
ERRORS = [
    # (expression, fragments of the message, line, column)
    ("provnce = '浙江'", ["unknown column 'provnce'", "did you mean 'province'?"], 1, 1),
    ("monetary > 1 and\n   zzz = 2", ["unknown column 'zzz'", ALL_COLUMNS], 2, 4),
    ('city = "杭州"', ["unknown column '杭州'", "single quotes: '杭州'"], 1, 8),
    ("t.province = '浙江'", ["qualified names"], 1, 1),
    ("foo(monetary) > 1", ["function foo() is not allowed", "abs, round, lower"], 1, 1),
    ("province = '浙江' and count(*) > 1", ["function count() is not allowed"], 1, 21),
    ("current_date > first_order_date", ["function current_date() is not allowed"], 1, 1),
    ("sum(monetary) over () > 1", ["window functions"], 1, 1),
    ("monetary > (select avg(monetary) from snapshot)", ["subqueries (SELECT) are not allowed", "IN (values)"], 1, 13),
    ("province in (select province from t)", ["subqueries"], 1, 14),
    ("exists (select 1)", ["not allowed"], 1, 1),
    ("select * from customers", ["subqueries"], 1, 1),
    ("drop table customers", ["not allowed", "allowed are"], 1, 1),
    ("monetary > 1; drop table customers", ["';' is not allowed"], 1, 13),
    ("monetary > 1;", ["';' is not allowed"], 1, 13),
    ("monetary::int > 1", ["casts are not allowed"], 1, 1),
    ("*", ["'*' is not allowed"], 1, 1),
    ("province = NULL", ["IS NULL"], 1, 12),
    ("province is 1", ["IS must be followed by NULL"], 1, 1),
    ("province = '浙江' and monetary >", ["something is missing around '>'"], 1, 30),
    ("province = '浙江", ["quote ' is not closed"], 1, 12),
    ("(monetary > 1", ["'(' is not closed"], 1, 1),
    ("monetary > 1 x", ["unexpected 'x'"], 1, 14),
    ("monetary > 1)", ["unexpected ')'"], 1, 13),
    ("monetary + 1", ["must be a condition", "this is a number"], 1, 1),
    ("province", ["must be a condition", "this is text"], 1, 1),
    ("province > 5", ["cannot compare text with a number"], 1, 12),
    ("monetary = '100'", ["cannot compare a number with text"], 1, 12),
    ("province in ('浙江', 5)", ["IN cannot compare text with a number"], 1, 20),
    ("province in (city)", ["IN takes a list of values"], 1, 14),
    ("first_order_date > 'soon'", ["'soon' is not a date", "YYYY-MM-DD"], 1, 20),
    ("first_order_date > 5", ["cannot compare a date with a number"], 1, 20),
    ("province and monetary > 1", ["'and' needs a condition", "this is text"], 1, 1),
    ("not monetary", ["'not' needs a condition"], 1, 5),
    ("name like 5", ["LIKE needs text"], 1, 11),
    ("province + 1 > 2", ["arithmetic needs a number", "this is text"], 1, 1),
    ("lower(monetary) = 'a'", ["lower() needs text"], 1, 7),
    ("round(monetary, 'a') > 1", ["round() takes a whole number"], 1, 17),
    ("case when monetary > 1 then 'a' else 1 end = 'a'", ["CASE mixes text with a number"], 1, 38),
    ("case abc_class when 'A' then true end", ["CASE value WHEN"], 1, 1),
    ("province = ‘浙江’", ["full-width '‘' (全角) is not SQL", "半角"], 1, 12),
    ("monetary ＞ 5", ["full-width '＞'"], 1, 10),
    ("province in ('浙江'，'江苏')", ["full-width '，'"], 1, 18),
    ("", ["empty"], None, None),
    ("-- 只有注释", ["empty"], None, None),
]


@pytest.mark.parametrize(("text", "fragments", "line", "column"), ERRORS)
def test_errors(t, text: str, fragments: list[str], line: int | None, column: int | None) -> None:
    with pytest.raises(UserError) as info:
        compile_expression(text, t.schema(), what=RULE)
    message = str(info.value)
    assert message.startswith(RULE + ": ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    if line is not None:
        assert f" at line {line}, column {column}: " in message


def test_error_shows_the_offending_text(t) -> None:
    with pytest.raises(UserError, match=r"at line 1, column 26: count\(\*\); allowed functions"):
        compile_expression("monetary > 1 and 1 < 2 + count(*)", t.schema(), what="--where")


def test_add_tags_in_rule_order(con, t) -> None:
    rules = [("大客户", "monetary > 50000"), ("浙江", "province = '浙江'"), ("沉睡", "recency_days > 100")]
    got = {r["customer_id"]: r["tags"] for r in con.to_pyarrow(add_tags(t, rules)).to_pylist()}
    assert got == {"c1": "大客户; 浙江", "c2": None, "c3": "浙江; 沉睡", "c4": "大客户", "c5": None}
    backwards = {r["customer_id"]: r["tags"] for r in con.to_pyarrow(add_tags(t, rules[::-1])).to_pylist()}
    assert backwards["c1"] == "浙江; 大客户"
    assert backwards["c3"] == "沉睡; 浙江"


def test_add_tags_keeps_the_table(con, t) -> None:
    out = add_tags(t, [("A类", "abc_class = 'A'")])
    assert out.columns == (*t.columns, "tags")
    assert con.execute(out.count()) == 5


def test_no_rules_gives_a_null_string_column(con, t) -> None:
    out = add_tags(t, [])
    assert out.schema()["tags"].is_string()
    assert con.execute(out.tags).isna().all()


def test_first_bad_rule_is_named_before_anything_runs(t) -> None:
    rules = [("好规则", "monetary > 1"), ("坏规则", "monetery > 1"), ("也坏", "province > 5")]
    with pytest.raises(UserError, match=r"^rule '坏规则': unknown column 'monetery' at line 1, column 1"):
        add_tags(t, rules)
    with pytest.raises(UserError, match="坏规则"):
        check_rules(rules, t.schema())
    assert check_rules(rules[:1], t.schema()) is None


def test_compile_value(con, t) -> None:
    value = compile_value("monetary / 1000 + coalesce(recency_days, 0)", t.schema(), what="grade indicator 'x'")
    assert con.execute(value(t)).tolist() == [90.0, 60.0, 203.0, 60.0005, 0.0]
    with pytest.raises(UserError, match=r"^grade indicator 'x': the expression must be a number, but this is text"):
        compile_value("province", t.schema(), what="grade indicator 'x'")


def test_compiles_for_pyspark(t) -> None:
    pytest.importorskip("pyspark")
    from ibis.backends.pyspark import Backend

    Backend.register_options()
    rules = [(name, text) for name, (text, _) in zip("abcdefghijklmnopqrstuvwxyz" * 2, CASES, strict=False)]
    sql = ibis.to_sql(add_tags(t, rules), dialect="pyspark")
    assert "CONCAT_WS" in sql


# Property: random conditions over a random small table select exactly what SQL's three-valued logic says.
OPS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
COLUMNS = ("a", "b", "c")
values = st.one_of(st.none(), st.integers(-3, 3))


def _and(x: bool | None, y: bool | None) -> bool | None:
    return False if x is False or y is False else None if x is None or y is None else True


def _or(x: bool | None, y: bool | None) -> bool | None:
    return True if x is True or y is True else None if x is None or y is None else False


leaves = st.one_of(
    st.builds(
        lambda c, op, v: (f"{c} {op} {v}", ("cmp", c, op, v)),
        st.sampled_from(COLUMNS),
        st.sampled_from(list(OPS)),
        st.integers(-3, 3),
    ),
    st.builds(
        lambda c, neg: (f"{c} is {'not ' if neg else ''}null", ("null", c, neg)),
        st.sampled_from(COLUMNS),
        st.booleans(),
    ),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda x, y: (f"({x[0]}) and ({y[0]})", ("and", x[1], y[1])), inner, inner),
        st.builds(lambda x, y: (f"({x[0]}) or ({y[0]})", ("or", x[1], y[1])), inner, inner),
        st.builds(lambda x: (f"not ({x[0]})", ("not", x[1])), inner),
    ),
    max_leaves=8,
)


def evaluate(tree: tuple, row: dict[str, int | None]) -> bool | None:
    match tree:
        case ("cmp", column, op, value):
            return None if row[column] is None else OPS[op](row[column], value)
        case ("null", column, negated):
            return (row[column] is None) != negated
        case ("and", x, y):
            return _and(evaluate(x, row), evaluate(y, row))
        case ("or", x, y):
            return _or(evaluate(x, row), evaluate(y, row))
        case ("not", x):
            inner = evaluate(x, row)
            return None if inner is None else not inner
    raise AssertionError(tree)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    conditions,
    st.lists(st.fixed_dictionaries({c: values for c in COLUMNS}), min_size=1, max_size=12),
)
def test_matches_a_plain_python_evaluator(con, condition: tuple[str, tuple], rows: list[dict]) -> None:
    text, tree = condition
    table = ibis.memtable(
        pa.table({"id": list(range(len(rows))), **{c: pa.array([r[c] for r in rows], pa.int64()) for c in COLUMNS}})
    )
    keep = compile_expression(text, table.schema(), what="--where")
    got = sorted(con.execute(table.filter(keep(table)).id).tolist())
    assert got == [i for i, row in enumerate(rows) if evaluate(tree, row) is True], text
