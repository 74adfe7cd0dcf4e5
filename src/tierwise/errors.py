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
    """DuckDB's out-of-memory error as a message a user can act on; None for any other error."""
    if type(exc).__name__ != "OutOfMemoryException":  # DuckDB's, without importing it here
        return None
    used = re.search(r"\(([^()]*used)\)", str(exc))
    return (
        f"out of memory{f' ({used.group(1)})' if used else ''}: raise memory_limit under [engine] in tierwise.toml "
        '(e.g. "4GB") or set threads = 1 there (each thread needs memory of its own); the unfinished work was not '
        "stored"
    )
