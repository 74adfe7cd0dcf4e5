"""The playbook (策略手册) applied: `apply_playbook` gives each customer the strategy of the first rule whose
condition holds, and `check_playbook` checks the rules against a snapshot's columns before any data is read.

The rules themselves, the default playbook and [strategy] are settings (tierwise.strategy.settings). The first
rule, in the order written, whose condition holds gives a customer its strategy; a last rule with
`when = "true"` catches everyone else. Docs: docs/strategy.md.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from tierwise.errors import UserError
from tierwise.rules import compile_expression
from tierwise.strategy.settings import PlaybookRule, template_fields

# What apply_playbook adds to a snapshot (re-applying replaces them).
PLAYBOOK_COLUMNS = (
    "strategy",
    "next_action",
    "service_level",
    "channel",
    "contact_every_days",
    "budget_per_customer",
    "action_reason",
)


def _what(rule: PlaybookRule) -> str:
    return f"playbook rule '{rule.name}'"


def check_playbook(rules: Sequence[PlaybookRule], schema: ibis.Schema) -> None:
    """Check every rule's `when` and reason placeholders against `schema` before any data is read.

    The first problem raises UserError naming the rule (the same one-line messages as [[rules]])."""
    columns = [c for c in schema.names if c not in PLAYBOOK_COLUMNS]
    kept = schema if len(columns) == len(schema.names) else _without(schema, columns)
    for rule in rules:
        compile_expression(rule.when, kept, what=_what(rule))
        for key in ("reason_zh", "reason_en"):
            for field in template_fields(getattr(rule, key)):
                if field not in columns:
                    close = difflib.get_close_matches(field, columns, n=2, cutoff=0.6)
                    hint = "did you mean " + " or ".join(f"{{{c}}}" for c in close) + "?" if close else ""
                    raise UserError(
                        f"{_what(rule)}: {key} uses {{{field}}}, which is not a snapshot column; "
                        + (hint or "list the columns with 'tierwise export --list-columns'")
                    )


def _without(schema: ibis.Schema, columns: list[str]) -> ibis.Schema:
    return ibis.schema({c: schema[c] for c in columns})


def _text(value: ir.Value) -> ir.StringValue:
    """A column as display text in a reason: numbers with at most 2 decimals, missing values as '—'."""
    dtype = value.type()
    if dtype.is_string():
        text: Any = value
    elif dtype.is_floating() or dtype.is_decimal():
        text = value.round(2).cast("string")
    else:
        text = value.cast("string")
    return ibis.coalesce(text, ibis.literal("—"))


def _reason(t: ir.Table, rule: PlaybookRule, position: int, language: str) -> ir.StringValue:
    template = getattr(rule, f"reason_{language}") or rule.reason_zh or rule.reason_en
    pieces: list[Any] = []
    for literal_text, field, _, _ in string.Formatter().parse(template):
        if literal_text:
            pieces.append(ibis.literal(literal_text))
        if field is not None:
            pieces.append(_text(t[field]))
    when = " ".join(rule.when.split())
    name = rule.display_label(language)
    if language == "zh":
        suffix = f"（规则 {position + 1}「{name}」：{when}）"
    else:
        suffix = f" (rule {position + 1} '{name}': {when})"
    if not pieces:
        pieces.append(ibis.literal(name))
    pieces.append(ibis.literal(suffix))
    return ibis.literal("").join(pieces)


def apply_playbook(
    t: ir.Table, rules: Sequence[PlaybookRule], *, budget: float = 0.0, language: str = "zh"
) -> ir.Table:
    """Add the playbook columns to a snapshot: the first rule (in order) whose `when` holds decides.

    strategy (rule name), next_action (action code), service_level, channel, contact_every_days,
    budget_per_customer (budget × the rule's budget_share ÷ the customers the rule matched; 0 without a
    budget) and action_reason (the rule's reason in `language`, with the rule and its condition). Customers
    no rule matches get NULLs (and budget 0). One CASE chain finds the rule; the other columns are looked up
    from its position, so the conditions are evaluated once. Existing playbook columns are replaced."""
    if language not in ("zh", "en"):
        raise UserError(f"language '{language}': say zh or en")
    t = t.drop(*[c for c in PLAYBOOK_COLUMNS if c in t.columns])
    check_playbook(rules, t.schema())
    if not rules:
        raise UserError("the playbook is empty; give at least one [[playbook]] rule")

    schema = t.schema()
    conditions = [compile_expression(r.when, schema, what=_what(r)) for r in rules]
    no_rule = ibis.null("int64")
    t = t.mutate(
        _playbook_rule=ibis.cases(
            *[(cond(t), ibis.literal(i, type="int64")) for i, cond in enumerate(conditions)], else_=no_rule
        )
    )
    rule = t._playbook_rule

    def pick(values: Sequence[Any], dtype: str) -> Any:
        branches = [(ibis.literal(i, type="int64"), ibis.literal(v, type=dtype)) for i, v in enumerate(values)]
        return rule.cases(*branches, else_=ibis.null(dtype))

    share = pick([r.budget_share for r in rules], "float64")
    matched = rule.count().over(group_by=rule)
    # zero as an integer cast to double: Ibis writes a float literal 0.0, which Spark reads as DECIMAL(1,1)
    zero = ibis.literal(0).cast("float64")
    per_customer = ibis.ifelse(rule.notnull(), share * float(budget) / matched, zero) if budget > 0 else zero
    reasons = [(ibis.literal(i, type="int64"), _reason(t, r, i, language)) for i, r in enumerate(rules)]
    return t.mutate(
        strategy=pick([r.name for r in rules], "string"),
        next_action=pick([r.action for r in rules], "string"),
        service_level=pick([r.service_level for r in rules], "string"),
        channel=pick([r.channel for r in rules], "string"),
        contact_every_days=pick([r.contact_every_days for r in rules], "int64"),
        budget_per_customer=per_customer.cast("float64"),
        action_reason=rule.cases(*reasons, else_=ibis.null("string")),
    ).drop("_playbook_rule")
