"""What every command module shares: the consoles, the common options, JSON output, dates given as options,
`--wait`, and how an error ends a command (one line on stderr and an exit code).

The command modules (tierwise/cli/<group>.py) import this, never tierwise.cli itself, which imports them.
Everything here is loaded on every start of the command line, so the workspace (ibis and DuckDB) is imported
only by `with_workspace` when it is called.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, overload

import typer
from rich.console import Console

from tierwise import access
from tierwise.errors import UserError, out_of_memory

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


@overload
def date_option(value: str, option: str) -> dt.date: ...
@overload
def date_option(value: str | None, option: str) -> dt.date | None: ...
def date_option(value: str | None, option: str) -> dt.date | None:
    """The date an option gives (YYYY-MM-DD); None when it is not given."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{option} '{value}' is not a date like 2024-06-30") from exc


def with_workspace(
    workspace: Path, lang: Lang | None, read: Callable[[Workspace, str], T], *, read_only: bool = False
) -> tuple[T, str]:
    """Open the workspace (`read_only`: a reader's connection, docs/architecture.md "Access"), call
    `read(ws, language)` (the --lang option, else the workspace's), close it."""
    from tierwise.workspace import Workspace  # lazy: see tierwise.cli

    with Workspace.open(workspace, read_only=read_only) as ws:
        language = lang.value if lang else ws.config.workspace.language
        return read(ws, language), language


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
    @functools.wraps(fn)
    def run(*args: Any, wait: float | None = None, **kwargs: Any) -> Any:
        access.request(wait_seconds=wait, command=command, console=err)
        return fn(*args, **kwargs)

    extra = inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=WaitOpt)
    params = list(signature.parameters.values())
    # keyword-only parameters go last; Typer reads the options from this signature
    run.__signature__ = signature.replace(parameters=[*params, extra])  # type: ignore[attr-defined]
    run.__annotations__ = {**getattr(fn, "__annotations__", {}), "wait": WaitOpt}
    run._tierwise_wait = True  # type: ignore[attr-defined]
    return run


def handle_errors(invoke: Callable[[], object], debug: bool | None = None) -> None:
    """invoke() as the command line runs it: an error is one line on stderr and an exit code (sys.exit), never a
    traceback unless TIERWISE_DEBUG (or `debug`) asks for it. A served command runs through this too
    (tierwise.cli.remote)."""
    try:
        invoke()
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.exceptions.TyperException as exc:  # usage errors (Typer's own copy of click raises these)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected: one line, never a traceback
        if os.environ.get("TIERWISE_DEBUG") if debug is None else debug:
            raise
        memory = out_of_memory(exc)
        if memory is not None:
            err.print(f"error: {memory}", markup=False, soft_wrap=True)
            sys.exit(1)
        err.print(
            f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(a bug in tierwise; rerun with TIERWISE_DEBUG=1 for details and report it)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)
