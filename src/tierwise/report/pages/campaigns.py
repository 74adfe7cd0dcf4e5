"""The report's campaigns page: the results of each campaign by segment (response rates with Wilson intervals,
lift over the control group, revenue per contact, ROI), from the function behind `tierwise campaign report`
(tierwise.campaigns), so the page and that command always agree."""

from __future__ import annotations

import re
from typing import Any

from tierwise.campaigns.evaluate import campaign_report
from tierwise.campaigns.plan import list_campaigns
from tierwise.errors import UserError
from tierwise.report.language import ReportLanguage, pct
from tierwise.report.pages import PageParts
from tierwise.workspace import Workspace

MAX_CAMPAIGNS = 10


def _campaign_note(note: str, lang: ReportLanguage) -> str:
    """A note of `campaign report` in the report's language (the statistical ones; others as they are)."""
    if note.startswith(("no control group", "没有对照组")):
        return lang.pick(
            "No control group: lift over control cannot be measured; rates and revenue are of the contacted "
            "customers only.",
            "没有对照组：无法计算相对对照组的提升，响应率和收入仅为触达客户的数字。",
        )
    if m := re.match(r"segments without control customers \(no lift there\): (.*)$", note, re.S):
        return lang.pick(
            f"Segments without control customers (no lift there): {m[1]}.",
            f"以下分群没有对照组客户（无法计算提升）：{m[1]}。",
        )
    if note.startswith("no cost per contact"):
        return lang.pick(
            "No cost per contact given (campaign plan --cost-per-contact): no ROI.",
            "未提供单次触达成本（campaign plan --cost-per-contact），无法计算 ROI。",
        )
    if m := re.match(r"planned customers without a row in the loaded contacts .*?: (.*)$", note, re.S):
        counts = (
            m[1]
            .replace("treatment", lang.pick("treatment", "实验组"))
            .replace("control", lang.pick("control", "对照组"))
        )
        return lang.pick(
            f"Planned customers without a row in the loaded contacts count as not responded, revenue 0: {counts}.",
            f"计划中但回收数据里没有记录的客户按未响应、收入 0 计：{counts}。",
        )
    if m := re.match(r"no contacts loaded yet for '([^']*)'", note):
        return lang.pick(
            f"No responses loaded yet for '{m[1]}' (tierwise ingest campaigns FILE): every planned customer counts "
            "as not responded.",
            f"尚未导入“{m[1]}”的响应数据（tierwise ingest campaigns FILE）：所有计划客户均按未响应计。",
        )
    note = note[:1].upper() + note[1:]
    return note if note.endswith((".", "。")) else note + "."


def _ci_text(ci: list[float] | None) -> str:
    return "" if not ci else f"{ci[0]:.1%} – {ci[1]:.1%}"


def _campaign_row(label: str, r: dict[str, Any], overall: bool = False) -> dict[str, Any]:
    roi = r["incremental_roi"] if r.get("incremental_roi") is not None else r.get("roi")
    lift_ci = r.get("lift_ci")
    return {
        "label": label,
        "overall": overall,
        "contacted": int(r["contacted"]),
        "responded": int(r["responded"]),
        "rate": r["response_rate"],
        "rate_ci": _ci_text(r.get("response_rate_ci")),
        "revenue_per_contact": r["revenue_per_contact"],
        "control": int(r["control_customers"]),
        "control_rate": r["control_response_rate"],
        "control_ci": _ci_text(r.get("control_response_rate_ci")),
        "lift": None if r["lift"] is None else r["lift"] * 100,
        "lift_ci": "" if not lift_ci else f"{lift_ci[0] * 100:+.1f} … {lift_ci[1] * 100:+.1f}",
        "roi": roi,
    }


def _campaign_chart(report: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    """Response rates per segment (and overall), treatment beside control, with Wilson 95% error bars."""
    lines = [*report["segments"], {"label": lang.pick("Overall", "合计"), **report["overall"]}]

    def group(rate: str, ci: str, n: str, name: str, colour: str) -> dict[str, Any]:
        values = [r[rate] for r in lines]
        cis = [r[ci] for r in lines]
        return {
            "name": name,
            "values": values,
            "plus": [None if v is None or c is None else c[1] - v for v, c in zip(values, cis, strict=True)],
            "minus": [None if v is None or c is None else v - c[0] for v, c in zip(values, cis, strict=True)],
            "ci": [_ci_text(c) for c in cis],
            "n": [int(r[n]) for r in lines],
            "color": colour,
        }

    series = [group("response_rate", "response_rate_ci", "contacted", lang.pick("Contacted", "触达组"), "#1f4e8c")]
    if report["has_control"]:
        series.append(
            group(
                "control_response_rate",
                "control_response_rate_ci",
                "control_customers",
                lang.pick("Control", "对照组"),
                "#9fb3c8",
            )
        )
    return {
        "kind": "campaign",
        "labels": [r["label"] for r in lines],
        "series": series,
        "y_axis": lang.pick("Response rate (95% Wilson interval)", "响应率（Wilson 95% 区间）"),
        "n_name": lang.t("customers"),
        "ci_name": lang.pick("95% interval", "95% 区间"),
    }


def _campaign_caption(report: dict[str, Any], lang: ReportLanguage) -> str:
    o, p = report["overall"], lang.pick
    rate = "—" if o["response_rate"] is None else pct(o["response_rate"])
    source = (
        p(f"Planned on run {report['run_id']}", f"基于运行 {report['run_id']} 计划")
        if report["source"] == "plan"
        else p("From the loaded contacts only (never planned)", "仅来自导入的触达数据（未经计划）")
    )
    plan = report.get("plan") or {}
    where = f"; {plan['where_expr']}" if plan.get("where_expr") else ""
    text = p(
        f"{source}{where}. {o['contacted']:,} contacted, {o['responded']:,} responded ({rate})",
        f"{source}{where}。触达 {o['contacted']:,} 位，响应 {o['responded']:,} 位（{rate}）",
    )
    if o["lift"] is not None and o.get("lift_ci"):
        lo, hi = o["lift_ci"]
        text += p(
            f"; lift over the {o['control_customers']:,} control customers {o['lift'] * 100:+.1f} percentage points "
            f"(95% interval {lo * 100:+.1f} to {hi * 100:+.1f})",
            f"；相对 {o['control_customers']:,} 位对照组客户提升 {o['lift'] * 100:+.1f} 个百分点"
            f"（95% 区间 {lo * 100:+.1f} 至 {hi * 100:+.1f}）",
        )
    return text + p(".", "。")


def campaigns_page(ws: Workspace, lang: ReportLanguage) -> PageParts | None:
    """The campaigns section: per campaign (planned or only ingested) the `campaign report` figures by segment;
    None when the workspace has no campaign."""
    listed = list_campaigns(ws)
    if not listed:
        return None
    p = lang.pick
    charts: dict[str, dict[str, Any]] = {}
    parts: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, c in enumerate(listed[:MAX_CAMPAIGNS]):
        name = str(c["name"])
        try:
            # the same call as `tierwise campaign report NAME --json`
            report = campaign_report(ws, name, language=lang.language)
        except UserError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        key = f"campaign_{i}"
        charts[key] = _campaign_chart(report, lang)
        parts.append(_campaign_part(name, key, report, lang))
    if len(listed) > MAX_CAMPAIGNS:
        skipped.append(
            p(
                f"The {MAX_CAMPAIGNS} newest of {len(listed)} campaigns are shown (tierwise campaign list).",
                f"仅显示 {len(listed)} 个活动中最新的 {MAX_CAMPAIGNS} 个（tierwise campaign list）。",
            )
        )
    if not parts:
        return None
    headline = p(
        f"{len(parts)} campaign{'s' if len(parts) > 1 else ''}: response rates with Wilson 95% intervals, lift over "
        "the control group with Newcombe's interval, revenue per contact and ROI, by segment.",
        f"{len(parts)} 个营销活动：按分群列出响应率（Wilson 95% 区间）、相对对照组的提升（Newcombe 区间）、"
        "单客收入与 ROI。",
    )
    return headline, {"head": _head(lang), "campaigns": parts, "notes": skipped}, charts


def _campaign_part(name: str, chart: str, report: dict[str, Any], lang: ReportLanguage) -> dict[str, Any]:
    """One campaign's caption, table rows (its segments, then overall) and notes; its chart is under `chart`."""
    rows = [_campaign_row(s["label"], s) for s in report["segments"]]
    rows.append(_campaign_row(lang.pick("Overall", "合计"), report["overall"], overall=True))
    return {
        "name": name,
        "chart": chart,
        "caption": _campaign_caption(report, lang),
        "has_control": report["has_control"],
        "cost_per_contact": report["cost_per_contact"],
        "rows": rows,
        "notes": [_campaign_note(str(n), lang) for n in report["notes"] if n],
    }


def _head(lang: ReportLanguage) -> list[str]:
    p = lang.pick
    return [
        p("Segment", "分群"),
        p("Contacted", "触达"),
        p("Responded", "响应"),
        p("Response rate", "响应率"),
        p("95% interval", "95% 区间"),
        p("Revenue per contact", "单客收入"),
        p("Control", "对照组"),
        p("Control rate", "对照响应率"),
        p("95% interval", "95% 区间"),
        p("Lift (pp)", "提升（百分点）"),
        p("95% interval", "95% 区间"),
        "ROI",
    ]
