"""One run of the main job at a time per workspace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tierwise.access import Holder, file_lock
from tierwise.errors import UserError

# One run at a time per workspace. DuckDB lets only one process write the file anyway; the lock turns a
# second concurrent run into a wait (then a clear message) instead of an error from deep inside DuckDB, and
# it also covers several runs started from one process (threads of a server).
LOCK_FILE = ".tierwise-run.lock"


@contextmanager
def run_lock(root: Path, wait_seconds: float) -> Iterator[None]:
    """Hold the workspace's run lock; wait up to `wait_seconds` for another run to finish, saying which
    (tierwise.access.file_lock). Re-entrant per thread."""
    root = Path(root)

    def busy(holder: Holder | None, waited: float) -> UserError:
        who = holder.describe() if holder else "another process"
        return UserError(
            f"another tierwise run is in progress in {root}: {who}; waited {waited:g} s — try again when it has "
            "finished, or pass --wait SECONDS (default: [schedule] wait_seconds)"
        )

    with file_lock(root / LOCK_FILE, wait_seconds, what=f"another run of {root} to finish", busy=busy):
        yield
