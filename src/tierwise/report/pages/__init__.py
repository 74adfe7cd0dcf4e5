"""The report's pages, one module per section: each builds its caption, content and charts from a run.

A page function returns `PageParts` (caption, content for the template, charts by key) or None when the run has
nothing to show there; the class sections (pages/classes.py) return a `Section`. `report.render.build_context`
puts them together in the report's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (caption, content, charts by key)
PageParts = tuple[str, dict[str, Any], dict[str, dict[str, Any]]]


@dataclass
class Section:
    """One section of the report: `key` is its element id and the TEXT key of its title; `chart` is drawn under
    the caption (stored under `key`), `charts` are the other charts it draws; `group` names its table's class
    column (None: "Class"); `extra` is what the template shows besides (a table, a page's content)."""

    key: str
    caption: str
    chart: dict[str, Any] | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)


def page_section(key: str, name: str, parts: PageParts | None) -> Section | None:
    """A page as a section: its content under `name` (what the template reads), its charts with it."""
    if parts is None:
        return None
    caption, content, charts = parts
    return Section(key, caption, extra={name: content}, charts=charts)
