"""`tierwise init`: a new workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import out


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path(".")) -> None:
    """Create a workspace: tierwise.toml with every setting at its default, and the DuckDB store."""
    from tierwise.workspace import Workspace  # lazy: see tierwise.cli

    with Workspace.init(directory) as ws:
        root = ws.root
    out.print(f"Workspace ready: {root}")
    out.print(f"  settings: {root / 'tierwise.toml'}")
    out.print(f"  next: tierwise ingest orders FILE --workspace {root}")
