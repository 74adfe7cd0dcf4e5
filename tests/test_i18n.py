"""tierwise.i18n: every code a classifier can assign has words in both languages, and the fallbacks of label().

The codes are read from the classifiers' own expressions (every literal a CASE / IF can return), not copied
here, so a code added to a classifier without a label fails this test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Literal

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pytest
from tierwise.mining.targets import FUTURE_CLASSES

from tierwise import i18n
from tierwise.classify import abc, grade, lifecycle, loyalty, rfm, value
from tierwise.i18n import LABELS, heading, label, strategy_label
from tierwise.strategy.playbook import ACTIONS, SERVICE_LEVELS

CJK = re.compile(r"[\u4e00-\u9fff]")

CUSTOMERS = ibis.table(
    {
        "customer_id": "string",
        "recency_days": "int64",
        "tenure_days": "int64",
        "frequency": "int64",
        "purchases": "int64",
        "ipt_mean_days": "float64",
        "monetary": "float64",
        "satisfaction": "float64",
        "lifecycle_stage": "string",
    },
    name="customers",
)


def _defining(node: ops.Node) -> ops.Node:
    """The expression a column stands for, through the projections and drops that carry it."""
    while isinstance(node, ops.Field):
        rel = node.rel
        if isinstance(rel, ops.Project):
            node = rel.values[node.name]
        elif hasattr(rel, "parent"):
            node = ops.Field(rel.parent, node.name)
        else:
            break
    return node


def assigned(expr: ir.Value | ops.Node) -> set[str]:
    """Every value `expr` can take: the literals in the results of its CASE and IF branches (not their tests)."""
    node = _defining(expr.op() if isinstance(expr, ir.Value) else expr)
    if isinstance(node, ops.Literal):
        return set() if node.value is None else {node.value}
    if isinstance(node, ops.SearchedCase):
        return set().union(*(assigned(r) for r in node.results), assigned(node.default))
    if isinstance(node, ops.IfElse):
        return assigned(node.true_expr) | assigned(node.false_null_expr)
    raise AssertionError(f"cannot read the codes of a {type(node).__name__}: teach assigned() this expression")


def _grades(method: Literal["quotas", "cutoffs"]) -> set[str]:
    indicators = [grade.Indicator("revenue", lambda t: t.monetary, 1.0)]
    return assigned(grade.add_grade(CUSTOMERS, indicators, grade.GradeSettings(method=method)).grade)


CLASSIFIED: dict[str, set[str]] = {
    "rfm_segment": assigned(rfm.segment(ibis.literal(3), ibis.literal(3))),
    "rfm_class8": assigned(rfm.add_class8(CUSTOMERS).rfm_class8),
    "abc_class": assigned(abc.add_abc(CUSTOMERS).abc_class),
    "lifecycle_stage": assigned(lifecycle.add_lifecycle(CUSTOMERS).lifecycle_stage),
    "value_tier": assigned(value.add_value_tier(CUSTOMERS).value_tier),
    "grade": _grades("quotas") | _grades("cutoffs"),
    "loyalty": assigned(loyalty.add_loyalty(CUSTOMERS).loyalty),
    "satisfaction_level": assigned(loyalty.add_loyalty(CUSTOMERS).satisfaction_level),
}


def test_the_code_reader_sees_every_branch() -> None:
    # Counted by hand from the classifiers: a reader that missed branches would make the test below vacuous.
    assert {c: len(codes) for c, codes in CLASSIFIED.items()} == {
        "rfm_segment": 11,
        "rfm_class8": 8,
        "abc_class": 3,
        "lifecycle_stage": 6,
        "value_tier": 4,
        "grade": 4,
        "loyalty": 5,
        "satisfaction_level": 3,
    }
    assert "prospects" in CLASSIFIED["rfm_segment"] and "D" in CLASSIFIED["grade"]


@pytest.mark.parametrize("column", sorted(CLASSIFIED))
def test_every_assigned_code_has_a_label_in_both_languages(column: str) -> None:
    codes = CLASSIFIED[column]
    assert set(LABELS[column]) == codes  # no code without words, no words for a code nothing assigns
    for code in codes:
        en, zh = label(column, code, "en"), label(column, code, "zh")
        assert en.strip() and zh.strip(), (column, code)
        assert CJK.search(zh), (column, code, zh)
        assert not CJK.search(en), (column, code, en)


def test_every_classifier_column_is_labelled() -> None:
    assert set(LABELS) == set(CLASSIFIED)


def test_playbook_and_learned_codes_have_words() -> None:
    assert set(i18n.ACTION_LABELS) == set(ACTIONS)
    assert set(i18n.SERVICE_LEVEL_LABELS) == set(SERVICE_LEVELS)
    future = {code for pair in FUTURE_CLASSES.values() for code in pair}
    assert set(i18n.FUTURE_CLASS_WORDS) == future


def _pairs() -> list[tuple[str, str, str]]:
    """(where, English, Chinese) of every entry of every table."""
    out: list[tuple[str, str, str]] = []
    for column, codes in LABELS.items():
        out += [(f"LABELS[{column}][{code}]", en, zh) for code, (en, zh) in codes.items()]
    for name in ("EMPTY_LABELS", "TITLES", "HEADINGS", "ACTION_LABELS", "SERVICE_LEVEL_LABELS", "CHANNEL_LABELS"):
        table: dict[str, tuple[str, str]] = getattr(i18n, name)
        out += [(f"{name}[{key}]", en, zh) for key, (en, zh) in table.items()]
    out += [(f"FUTURE_CLASS_WORDS[{k}]", en, zh) for k, (en, zh) in i18n.FUTURE_CLASS_WORDS.items()]
    out += [(f"MEASURES[{k}]", en, zh) for k, (en, zh, _) in i18n.MEASURES.items()]
    for column, (high, low) in i18n.WORDS.items():
        out += [(f"WORDS[{column}] high", *high), (f"WORDS[{column}] low", *low)]
    out.append(("TYPICAL", *i18n.TYPICAL))
    return out


def test_no_label_is_empty_and_chinese_labels_are_chinese() -> None:
    pairs = _pairs()
    assert len(pairs) > 150
    for where, en, zh in pairs:
        assert en.strip() and zh.strip(), where
        assert CJK.search(zh), f"{where}: the Chinese label {zh!r} has no Chinese character"
        assert not CJK.search(en), f"{where}: the English label {en!r} has Chinese characters"


def test_label_and_its_fallbacks() -> None:
    assert label("grade", "A", "en") == "A — top priority"
    assert label("grade", "A", "zh") == "A级（重点客户）"
    # the eight classes' codes are their Chinese names
    assert label("rfm_class8", "重要挽留客户", "zh") == "重要挽留客户"
    assert label("rfm_class8", "重要挽留客户", "en") == "Important win-back"
    # no class: what that means in the column, else a dash
    assert label("grade", None, "zh") == "未评级（无购买）"
    assert label("cluster_name", None, "en") == "Not clustered (no purchase)"
    assert label("abc_class", None, "zh") == "—"
    # codes without words (user's label columns, cluster numbers) are shown as they are
    assert label("grade", "E", "zh") == "E"
    assert label("my_column", 7, "en") == "7"
    # anything but zh is English
    assert label("abc_class", "A", "fr") == "Key"


def test_strategy_label_and_its_fallbacks() -> None:
    assert strategy_label("action", "win_back", "zh") == "挽回优惠"
    assert strategy_label("service_level", "basic", "en") == "Basic (automated)"
    assert strategy_label("channel", "carrier_pigeon", "zh") == "carrier_pigeon"
    assert strategy_label("channel", None, "zh") == "—"


def test_heading_prefers_the_short_heading_then_the_title_then_the_measure_name() -> None:
    assert heading("grade", "en") == "Grade"  # not the title "Grades (weighted score)"
    assert heading("loyalty", "zh") == "忠诚度"  # a class title
    assert heading("tenure_days", "zh") == "客户时长"  # a measure name
    assert heading("shoe_size", "en") == "shoe_size"


def test_class_orders_agree_with_the_classifiers() -> None:
    # The report lists classes in the order of LABELS and `tierwise compare` ranks them by rfm.CLASS8: the two
    # agree, as they did when both read one table.
    assert list(LABELS["rfm_class8"]) == list(rfm.CLASS8.values())
    assert list(LABELS["grade"]) == list(grade.GRADES)


def test_i18n_is_a_core_module() -> None:
    tree = ast.parse(Path(i18n.__file__).read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m.split(".")[0] == "tierwise"]
