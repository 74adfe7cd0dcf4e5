"""What every reader returns: a Source (header + Arrow batches with a `_line` column) and the limits it is read under.

Shared by readers.py (text, Parquet) and excel.py (spreadsheets), which both build one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

LINE = "_line"
SHEET = "_sheet"  # the sheet of each row, when a workbook has several (never a source column)


@dataclass(frozen=True)
class ReadLimits:
    """Bounds checked before a spreadsheet is parsed ([ingest] max_sheet_rows, max_expansion_ratio)."""

    max_sheet_rows: int = 1_048_576
    max_expansion_ratio: float = 100.0


# How many cells of a row name a known field of the target table (finds the header row of a spreadsheet).
HeaderScore = Callable[[list[str]], int]


@dataclass
class Source:
    path: Path
    file_format: str  # csv | excel | parquet
    columns: list[str]
    batches: Iterator[pa.RecordBatch]
    size: int  # bytes (text/parquet) used for progress
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    cleanup: list[Path] = field(default_factory=list)
    name: str = ""  # what reports show, when not the path (a database table: its URL without the password)
    schema: pa.Schema | None = None  # the batches' types when they are not all text (with `_line`)
    warnings: list[str] = field(default_factory=list)  # said to the user and stored with the batch

    @property
    def label(self) -> str:
        return self.name or str(self.path)

    def close(self) -> None:
        for p in self.cleanup:
            p.unlink(missing_ok=True)


def dedupe_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out
