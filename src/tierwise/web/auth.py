"""Who is asking: session cookies for the browser, bearer tokens for scripts; roles, CSRF and login throttling.

Roles are ordered viewer < analyst < admin. Every route except login, the health check and static assets depends
on `require(role)`. A browser's unsafe request (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, in
the `X-CSRF-Token` header or a `csrf_token` form field; requests authenticated by a bearer token need none (a
cross-site page cannot attach a token to a request).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request

from tierwise.web.accounts import Accounts, Role, User, role_at_least

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    via: Literal["session", "token"]

    def can(self, role: str) -> bool:
        return role_at_least(self.role, role)


class LoginThrottle:
    """After `attempts` failures for one user name (or from one address) logins pause for `lockout` seconds."""

    def __init__(self, attempts: int, lockout: float) -> None:
        self.attempts = attempts
        self.lockout = lockout
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        now = time.monotonic()
        with self._lock:
            waits = [until - now for n, until in (self._failures.get(k, (0, 0.0)) for k in keys) if until > now]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                count, _ = self._failures.get(key, (0, 0.0))
                count += 1
                self._failures[key] = (count, now + self.lockout if count >= self.attempts else 0.0)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "-"


def accounts(request: Request) -> Accounts:
    found: Accounts = request.app.state.accounts
    return found


def start_session(request: Request, user: User) -> str:
    """Log the browser in: a fresh session (no fixation) with its CSRF token."""
    request.session.clear()
    token = secrets.token_urlsafe(32)
    request.session.update({"user": user.username, CSRF_FIELD: token, "since": int(time.time())})
    return token


def _principal(request: Request) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = accounts(request).verify_token(header[7:].strip())
        return Principal(user.username, user.role, "token") if user else None
    name = request.session.get("user") if "session" in request.scope else None
    if not name:
        return None
    user = accounts(request).get(str(name))  # removed users and changed roles take effect at once
    return Principal(user.username, user.role, "session") if user else None


async def _check_csrf(request: Request, principal: Principal) -> None:
    if principal.via != "session" or request.method not in UNSAFE:
        return
    expected = request.session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get(CSRF_FIELD) or "")
    if not expected or not sent or not secrets.compare_digest(str(expected), sent):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


def require(role: Role = "viewer") -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the logged-in principal with at least `role` (401 when anonymous, 403 when not allowed)."""

    async def dependency(request: Request) -> Principal:
        principal = _principal(request)
        if principal is None:
            raise HTTPException(401, "log in first (POST /api/v1/auth/login) or send 'Authorization: Bearer TOKEN'")
        if not principal.can(role):
            raise HTTPException(403, f"this needs the {role} role; you are {principal.role}")
        await _check_csrf(request, principal)
        request.state.principal = principal
        return principal

    return dependency


def optional_principal(request: Request) -> Principal | None:
    return _principal(request)
