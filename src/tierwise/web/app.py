"""The FastAPI application of `tierwise serve`: middleware, login, health, static files, error handling.

The REST API (`tierwise.web.api`, under /api/v1) and the dashboard pages (`tierwise.web.pages`) are routers
included here. Public routes are only the login, the health check and static assets; everything else depends on
`auth.require(role)`.
"""

from __future__ import annotations

import importlib
import logging
import secrets
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
from starlette.middleware.sessions import SessionMiddleware

from tierwise.errors import UserError
from tierwise.web.accounts import Accounts
from tierwise.web.auth import (
    CSRF_FIELD,
    LoginThrottle,
    Principal,
    accounts,
    client_ip,
    optional_principal,
    require,
    start_session,
)
from tierwise.web.db import WorkspaceHandle
from tierwise.web.limits import RequestGuard
from tierwise.web.services.jobs import JobManager

log = logging.getLogger("tierwise.web")

SECRET_FILE = ".tierwise-secret"
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


def _secret(root: Path) -> str:
    """The key that signs session cookies: made once per workspace, readable by its owner only."""
    path = root / SECRET_FILE
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


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
    except Exception:
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
        app.state.jobs.shutdown(wait=False)
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
    app.state.throttle = LoginThrottle(settings.login_attempts, settings.lockout_seconds)
    app.state.max_upload = settings.max_upload_mb * 1024 * 1024
    app.state.max_json = settings.max_json_kb * 1024
    app.state.jobs = JobManager()

    # Login check and body limits before any body is read (tierwise.web.limits); added first, so it runs inside
    # the session middleware and inside the headers-and-log middleware below.
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

    app.add_middleware(
        SessionMiddleware,
        secret_key=_secret(handle.root),
        session_cookie="tierwise_session",
        max_age=int(settings.session_hours * 3600),
        same_site="strict",
        https_only=settings.secure_cookies,
    )
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
        language = request.app.state.handle.config.workspace.language
        html = templates.get_template("login.html").render(
            next=_safe_next(next),
            failed=bool(failed),
            zh=language == "zh",
            no_users=not request.app.state.accounts.users(),
        )
        return HTMLResponse(html)

    @app.post("/api/v1/auth/login", tags=["auth"])
    async def login(request: Request) -> Response:
        """Log in with JSON {"username", "password"} (or the login form); sets the session cookie."""
        is_form = not request.headers.get("content-type", "").startswith("application/json")
        if is_form:
            form = await request.form()
            username, password, target = str(form.get("username", "")), str(form.get("password", "")), form.get("next")
        else:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise HTTPException(422, 'send JSON like {"username": "...", "password": "..."}')
            username, password, target = str(body.get("username", "")), str(body.get("password", "")), None
        ip = client_ip(request)
        keys = (f"user:{username.lower()}", f"ip:{ip}")
        throttle: LoginThrottle = request.app.state.throttle
        wait = throttle.retry_after(*keys)
        if wait > 0:
            accounts(request).audit(username or None, "login_throttled", "", ip)
            raise HTTPException(
                429,
                f"too many failed logins; try again in {int(wait) + 1} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        user = accounts(request).authenticate(username, password)
        if user is None:
            throttle.failed(*keys)
            accounts(request).audit(username or None, "login_failed", "", ip)
            if is_form:
                return RedirectResponse(f"/login?failed=1&next={quote(_safe_next(str(target or '/')))}", 303)
            raise HTTPException(401, "wrong user name or password")
        throttle.succeeded(*keys)
        token = start_session(request, user)
        accounts(request).audit(user.username, "login", "", ip)
        if is_form:
            return RedirectResponse(_safe_next(str(target or "/")), 303)
        return JSONResponse({"username": user.username, "role": user.role, CSRF_FIELD: token})

    @app.post("/api/v1/auth/logout", tags=["auth"])
    def logout(request: Request, principal: Principal = require_viewer) -> Response:
        accounts(request).audit(principal.username, "logout", "", client_ip(request))
        request.session.clear()
        form = request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        )
        if form or wants_html(request):
            return RedirectResponse("/login", 303)  # the logout form of the pages
        return JSONResponse({"logged_out": True})

    @app.get("/api/v1/auth/me", tags=["auth"])
    def me(request: Request, principal: Principal = require_viewer) -> dict[str, Any]:
        """Who is logged in, the role, and the CSRF token a browser sends with changes."""
        return {
            "username": principal.username,
            "role": principal.role,
            "via": principal.via,
            CSRF_FIELD: request.session.get(CSRF_FIELD) if principal.via == "session" else None,
        }

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        principal = optional_principal(request)
        if principal is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse("/overview", 303)


def _safe_next(target: str) -> str:
    """Only paths on this server: an open redirect to another site is refused."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
