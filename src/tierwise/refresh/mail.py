"""The mails a refresh sends, in the workspace's language: an alert's customers, a run-level alert's findings, an
owner's digest (docs/refresh.md).

Each mail is built once as rows of display strings (labels looked up, amounts and dates formatted, links made),
then written twice from them: HTML through the templates beside this module (autoescaped: names and ids come from
customers' data) and plain text here, so the two parts carry the same information.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from tierwise.i18n import LABELS, heading, label, strategy_label, unit

# An alert mail lists this many customers, then "and N more" (the dashboard has them all): a mail is read on a
# phone, and a rule that matches thousands is better seen on the alerts page.
MAX_CUSTOMERS = 20
# The digest's change and new-customer lists, for the same reason; its top list is [delivery] digest_top long.
MAX_DIGEST_ROWS = 50

# key → (English, Chinese)
TEXT: dict[str, tuple[str, str]] = {
    "customers_n": ("{n} customers", "{n} 位客户"),
    "customer_1": ("1 customer", "1 位客户"),
    "subject_alert": ("[tierwise] {label}: {count} (run {run_id}, as of {as_of})",
                      "[tierwise] {label}: {count} (运行 {run_id}, 截至 {as_of})"),
    "intro_alert": ("{count} matched the alert “{label}” in run {run_id} (data as of {as_of}).",
                    "运行 {run_id}（数据截至 {as_of}）中有 {count}符合提醒「{label}」。"),
    "subject_run_alert": ("[tierwise] {label} (refresh {refresh_id})", "[tierwise] {label} (刷新 {refresh_id})"),
    "intro_run_alert": ("Refresh {refresh_id} raised the alert “{label}”:",
                        "刷新 {refresh_id} 触发了提醒「{label}」："),
    "subject_digest": ("[tierwise] The week of {owner}'s customers (run {run_id}, as of {as_of})",
                       "[tierwise] {owner} 的客户周报 (运行 {run_id}, 截至 {as_of})"),
    "intro_digest": ("Your customers in run {run_id} (data as of {as_of}), compared with the previous refresh "
                     "(run {previous_run_id}).",
                     "您负责的客户在运行 {run_id}（数据截至 {as_of}）中的情况，"
                     "与上次刷新（运行 {previous_run_id}）相比。"),
    "intro_digest_first": ("Your customers in run {run_id} (data as of {as_of}); there is no earlier run to compare "
                           "with yet.",
                           "您负责的客户在运行 {run_id}（数据截至 {as_of}）中的情况；暂无可比较的上次运行。"),
    "changes": ("Changes", "变化"),
    "and_more": ("… and {n} more", "……另有 {n} 项"),
    "and_more_customers": ("… and {n} more customers", "……另有 {n} 位客户"),
    "open_alerts": ("All alerts on the dashboard", "在仪表盘查看全部提醒"),
    "open_customers": ("All your customers on the dashboard", "在仪表盘查看您的全部客户"),
    "top": ("Your top customers by priority", "优先级最高的客户"),
    "changed": ("What changed since the last refresh", "上次刷新以来的变化"),
    "new": ("New customers", "新客户"),
    "alerts": ("Alerts concerning your customers", "与您的客户相关的提醒"),
    "none": ("None.", "无。"),
    "no_changes": ("No changes since the last refresh.", "上次刷新以来没有变化。"),
    "column": ("Column", "字段"),
    "previous_now": ("Previous → now", "之前 → 现在"),
    "days": ("{n} days", "{n} 天"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "footer": ("Sent by tierwise after a refresh.", "此邮件由 tierwise 在数据刷新后发送。"),
}  # fmt: skip


@dataclass
class MailContent:
    subject: str
    text: str
    html: str


def _t(key: str, language: str, **values: object) -> str:
    en, zh = TEXT[key]
    return (zh if language == "zh" else en).format(**values)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,  # every template here is HTML, and names, ids and owners come from customers' data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _html(template: str, **context: Any) -> str:
    return _templates().get_template(template).render(**context)


# --- values ----------------------------------------------------------------------------------------------------


def amount(value: object, currency: str) -> str:
    """An amount with thousands separators, two decimals and the currency: 1,234,567.80 CNY."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return f"{number:,.2f} {currency}"


def _value(column: str, value: object, language: str, currency: str) -> str:
    """A snapshot value as people read it: class codes by their label, amounts with the currency, days, shares."""
    if value is None or value == "":
        return "—"  # a value missing in the previous run may be a customer new since then: no class label
    if isinstance(value, bool):
        return _t("yes" if value else "no", language)
    if column in LABELS:
        return label(column, value, language)
    if column == "next_action":
        return strategy_label("action", value, language)
    if isinstance(value, Decimal):
        value = float(value)
    if not isinstance(value, int | float):
        return str(value)  # dates, text
    kind = unit(column)
    if kind == "money":
        return amount(value, currency)
    if kind == "share":
        return f"{value:.1%}"
    if kind == "days":
        return _t("days", language, n=f"{value:,.0f}")
    if kind == "count" or isinstance(value, int):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _text(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


def _base(dashboard_url: str) -> str | None:
    base = dashboard_url.strip().rstrip("/")
    return base or None  # no dashboard address known: the mail carries no links rather than relative ones


def _customer_link(base: str | None, customer_id: object) -> str | None:
    return f"{base}/customers/{quote(str(customer_id), safe='')}" if base else None


def _count(n: int, language: str) -> str:
    return _t("customer_1", language) if n == 1 else _t("customers_n", language, n=f"{n:,}")


def _change(column: str, change: dict[str, Any], language: str, currency: str) -> dict[str, str]:
    return {
        "column": heading(column, language),
        "previous": _value(column, change.get("previous"), language, currency),
        "now": _value(column, change.get("now"), language, currency),
    }


def _more(rows: list[Any], limit: int) -> tuple[list[Any], int]:
    return rows[:limit], max(len(rows) - limit, 0)


# --- alert: customers ------------------------------------------------------------------------------------------


def alert_mail(
    language: str,
    *,
    rule_label: str,
    run_id: str,
    as_of: str,
    customers: list[dict[str, Any]],
    dashboard_url: str,
    currency: str = "CNY",
) -> MailContent:
    """The mail of a customers alert: who matched, with what changed, the first MAX_CUSTOMERS of them."""
    base = _base(dashboard_url)
    shown, more = _more(customers, MAX_CUSTOMERS)
    count = _count(len(customers), language)
    words = {"label": rule_label, "run_id": run_id, "as_of": as_of, "count": count}
    rows: list[dict[str, Any]] = [
        {
            "customer_id": _text(c.get("customer_id")),
            "name": _text(c.get("name")),
            "owner": _text(c.get("owner")),
            "grade": _text(c.get("grade")),
            "priority_rank": _value("priority_rank", c.get("priority_rank"), language, currency),
            "changes": [_change(col, ch or {}, language, currency) for col, ch in (c.get("changes") or {}).items()],
            "link": _customer_link(base, c.get("customer_id")),
        }
        for c in shown
    ]
    view: dict[str, Any] = {
        "language": language,
        "title": rule_label,
        "intro": _t("intro_alert", language, **words),
        "headings": [heading(c, language) for c in ("customer_id", "name", "owner", "grade", "priority_rank")]
        + [_t("changes", language)],
        "rows": rows,
        "more": _t("and_more_customers", language, n=f"{more:,}") if more else None,
        "link": f"{base}/alerts" if base else None,
        "link_text": _t("open_alerts", language),
        "footer": _t("footer", language),
    }
    lines = [view["intro"], ""]
    for row in rows:
        labelled = [f"{heading(k, language)} {row[k]}" for k in ("owner", "grade", "priority_rank")]
        lines.append(" · ".join([row["customer_id"], row["name"], *labelled]))
        lines += [f"    {ch['column']}: {ch['previous']} → {ch['now']}" for ch in row["changes"]]
        if row["link"]:
            lines.append(f"    {row['link']}")
    if view["more"]:
        lines.append(view["more"])
    text = _finish(lines, view)
    return MailContent(_t("subject_alert", language, **words), text, _html("alert.html", **view))


def _finish(lines: list[str], view: dict[str, Any]) -> str:
    if view["link"]:
        lines += ["", f"{view['link_text']}: {view['link']}"]
    lines += ["", "-- ", view["footer"]]
    return "\n".join(lines) + "\n"


# --- alert: a refresh's findings -------------------------------------------------------------------------------


def run_alert_mail(
    language: str, *, rule_label: str, refresh_id: str, findings: list[dict[str, Any]], dashboard_url: str
) -> MailContent:
    """The mail of a run-level alert (a source failed, a quarantine rate, a share moved): its findings as a list."""
    base = _base(dashboard_url)
    words = {"label": rule_label, "refresh_id": refresh_id}
    view: dict[str, Any] = {
        "language": language,
        "title": rule_label,
        "intro": _t("intro_run_alert", language, **words),
        "findings": [_text(f.get("what")) for f in findings],
        "link": f"{base}/alerts" if base else None,
        "link_text": _t("open_alerts", language),
        "footer": _t("footer", language),
    }
    text = _finish([view["intro"], "", *(f"- {what}" for what in view["findings"])], view)
    return MailContent(_t("subject_run_alert", language, **words), text, _html("run_alert.html", **view))


# --- the owner's digest ----------------------------------------------------------------------------------------


def _rule_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def digest_mail(language: str, digest: dict[str, Any], *, dashboard_url: str, currency: str = "CNY") -> MailContent:
    """An owner's week: their top customers with next actions, what changed in their book since the last refresh,
    their new customers, the alerts that concern them."""
    base = _base(dashboard_url)
    owner = str(digest.get("owner") or "")
    words = {
        "owner": owner,
        "run_id": digest.get("run_id"),
        "as_of": digest.get("as_of"),
        "previous_run_id": digest.get("previous_run_id"),
    }
    top_columns = ("customer_id", "name", "grade", "priority_rank", "lifecycle_stage", "next_action", "monetary")
    top: list[dict[str, Any]] = [
        {
            "cells": [_text(c.get("customer_id")), _text(c.get("name")), _text(c.get("grade"))]
            + [_value(k, c.get(k), language, currency) for k in top_columns[3:]],
            "link": _customer_link(base, c.get("customer_id")),
        }
        for c in digest.get("top") or []
    ]
    changes, more_changes = _more(list(digest.get("changes") or []), MAX_DIGEST_ROWS)
    new, more_new = _more(list(digest.get("new_customers") or []), MAX_DIGEST_ROWS)
    alerts: list[dict[str, Any]] = []
    for alert in digest.get("alerts") or []:
        shown, more = _more(list(alert.get("customers") or []), MAX_CUSTOMERS)
        alerts.append(
            {
                "label": _text(alert.get("label") or alert.get("rule")),
                "customers": [
                    {
                        "customer_id": _text(c.get("customer_id")),
                        "name": _text(c.get("name")),
                        "link": _customer_link(base, c.get("customer_id")),
                    }
                    for c in shown
                ],
                "more": _t("and_more_customers", language, n=f"{more:,}") if more else None,
            }
        )
    changed = [
        {
            "customer_id": _text(c.get("customer_id")),
            "name": _text(c.get("name")),
            "link": _customer_link(base, c.get("customer_id")),
            **_change(str(c.get("column")), c, language, currency),
        }
        for c in changes
    ]
    link = f"{base}/customers?where={quote('owner = ' + _rule_text(owner), safe='')}" if base and owner else base
    view: dict[str, Any] = {
        "language": language,
        "title": _t("subject_digest", language, **words).removeprefix("[tierwise] "),
        "intro": _t("intro_digest" if digest.get("previous_run_id") else "intro_digest_first", language, **words),
        "sections": {k: _t(k, language) for k in ("top", "changed", "new", "alerts")},
        "none": _t("none", language),
        "no_changes": _t("no_changes", language),
        "top_headings": [heading(c, language) for c in top_columns],
        "top": top,
        "change_headings": [heading("customer_id", language), heading("name", language), _t("column", language),
                            _t("previous_now", language)],
        "changes": changed,
        "more_changes": _t("and_more", language, n=f"{more_changes:,}") if more_changes else None,
        "new_headings": [heading(c, language) for c in ("customer_id", "name", "grade")],
        "new": [
            {
                "cells": [_text(c.get("customer_id")), _text(c.get("name")), _text(c.get("grade"))],
                "link": _customer_link(base, c.get("customer_id")),
            }
            for c in new
        ],
        "more_new": _t("and_more_customers", language, n=f"{more_new:,}") if more_new else None,
        "alerts": alerts,
        "link": link,
        "link_text": _t("open_customers", language),
        "footer": _t("footer", language),
    }  # fmt: skip
    lines = [view["intro"], "", f"## {view['sections']['top']}"]
    lines += [" · ".join(view["top_headings"]), *(" · ".join(row["cells"]) for row in top)] if top else [view["none"]]
    lines += ["", f"## {view['sections']['changed']}"]
    lines += [f"{c['customer_id']} · {c['name']} · {c['column']}: {c['previous']} → {c['now']}" for c in changed]
    if not changed:
        lines.append(view["no_changes"])
    if view["more_changes"]:
        lines.append(view["more_changes"])
    lines += ["", f"## {view['sections']['new']}"]
    new_rows = [" · ".join(row["cells"]) for row in view["new"]]
    lines += [" · ".join(view["new_headings"]), *new_rows] if new_rows else [view["none"]]
    if view["more_new"]:
        lines.append(view["more_new"])
    lines += ["", f"## {view['sections']['alerts']}"]
    for alert in alerts:
        lines.append(f"{alert['label']}: " + ", ".join(f"{c['customer_id']} {c['name']}" for c in alert["customers"]))
        if alert["more"]:
            lines.append(f"    {alert['more']}")
    if not alerts:
        lines.append(view["none"])
    text = _finish(lines, view)
    return MailContent(_t("subject_digest", language, **words), text, _html("digest.html", **view))
