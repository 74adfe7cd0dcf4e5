"""Errors a user can act on. The CLI prints them as one line and exits non-zero; nothing else does that."""

from __future__ import annotations

import re


class UserError(Exception):
    """A problem with the user's input or settings: the message says where it is and what to do."""

    exit_code = 2

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, column: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.reason = message
        super().__init__(self._render(message))

    def _render(self, message: str) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return (", ".join(where) + ": " + message) if where else message


def out_of_memory(exc: BaseException) -> str | None:
    """DuckDB's out-of-memory error as a message a user can act on; None for any other error. (Running out of
    the temporary disk is reported as such: temp_disk_full.)"""
    full = temp_disk_full(exc)
    if full is not None:
        return full
    if type(exc).__name__ != "OutOfMemoryException":  # DuckDB's, without importing it here
        return None
    used = re.search(r"\(([^()]*used)\)", str(exc))
    return (
        f"out of memory{f' ({used.group(1)})' if used else ''}: raise memory_limit under [engine] in tierwise.toml "
        '(e.g. "4GB") or set threads = 1 there (each thread needs memory of its own); the unfinished work was not '
        "stored"
    )


_SIZE = re.compile(r"([0-9.]+)\s*(bytes|KiB|MiB|GiB|TiB)")
_UNITS = {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
# [engine] max_temp_gb as the last opened workspace set it (engine.limit_temp_disk): the message names the
# setting's own value; DuckDB's error has it rounded to its blocks (0.001 GB shows as 976.5 KiB).
_temp_limit_gb: float | None = None


def note_temp_limit(gb: float | None) -> None:
    global _temp_limit_gb
    _temp_limit_gb = gb


def temp_disk_full(exc: BaseException) -> str | None:
    """DuckDB's error for a spill beyond max_temp_directory_size ([engine] max_temp_gb; DuckDB raises it as out
    of memory, or inside a failed commit) as a message a user can act on; None for any other error."""
    text = str(exc)
    if "max_temp_directory_size" not in text or not type(exc).__module__.lstrip("_").startswith("duckdb"):
        return None
    limit = ""
    used = re.search(r"\(([^()]*)/([^()]*) used\)", text)
    size = _SIZE.search(used.group(2)) if used else None
    if _temp_limit_gb:
        limit = f"{_temp_limit_gb:g} GB of"
    elif size is not None:
        limit = f"{float(size.group(1)) * _UNITS[size.group(2)] / 1024**3:.3g} GB of"
    return (
        f"the work needed more than {limit or 'the allowed'} temporary disk ([engine] max_temp_gb in tierwise.toml): "
        "raise max_temp_gb if the disk has room, or raise memory_limit there so that less is spilled to disk; the "
        "unfinished work was not stored"
    )
