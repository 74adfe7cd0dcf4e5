"""Stopping DuckDB work from another thread: a job's cancel button, and the server shutting down.

A Python thread cannot be stopped from outside, but a DuckDB query can: `connection.interrupt()` makes the query
running on that connection fail at once with duckdb.InterruptException (a connection that is idle ignores it and
stays usable). So every connection tierwise opens is registered here:

- `track(backend)` — called by engine.connect and by the web server's per-thread cursors — adds the connection to
  a process-wide registry (weak references: a closed, forgotten connection drops out), which `interrupt_all()`
  interrupts when the server shuts down;
- and, when the calling thread is doing a job (`bound(token)`), to that job's CancelToken, whose `cancel()`
  interrupts only the job's own connections.

Because an interrupt reaches only the query running at that moment, a cancelled token also makes the job stop at
its next step: `check()` (called by the job's progress reports) and `track()` raise Cancelled once it is
cancelled, and the job manager repeats the interrupt until the job has ended. What the job leaves behind is
cleared as on any error: its transaction is rolled back (engine.transaction) and its scratch tables dropped; the
connections a token made itself (`connection()`) are closed when the job ends, which also ends any transaction
or temporary table an interrupted clean-up could not.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

log = logging.getLogger("tierwise.cancel")

B = TypeVar("B")

_all: weakref.WeakSet[Any] = weakref.WeakSet()  # raw duckdb connections (DuckDBPyConnection)
_all_lock = threading.Lock()
_local = threading.local()


class Cancelled(Exception):
    """The work was cancelled (its cancel button or API, or the server shutting down); nothing of it is stored."""

    def __init__(self, message: str = "cancelled; nothing of the unfinished work was stored") -> None:
        super().__init__(message)


class CancelToken:
    """The cancel switch of one job and the DuckDB connections the job works on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._connections: list[Any] = []
        self._owned: dict[int, Any] = {}

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop the job: its running query fails now, and its next step raises Cancelled."""
        with self._lock:
            self._cancelled = True
        self.interrupt()

    def interrupt(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for con in connections:
            _interrupt(con)

    def check(self) -> None:
        if self._cancelled:
            raise Cancelled()

    def register(self, raw: Any) -> None:
        """Also interrupt `raw` (a duckdb connection) when this job is cancelled."""
        with self._lock:
            if not any(c is raw for c in self._connections):
                self._connections.append(raw)
        self.check()

    def connection(self, key: object, make: Callable[[], B]) -> B:
        """The job's own connection for `key` (made once per job with `make`, an Ibis DuckDB backend), closed
        when the job ends — so a connection an interrupt may have left mid-way is never used again."""
        with self._lock:
            found = self._owned.get(id(key))
        if found is None:
            found = track(make())
            with self._lock:
                self._owned[id(key)] = found
        else:
            self.check()
        return found

    def close(self) -> None:
        """Close the connections made by `connection()` (at the end of the job, in its thread)."""
        with self._lock:
            owned = list(self._owned.values())
            self._owned.clear()
            self._connections.clear()
        for backend in owned:
            try:
                backend.disconnect()
            except Exception:  # already closed, or the database went away with the server
                log.debug("closing a job's connection failed", exc_info=True)


def track(backend: B) -> B:
    """Register an Ibis DuckDB backend's connection (process-wide, and with the calling thread's job); returns
    the backend. When the thread's job has been cancelled meanwhile, closes it and raises Cancelled."""
    raw = getattr(backend, "con", None)
    if raw is None or not hasattr(raw, "interrupt"):
        return backend
    with _all_lock:
        _all.add(raw)
    token = current()
    if token is not None:
        try:
            token.register(raw)
        except Cancelled:
            backend.disconnect()  # type: ignore[attr-defined]
            raise
    return backend


def checkpoint() -> None:
    """Raise Cancelled if the calling thread's job has been cancelled: for long loops outside DuckDB (the CLV
    fit, the k-means candidates), which no interrupt reaches."""
    token = current()
    if token is not None:
        token.check()


def current() -> CancelToken | None:
    """The token of the job the calling thread is doing, if any."""
    return getattr(_local, "token", None)


@contextmanager
def bound(token: CancelToken) -> Iterator[CancelToken]:
    """Within this block the calling thread works for `token`'s job: the connections it opens are the job's."""
    previous = current()
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous


def interrupt_all() -> int:
    """Interrupt the running query of every open connection of this process (server shutdown); how many."""
    with _all_lock:
        connections = list(_all)
    for con in connections:
        _interrupt(con)
    return len(connections)


def _interrupt(con: Any) -> None:
    try:
        con.interrupt()
    except Exception:  # closed meanwhile: nothing runs on it
        log.debug("interrupting a connection failed", exc_info=True)
