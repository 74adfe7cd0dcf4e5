"""Browser sessions: admins see who is logged in where, and end sessions (admins only; endings are audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from tierwise.web.api._common import ERRORS, Admin, ApiRoute, NotFound, audit, check_user
from tierwise.web.auth import accounts, idle_limit

router = APIRouter(route_class=ApiRoute, tags=["sessions"], responses=ERRORS)


class SessionOut(BaseModel):
    session_id: str = Field(description="The session's public id (not its cookie) / 会话编号")
    username: str
    created_at: str = Field(description="Logged in at (UTC) / 登录时间")
    last_seen_at: str = Field(description="Last request, to the minute (UTC) / 最近活动时间")
    expires_at: str = Field(description="Ends at the latest (UTC), [web] session_hours after the login / 最晚失效时间")
    ip: str | None = Field(description="Address at the login / 登录地址")
    user_agent: str | None = Field(description="Browser and system / 浏览器和系统")
    current: bool = Field(description="The session making this request / 是否为当前会话")


@router.get("/sessions", summary="List the open browser sessions", response_model=list[SessionOut])
def list_sessions(
    request: Request,
    principal: Admin,
    username: Annotated[str | None, Query(description="Only this user's sessions / 仅该用户")] = None,
) -> Any:
    """Sessions not logged out, ended, idle past [web] idle_minutes or older than [web] session_hours."""
    return [s | {"current": s["session_id"] == principal.session_id}
            for s in accounts(request).sessions(idle_limit(request), username)]  # fmt: skip


@router.delete("/sessions/{session_id}", summary="End a browser session")
def end_session(request: Request, principal: Admin, session_id: str) -> dict[str, Any]:
    """That browser is logged out at its next request."""
    username = accounts(request).end_session(session_id, f"ended by {principal.username}")
    if username is None:
        raise NotFound(f"no open session '{session_id}'; list them with GET /api/v1/sessions")
    audit(request, principal, "session_end", f"{session_id} of {username}")
    return {"ended": session_id, "username": username}


@router.delete("/users/{username}/sessions", summary="End all browser sessions of a user")
def end_user_sessions(request: Request, principal: Admin, username: str) -> dict[str, Any]:
    """Logs the user out everywhere (API tokens keep working; revoke them separately)."""
    check_user(request, username)
    ended = accounts(request).end_sessions(username, f"ended by {principal.username}")
    audit(request, principal, "sessions_end", f"{username}: {ended}")
    return {"username": username, "ended": ended}
