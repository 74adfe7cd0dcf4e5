"""Progress bars that appear only when a step takes longer than a second (quick steps stay quiet)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from tierwise.console import for_this_thread

DELAY_SECONDS = 1.0


class DelayedProgress:
    """One bar per task; the display starts on the first update after DELAY_SECONDS."""

    def __init__(self, console: Console, *, bytes_mode: bool = True) -> None:
        columns = [TextColumn("{task.description}"), BarColumn()]
        columns.append(DownloadColumn() if bytes_mode else TextColumn("{task.completed:,}/{task.total:,}"))
        columns.append(TimeElapsedColumn())
        # A served command's own console (tierwise.console): the display's refresh thread writes through it.
        self._progress = Progress(*columns, console=for_this_thread(console), transient=True)
        self._started_at = time.monotonic()
        self._shown = False
        self.enabled = console.is_terminal or bool(getattr(sys.stderr, "isatty", lambda: False)())

    def task(self, description: str, total: int) -> Callable[[int], None]:
        task_id = self._progress.add_task(description, total=total)

        def update(done: int) -> None:
            if not self.enabled:
                return
            if not self._shown and time.monotonic() - self._started_at > DELAY_SECONDS:
                self._progress.start()
                self._shown = True
            self._progress.update(task_id, completed=done)

        return update

    def stop(self) -> None:
        if self._shown:
            self._progress.stop()


@contextmanager
def progress_bars(console: Console, *, bytes_mode: bool = True) -> Iterator[DelayedProgress]:
    bars = DelayedProgress(console, bytes_mode=bytes_mode)
    try:
        yield bars
    finally:
        bars.stop()


@contextmanager
def delayed_status(console: Console, message: str, delay: float = 1.0) -> Iterator[Callable[[str], None]]:
    """A spinner that appears only if the work takes longer than `delay` seconds, and only on a terminal."""
    status = console.status(message)
    done = threading.Event()

    def start() -> None:
        # Another display may be up (the spinner of a command waiting for the workspace, tierwise.access): two
        # live displays on one console garble each other, so this one starts when that one has gone.
        while not done.is_set():
            if not getattr(console, "_live_stack", None):
                status.start()
                return
            done.wait(0.25)

    timer = threading.Timer(delay, start)
    if console.is_terminal:
        timer.start()

    def step(name: str) -> None:
        status.update(f"{message}: {name}")

    try:
        yield step
    finally:
        done.set()
        timer.cancel()
        if timer.is_alive():
            timer.join()
        status.stop()
