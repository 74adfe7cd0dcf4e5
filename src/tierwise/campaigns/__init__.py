"""Campaigns: plans with stratified random control groups (plan.py) and their evaluation (evaluate.py)."""

from tierwise.campaigns.evaluate import campaign_report, figures, newcombe_interval, wilson_interval
from tierwise.campaigns.plan import create_plan, draw_groups, list_campaigns, parse_share

__all__ = [
    "campaign_report",
    "create_plan",
    "draw_groups",
    "figures",
    "list_campaigns",
    "newcombe_interval",
    "parse_share",
    "wilson_interval",
]
