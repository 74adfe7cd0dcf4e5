"""The alerts page (every role): the last refreshes with each source's outcome, the history of the alerts they
fired with their deliveries and the customers they named; for admins the "refresh now" button.

Its numbers are those of GET /api/v1/refreshes and /api/v1/alerts (tierwise.web.services.refresh); the button
posts to /api/v1/refresh from /static/app.js and follows the job like a run. The page's words join the
dashboard's table here: pages/__init__ imports this module before any page is rendered.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tierwise.i18n import heading, label
from tierwise.web.pages._base import TEXT, Page, router, view
from tierwise.web.services import refresh as refresh_service

REFRESHES_SHOWN = 20
ALERTS_SHOWN = 100

TEXT.update(
    {
        "alerts": ("Alerts", "预警"),
        "alert_badge": ("{n} alerts fired in the latest refresh", "最近一次刷新触发了 {n} 条预警"),
        "refreshes": ("Latest refreshes", "最近的刷新"),
        "alert_history": ("Alerts fired", "已触发的预警"),
        "refresh_now": ("Refresh now", "立即刷新"),
        "refresh_hint": (
            "Loads every configured source, makes a run when something changed, checks the alert rules and sends the "
            "deliveries.",
            "读取所有已配置的数据源，数据有变化时生成一次运行，检查预警规则并发送通知。",
        ),
        "no_refresh": (
            "No refresh yet — configure [[sources]] in tierwise.toml and run `tierwise refresh`.",
            "还没有刷新记录——请在 tierwise.toml 中配置 [[sources]]，然后运行 `tierwise refresh`。",
        ),
        "no_alerts": ("No alert has fired yet.", "尚未触发任何预警。"),
        "started": ("Started", "开始时间"),
        "trigger": ("Trigger", "触发方式"),
        "trigger_cli": ("command line", "命令行"),
        "trigger_schedule": ("schedule", "定时"),
        "trigger_dashboard": ("dashboard", "仪表盘"),
        "attempts": ("Attempts", "尝试次数"),
        "resumed": ("resumed", "续跑"),
        "run_made": ("Run", "生成的运行"),
        "sources": ("Sources", "数据源"),
        "refresh_ok": ("ok", "成功"),
        "refresh_partial": ("partial", "部分成功"),
        "refresh_failed": ("failed", "失败"),
        "refresh_running": ("running", "进行中"),
        "refresh_nothing_new": ("nothing new", "无新数据"),
        "source": ("Source", "数据源"),
        "files_processed": ("Files processed", "已处理文件"),
        "files_failed": ("Files failed", "失败文件"),
        "no_sources": ("No source loaded.", "未读取数据源。"),
        "fired_at": ("Fired at", "触发时间"),
        "rule": ("Rule", "规则"),
        "matched": ("Customers matched", "命中客户数"),
        "findings": ("Findings", "发现"),
        "deliveries": ("Deliveries", "投递"),
        "target": ("Target", "目标"),
        "part": ("Part", "部分"),
        "no_deliveries": ("No delivery configured.", "未配置投递。"),
        "show_customers": ("Show the {n} customers", "查看 {n} 位客户"),
        "show_findings": ("Show the findings", "查看发现"),
        "owner": ("Owner", "负责人"),
        "changes": ("What changed", "变化"),
        "delivery_delivered": ("delivered", "已送达"),
        "delivery_failed": ("failed", "失败"),
        "delivery_skipped": ("skipped", "已跳过"),
    }
)


@router.get("/alerts")
def alerts_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        refreshes = refresh_service.refreshes(p.ws, REFRESHES_SHOWN)
        fired = refresh_service.alerts(p.ws, ALERTS_SHOWN, language=p.lang, with_targets=p.can("admin"))
        return {
            "refreshes": refreshes,
            "fired": fired,
            "word": lambda prefix, v: _word(p, prefix, v),
            "column_label": lambda c: heading(c, p.lang),
            "label": lambda c, v: label(c, v, p.lang),
        }

    return view(request, "viewer", "alerts.html", build, needs_run=False)


def _word(p: Page, prefix: str, value: Any) -> str:
    """A recorded code (status, trigger …) in the page's language; unknown codes as they are."""
    key = f"{prefix}_{value}"
    return p.t(key) if p.t.has(key) else str(value if value is not None else "—")
