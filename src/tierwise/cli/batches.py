"""`tierwise batches` and `tierwise unload`: what each loaded file added, changed and skipped, and taking one out.
`batch_rows` and `batch_table` also serve `tierwise status` (tierwise.cli.ingest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import JsonOpt, WorkspaceOpt, out, print_json, with_workspace

COUNTS = ("rows_read", "rows_new", "rows_updated", "rows_unchanged", "rows_quarantined", "duplicates_removed")


def batch_rows(ws: Any, table: str | None = None) -> list[dict[str, Any]]:
    """Every batch, oldest first, with its reconciliation, record key and warnings decoded."""
    b = ws.table("batches")
    if table:
        b = b.filter(b.table_name == table)
    rows = (
        b.select(
            "batch_id",
            "table_name",
            "file",
            "loaded_at",
            *COUNTS,
            "rows_loaded",
            "rows_replaced",
            "record_key",
            "warnings",
        )
        .order_by("loaded_at")
        .to_pyarrow()
        .to_pylist()
    )
    for row in rows:
        row["record_key"] = json.loads(row["record_key"]) if row["record_key"] else None
        row["warnings"] = json.loads(row["warnings"]) if row["warnings"] else []
    return rows


def batch_table(rows: list[dict[str, Any]], *, detailed: bool) -> Table:
    """The batches with their reconciliation; `detailed` adds when, what was replaced and the record key."""
    more = ["replaced", "key"] if detailed else []
    view = Table(
        "batch",
        "table",
        "file",
        *(["loaded at"] if detailed else []),
        "read",
        "new",
        "updated",
        "unchanged",
        "quarantined",
        "duplicates",
        *more,
        title="batches (read = new + updated + unchanged + quarantined + duplicates)",
        title_justify="left",
    )
    for row in rows:
        key = row["record_key"]
        extra = [f"{row['rows_replaced'] or 0:,}", " + ".join(key["fields"]) if key else "none"] if detailed else []
        view.add_row(
            row["batch_id"],
            row["table_name"],
            Path(row["file"]).name,
            *([str(row["loaded_at"])[:16]] if detailed else []),
            *(f"{row[c] or 0:,}" for c in COUNTS),
            *extra,
        )
    return view


def register(app: typer.Typer) -> None:
    @app.command()
    def batches(
        workspace: WorkspaceOpt = Path("."),
        table: Annotated[str | None, typer.Option(help="Only batches of this table, e.g. orders.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Per loaded file: rows read, new, updated, unchanged, quarantined and duplicates (批次)."""
        rows, _ = with_workspace(workspace, None, lambda ws, _lang: batch_rows(ws, table), read_only=True)
        if as_json:
            print_json(rows)
            return
        if not rows:
            out.print("No batches loaded yet.")
            return
        view = batch_table(rows, detailed=True)
        out.print(view)
        for row in rows:
            for w in row["warnings"]:
                out.print(f"[yellow]{row['batch_id']}:[/] {w}", soft_wrap=True)

    @app.command()
    def unload(
        batch: Annotated[str, typer.Argument(help="The batch id (tierwise batches lists them).")],
        workspace: WorkspaceOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Take a batch out again and restore the records it replaced, in one transaction (撤销批次)."""
        from tierwise.ingest.identity import unload as unload_batch  # lazy: see tierwise.cli

        done, _ = with_workspace(workspace, None, lambda ws, _lang: unload_batch(ws, batch))
        if as_json:
            print_json(done.as_json())
            return
        out.print(
            f"unloaded {done.batch_id} ({Path(done.file).name} → {done.table}): {done.rows_removed:,} rows removed, "
            f"{done.rows_restored:,} replaced rows restored, {done.quarantine_removed:,} quarantine rows removed"
            + (f", {done.customers_removed:,} minimal customer records removed" if done.customers_removed else "")
        )
