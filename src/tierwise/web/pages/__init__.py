"""The dashboard: server-rendered pages in Chinese and English (Jinja2), charts drawn by plotly.js from /static.

`router` holds every page route (none in the OpenAPI schema); `tierwise.web.app.create_app` includes it.
Pages: /overview, /segments, /customers, /customers/{id}, /history, /models (every role), /data (analyst),
/alerts (every role; the refresh button for admins), /settings and /users (admin); /lang/{zh|en} switches the language.
"""

from tierwise.web.pages import admin, alerts, dashboard  # noqa: F401  (they add their routes to the router)
from tierwise.web.pages._base import router

__all__ = ["router"]
