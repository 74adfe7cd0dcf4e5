"""Output that follows the thread: standard streams and Rich consoles that, in a thread capturing its output,
write to that thread's own streams and consoles, and everywhere else to the process's.

`tierwise serve` runs the command line's commands in threads of its own, each writing to its own client
(tierwise.cli.remote), while the commands print through the module-level consoles of tierwise.cli.common and
through sys.stdout. `install` makes those switches once per process; `capturing(capture)` routes the calling
thread's output to `capture` for the duration of a block. A process that never installs them (the command line
without a server) is not changed at all.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console


class Capture(Protocol):
    """Where one thread's output goes: its standard streams and the console standing for each of the process's."""

    stdout: Any
    stderr: Any
    stdin: Any

    def console(self, stderr: bool) -> Console: ...


_local = threading.local()  # .capture: where the thread's output goes, if it is captured
_installed = threading.Lock()


def current() -> Capture | None:
    """The calling thread's capture; None when its output goes where the process's goes."""
    return getattr(_local, "capture", None)


@contextmanager
def capturing(capture: Capture) -> Iterator[None]:
    """The calling thread's output goes to `capture` in the block (once `install` has made the switches)."""
    _local.capture = capture
    try:
        yield
    finally:
        _local.capture = None


class ThreadStream:
    """Installed as sys.stdout, sys.stderr and sys.stdin: in a thread that captures its output, its own stream;
    in every other thread, the process's."""

    def __init__(self, real: Any, which: str) -> None:
        self._real = real
        self._which = which

    def _target(self) -> Any:
        capture = current()
        return self._real if capture is None else getattr(capture, self._which)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(self._target().isatty())


class ThreadConsole(Console):
    """The class of an installed console: in a thread that captures its output, every attribute is that of the
    capture's console (`capture.console(stderr)`); elsewhere the console is itself. Swapped in with `__class__`
    so the consoles every module imported stay the same objects."""

    def __getattribute__(self, name: str) -> Any:
        capture = current()
        if capture is None or name.startswith("__") or name == "for_this_thread":
            return object.__getattribute__(self, name)
        return getattr(capture.console(object.__getattribute__(self, "stderr")), name)

    def for_this_thread(self) -> Console:
        """The console this thread writes to: what a helper that outlives the call (a progress display's refresh
        thread) must hold, rather than this switch."""
        capture = current()
        return self if capture is None else capture.console(self.stderr)


def for_this_thread(console: Console) -> Console:
    """The console `console` stands for in this thread (itself, unless it is an installed switch)."""
    return console.for_this_thread() if isinstance(console, ThreadConsole) else console


def install(consoles: Iterable[Console]) -> None:
    """Once per process: the thread-aware standard streams, and `consoles` made switches."""
    with _installed:
        if isinstance(sys.stdout, ThreadStream):
            return
        sys.stdout = ThreadStream(sys.stdout, "stdout")
        sys.stderr = ThreadStream(sys.stderr, "stderr")
        if sys.stdin is not None:
            sys.stdin = ThreadStream(sys.stdin, "stdin")
        for console in consoles:
            if type(console) is Console:
                console.__class__ = ThreadConsole
