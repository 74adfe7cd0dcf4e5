"""Small helpers shared by the services: the language, paging arguments, and JSON-safe values."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tierwise.errors import UserError
from tierwise.store.runs import run_models
from tierwise.workspace import Workspace

MAX_PAGE_SIZE = 500


def language_of(ws: Workspace, language: str | None) -> str:
    """`language`, or the workspace's ([workspace] language); zh or en."""
    lang = language or ws.config.workspace.language
    if lang not in ("zh", "en"):
        raise UserError(f"language '{lang}': say zh or en")
    return lang


def check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise UserError(f"page {page}: pages are numbered from 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise UserError(f"page_size {page_size}: give 1 to {MAX_PAGE_SIZE} rows per page")


def pages(total: int, page_size: int) -> int:
    return (total + page_size - 1) // page_size


def jsonable(value: Any) -> Any:
    """`value` with every part JSON-serialisable by the standard json module: dates and times as ISO text,
    NaN and infinities as None, Decimals as floats, Arrow maps (lists of pairs) left as lists, tuples as lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump())
    if hasattr(value, "as_json"):
        return jsonable(value.as_json())
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def parse_json(text: Any) -> Any:
    """A JSON column of the runs table, parsed; None when empty or unreadable."""
    if not text:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return None


def file_name(path: Any) -> str | None:
    """Only the name of a stored file (no server folders), for what the client sees; None stays None."""
    if path is None or path == "":
        return path
    return re.split(r"[\\/]", str(path))[-1]


def cluster_names(metas: Iterable[Mapping[str, Any]], language: str) -> dict[str, str]:
    """The cluster names the runs kept (runs.models → clusters.profiles: name_zh, name_en), as {name stored in
    a snapshot's cluster_name column (in either language): the name in `language`}. The snapshot holds the
    name in the workspace's language; the page shows the one of its own language."""
    out: dict[str, str] = {}
    for meta in metas:
        stored = meta.get("models")
        models = (run_models(stored) if stored else None) if isinstance(stored, str) else stored
        clusters = models.get("clusters") if isinstance(models, dict) else None
        profiles = clusters.get("profiles") if isinstance(clusters, dict) else None
        for p in profiles or []:
            if not isinstance(p, dict):
                continue
            wanted = p.get("name_zh" if language == "zh" else "name_en") or p.get("name_en") or p.get("name_zh")
            if not wanted:
                continue
            for stored in (p.get("name_zh"), p.get("name_en")):
                if stored:
                    out.setdefault(str(stored), str(wanted))
    return out
