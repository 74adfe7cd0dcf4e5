"""The web dashboard and REST API (`tierwise serve`): FastAPI, server-rendered Jinja2 pages, logins and roles."""
