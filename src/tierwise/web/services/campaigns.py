"""Campaigns: the planned and the loaded campaigns, and one campaign's response report (tierwise.campaigns)."""

from __future__ import annotations

from typing import Any

from tierwise.campaigns.evaluate import campaign_report as report
from tierwise.campaigns.plan import list_campaigns as stored
from tierwise.web.services._common import jsonable, language_of
from tierwise.workspace import Workspace


def list_campaigns(ws: Workspace) -> list[dict[str, Any]]:
    """As `tierwise campaign list --json`: planned campaigns (newest first) with their group sizes, then
    campaign ids found only in the loaded contacts."""
    return jsonable(stored(ws))


def campaign_report(
    ws: Workspace, name: str, *, cost_per_contact: float | None = None, language: str | None = None
) -> dict[str, Any]:
    """As `tierwise campaign report NAME --json`: response rates of treatment and control, lift with its
    confidence interval, per stratum and overall."""
    return jsonable(report(ws, name, cost_per_contact=cost_per_contact, language=language_of(ws, language)))
