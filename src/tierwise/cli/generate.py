"""`tierwise generate`: realistic sample data with known ground truth."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import JsonOpt, err, out, print_json
from tierwise.errors import UserError
from tierwise.progress import progress_bars


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


class Profile(StrEnum):
    b2b = "b2b"
    b2c = "b2c"


class Format(StrEnum):
    csv = "csv"
    parquet = "parquet"


def generate(
    outdir: Annotated[Path, typer.Argument(help="Folder to write the data files into.")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    profile: Annotated[Profile, typer.Option(help="b2b (companies) or b2c (persons).")] = Profile.b2b,
    fmt: Annotated[Format, typer.Option("--format", help="csv or parquet.")] = Format.csv,
    messy: Annotated[bool, typer.Option(help="Write GBK CSV with Chinese headers and real-world mess.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate realistic customers, orders, payments and interactions with known ground truth."""
    from tierwise.generate import generate as run_generate  # lazy: see tierwise.cli

    with progress_bars(err, bytes_mode=False) as bars:
        tick = bars.task("generating customers", customers)
        try:
            summary = run_generate(
                outdir,
                customers=customers,
                seed=seed,
                profile=profile.value,
                fmt=fmt.value,
                messy=messy,
                progress=lambda done, total: tick(done),
            )
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    data = summary.as_dict()
    if as_json:
        print_json(data)
        return
    out.print(f"Generated {profile.value} data for {customers:,} customers in {outdir}")
    for k, v in data.items():
        if isinstance(v, dict) and k in ("rows", "row_counts"):
            for table, n in v.items():
                out.print(f"  {table}: {n:,} rows")
