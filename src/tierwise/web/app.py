"""The FastAPI application of `tierwise serve`: middleware, login, health, static files, error handling.

The REST API (`tierwise.web.api`, under /api/v1) and the dashboard pages (`tierwise.web.pages`) are routers
included here. Public routes are only the login, the health check and static assets; everything else depends on
`auth.require(role)`.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.errors import UserError, out_of_memory
from tierwise.web.accounts import Accounts
from tierwise.web.auth import (
    CSRF_FIELD,
    LoginThrottle,
    Principal,
    accounts,
    client_ip,
    end_session,
    optional_principal,
    require,
    retry_seconds,
    set_session_cookie,
    start_session,
)
from tierwise.web.db import WorkspaceHandle
from tierwise.web.limits import RequestGuard
from tierwise.web.server import stop_jobs
from tierwise.web.services.jobs import JobManager

log = logging.getLogger("tierwise.web")

PUBLIC_PATHS = ("/login", "/health", "/api/v1/auth/login", "/static/")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    # Scripts only from files of this server (no inline script, no eval); plotly.js sets inline styles.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'self'"
    ),
}
STATIC_DIR = Path(__file__).parent / "static"
require_viewer = Depends(require("viewer"))
templates = Environment(loader=PackageLoader("tierwise.web", "templates"), autoescape=select_autoescape())


def _route_template(request: Request) -> str:
    """The matched route's path template with its router prefix (e.g. /api/v1/customers/{customer_id})."""
    context = (request.scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path", None) or getattr(request.scope.get("route"), "path", None)
    return str(path) if path else "(no route)"


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _warm(handle: WorkspaceHandle) -> None:
    """The latest run's cross-sell table, made in the background when the server starts."""
    from tierwise.web.services.customers import prepare_cross_sell

    try:
        prepare_cross_sell(handle.workspace())
    except Exception as exc:
        if type(exc).__name__ == "InterruptException":  # DuckDB's: the server is stopping (tierwise.web.server)
            return
        log.warning("preparing the cross-sell suggestions failed", exc_info=True)


def create_app(root: Path | str) -> FastAPI:
    handle = WorkspaceHandle(root)
    settings = handle.config.web

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tierwise.web.services.customers import index_lookups

        index_lookups(handle.workspace())
        threading.Thread(target=_warm, args=(handle,), name="tierwise-warm", daemon=True).start()
        yield
        stop_jobs(app)  # cancelled and rolled back, not waited for (tierwise.web.server)
        handle.close()

    app = FastAPI(
        lifespan=lifespan,
        title="tierwise",
        description="Customer classification and prioritisation: REST API (客户分类与优先排序)",
        version="1",
        openapi_url=None,  # served below, behind the login
        docs_url=None,
        redoc_url=None,
    )
    app.state.handle = handle
    app.state.accounts = Accounts(handle.root)
    app.state.throttle = LoginThrottle(
        settings.login_attempts, settings.lockout_seconds, settings.lockout_max_seconds, settings.address_attempts
    )
    app.state.max_upload = settings.max_upload_mb * 1024 * 1024
    app.state.max_json = settings.max_json_kb * 1024
    app.state.jobs = JobManager()

    # Login check and body limits before any body is read (tierwise.web.limits); added first, so it runs inside
    # the headers-and-log middleware below (its answers get the headers and the log line).
    app.add_middleware(RequestGuard)

    @app.middleware("http")
    async def headers_and_limits(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        if "\x00" in unquote(request.url.path + "?" + request.url.query):
            # No id, filter or search contains a NUL; the database would reject it deep inside a query.
            response: Response = JSONResponse({"error": "the address contains a NUL character; remove it"}, 400)
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # answered here, so the server does not log the traceback a second time
                response = _unexpected(request, exc)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        # The route's template, not the URL: paths and query strings carry customer ids, names and searches,
        # which stay out of logs.
        route = _route_template(request)
        log.info("%s %s %s %.0fms", request.method, route, response.status_code, 1000 * (time.perf_counter() - started))
        return response

    _add_handlers(app)
    _add_core_routes(app)  # before the static mount, which would otherwise answer /static/plotly.min.js
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in ("tierwise.web.api", "tierwise.web.pages"):
        try:
            router = importlib.import_module(module).router
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.include_router(router)

    return app


def _error(request: Request, status: int, message: str) -> Response:
    if status == 401 and wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", 303)
    return JSONResponse({"error": message}, status)


def _unexpected(request: Request, exc: Exception) -> Response:
    if type(exc).__name__ == "InterruptException":  # DuckDB's: the server is stopping (tierwise.web.server)
        return _error(request, 503, "the server is stopping; try again in a moment")
    memory = out_of_memory(exc)  # or temporary disk ([engine] memory_limit, max_temp_gb): the message says what to do
    if memory is not None:
        log.warning("%s %s: %s", request.method, _route_template(request), memory)
        return _error(request, 503, memory)
    log.error(
        "unexpected %s on %s %s",
        type(exc).__name__,
        request.method,
        _route_template(request),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return _error(request, 500, "unexpected error; see the server log")


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        return _error(request, 400, str(exc))

    # Starlette's class: FastAPI's HTTPException derives from it, and body-parsing and 405 errors are raised as it.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _error(request, exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        detail = getattr(exc, "detail", None)
        if detail and detail != "Not Found":  # a route's own message, e.g. "no customer 'X'"
            return _error(request, 404, str(detail))
        return _error(request, 404, f"no such page or endpoint: {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(request, 422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        response = _unexpected(request, exc)
        # Answered outside the middleware that adds them: the headers are set here.
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _add_core_routes(app: FastAPI) -> None:
    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        return FileResponse(path, media_type="text/javascript")

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(principal: Principal = require_viewer) -> dict[str, Any]:
        return app.openapi()

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/", failed: int = 0) -> HTMLResponse:
        return _login_page(request, next, _login_language(request), failed=bool(failed))

    @app.post("/api/v1/auth/login", tags=["auth"])
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
                back = f"/login?failed=1&next={quote(_safe_next(str(target or '/')))}&lang={lang}"
                return RedirectResponse(back, 303)
            raise HTTPException(401, "wrong user name or password")
        throttle.succeeded(username, ip)
        session, secret = start_session(request, user)
        response: Response
        if is_form:
            response = RedirectResponse(_safe_next(str(target or "/")), 303)
        else:
            response = JSONResponse({"username": user.username, "role": user.role, CSRF_FIELD: session.csrf_token})
        set_session_cookie(request, response, secret)
        accounts(request).audit(user.username, "login", "", ip)
        return response

    @app.post("/api/v1/auth/logout", tags=["auth"])
    def logout(request: Request, principal: Principal = require_viewer) -> Response:
        accounts(request).audit(principal.username, "logout", "", client_ip(request))
        form = request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        )
        response: Response = JSONResponse({"logged_out": True})
        if form or wants_html(request):
            response = RedirectResponse("/login", 303)  # the logout form of the pages
        end_session(request, response, principal)
        return response

    @app.get("/api/v1/auth/me", tags=["auth"])
    def me(request: Request, principal: Principal = require_viewer) -> dict[str, Any]:
        """Who is logged in, the role, and the CSRF token a browser sends with changes."""
        return {
            "username": principal.username,
            "role": principal.role,
            "via": principal.via,
            CSRF_FIELD: principal.csrf_token if principal.via == "session" else None,
        }

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        principal = optional_principal(request)
        if principal is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse("/overview", 303)


def _login_language(request: Request, chosen: str = "") -> str:
    """The login page's language: the one the form was shown in, else ?lang=, the `lang` cookie or the workspace's."""
    if chosen in ("zh", "en"):
        return chosen
    from tierwise.web.pages._base import language

    return language(request)


def _login_page(request: Request, next: str, lang: str, failed: bool = False, wait: int = 0,
                status: int = 200) -> HTMLResponse:  # fmt: skip
    html = templates.get_template("login.html").render(
        next=_safe_next(next),
        failed=failed,
        wait=wait,
        lang=lang,
        zh=lang == "zh",
        no_users=not request.app.state.accounts.users(),
    )
    return HTMLResponse(html, status)


def _safe_next(target: str) -> str:
    """Only paths on this server: an open redirect to another site is refused."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
