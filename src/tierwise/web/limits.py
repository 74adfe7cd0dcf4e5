"""Nothing read before it is allowed: the login check and the size limits, before the application sees a body.

FastAPI reads and parses a request's body (JSON, form, multipart upload spooled to a temporary file) before the
route's dependencies run, so `auth.require(role)` alone would come after the server had buffered whatever an
anonymous client sent. `RequestGuard` is a plain ASGI middleware in front of the application that

1. finds who is asking (`auth.optional_principal`: session or bearer token) and answers an anonymous request to
   anything but the public paths with 401 (a browser: the redirect to the login page) without reading its body;
2. refuses a body over its limit by the announced Content-Length at once, and counts the bytes of every body
   while the application reads it (chunked bodies included), stopping the read the moment the limit is passed.

The limits: an upload (multipart to /api/v1/uploads/… by a role that may upload) up to `[web] max_upload_mb`;
any other body of a logged-in user up to `[web] max_json_kb`; an anonymous request a few kilobytes (the login
form and its JSON are far smaller). Refusals are 413 {"error": ...} with `Connection: close`, so the server does
not go on receiving the rest of the body.

Uploads are spooled by Starlette's multipart parser (a SpooledTemporaryFile: memory up to 1 MB, then a file in
the temporary folder) as the body is received; since the count stops the receiving, at most the limit is ever
written there, and the parser closes (deletes) its files when the read fails.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierwise.web.auth import LOGIN_FIRST, Principal, optional_principal, to_login, wants_html

# Paths anyone may reach (the routes themselves decide what an anonymous visitor gets); "/" only redirects.
PUBLIC_PATHS = frozenset({"/", "/login", "/health", "/api/v1/auth/login"})
PUBLIC_PREFIXES = ("/static/",)
LOGIN_PATH = "/api/v1/auth/login"
LOGIN_BYTES = 8 * 1024  # user name, password, the page to return to and the CSRF field, with room to spare
ANONYMOUS_BYTES = 4 * 1024  # no other public route takes a body
UPLOAD_PREFIX = "/api/v1/uploads/"
UPLOAD_ROLE = "analyst"  # who may upload (the route requires it); others get the JSON limit
# The multipart framing around the file (boundaries, part headers): a file of exactly max_upload_mb still fits;
# the upload route checks the file's own size exactly.
UPLOAD_FRAMING = 64 * 1024
DEFAULT_JSON_BYTES = 1024 * 1024
DEFAULT_UPLOAD_BYTES = 200 * 1024 * 1024
CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """A body passed its limit while being read: 413, and the connection is closed."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message, headers=CLOSE)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:,.0f} KB"


def body_limit(scope: Scope, principal: Principal | None) -> tuple[int, str]:
    """(bytes, the message when they are passed) for this request's body."""
    path = scope["path"]
    state = scope["app"].state if "app" in scope else None
    if principal is None:
        limit = LOGIN_BYTES if path == LOGIN_PATH else ANONYMOUS_BYTES
        return limit, f"the request body is over {_size(limit)}, the most read before logging in"
    content_type = _header(scope, b"content-type").lower()
    if path.startswith(UPLOAD_PREFIX) and content_type.startswith("multipart/") and principal.can(UPLOAD_ROLE):
        limit = int(getattr(state, "max_upload", DEFAULT_UPLOAD_BYTES))
        return limit + UPLOAD_FRAMING, (
            f"the upload is over the limit of {_size(limit)} ([web] max_upload_mb); split the file, or load it with "
            "'tierwise ingest' on the server"
        )
    limit = int(getattr(state, "max_json", DEFAULT_JSON_BYTES))
    return limit, f"the request body is over the limit of {_size(limit)} ([web] max_json_kb)"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return bool(_header(scope, b"transfer-encoding")) or (length.isdigit() and int(length) > 0)


def _unauthorized(request: Request) -> Response:
    return to_login(request) if wants_html(request) else JSONResponse({"error": LOGIN_FIRST}, 401)


class RequestGuard:
    """The ASGI middleware (sessions are looked up from the cookie alone: tierwise.web.auth.optional_principal)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        principal = optional_principal(request)
        if principal is None and not is_public(scope["path"]):
            response = _unauthorized(request)
            if _has_body(scope):
                response.headers.update(CLOSE)  # the unread body is not waited for
            await response(scope, receive, send)
            return
        limit, message = body_limit(scope, principal)
        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > limit:
            await JSONResponse({"error": message}, 413, headers=CLOSE)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message_in = await receive()
            if message_in["type"] == "http.request":
                received += len(message_in.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(message)
            return message_in

        started = False

        async def tracked(message_out: Message) -> None:
            nonlocal started
            started = started or message_out["type"] == "http.response.start"
            await send(message_out)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:  # the application's own handlers answer it; this is for anything else
            if not started:
                await JSONResponse({"error": exc.detail}, 413, headers=CLOSE)(scope, receive, send)
