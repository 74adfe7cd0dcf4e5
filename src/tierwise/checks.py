"""Checks of what users type in, shared by the command line, the REST API and the core functions.

- `check_as_of`: the date a run is measured as of must lie where there is data: from the day after the first
  order (the first day on which an order counts) to tomorrow (or the day after the last order, when orders are
  dated later than that). Outside, a run is empty (every figure 0) or beyond what the date arithmetic handles.
- `check_name`: names that are stored and shown again (campaigns, `[[rules]]`, `[[playbook]]` entries) are
  letters (any script), digits, spaces and `_ - .`, start with a letter or digit, and are at most 100
  characters: never a path (`../x`), markup (`<b>`), a quote, a separator of the tags column (`;`) or a control
  character.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError

from tierwise.errors import UserError
from tierwise.schema import TABLES

if TYPE_CHECKING:
    import ibis.expr.types as ir

NAME_MAX = 100
NAME_RULE = (
    "letters (any language), digits, spaces and _ - . only, starting with a letter or digit, no '..', "
    f"at most {NAME_MAX} characters"
)
_NAME = re.compile(r"[^\W_][\w .\-]*", re.UNICODE)


def as_of_range(orders: ir.Table) -> tuple[dt.date, dt.date] | None:
    """(earliest, latest) allowed as-of dates for these orders; None when there are none."""
    first, last = (orders.order_date.min().name("first"), orders.order_date.max().name("last"))
    row = orders.aggregate([first, last]).to_pyarrow().to_pylist()[0]
    if row["first"] is None:
        return None
    first_day, last_day = (_day(row["first"]), _day(row["last"]))
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    return first_day + dt.timedelta(days=1), max(tomorrow, last_day + dt.timedelta(days=1))


def check_as_of(orders: ir.Table, day: dt.date, what: str = "as_of") -> None:
    """UserError unless `day` lies in as_of_range(orders) (no orders: nothing to check here)."""
    allowed = as_of_range(orders)
    if allowed is None:
        return
    earliest, latest = allowed
    if not earliest <= day <= latest:
        raise UserError(
            f"{what} {day.isoformat()} is outside the data: choose a date from {earliest.isoformat()} (the day after "
            f"the first order) to {latest.isoformat()} (tomorrow, or the day after the last order)"
        )


def check_name(name: str, what: str = "name") -> str:
    """The name stripped of surrounding spaces; UserError saying which characters are allowed when it breaks
    the rule (NAME_RULE)."""
    cleaned = name.strip()
    if not cleaned:
        raise UserError(f"{what}: the name is empty; use {NAME_RULE}")
    if len(cleaned) > NAME_MAX or not _NAME.fullmatch(cleaned) or ".." in cleaned:
        shown = cleaned if len(cleaned) <= 40 else cleaned[:40] + "…"
        raise UserError(f"{what} {shown!r}: use {NAME_RULE}")
    return cleaned


def settings_name(value: str, what: str) -> str:
    """check_name for a pydantic field validator (tierwise.toml, the settings page): the message as written."""
    try:
        return check_name(value, what)
    except UserError as exc:
        raise PydanticCustomError("name", str(exc)) from None


def only_tables(setting: str, value: dict[str, Any]) -> dict[str, Any]:
    """A per-table setting of tierwise.toml (keys are table names), for a pydantic field validator: ValueError
    naming the unknown tables and the known ones."""
    unknown = sorted(set(value) - set(TABLES))
    if unknown:
        raise ValueError(f"{setting}: unknown table {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    return value


def _day(value: object) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value  # type: ignore[return-value]
