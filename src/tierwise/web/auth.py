"""Who is asking: session cookies for the browser, bearer tokens for scripts; roles, CSRF and login throttling.

Roles are ordered viewer < analyst < admin. Every route except login, the health check and static assets depends
on `require(role)`. A browser's unsafe request (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, in
the `X-CSRF-Token` header or a `csrf_token` form field; requests authenticated by a bearer token need none (a
cross-site page cannot attach a token to a request).

Sessions are kept on the server (`Accounts.create_session`, in `.tierwise-auth.sqlite`); the `tierwise_session`
cookie holds only a random secret whose SHA-256 digest finds the session. Finding the principal reads only the
request's headers (never its body), so it works on a Request built from the ASGI scope alone, before the body is
received.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import math
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from fastapi import HTTPException, Request
from starlette.responses import RedirectResponse, Response

from tierwise.web.accounts import Accounts, Role, Session, User, role_at_least

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "tierwise_session"
LOGIN_FIRST = "log in first (POST /api/v1/auth/login) or send 'Authorization: Bearer TOKEN'"
_SCOPE_KEY = "tierwise.principal"  # the principal found for this request, so it is looked up once


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    via: Literal["session", "token"]
    session_id: str | None = field(default=None, compare=False)
    csrf_token: str | None = field(default=None, compare=False, repr=False)

    def can(self, role: str) -> bool:
        return role_at_least(self.role, role)


def masked(principal: Principal) -> bool:
    """Viewers see phone numbers and e-mail addresses masked."""
    return not principal.can("analyst")


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    paused_until: float = 0.0


class LoginThrottle:
    """Failed logins counted per (user name, address), and more loosely per address across user names.

    A key's first `attempts` failures are free; the one that reaches the limit starts a pause of `first_pause`
    seconds, and every further failure (tried after the pause) doubles it, up to `max_pause`. While a pause lasts,
    logins for that key are refused without checking the password. A lock therefore binds only the address that
    earned it: the right password from another address still works. A successful login forgets the (user name,
    address) failures; failures of any key are forgotten after `FORGET` seconds without one. The address key, with
    its higher limit, stops one address trying a few passwords on many user names.
    """

    FORGET = 3600.0
    MAX_KEYS = 10_000  # past this, quiet keys are dropped: spraying many names cannot grow memory without bound

    def __init__(self, attempts: int, first_pause: float, max_pause: float, address_attempts: int) -> None:
        self.attempts = attempts
        self.address_attempts = address_attempts
        self.first_pause = first_pause
        self.max_pause = max_pause
        self._failures: dict[tuple[str, ...], _Failures] = {}
        self._lock = threading.Lock()

    def _keys(self, username: str, ip: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        return ((("user", username.lower(), ip), self.attempts), (("ip", ip), self.address_attempts))

    def pause(self, failures: int, limit: int) -> float:
        """The pause after the `failures`-th failure of a key with this limit (0 while still free)."""
        if failures < limit:
            return 0.0
        return float(min(self.max_pause, self.first_pause * 2 ** min(failures - limit, 30)))

    def retry_after(self, username: str, ip: str) -> float:
        """Seconds until a login for this name from this address may be tried (0: now)."""
        now = time.monotonic()
        with self._lock:
            found = (self._failures.get(key) for key, _ in self._keys(username, ip))
            return max((f.paused_until - now for f in found if f is not None), default=0.0)

    def failed(self, username: str, ip: str) -> float:
        """Count a failed login; the pause it starts (0 when none)."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > self.MAX_KEYS:
                self._forget(now)
            longest = 0.0
            for key, limit in self._keys(username, ip):
                found = self._failures.setdefault(key, _Failures())
                if now - found.last > self.FORGET:
                    found.count = 0
                found.count += 1
                found.last = now
                pause = self.pause(found.count, limit)
                found.paused_until = now + pause if pause else 0.0
                longest = max(longest, pause)
            return longest

    def succeeded(self, username: str, ip: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(username, ip)[0][0], None)

    def _forget(self, now: float) -> None:
        for key in [k for k, f in self._failures.items() if now - f.last > self.FORGET and f.paused_until < now]:
            del self._failures[key]


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _trusted(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_ip(request: Request) -> str:
    """The caller's address: the peer's, or — only when the peer is one of [web] trusted_proxies — the nearest
    address in X-Forwarded-For that is not a trusted proxy itself (the proxies append; earlier entries are
    whatever the client claimed)."""
    peer = request.client.host if request.client else "-"
    trusted = tuple(request.app.state.handle.config.web.trusted_proxies)
    if not trusted:
        return peer
    networks = _networks(trusted)
    if not _trusted(peer, networks):
        return peer
    chain = [a.strip() for h in request.headers.getlist("x-forwarded-for") for a in h.split(",") if a.strip()]
    address = peer
    for hop in reversed(chain):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage from the client: the last trusted hop is the best known address
        address = hop
        if not _trusted(hop, networks):
            break
    return address


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx/", "python-httpx"),
    ("python-requests/", "python-requests"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def agent_summary(user_agent: str) -> str:
    """A short name of the browser and system ("Firefox 120 on Linux") for the sessions list: enough to tell
    one's own devices apart, without keeping the whole header."""
    for marker, name in _BROWSERS:
        found = re.search(re.escape(marker) + r"(\d+)", user_agent)
        if found:
            browser = f"{name} {found.group(1)}"
            break
    else:
        browser = user_agent.split(" ", 1)[0][:40] or "?"
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), "")
    return f"{browser} on {system}" if system else browser


def accounts(request: Request) -> Accounts:
    found: Accounts = request.app.state.accounts
    return found


def _web(request: Request) -> Any:
    return request.app.state.handle.config.web


def idle_limit(request: Request) -> dt.timedelta:
    return dt.timedelta(minutes=float(_web(request).idle_minutes))


def start_session(request: Request, user: User) -> tuple[Session, str]:
    """Log the browser in: a new session (never the one its cookie named, which ends: no fixation) and the secret
    for its cookie (`set_session_cookie`)."""
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        previous = accounts(request).session(old, idle_limit(request))
        if previous is not None:
            accounts(request).end_session(previous.session_id, "replaced")
    web = _web(request)
    secret, session = accounts(request).create_session(
        user.username,
        float(web.session_hours),
        client_ip(request),
        agent_summary(request.headers.get("user-agent", "")),
    )
    request.scope.pop(_SCOPE_KEY, None)
    return session, secret


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    """The cookie carries the secret only: HttpOnly, SameSite=Strict, Secure with [web] secure_cookies."""
    web = _web(request)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(float(web.session_hours) * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=bool(web.secure_cookies),
    )


def end_session(request: Request, response: Response, principal: Principal) -> None:
    """Log out: the session ends on the server, and the browser forgets the cookie."""
    if principal.session_id:
        accounts(request).end_session(principal.session_id, "logout")
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=bool(_web(request).secure_cookies)
    )
    request.scope.pop(_SCOPE_KEY, None)


def _principal(request: Request) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = accounts(request).verify_token(header[7:].strip())
        return Principal(user.username, user.role, "token") if user else None
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    # The user's current role comes from the users table: a changed role or a removed user counts at once.
    session = accounts(request).session(secret, idle_limit(request))
    if session is None:
        return None
    return Principal(session.username, session.role, "session", session.session_id, session.csrf_token)


async def _check_csrf(request: Request, principal: Principal) -> None:
    if principal.via != "session" or request.method not in UNSAFE:
        return
    expected = principal.csrf_token
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
        principal = optional_principal(request)
        if principal is None:
            raise HTTPException(401, LOGIN_FIRST)
        if not principal.can(role):
            raise HTTPException(403, f"this needs the {role} role; you are {principal.role}")
        await _check_csrf(request, principal)
        request.state.principal = principal
        return principal

    return dependency


def optional_principal(request: Request) -> Principal | None:
    """The logged-in principal or None, from the headers alone (no body is read). Looked up once per request:
    the answer is kept in the ASGI scope, which a middleware and the route share."""
    cached = request.scope.get(_SCOPE_KEY)
    if cached is not None:
        found: Principal | None = cached[0]
        return found
    principal = _principal(request)
    request.scope[_SCOPE_KEY] = (principal,)
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's browser session ("" for none), for the pages' forms and scripts."""
    principal = optional_principal(request)
    return principal.csrf_token or "" if principal is not None else ""


def retry_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the API): sent to the login page instead of answered 401."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def to_login(request: Request) -> RedirectResponse:
    """The login page, which returns to the page asked for."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", 303)


def safe_next(target: str) -> str:
    """Only paths on this server: an open redirect to another site is refused."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
