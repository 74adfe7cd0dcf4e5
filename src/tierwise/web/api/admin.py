"""Administration: users, API tokens and the audit log (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from tierwise.web.accounts import Role
from tierwise.web.api._common import ERRORS, Admin, ApiRoute, audit, call, check_user
from tierwise.web.auth import Principal, accounts

router = APIRouter(route_class=ApiRoute, tags=["admin"], responses=ERRORS)


class UserOut(BaseModel):
    username: str
    role: Role
    created_at: str


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64, description="Letters, digits, '.', '_', '-' or '@' / 用户名")
    role: Role = Field(description="viewer (read-only), analyst (upload, run, export), admin / 角色")
    password: str = Field(description="At least 8 characters / 密码（至少8个字符）")


class NewPassword(BaseModel):
    password: str = Field(description="At least 8 characters / 新密码")


class NewRole(BaseModel):
    role: Role


class TokenOut(BaseModel):
    token_id: str
    username: str
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None


class TokenCreated(BaseModel):
    token_id: str
    username: str
    token: str = Field(description="Send as 'Authorization: Bearer TOKEN'; shown only this once / 仅显示一次")


class AuditEntry(BaseModel):
    at: str
    username: str | None
    action: str
    detail: str | None
    ip: str | None


def _not_yourself(principal: Principal, username: str, what: str) -> None:
    if principal.username == username:
        raise HTTPException(400, f"you cannot {what} your own account; ask another admin")


@router.get("/users", summary="List the users", response_model=list[UserOut])
def list_users(request: Request, principal: Admin) -> Any:
    return [u.__dict__ for u in accounts(request).users()]


@router.post("/users", status_code=201, summary="Add a user", response_model=UserOut)
def add_user(request: Request, principal: Admin, body: NewUser) -> Any:
    user = accounts(request).add_user(body.username, body.role, body.password)
    audit(request, principal, "user_add", f"{user.username} as {user.role}")
    return user.__dict__


@router.delete("/users/{username}", summary="Remove a user (and revoke its tokens)")
def remove_user(request: Request, principal: Admin, username: str) -> dict[str, Any]:
    _not_yourself(principal, username, "remove")
    check_user(request, username)
    accounts(request).remove_user(username)
    audit(request, principal, "user_remove", username)
    return {"removed": username}


@router.put("/users/{username}/password", summary="Set a user's password")
def set_password(request: Request, principal: Admin, username: str, body: NewPassword) -> dict[str, Any]:
    check_user(request, username)
    # An admin changing their own password stays logged in here; every other session of the user ends.
    keep = principal.session_id if username == principal.username else None
    ended = accounts(request).set_password(username, body.password, keep_session=keep)
    audit(request, principal, "user_passwd", username)
    return {"username": username, "password_changed": True, "sessions_ended": ended}


@router.put("/users/{username}/role", summary="Change a user's role", response_model=UserOut)
def set_role(request: Request, principal: Admin, username: str, body: NewRole) -> Any:
    _not_yourself(principal, username, "change the role of")
    check_user(request, username)
    accounts(request).set_role(username, body.role)
    audit(request, principal, "user_role", f"{username} → {body.role}")
    return accounts(request).get(username).__dict__


@router.get("/tokens", summary="List the API tokens (never their secrets)", response_model=list[TokenOut])
def list_tokens(
    request: Request,
    principal: Admin,
    username: Annotated[str | None, Query(description="Only this user's tokens")] = None,
) -> Any:
    return accounts(request).tokens(username)


@router.post("/users/{username}/tokens", status_code=201, summary="Make an API token for a user",
             response_model=TokenCreated)  # fmt: skip
def create_token(request: Request, principal: Admin, username: str) -> Any:
    """The token is shown in this answer only; only a digest of it is kept."""
    check_user(request, username)
    token_id, token = accounts(request).create_token(username)
    audit(request, principal, "token_create", f"{token_id} for {username}")
    return {"token_id": token_id, "username": username, "token": token}


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
def revoke_token(request: Request, principal: Admin, token_id: str) -> dict[str, Any]:
    call(accounts(request).revoke_token, token_id)
    audit(request, principal, "token_revoke", token_id)
    return {"revoked": token_id}


@router.get("/audit", summary="The audit log, newest first", response_model=list[AuditEntry])
def audit_log(
    request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=10000, description="Entries")] = 200
) -> Any:
    """Logins, uploads, runs, exports, settings and user changes: who, when, from where (no customer data)."""
    return accounts(request).audit_entries(limit)
