"""Logging in and out: the login page, POST /api/v1/auth/login and /logout, who is logged in, and the start page.

Unlike the other routers of the API this one is not under the /api/v1 prefix (the login page and "/" are pages),
so `tierwise.web.app.create_app` includes it itself. The login page and the login are the only routes here an
anonymous visitor reaches (tierwise.web.limits.PUBLIC_PATHS); "/" only sends them to the login page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tierwise.web.api._common import Viewer
from tierwise.web.auth import (
    CSRF_FIELD,
    LoginThrottle,
    accounts,
    client_ip,
    end_session,
    optional_principal,
    retry_seconds,
    safe_next,
    set_session_cookie,
    start_session,
    wants_html,
)
from tierwise.web.pages._base import LANGUAGES, env, language

router = APIRouter()


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", failed: int = 0) -> HTMLResponse:
    return _login_page(request, next, _login_language(request), failed=bool(failed))


@router.post("/api/v1/auth/login", tags=["auth"])
async def login(request: Request) -> Response:
    """Log in with JSON {"username", "password"} (or the login form); sets the session cookie."""
    is_form = not request.headers.get("content-type", "").startswith("application/json")
    if is_form:
        form = await request.form()
        username, password, target = str(form.get("username", "")), str(form.get("password", "")), form.get("next")
        lang = _login_language(request, str(form.get("lang", "")))
    else:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPException(422, 'send JSON like {"username": "...", "password": "..."}')
        username, password, target = str(body.get("username", "")), str(body.get("password", "")), None
        lang = "en"
    ip = client_ip(request)
    throttle: LoginThrottle = request.app.state.throttle
    wait = throttle.retry_after(username, ip)
    if wait > 0:
        accounts(request).audit(username or None, "login_throttled", "", ip)
        seconds = retry_seconds(wait)
        if is_form:  # a browser gets the login page again, saying how long to wait in its language
            page = _login_page(request, str(target or "/"), lang, wait=seconds, status=429)
            page.headers["Retry-After"] = str(seconds)
            return page
        raise HTTPException(
            429, f"too many failed logins; try again in {seconds} s", headers={"Retry-After": str(seconds)}
        )
    user = accounts(request).authenticate(username, password)
    if user is None:
        throttle.failed(username, ip)
        accounts(request).audit(username or None, "login_failed", "", ip)
        if is_form:
            back = f"/login?failed=1&next={quote(safe_next(str(target or '/')))}&lang={lang}"
            return RedirectResponse(back, 303)
        raise HTTPException(401, "wrong user name or password")
    throttle.succeeded(username, ip)
    session, secret = start_session(request, user)
    response: Response
    if is_form:
        response = RedirectResponse(safe_next(str(target or "/")), 303)
    else:
        response = JSONResponse({"username": user.username, "role": user.role, CSRF_FIELD: session.csrf_token})
    set_session_cookie(request, response, secret)
    accounts(request).audit(user.username, "login", "", ip)
    return response


@router.post("/api/v1/auth/logout", tags=["auth"])
def logout(request: Request, principal: Viewer) -> Response:
    accounts(request).audit(principal.username, "logout", "", client_ip(request))
    form = request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )
    response: Response = JSONResponse({"logged_out": True})
    if form or wants_html(request):
        response = RedirectResponse("/login", 303)  # the logout form of the pages
    end_session(request, response, principal)
    return response


@router.get("/api/v1/auth/me", tags=["auth"])
def me(request: Request, principal: Viewer) -> dict[str, Any]:
    """Who is logged in, the role, and the CSRF token a browser sends with changes."""
    return {
        "username": principal.username,
        "role": principal.role,
        "via": principal.via,
        CSRF_FIELD: principal.csrf_token if principal.via == "session" else None,
    }


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    principal = optional_principal(request)
    if principal is None:
        return RedirectResponse("/login", 303)
    return RedirectResponse("/overview", 303)


def _login_language(request: Request, chosen: str = "") -> str:
    """The login page's language: the one the form was shown in, else ?lang=, the `lang` cookie or the workspace's."""
    return chosen if chosen in LANGUAGES else language(request)


def _login_page(request: Request, next: str, lang: str, failed: bool = False, wait: int = 0,
                status: int = 200) -> HTMLResponse:  # fmt: skip
    html = env.get_template("login.html").render(
        next=safe_next(next),
        failed=failed,
        wait=wait,
        lang=lang,
        zh=lang == "zh",
        no_users=not accounts(request).users(),
    )
    return HTMLResponse(html, status)
