"""The settings the dashboard may change: weights, cut-offs, rules and the playbook (read by everyone; previewed
and saved by admins, validated before anything is written)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tierwise.web.api._common import (
    ERRORS,
    Admin,
    ApiRoute,
    JobAccepted,
    Lang,
    accepted,
    audit,
    jobs,
    workspace,
)
from tierwise.web.services import settings as service
from tierwise.web.services.settings import SettingsChanges

router = APIRouter(route_class=ApiRoute, prefix="/settings", tags=["settings"], responses=ERRORS)


@router.get("", summary="The current settings", response_model=dict[str, Any])
def read(request: Request, principal: Admin) -> Any:
    """Grade (indicators, weights, method, cut-offs, quotas), ABC, value, lifecycle, strategy, rules and the
    playbook as tierwise.toml holds them now; `version` changes whenever the file does; `choices` lists the
    allowed codes. Admins only, as the settings page."""
    return service.read_settings(workspace(request))


@router.post("/preview", status_code=202, summary="Preview a change in the background", response_model=JobAccepted)
def preview(request: Request, principal: Admin, changes: SettingsChanges, lang: Lang = None) -> JobAccepted:
    """Checks the change at once (400 with the first bad key), then rebuilds the latest run with it in the
    background; the job's result says how many customers would change grade, tags, strategy or next action
    (named in `lang` under `changed_labels`), the grade matrix (class labels in `lang`) and examples. Nothing is
    stored."""
    ws = workspace(request)
    service.apply_changes(service.current_config(ws), changes)  # bad values: 400 now rather than a failed job
    handle = request.app.state.handle
    body = changes.model_dump(exclude_unset=True)

    def work(progress: Any = None) -> dict[str, Any]:
        return service.preview_settings(handle.workspace(), body, language=lang, progress=progress)

    job_id = jobs(request).start("settings_preview", work, owner=principal.username)
    return accepted(request, job_id)


@router.put("", summary="Save a change to tierwise.toml", response_model=dict[str, Any])
def save(
    request: Request,
    principal: Admin,
    changes: SettingsChanges,
    version: Annotated[
        str | None,
        Query(description="The `version` of the settings you edited: refused (400) if the file changed since"),
    ] = None,
) -> Any:
    """Validates the change (every rule, condition and indicator is compiled against the run's columns) and
    writes it, keeping comments; the previous file is kept as tierwise.toml.bak. The next run uses it."""
    result = service.save_settings(workspace(request), changes.model_dump(exclude_unset=True),
                                   expected_version=version)  # fmt: skip
    keys = [c["key"] for c in result.get("settings_changed", [])]
    audit(request, principal, "settings", "changed " + (", ".join(keys) if keys else "nothing"))
    return result
