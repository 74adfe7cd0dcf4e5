"""What every command module shares: the consoles, the common options and JSON output.

Kept apart from cli.py because the area modules (cli_history.py, cli_campaigns.py, …) are imported by cli.py,
and importing cli.py from them is circular when the command line runs as `python -m tierwise.cli`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tierwise.workspace import Workspace

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

WorkspaceOpt = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace folder (holds tierwise.toml).", show_default=".")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run id (default: the latest).")]


class Lang(StrEnum):
    zh = "zh"
    en = "en"


LangOpt = Annotated[Lang | None, typer.Option("--lang", help="Labels in zh or en (default: the workspace's language).")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def with_workspace(workspace: Path, lang: Lang | None, read: Callable[[Workspace, str], T]) -> tuple[T, str]:
    """Open the workspace, call `read(ws, language)` (the --lang option, else the workspace's), close it."""
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace)
    try:
        language = lang.value if lang else ws.config.workspace.language
        return read(ws, language), language
    finally:
        ws.close()
