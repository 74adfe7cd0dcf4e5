"""The alert, run-alert and digest mails: what they say in zh and en, their tables, escaping, amounts, links. The
HTML is read back with a real parser, so escaped text is compared with the data it came from."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tierwise.refresh.mail import MAX_CUSTOMERS, alert_mail, digest_mail, run_alert_mail

DASHBOARD = "https://tw.example.com/"


class Page(HTMLParser):
    """The rows of every table (cell texts), the links, the list items and the whole text of an HTML part."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.links: list[str] = []
        self.items: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None
        self._item: list[str] | None = None
        self._in_body = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[-1].append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "li":
            self._item = []
        elif tag == "a":
            self.links.append(dict(attrs)["href"] or "")
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "li" and self._item is not None:
            self.items.append(" ".join("".join(self._item).split()))
            self._item = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for part in (self._cell, self._item):
            if part is not None:
                part.append(data)


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": f"C{i:03d}",
            "name": f"客户{i}",
            "owner": "王经理" if i % 2 else None,
            "grade": "A",
            "priority_rank": i,
            "changes": {"grade": {"previous": "B", "now": "A"}, "monetary": {"previous": 1000 * i, "now": 2500.5 * i}},
        }
        for i in range(1, n + 1)
    ]


def alert(language: str, n: int, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "rule_label": "新晋A级客户" if language == "zh" else "New grade-A customers",
        "run_id": "r-20240630",
        "as_of": "2024-06-30",
        "customers": customers(n),
        "dashboard_url": DASHBOARD,
    }
    return alert_mail(language, **{**values, **kwargs})


def test_alert_mail_in_chinese_lists_the_first_20_and_counts_the_rest() -> None:
    mail = alert("zh", 27)
    assert mail.subject == "[tierwise] 新晋A级客户: 27 位客户 (运行 r-20240630, 截至 2024-06-30)"
    page = Page(mail.html)
    [rows] = page.tables
    assert [row[0] for row in rows] == [f"C{i:03d}" for i in range(1, 21)]
    assert rows[0][:5] == ["C001", "客户1", "王经理", "A", "1"]
    assert rows[1][2] == "—"  # no owner
    # i = 3: monetary 3,000 → 7,501.5
    assert rows[2][5].split("\n") == ["等级: B级（重要客户） → A级（重点客户）", "收入: 3,000.00 CNY → 7,501.50 CNY"]
    assert "……另有 7 位客户" in page.text
    assert "运行 r-20240630（数据截至 2024-06-30）中有 27 位客户符合提醒「新晋A级客户」。" in page.text
    lang = re.search(r'<html lang="(\w+)"', mail.html)
    assert lang is not None and lang.group(1) == "zh"
    # the text part: the same customers, the same changes, the same count
    assert [f"C{i:03d}" for i in range(1, 28) if re.search(rf"^C{i:03d} ", mail.text, re.M)] == [
        f"C{i:03d}" for i in range(1, 21)
    ]
    assert "C003 · 客户3 · 负责人 王经理 · 等级 A · 优先级 3" in mail.text
    assert "    收入: 3,000.00 CNY → 7,501.50 CNY" in mail.text
    assert "……另有 7 位客户" in mail.text


def test_alert_mail_in_english() -> None:
    mail = alert("en", 21, currency="USD")
    assert mail.subject == "[tierwise] New grade-A customers: 21 customers (run r-20240630, as of 2024-06-30)"
    page = Page(mail.html)
    [rows] = page.tables
    assert len(rows) == MAX_CUSTOMERS == 20
    assert rows[19][5].split("\n") == ["Grade: B — important → A — top priority",
                                       "Revenue: 20,000.00 USD → 50,010.00 USD"]  # fmt: skip
    assert "… and 1 more customers" in page.text
    assert "21 customers matched the alert “New grade-A customers” in run r-20240630 (data as of 2024-06-30)." in (
        page.text
    )
    assert "All alerts on the dashboard: https://tw.example.com/alerts" in mail.text


@pytest.mark.parametrize(("n", "rows", "more"), [(1, 1, None), (20, 20, None), (21, 20, 1), (100, 20, 80)])
def test_alert_mail_boundaries(n: int, rows: int, more: int | None) -> None:
    mail = alert("en", n)
    assert len(Page(mail.html).tables[0]) == rows
    found = re.findall(r"… and (\d+) more customers", mail.text)
    assert found == ([] if more is None else [str(more)])
    assert ("1 customer " if n == 1 else f"{n} customers ") in mail.subject


def test_alert_mail_escapes_what_came_from_data() -> None:
    evil = customers(1)[0] | {
        "customer_id": 'X"><img src=x onerror=alert(1)>',
        "name": "<script>alert('张')</script>",
        "owner": "Tom & Jerry",
        "grade": "<b>A</b>",
    }
    mail = alert("en", 1, customers=[evil], rule_label="<i>rule</i>")
    for raw in ("<script>", "<img", "<b>A", "<i>"):
        assert raw not in mail.html
    page = Page(mail.html)
    [[row]] = page.tables
    # the parser reads back exactly the data: escaped, not dropped
    assert row[:4] == [evil["customer_id"], evil["name"], "Tom & Jerry", "<b>A</b>"]
    assert set(page.tags) <= {"html", "head", "meta", "title", "body", "h2", "p", "table", "thead", "tbody", "tr",
                              "th", "td", "a", "br"}  # fmt: skip
    assert page.links[0] == "https://tw.example.com/customers/X%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    assert evil["name"] in mail.text  # plain text needs no escaping


def test_alert_mail_links_match_the_dashboard_routes() -> None:
    from starlette.routing import compile_path  # lazy: only this test reads the dashboard's routes

    from tierwise.web.pages import router  # lazy: the web layer is not needed by the other tests

    mail = alert("en", 2, customers=[customers(1)[0] | {"customer_id": "C/1 甲"}])
    page = Page(mail.html)
    assert page.links == ["https://tw.example.com/customers/C%2F1%20%E7%94%B2", "https://tw.example.com/alerts"]
    # the customer page's route takes the id back (Starlette decodes the path before matching)
    [route] = [r for r in router.routes if getattr(r, "path", "").startswith("/customers/")]
    regex, _, _ = compile_path(route.path)  # type: ignore[attr-defined]
    match = regex.match("/customers/C/1 甲")
    assert match is not None and match.group("customer_id") == "C/1 甲"
    assert "https://tw.example.com/customers/C%2F1%20%E7%94%B2" in mail.text


def test_alert_mail_without_a_dashboard_address_has_no_links() -> None:
    mail = alert("zh", 3, dashboard_url="")
    assert Page(mail.html).links == []
    assert "http" not in mail.text and "href" not in mail.html


def test_run_alert_mail() -> None:
    findings = [{"what": "数据源 erp 失败：文件 <a.csv> 无法读取"}, {"what": "隔离行占 7.5%，超过 5%", "batch": 3}]
    mail = run_alert_mail("zh", rule_label="数据源失败", refresh_id="f-7", findings=findings, dashboard_url=DASHBOARD)
    assert mail.subject == "[tierwise] 数据源失败 (刷新 f-7)"
    page = Page(mail.html)
    assert page.items == [f["what"] for f in findings]
    assert "<a.csv>" not in mail.html
    assert page.links == ["https://tw.example.com/alerts"]
    assert "- 数据源 erp 失败：文件 <a.csv> 无法读取\n- 隔离行占 7.5%，超过 5%\n" in mail.text
    english = run_alert_mail("en", rule_label="A source failed", refresh_id="f-7", findings=findings[:1],
                             dashboard_url="")  # fmt: skip
    assert english.subject == "[tierwise] A source failed (refresh f-7)"
    assert "Refresh f-7 raised the alert “A source failed”:" in english.text


def digest(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "owner": "O'Brien 王",
        "run_id": "r-2",
        "as_of": "2024-06-30",
        "previous_run_id": "r-1",
        "top": [
            {"customer_id": "C1", "name": "甲公司", "grade": "A", "priority_rank": 1, "lifecycle_stage": "at_risk",
             "next_action": "win_back", "monetary": 1234567.8},
            {"customer_id": "C2", "name": "<乙>", "grade": "B", "priority_rank": 2, "lifecycle_stage": "active",
             "next_action": "cross_sell", "monetary": 999.994},
        ],
        "changes": [{"customer_id": "C1", "name": "甲公司", "column": "lifecycle_stage", "previous": "active",
                     "now": "at_risk"}],
        "new_customers": [{"customer_id": "C9", "name": "新客", "grade": "C"}],
        "alerts": [{"rule": "key_customers_slipping", "label": "A/B级客户转为风险或流失",
                    "customers": [{"customer_id": "C1", "name": "甲公司"}]}],
    }  # fmt: skip
    return {**values, **overrides}


def test_digest_mail_in_chinese() -> None:
    mail = digest_mail("zh", digest(), dashboard_url=DASHBOARD)
    assert mail.subject == "[tierwise] O'Brien 王 的客户周报 (运行 r-2, 截至 2024-06-30)"
    page = Page(mail.html)
    top, changes, new = page.tables
    assert top == [
        ["C1", "甲公司", "A", "1", "流失风险客户", "挽回优惠", "1,234,567.80 CNY"],
        ["C2", "<乙>", "B", "2", "活跃客户", "交叉销售", "999.99 CNY"],
    ]
    assert changes == [["C1", "甲公司", "生命周期", "活跃客户 → 流失风险客户"]]
    assert new == [["C9", "新客", "C"]]
    assert page.items == ["A/B级客户转为风险或流失: C1 甲公司"]
    text = "".join(page.text)
    for section in ("优先级最高的客户", "上次刷新以来的变化", "新客户", "与您的客户相关的提醒"):
        assert section in text and f"## {section}" in mail.text
    assert "与上次刷新（运行 r-1）相比" in text
    assert "C1 · 甲公司 · A · 1 · 流失风险客户 · 挽回优惠 · 1,234,567.80 CNY" in mail.text
    assert "C1 · 甲公司 · 生命周期: 活跃客户 → 流失风险客户" in mail.text
    # the dashboard link opens the customers page filtered on this owner (a rule: ' doubled inside text)
    link = page.links[-1]
    assert link.startswith("https://tw.example.com/customers?where=")
    assert parse_qs(urlsplit(link).query) == {"where": ["owner = 'O''Brien 王'"]}
    assert page.links[:2] == ["https://tw.example.com/customers/C1", "https://tw.example.com/customers/C2"]


def test_digest_mail_in_english_with_nothing_to_compare() -> None:
    mail = digest_mail(
        "en",
        digest(previous_run_id=None, changes=[], new_customers=[], alerts=[]),
        dashboard_url=DASHBOARD,
        currency="EUR",
    )
    assert mail.subject == "[tierwise] The week of O'Brien 王's customers (run r-2, as of 2024-06-30)"
    page = Page(mail.html)
    [top] = page.tables
    assert top[0] == ["C1", "甲公司", "A", "1", "At risk", "Win-back offer", "1,234,567.80 EUR"]
    assert "<乙>" not in mail.html and "&lt;乙&gt;" in mail.html
    text = "".join(page.text)
    assert "there is no earlier run to compare with yet" in text
    assert "No changes since the last refresh." in text and "No changes since the last refresh." in mail.text
    assert mail.text.count("None.") == 2  # no new customers, no alerts


def test_digest_mail_caps_long_lists() -> None:
    changes = [
        {"customer_id": f"C{i}", "name": None, "column": "monetary", "previous": i, "now": None} for i in range(60)
    ]
    mail = digest_mail("en", digest(changes=changes), dashboard_url=DASHBOARD)
    _, shown, _ = Page(mail.html).tables
    assert len(shown) == 50
    assert shown[1] == ["C1", "—", "Revenue", "1.00 CNY → —"]
    assert "… and 10 more" in mail.text


def test_values_by_kind() -> None:
    """Shares, days, counts, exact decimals, dates and flags as people read them."""
    changes = {
        "online_share": {"previous": 0.125, "now": 0.5},
        "recency_days": {"previous": 12, "now": 1234.4},
        "frequency": {"previous": 3, "now": 12000},
        "overdue_amount": {"previous": Decimal("1234.5678"), "now": 0},
        "first_purchase": {"previous": date(2024, 1, 2), "now": None},
        "is_new": {"previous": False, "now": True},
    }
    mail = alert("zh", 1, customers=[customers(1)[0] | {"changes": changes}])
    [[row]] = Page(mail.html).tables
    assert row[5].split("\n") == [
        "线上占比: 12.5% → 50.0%",
        "距上次购买天数: 12 天 → 1,234 天",
        "购买次数: 3 → 12,000",
        "逾期金额: 1,234.57 CNY → 0.00 CNY",
        "first_purchase: 2024-01-02 → —",
        "is_new: 否 → 是",
    ]
