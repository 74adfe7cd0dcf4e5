"""The REST API under /api/v1 (OpenAPI schema at /api/v1/openapi.json, behind the login).

Routers parse and check the request, enforce the role (tierwise.web.auth.require), call the services
(tierwise.web.services) and record the audit log; the numbers come from the services, the same as the
dashboard's and the command line's. Errors are JSON {"error": message}; long work (runs, uploads, settings
previews) is a background job answered with 202 {"job_id"} and polled at GET /api/v1/jobs/{job_id}.
Logging in and out is `tierwise.web.api.auth`, a router of its own (the login page and "/" are outside /api/v1).
"""

from __future__ import annotations

from fastapi import APIRouter

from tierwise.web.api import admin, campaigns, data, history, refresh, runs, sessions, settings, snapshot

router = APIRouter(prefix="/api/v1")
for _module in (runs, snapshot, history, data, settings, campaigns, admin, sessions, refresh):
    router.include_router(_module.router)

__all__ = ["router"]
