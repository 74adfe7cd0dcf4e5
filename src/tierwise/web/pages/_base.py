"""What every dashboard page shares: the router, the templates, the two languages, the navigation by role, and
`view()`, which checks the role, opens the request thread's workspace, builds the page's data and renders it.

Pages only call the service layer (tierwise.web.services) and the report's chart helpers, so a page and its JSON
twin under /api/v1 show the same numbers. Long work (ingest, run, settings preview) is started from the page's
JavaScript through the API and followed by polling /api/v1/jobs/{id}; no page request waits for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from tierwise.errors import UserError
from tierwise.web.accounts import role_at_least
from tierwise.web.auth import CSRF_FIELD, Principal, csrf_token, masked, optional_principal, safe_next
from tierwise.web.services.refresh import latest_alert_count
from tierwise.workspace import Workspace

router = APIRouter(include_in_schema=False)

LANG_COOKIE = "lang"
LANGUAGES = ("zh", "en")

# key → (English, Chinese): every label the pages show
TEXT: dict[str, tuple[str, str]] = {
    "app": ("tierwise", "tierwise"),
    "tagline": ("customer tiers", "客户分类与优先排序"),
    "skip": ("Skip to content", "跳到正文"),
    "nav": ("Main navigation", "主导航"),
    "overview": ("Overview", "总览"),
    "segments": ("Segments", "客户分群"),
    "customers": ("Customers", "客户"),
    "customer": ("Customer", "客户"),
    "history": ("History", "历史"),
    "models": ("Models", "模型"),
    "data": ("Data", "数据"),
    "settings": ("Settings", "设置"),
    "users": ("Users", "用户"),
    "logout": ("Log out", "退出登录"),
    "language": ("Language", "语言"),
    "switch_to": ("中文", "English"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "role_admin": ("admin", "管理员"),
    "role_analyst": ("analyst", "分析师"),
    "role_viewer": ("viewer", "只读用户"),
    "forbidden_title": ("Not allowed", "无权访问"),
    "forbidden": (
        "This page needs the {role} role; you are signed in as {current}. Ask an administrator.",
        "此页面需要“{role}”角色，您当前的角色是“{current}”。请联系管理员。",
    ),
    "not_found": ("Not found", "未找到"),
    "error": ("Error", "错误"),
    "back": ("Back", "返回"),
    "run": ("Run", "运行批次"),
    "as_of": ("As of", "数据截至"),
    "previous_run": ("Previous run", "上一次运行"),
    "no_previous": ("no previous run", "无上一次运行"),
    "no_run_title": ("No results yet", "还没有结果"),
    "no_run": (
        "No run yet: load the data, then run the main job first.",
        "还没有运行结果：请先导入数据，然后运行主任务。",
    ),
    "no_run_viewer": ("Ask an analyst to run the main job first.", "请联系分析师先运行主任务。"),
    "run_button": ("Run the main job", "运行主任务"),
    "run_as_of": ("As-of date (optional)", "截至日期（可选）"),
    "running": ("Running…", "运行中…"),
    "job_queued": ("Waiting to start…", "等待开始…"),
    "job_done": ("Done.", "完成。"),
    "job_failed": ("Failed:", "失败："),
    "job_cancel": ("Cancel", "取消"),
    "job_cancelling": ("Cancelling…", "正在取消…"),
    "job_cancelled": ("Cancelled; nothing was stored.", "已取消，未保存任何结果。"),
    "reload": ("Reload the page to see the results.", "刷新页面查看结果。"),
    "kpis": ("Key figures", "关键指标"),
    "change": ("Change vs the previous run", "与上一次运行相比"),
    "distribution": ("Distribution", "分布"),
    "class": ("Class", "类别"),
    "customer_count": ("Customers", "客户数"),
    "customer_share": ("Share of customers", "客户占比"),
    "revenue": ("Revenue", "收入"),
    "revenue_share": ("Share of revenue", "收入占比"),
    "strategy": ("Strategy", "策略"),
    "next_action": ("Next action", "下一步行动"),
    "of_members": ("of members", "的成员"),
    "members": ("Members", "成员"),
    "show_members": ("Show members", "查看成员"),
    "class_column": ("Classification", "分类方式"),
    "no_class": ("No class", "无类别"),
    "search": ("Search by id or name", "按编号或名称搜索"),
    "filter": ("Filter (rule language)", "筛选条件（规则语言）"),
    "filter_hint": ("e.g. grade = 'A' and recency_days < 90", "例如 grade = 'A' and province = '广东'"),
    "sort": ("Sort by", "排序"),
    "descending": ("descending", "降序"),
    "page_size": ("Rows per page", "每页行数"),
    "apply": ("Apply", "应用"),
    "reset": ("Reset", "重置"),
    "results": ("{total} customers", "共 {total} 位客户"),
    "page_of": ("Page {page} of {pages}", "第 {page} / {pages} 页"),
    "previous": ("Previous", "上一页"),
    "next": ("Next", "下一页"),
    "pagination": ("Pages", "分页"),
    "export": ("Export", "导出"),
    "export_hint": ("The customers matching the filter, every column.", "导出符合筛选条件的客户（全部列）。"),
    "no_rows": ("No customers match.", "没有符合条件的客户。"),
    "masked_note": (
        "Phone numbers and e-mail addresses are masked for your role.",
        "根据您的角色，电话号码和电子邮箱已做脱敏处理。",
    ),
    "scores": ("Scores", "得分"),
    "all_scores": ("Every measure and score", "全部指标与得分"),
    "measure": ("Measure", "指标"),
    "value": ("Value", "数值"),
    "grade": ("Grade", "等级"),
    "composite_score": ("Composite score", "综合得分"),
    "priority_rank": ("Priority", "优先级排名"),
    "indicators": ("Indicator breakdown", "指标分解"),
    "indicator": ("Indicator", "指标"),
    "expression": ("Expression", "表达式"),
    "weight": ("Weight", "权重"),
    "weight_share": ("Weight share", "权重占比"),
    "score": ("Score", "得分"),
    "points": ("Points", "贡献分"),
    "reasons": ("Why these classes", "分类原因"),
    "classes": ("Classes", "类别"),
    "timeline": ("Class timeline", "类别变化时间线"),
    "since": ("Since", "起始"),
    "previous_class": ("Before", "之前"),
    "absent": ("not in this run", "本次运行中不存在"),
    "profile": ("Profile", "基本信息"),
    "service_level": ("Service level", "服务等级"),
    "channel": ("Channel", "渠道"),
    "contact_every": ("Contact every (days)", "联系间隔（天）"),
    "budget": ("Budget per customer", "单客预算"),
    "reason": ("Reason", "原因"),
    "cross_sell": ("Cross-sell suggestions", "交叉销售建议"),
    "category": ("Category", "品类"),
    "support": ("Support", "支持度"),
    "buyers": ("Buyers", "购买人数"),
    "learned_class": ("Learned model", "学习模型预测"),
    "confidence": ("Confidence", "置信度"),
    "notes": ("Notes", "说明"),
    "trends": ("Sizes over runs", "各类规模变化"),
    "migration": ("Migration between the last two runs", "最近两次运行之间的迁移"),
    "migration_matrix": ("Migration matrix", "迁移矩阵"),
    "need_two_runs": (
        "Only one run so far: trends and migration need two runs (tierwise backfill builds past runs).",
        "目前只有一次运行：趋势与迁移至少需要两次运行（可用 tierwise backfill 生成历史运行）。",
    ),
    "moved": ("Customers who moved", "类别变化的客户"),
    "from": ("From", "原类别"),
    "to": ("To", "新类别"),
    "kind": ("Change", "变化"),
    "kind_stayed": ("stayed", "未变"),
    "kind_upgrade": ("upgrade", "升级"),
    "kind_downgrade": ("downgrade", "降级"),
    "kind_changed": ("changed", "变化"),
    "kind_entry": ("entered", "新进入"),
    "kind_exit": ("left", "离开"),
    "no_models": (
        "No models for this run yet: predictive CLV, clusters and learned rules appear here once they are made.",
        "本次运行还没有模型：预测CLV、聚类和学习规则生成后会显示在这里。",
    ),
    "clv_models": ("Predictive CLV", "预测CLV"),
    "clusters": ("Clusters", "聚类"),
    "learned": ("Learned rules", "学习到的规则"),
    "upload": ("Upload a file", "上传文件"),
    "table": ("Table", "数据表"),
    "file": ("File", "文件"),
    "upload_button": ("Upload and ingest", "上传并导入"),
    "upload_hint": (
        "CSV, Excel or Parquet; columns are recognised by their names in Chinese or English.",
        "支持 CSV、Excel 或 Parquet；列名可以是中文或英文。",
    ),
    "ingest_report": ("Ingest report", "导入报告"),
    "status": ("Status", "状态"),
    "batches": ("Loaded batches", "已导入批次"),
    "no_batches": ("Nothing loaded yet.", "尚未导入任何数据。"),
    "batch": ("Batch", "批次"),
    "rows_read": ("Rows read", "读取行数"),
    "rows_loaded": ("Rows loaded", "导入行数"),
    "rows_new": ("New", "新增行数"),
    "rows_updated": ("Updated", "更新行数"),
    "rows_unchanged": ("Unchanged (skipped)", "未变行数（跳过）"),
    "reconciliation_rule": (
        "Rows read = new + updated + unchanged + quarantined + duplicates removed.",
        "读取行数 = 新增 + 更新 + 未变 + 隔离 + 去重。",
    ),
    "rows_quarantined": ("Quarantined", "隔离行数"),
    "duplicates": ("Duplicates removed", "去重行数"),
    "values_blanked": ("Values blanked", "清空值数"),
    "ingest_loaded": ("Loaded", "已导入"),
    "ingest_already_loaded": ("Already loaded before", "此前已导入"),
    "already_loaded_note": (
        "This file was loaded before as batch {batch} on {date}; nothing new was loaded.",
        "此文件此前已作为批次 {batch} 于 {date} 导入；本次没有导入新数据。",
    ),
    "batch_quarantine": ("Quarantined rows of batch {batch}", "批次 {batch} 的隔离行"),
    "tags": ("Tags (rules)", "标签（规则）"),
    "loaded_at": ("Loaded at", "导入时间"),
    "quarantine": ("Quarantine: rows not loaded", "隔离区：未导入的行"),
    "no_quarantine": ("No quarantined rows.", "没有被隔离的行。"),
    "line": ("Line", "行号"),
    "column": ("Column", "列"),
    "reason_code": ("Reason", "原因代码"),
    "message": ("Message", "说明"),
    "all_batches": ("All batches", "全部批次"),
    "show": ("Show", "显示"),
    "settings_intro": (
        "Changes apply to the next run. Preview first to see how many customers would change class.",
        "修改将在下一次运行时生效。建议先预览，查看有多少客户的类别会改变。",
    ),
    "grade_weights": ("Grade weights", "等级权重"),
    "grade_method": ("Grading method", "分级方法"),
    "cutoffs": ("Score cut-offs for A, B, C", "A、B、C 的分数线"),
    "quotas": ("Quotas (shares of A, B, C)", "配额（A、B、C 的占比）"),
    "abc": ("ABC cut-offs", "ABC 分类阈值"),
    "a_cutoff": ("A: cumulative share up to", "A类：累计占比至"),
    "b_cutoff": ("B: cumulative share up to", "B类：累计占比至"),
    "rules": ("Rules (tags)", "规则（标签）"),
    "playbook": ("Playbook", "策略手册"),
    "json_hint": (
        "As JSON: a list of objects with the keys of tierwise.toml.",
        "JSON 格式：与 tierwise.toml 键名相同的对象列表。",
    ),
    "preview": ("Preview the change", "预览修改"),
    "save": ("Save", "保存"),
    "preview_result": ("Preview", "预览结果"),
    "saved": ("Saved. The next run uses the new settings.", "已保存。下一次运行将使用新设置。"),
    "changed_grade": ("customers would change grade", "位客户的等级会改变"),
    "users_list": ("Users", "用户列表"),
    "username": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "role": ("Role", "角色"),
    "created": ("Created", "创建时间"),
    "actions": ("Actions", "操作"),
    "add_user": ("Add a user", "添加用户"),
    "add": ("Add", "添加"),
    "remove": ("Remove", "删除"),
    "new_token": ("New API token", "新建 API 令牌"),
    "tokens": ("API tokens", "API 令牌"),
    "token_id": ("Token", "令牌"),
    "last_used": ("Last used", "最近使用"),
    "revoked": ("Revoked", "已撤销"),
    "revoke": ("Revoke", "撤销"),
    "token_once": ("Copy the token now; it is not shown again:", "请立即复制令牌，它不会再次显示："),
    "audit": ("Audit log", "审计日志"),
    "when": ("When", "时间"),
    "who": ("Who", "用户"),
    "action": ("Action", "操作"),
    "detail": ("Detail", "详情"),
    "address": ("Address", "地址"),
    "confirm_remove": ("Remove this user?", "确定删除该用户？"),
    "sessions": ("Open sessions", "当前登录会话"),
    "logged_in_at": ("Logged in", "登录时间"),
    "last_seen": ("Last seen", "最近活动"),
    "browser": ("Browser", "浏览器"),
    "end_session": ("End", "结束"),
    "end_sessions": ("End all sessions", "结束全部会话"),
    "this_session": ("this session", "当前会话"),
    "no_sessions": ("Nobody is logged in in a browser.", "当前没有浏览器登录会话。"),
    "none": ("—", "—"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
}

# (key, path, role needed): the navigation; each entry is shown only to roles that may open it
NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "/overview", "viewer"),
    ("segments", "/segments", "viewer"),
    ("customers", "/customers", "viewer"),
    ("history", "/history", "viewer"),
    ("models", "/models", "viewer"),
    ("alerts", "/alerts", "viewer"),
    ("data", "/data", "analyst"),
    ("settings", "/settings", "admin"),
    ("users", "/users", "admin"),
)


class Texts:
    """The labels in one language: t("key", **fields), or t.key in templates."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.zh = lang == "zh"

    def __call__(self, key: str, **kw: Any) -> str:
        en, zh = TEXT[key]
        return (zh if self.zh else en).format(**kw) if kw else (zh if self.zh else en)

    def __getattr__(self, key: str) -> str:
        if key.startswith("_") or key not in TEXT:
            raise AttributeError(key)
        return self(key)

    def pick(self, en: str, zh: str) -> str:
        return zh if self.zh else en

    def has(self, key: str) -> bool:
        return key in TEXT


class PageError(Exception):
    """Raised by a page builder: the error page with this status and message (e.g. 404 for an unknown id)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    """What a page's builder gets: the request, who is asking, the language and the workspace."""

    request: Request
    principal: Principal
    lang: str
    t: Texts
    ws: Workspace
    charts: dict[str, Any] = field(default_factory=dict)

    @property
    def masked(self) -> bool:
        """Viewers see phone numbers and e-mail addresses masked."""
        return masked(self.principal)

    def can(self, role: str) -> bool:
        return self.principal.can(role)


def language(request: Request) -> str:
    """The page language: ?lang=, else the `lang` cookie, else [workspace] language."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in LANGUAGES:
            return str(value)
    configured = str(request.app.state.handle.config.workspace.language)
    return configured if configured in LANGUAGES else "zh"


# --- formatting -------------------------------------------------------------------------------------------


def _number(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}%}"


def _signed(value: Any, digits: int = 0) -> str:
    if value is None or not isinstance(value, int | float):
        return ""
    return f"{value:+,.{digits}f}"


def _cell(value: Any) -> str:
    """Any value of a customer row as text: numbers with separators, floats with two decimals."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _number(value, 0 if abs(value) >= 1000 else 2)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def script_json(data: Any) -> Markup:
    """JSON for a <script type="application/json"> element that no customer name can end early."""

    def finite(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {str(k): finite(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [finite(v) for v in x]
        return x

    text = json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"), default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _query(request: Request, **changes: Any) -> str:
    """The current path with some query parameters changed (None removes one)."""
    params = {k: v for k, v in request.query_params.items() if k != "lang"}
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = str(v)
    return request.url.path + ("?" + urlencode(params) if params else "")


env = Environment(
    loader=PackageLoader("tierwise.web", "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True,
    lstrip_blocks=True,
)  # fmt: skip
env.filters.update(num=_number, pct=_pct, signed=_signed, cell=_cell, tojson_script=script_json)
env.filters["quote"] = lambda v: quote(str(v), safe="")
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def _static_version() -> str:
    """Changes when a static file does, so browsers fetch new CSS and JavaScript after an upgrade."""
    stamps = [int(p.stat().st_mtime) for p in STATIC_DIR.glob("*") if p.is_file()]
    return str(max(stamps, default=0))


# --- rendering --------------------------------------------------------------------------------------------


def _base_context(request: Request, principal: Principal | None, lang: str) -> dict[str, Any]:
    t = Texts(lang)
    nav = [
        {"key": key, "label": t(key), "path": path, "current": request.url.path.startswith(path)}
        for key, path, role in NAV
        if principal is not None and role_at_least(principal.role, role)
    ]
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    other = "en" if lang == "zh" else "zh"
    return {
        "request": request,
        "lang": lang,
        "t": t,
        "principal": principal,
        "role_label": t(f"role_{principal.role}") if principal else "",
        "nav": nav,
        "csrf": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "lang_url": f"/lang/{other}?next={quote(here, safe='')}",
        "other_lang": other,
        "query": lambda **kw: _query(request, **kw),
        "static_version": _static_version(),
        "charts": {},
        # the alerts the latest refresh fired, as a badge on the navigation (tierwise.web.pages.alerts)
        "alert_badge": latest_alert_count(request.app.state.handle.workspace()) if principal is not None else 0,
    }


def render(request: Request, template: str, principal: Principal | None, lang: str, status: int = 200,
           **context: Any) -> HTMLResponse:  # fmt: skip
    data = {**_base_context(request, principal, lang), **context}
    html = env.get_template(template).render(**data)
    response = HTMLResponse(html, status)
    response.headers["Cache-Control"] = "no-store"  # pages hold customer data: never kept by the browser
    response.headers["Content-Language"] = "zh-CN" if lang == "zh" else "en"
    return response


def has_run(ws: Workspace) -> bool:
    return int(ws.table("runs").count().execute()) > 0


def view(
    request: Request,
    role: str,
    template: str,
    build: Callable[[Page], dict[str, Any]],
    *,
    needs_run: bool = True,
) -> Response:
    """Render `template` with `build(page)` for a principal with at least `role`.

    Anonymous → 401 (the app turns it into a redirect to /login for browsers); a lower role → the 403 page;
    no run yet (when the page needs one) → the empty state with the run button for analysts; a UserError (a
    bad filter, an unknown customer) → the page's error box with the message."""
    principal = optional_principal(request)
    if principal is None:
        raise HTTPException(401, "log in first")
    lang = language(request)
    t = Texts(lang)
    if not principal.can(role):
        return render(
            request, "error.html", principal, lang, 403, title=t.forbidden_title,
            message=t("forbidden", role=t(f"role_{role}"), current=t(f"role_{principal.role}")),
        )  # fmt: skip
    request.state.principal = principal
    ws: Workspace = request.app.state.handle.workspace()
    page = Page(request, principal, lang, t, ws)
    if needs_run and not has_run(ws):
        return render(request, "empty.html", principal, lang, title=t(template.removesuffix(".html")))
    try:
        context = build(page)
    except PageError as exc:
        title = t.not_found if exc.status == 404 else t.error
        return render(request, "error.html", principal, lang, exc.status, title=title, message=str(exc))
    except UserError as exc:
        return render(request, "error.html", principal, lang, 400, title=t.error, message=str(exc))
    status = int(context.pop("status", 200))
    return render(request, template, principal, lang, status, charts=page.charts, **context)


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    """Remember the chosen language in the `lang` cookie and go back to the page (logged-in users only, as
    every route but the login, the health check and static files)."""
    if optional_principal(request) is None:
        raise HTTPException(401, "log in first")
    response = RedirectResponse(safe_next(next), 303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="lax", httponly=False)
    return response
