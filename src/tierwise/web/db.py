"""One database for the whole server, one connection per request thread.

The workspace's DuckDB file is opened once (a second open of the same file in another process would fail, and
in this process would share the same database anyway); every thread gets its own cursor — a connection of its
own to that database — wrapped as an Ibis backend, so requests run queries side by side instead of in turn.
The settings are read again whenever tierwise.toml changes, so an admin's change applies to the next request.
"""

from __future__ import annotations

import threading
from pathlib import Path

import ibis
from ibis.backends.duckdb import Backend as DuckDBBackend

from tierwise import cancel
from tierwise.config import CONFIG_FILE, Config, load_config
from tierwise.workspace import Workspace


class WorkspaceHandle:
    def __init__(self, root: Path | str) -> None:
        self.main = Workspace.open(root)
        self.root = self.main.root
        self._local = threading.local()
        self._config_lock = threading.Lock()
        self._config_mtime = self._mtime()
        self._config = self.main.config

    def _mtime(self) -> float:
        return (self.root / CONFIG_FILE).stat().st_mtime

    @property
    def config(self) -> Config:
        with self._config_lock:
            mtime = self._mtime()
            if mtime != self._config_mtime:
                self._config = load_config(self.root / CONFIG_FILE)
                self._config_mtime = mtime
            return self._config

    def workspace(self) -> Workspace:
        """The workspace for the calling thread: its own connection, the current settings. A background job
        gets a connection of its own for the job (closed when it ends), which its cancel button interrupts."""
        token = cancel.current()
        if token is not None:
            con = token.connection(self, self._cursor)
        else:
            con = getattr(self._local, "con", None)
            if con is None:
                con = self._local.con = cancel.track(self._cursor())
        return Workspace(root=self.root, config=self.config, con=con)

    def _cursor(self) -> DuckDBBackend:
        return ibis.duckdb.from_connection(self.main.con.con.cursor())

    def close(self) -> None:
        self.main.close()
