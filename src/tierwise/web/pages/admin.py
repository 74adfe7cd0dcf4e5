"""The pages that change things: data (analysts: upload, batches, quarantine), settings and users (admins).

The pages only show the current state and the forms; the changes themselves go through the REST API from
/static/app.js (uploads, settings preview and save, users and tokens), with the session's CSRF token, and long
work (ingest, preview) runs as a job whose progress the page polls.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tierwise.schema import TABLES
from tierwise.web.accounts import ROLES
from tierwise.web.auth import accounts, idle_limit
from tierwise.web.pages._base import Page, router, view
from tierwise.web.services import settings as settings_service
from tierwise.web.services import uploads as upload_service

# table → (English, Chinese)
TABLE_LABELS: dict[str, tuple[str, str]] = {
    "customers": ("Customers", "客户"),
    "orders": ("Orders", "订单"),
    "payments": ("Payments", "付款"),
    "interactions": ("Interactions", "互动记录"),
    "campaign_contacts": ("Campaign contacts", "营销活动联系记录"),
}


@router.get("/data")
def data_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        q = request.query_params
        batch = q.get("batch") or None
        reason = q.get("reason") or None
        try:
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            page = 1
        quarantined = upload_service.quarantine(p.ws, batch, page=page, page_size=50, reason=reason)
        tables = [
            {"name": name, "label": TABLE_LABELS.get(name, (name, name))[1 if p.lang == "zh" else 0]} for name in TABLES
        ]
        return {
            "batches": upload_service.batches(p.ws),
            "quarantine": quarantined,
            "batch": batch,
            "reason": reason or "",
            "tables": tables,
            "accept": ",".join("." + e for e in upload_service.EXTENSIONS),
            "max_upload_mb": request.app.state.handle.config.web.max_upload_mb,
        }

    return view(request, "analyst", "data.html", build, needs_run=False)


@router.get("/settings")
def settings_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        data = settings_service.read_settings(p.ws)
        grade = data["grade"]
        return {
            "data": data,
            "indicators": grade.get("indicators") or [],
            "rules_json": json.dumps(data["rules"], ensure_ascii=False, indent=2),
            "playbook_json": json.dumps(data["playbook"], ensure_ascii=False, indent=2),
        }

    return view(request, "admin", "settings.html", build, needs_run=False)


@router.get("/users")
def users_page(request: Request) -> Response:
    def build(p: Page) -> dict[str, Any]:
        users = accounts(request)
        sessions = users.sessions(idle_limit(request))
        return {
            "users": users.users(),
            "sessions": sessions,
            "session_users": {s["username"] for s in sessions},
            "current_session": p.principal.session_id,
            "tokens": users.tokens(),
            "audit": users.audit_entries(200),
            "roles": list(ROLES),
        }

    return view(request, "admin", "users.html", build, needs_run=False)
