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


def with_workspace(
    workspace: Path, lang: Lang | None, read: Callable[[Workspace, str], T], *, read_only: bool = False
) -> tuple[T, str]:
    """Open the workspace (`read_only`: a reader's connection, docs/architecture.md "Access"), call
    `read(ws, language)` (the --lang option, else the workspace's), close it."""
    from tierwise.workspace import Workspace

    ws = Workspace.open(workspace, read_only=read_only)
    try:
        language = lang.value if lang else ws.config.workspace.language
        return read(ws, language), language
    finally:
        ws.close()


WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        min=0,
        metavar="SECONDS",
        help="How long to wait while another tierwise process holds the workspace (default: \\[workspace] "
        "wait_seconds; run: \\[schedule] wait_seconds).",
        show_default=False,
    ),
]

# Groups whose commands open no workspace database although they take --workspace (accounts live in SQLite).
NO_WAIT_GROUPS = ("user",)


def add_wait_option(app: typer.Typer, prefix: str = "tierwise") -> None:
    """--wait SECONDS on every command that opens a workspace (those with a --workspace option), added here in
    one place rather than in each command's signature. The value, and the command's name for the workspace's
    holder records, reach tierwise.access before the command runs."""
    import inspect

    for info in app.registered_commands:
        fn = info.callback
        if fn is None or getattr(fn, "_tierwise_wait", False):
            continue
        signature = inspect.signature(fn, eval_str=True)
        if "workspace" not in signature.parameters or "wait" in signature.parameters:
            continue
        name = info.name or fn.__name__.replace("_", "-")
        info.callback = _waiting(fn, signature, f"{prefix} {name}")
    for group in app.registered_groups:
        if group.typer_instance is None or group.name in NO_WAIT_GROUPS:
            continue
        add_wait_option(group.typer_instance, f"{prefix} {group.name}")


def _waiting(fn: Callable[..., Any], signature: Any, command: str) -> Callable[..., Any]:
    import functools
    import inspect

    @functools.wraps(fn)
    def run(*args: Any, wait: float | None = None, **kwargs: Any) -> Any:
        from tierwise import access

        access.request(wait_seconds=wait, command=command, console=err)
        return fn(*args, **kwargs)

    extra = inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=WaitOpt)
    params = list(signature.parameters.values())
    # keyword-only parameters go last; Typer reads the options from this signature
    run.__signature__ = signature.replace(parameters=[*params, extra])  # type: ignore[attr-defined]
    run.__annotations__ = {**getattr(fn, "__annotations__", {}), "wait": WaitOpt}
    run._tierwise_wait = True  # type: ignore[attr-defined]
    return run
