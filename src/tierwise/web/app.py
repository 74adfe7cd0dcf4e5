"""The FastAPI application of `tierwise serve`: middleware, health, static files, error handling.

The login and logout (`tierwise.web.api.auth`), the REST API (`tierwise.web.api`, under /api/v1) and the
dashboard pages (`tierwise.web.pages`) are routers included here. Public routes are only the login, the health
check and static assets; everything else depends on `auth.require(role)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.errors import UserError, out_of_memory
from tierwise.web import api, pages
from tierwise.web.accounts import Accounts
from tierwise.web.api._common import Viewer
from tierwise.web.api.auth import router as auth_router
from tierwise.web.auth import LoginThrottle, to_login, wants_html
from tierwise.web.db import WorkspaceHandle
from tierwise.web.limits import RequestGuard
from tierwise.web.server import stop_jobs
from tierwise.web.services.customers import index_lookups, prepare_cross_sell
from tierwise.web.services.jobs import JobManager

log = logging.getLogger("tierwise.web")

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
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _route_template(request: Request) -> str:
    """The matched route's path template with its router prefix (e.g. /api/v1/customers/{customer_id})."""
    context = (request.scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path", None) or getattr(request.scope.get("route"), "path", None)
    return str(path) if path else "(no route)"


def _warm(handle: WorkspaceHandle) -> None:
    """The latest run's cross-sell table, made in the background when the server starts."""
    try:
        prepare_cross_sell(handle.workspace())
    except Exception as exc:
        if _stopping(exc):
            return
        log.warning("preparing the cross-sell suggestions failed", exc_info=True)


def create_app(root: Path | str) -> FastAPI:
    handle = WorkspaceHandle(root)
    settings = handle.config.web

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        _secure(response)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        # The route's template, not the URL: paths and query strings carry customer ids, names and searches,
        # which stay out of logs.
        route = _route_template(request)
        log.info("%s %s %s %.0fms", request.method, route, response.status_code, 1000 * (time.perf_counter() - started))
        return response

    _add_handlers(app)
    _add_core_routes(app)  # before the static mount, which would otherwise answer /static/plotly.min.js
    app.include_router(auth_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    return app


def _error(request: Request, status: int, message: str) -> Response:
    if status == 401 and wants_html(request):
        return to_login(request)
    return JSONResponse({"error": message}, status)


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _stopping(exc: Exception) -> bool:
    """DuckDB's InterruptException: the server is stopping and interrupted every query (tierwise.web.server)."""
    return type(exc).__name__ == "InterruptException"


def _unexpected(request: Request, exc: Exception) -> Response:
    if _stopping(exc):
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
        return _secure(response)  # answered outside the middleware that adds them


def _add_core_routes(app: FastAPI) -> None:
    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(principal: Viewer) -> dict[str, Any]:
        return app.openapi()
