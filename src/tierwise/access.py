"""The workspace's access rules: who may open the DuckDB file when, how long the others wait, and what they are told.

DuckDB lets one process open a database file for writing, or any number of processes read-only, never both. So:

- every open waits (retrying) while another process holds the file, up to `wait_seconds` (the `--wait` option of
  the command line, else `[workspace] wait_seconds`), with one line on stderr saying who holds it and a spinner
  on a terminal; then a UserError naming the holder. "Restore the file" is said only when the file's header shows
  it is not a DuckDB database (or DuckDB calls it corrupt), never for a lock conflict.
- a process that opens the workspace leaves a holder record (`.tierwise-holders/<pid>.json`: command, process id,
  since when, read-only or not) that waiting processes read; removed on close, ignored and cleaned once its
  process is gone.
- inside one process the file is opened once, in one mode (DuckDB refuses a second connection to an open file
  with another configuration): later opens of the same file get a cursor of that database and share its holder
  record (a count of users per process). A read-only request in a process that already has the file open for
  writing simply uses the writable database.
- writers of the canonical tables (ingest, uploads, unload) take the workspace's write lock (`write_lock`): a
  file lock that serialises them across processes and across threads of one process (the server), so the
  "already loaded?" check and the load of an upload are one step.

docs/architecture.md ("Access: who waits for what") describes the rules and the read-only commands.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from tierwise.config import CONFIG_FILE, load_config
from tierwise.errors import UserError

if TYPE_CHECKING:
    import duckdb
    from ibis.backends.duckdb import Backend as DuckDBBackend

HOLDERS_DIR = ".tierwise-holders"
WRITE_LOCK_FILE = ".tierwise-write.lock"
POLL_SECONDS = 0.25
# How long a waiting process looks for the holder's record before it names the holder by its process id alone:
# the holder writes its record just after DuckDB granted it the file.
HOLDER_GRACE_SECONDS = 1.0
DEFAULT_WAIT_SECONDS = 300

log = logging.getLogger("tierwise.access")

# What the command line asked for (`--wait`, and which command this is), per thread of control: a server running
# commands in its own threads keeps each one's request to itself.
_wait: ContextVar[float | None] = ContextVar("tierwise_wait", default=None)
_command: ContextVar[str | None] = ContextVar("tierwise_command", default=None)
_console: ContextVar[Console | None] = ContextVar("tierwise_console", default=None)


def request(*, wait_seconds: float | None = None, command: str | None = None, console: Console | None = None) -> None:
    """What the command line asked for: `--wait SECONDS`, the command's name for holder records ("tierwise
    ingest"), and the console waiting lines go to."""
    _wait.set(wait_seconds)
    if command is not None:
        _command.set(command)
    if console is not None:
        _console.set(console)


def requested_wait() -> float | None:
    """`--wait SECONDS` of the command line, when given."""
    return _wait.get()


def wait_for(config_default: float) -> float:
    """How long to wait: `--wait` when given, else the setting's default."""
    asked = _wait.get()
    return float(config_default if asked is None else asked)


def command_summary() -> str:
    """This process's command, short: "tierwise ingest", "tierwise serve" (no arguments: they may name files)."""
    named = _command.get()
    if named:
        return named
    argv = sys.argv or [""]
    path = Path(argv[0])
    ours = path.name == "tierwise" or (path.parent.name == "cli" and path.parent.parent.name == "tierwise")
    if ours:
        words = [a for a in argv[1:] if not a.startswith("-")][:1]
        return " ".join(["tierwise", *words])
    if path.name == "__main__.py":  # python -m package
        return path.parent.name
    return path.name if path.name and not path.name.startswith("-") else "python"


# ---------------------------------------------------------------------------------------------------- holders


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: dt.datetime | None
    read_only: bool | None = None

    def describe(self) -> str:
        """`tierwise ingest` (process 1234, since 14:02:11)"""
        when = ""
        if self.since is not None:
            fmt = "%H:%M:%S" if self.since.date() == dt.date.today() else "%Y-%m-%d %H:%M:%S"
            when = f", since {self.since.strftime(fmt)}"
        mode = ", read-only" if self.read_only else ""
        return f"`{self.command}` (process {self.pid}{when}{mode})"

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "command": self.command,
            "since": self.since.isoformat(timespec="seconds") if self.since else None,
            "read_only": self.read_only,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Holder:
        since = data.get("since")
        return cls(
            pid=int(data["pid"]),
            command=str(data.get("command") or "another program"),
            since=dt.datetime.fromisoformat(since) if since else None,
            read_only=data.get("read_only"),
        )


def alive(pid: int, *, other_users: bool = True) -> bool:
    """Whether process `pid` runs. A process of another user counts only with `other_users` (a holder record may
    be another user's; a server file of ours whose number another user's process has taken is stale)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return other_users
    except OSError:  # ProcessLookupError among them
        return False
    return True


def holders(root: Path) -> list[Holder]:
    """Processes that have the workspace open now, by their records; records of ended processes are removed."""
    folder = Path(root) / HOLDERS_DIR
    found: list[Holder] = []
    try:
        entries = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        try:
            holder = Holder.from_json(json.loads(entry.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written (never half: written atomically) or not ours
        if not alive(holder.pid):
            entry.unlink(missing_ok=True)
            continue
        found.append(holder)
    return found


def holder_of(root: Path, pid: int | None) -> Holder | None:
    """The record of process `pid`, or (pid unknown) the writer among the holders, else the longest holder."""
    found = holders(root)
    if pid is not None:
        return next((h for h in found if h.pid == pid), None)
    others = [h for h in found if h.pid != os.getpid()]
    writers = [h for h in others if not h.read_only]
    pool = writers or others
    return min(pool, key=lambda h: h.since or dt.datetime.max) if pool else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Written to a temporary name and renamed: a reader sees the whole record or none."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _record(root: Path, read_only: bool) -> Holder:
    holder = Holder(os.getpid(), command_summary(), dt.datetime.now().replace(microsecond=0), read_only)
    folder = root / HOLDERS_DIR
    try:
        folder.mkdir(exist_ok=True)
        _write_json(folder / f"{holder.pid}.json", holder.as_json())
    except OSError as exc:  # a read-only folder: the workspace still opens, waiting processes just know less
        log.warning("cannot write the holder record in %s: %s", folder, exc)
    return holder


def _unrecord(root: Path) -> None:
    with contextlib.suppress(OSError):
        (root / HOLDERS_DIR / f"{os.getpid()}.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------- waiting


class _Waiting:
    """The one line saying who holds what, and a spinner with the seconds waited (terminal, main thread only).

    Threads of a server log the line instead: their stderr is the server's, not a user's."""

    def __init__(self, what: str, wait_seconds: float) -> None:
        self.what = what
        self.wait_seconds = wait_seconds
        self.started = time.monotonic()
        self.said = False
        self.status: Any = None

    def tick(self, holder: Holder | None, pid: int | None) -> None:
        waited = time.monotonic() - self.started
        if not self.said and (holder is not None or waited >= HOLDER_GRACE_SECONDS or self.wait_seconds <= waited):
            self.said = True
            who = holder.describe() if holder else ("another program" + (f" (process {pid})" if pid else ""))
            line = (
                f"waiting for {self.what}: in use by {who}; will wait up to {self.wait_seconds:g} s "
                "(--wait SECONDS to change)"
            )
            console = self._console()
            if console is None:
                log.info("%s", line)
            else:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
                if console.is_terminal and not getattr(console, "_live_stack", None):  # none beside another
                    self.status = console.status(self._spin(waited))
                    self.status.start()
        if self.status is not None:
            self.status.update(self._spin(waited))

    def _spin(self, waited: float) -> Any:
        return Text(f"waiting for {self.what} … {waited:.0f} s of {self.wait_seconds:g} s")

    def _console(self) -> Console | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        console = _console.get()
        if console is None:
            console = Console(stderr=True, highlight=False)
        return console

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _busy(root: Path, holder: Holder | None, pid: int | None, wait_seconds: float) -> UserError:
    who = holder.describe() if holder else ("another program" + (f" (process {pid})" if pid else ""))
    return UserError(
        f"{root}: the workspace database is in use by {who}; waited {wait_seconds:g} s — try again later or "
        "pass --wait SECONDS"
    )


# ---------------------------------------------------------------------------------------------------- opening

_PID = re.compile(r"\(PID (\d+)\)")
DUCKDB_MAGIC = b"DUCK"  # bytes 8–12 of every DuckDB database file


class _Conflict(Exception):
    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


@dataclass(eq=False)
class _Database:
    base: duckdb.DuckDBPyConnection
    path: Path
    root: Path
    read_only: bool
    users: int = 0


_databases: dict[Path, _Database] = {}
_databases_lock = threading.RLock()  # re-entered when the garbage collector runs a finaliser
_databases_pid = os.getpid()


def _registry() -> dict[Path, _Database]:
    global _databases_pid
    if os.getpid() != _databases_pid:  # a forked child: the parent's connections and records are not its own
        _databases.clear()
        _databases_pid = os.getpid()
    return _databases


def open_database(
    path: Path, root: Path, config: dict[str, Any], *, read_only: bool = False, wait_seconds: float
) -> DuckDBBackend:
    """An Ibis connection to the workspace database at `path`, waiting up to `wait_seconds` while another
    process holds it. Release it with `close_database`. Within one process every open of the file shares one
    database (the first open's mode and settings); each caller gets its own cursor."""
    path = Path(path).resolve()
    root = Path(root).resolve()
    waiting = _Waiting(f"the workspace {root}", wait_seconds)
    try:
        while True:
            try:
                return _open_once(path, root, config, read_only)
            except _Conflict as conflict:
                holder = holder_of(root, conflict.pid)
                if time.monotonic() - waiting.started >= wait_seconds:
                    raise _busy(root, holder, conflict.pid, wait_seconds) from None
                waiting.tick(holder, conflict.pid)
                time.sleep(POLL_SECONDS)
    finally:
        waiting.close()


def _open_once(path: Path, root: Path, config: dict[str, Any], read_only: bool) -> DuckDBBackend:
    # lazy: every command line starts by reading holder records and the --wait default from this module; the
    # engine (DuckDB and Ibis, 0.35 s) is loaded only when a database is opened
    import duckdb
    import ibis

    with _databases_lock:
        registry = _registry()
        db = registry.get(path)
        if db is None:
            if read_only and not path.exists():
                read_only = False  # nothing to read yet: the first open creates the file
            if read_only and path.with_name(path.name + ".wal").exists():
                # A process that wrote and ended without closing (killed, power cut) left its last changes in the
                # write-ahead log; replaying it writes the file, which a read-only open cannot.
                read_only = False
            try:
                base = duckdb.connect(str(path), read_only=read_only, config=config)
            except duckdb.Error as exc:
                raise _open_error(path, root, exc) from exc
            db = registry[path] = _Database(base, path, root, read_only)
            _record(root, read_only)
        elif db.read_only and not read_only:
            raise UserError(
                f"{path}: this process has the workspace open read-only and cannot write to it until that is "
                "closed; run the writing command on its own"
            )
        db.users += 1  # first: a finaliser run by the garbage collector below must not close the database
        try:
            con = ibis.duckdb.from_connection(db.base.cursor())
        except BaseException:
            _release(db)
            raise
    con._tierwise_read_only = db.read_only
    # A connection dropped without close (a script, a test) still gives the database back once collected, as a
    # plain DuckDB connection would: otherwise the file would stay locked for other processes until exit.
    con._tierwise_release = weakref.finalize(con, _release, db)
    return con


def is_read_only(con: DuckDBBackend) -> bool:
    return bool(getattr(con, "_tierwise_read_only", False))


def close_database(con: DuckDBBackend) -> None:
    """Close a connection from `open_database`; the last one of the process closes the database and removes
    the holder record. Connections made otherwise are just closed."""
    with contextlib.suppress(Exception):  # already closed with its database
        con.disconnect()
    release = getattr(con, "_tierwise_release", None)
    if release is not None:
        release()  # once: a finalize object does nothing when called again


def _release(db: _Database) -> None:
    with _databases_lock:
        db.users -= 1
        if db.users > 0:
            return
        if _databases.get(db.path) is db:
            del _databases[db.path]
    with contextlib.suppress(Exception):
        db.base.close()
    _unrecord(db.root)


@atexit.register
def _forget_all() -> None:
    """Records of a process that ends with the workspace still open (a server stopped, a script that never
    closed) go with it."""
    if os.getpid() != _databases_pid:
        return
    for db in list(_databases.values()):
        _unrecord(db.root)


def _open_error(path: Path, root: Path, exc: Exception) -> Exception:
    """A lock conflict (→ wait) told apart from a damaged file and from other failures, each with its message."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "Could not set lock" in text or "Conflicting lock" in text:
        found = _PID.search(text)
        return _Conflict(int(found.group(1)) if found else None)
    damage = damaged(path)
    lowered = text.lower()
    if damage is None and ("not a valid duckdb database" in lowered or "corrupt" in lowered or "checksum" in lowered):
        damage = first
    if damage is not None:
        return UserError(
            f"{path}: the workspace database is damaged ({damage}); restore it from a backup, or move it away and "
            f"run 'tierwise init {root}' and load the files again"
        )
    if "different configuration" in text:
        return UserError(
            f"{path}: this process already has the workspace database open with other settings ({first}); "
            "run the command on its own"
        )
    if "permission denied" in lowered:
        return UserError(f"{path}: cannot open the workspace database (permission denied); check its owner and mode")
    if "version number" in lowered or "storage version" in lowered:
        return UserError(
            f"{path}: the workspace database was written by another DuckDB version ({first}); use the tierwise "
            "version that wrote it, or upgrade tierwise"
        )
    return UserError(f"{path}: cannot open the workspace database ({first})")


def damaged(path: Path) -> str | None:
    """Why the file at `path` is not a DuckDB database, judged by its header; None when it looks like one (or
    is missing or empty, which DuckDB treats as a new database)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable: the open's own error says why
    if not head:
        return None
    if len(head) < 12 or head[8:12] != DUCKDB_MAGIC:
        return "not a DuckDB database file: its header is wrong"
    return None


# ---------------------------------------------------------------------------------------------------- file locks

_held = threading.local()


def _held_here() -> dict[Path, int]:
    held: dict[Path, int] | None = getattr(_held, "paths", None)
    if held is None:
        held = _held.paths = {}
    return held


@contextmanager
def file_lock(
    path: Path,
    wait_seconds: float,
    *,
    what: str,
    busy: Callable[[Holder | None, float], UserError],
) -> Iterator[None]:
    """Hold an OS file lock on `path`, waiting up to `wait_seconds` (one line saying who holds it, a spinner).
    Re-entrant per thread; two threads of one process exclude each other like two processes. The lock file
    holds its holder (JSON), which `busy` turns into the message when the time is up."""
    path = Path(path).resolve()
    held = _held_here()
    if path in held:
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    release = _acquire(path, wait_seconds, what, busy)
    held[path] = 1
    try:
        yield
    finally:
        del held[path]
        release()


def lock_holder(path: Path) -> Holder | None:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, int):  # written by an older tierwise: the process id alone
            return Holder(data, "another program", None)
        return Holder.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None


def _acquire(path: Path, wait_seconds: float, what: str, busy: Callable[[Holder | None, float], UserError]) -> Any:
    try:
        import fcntl  # lazy: POSIX only (the except branch is the portable lock)
    except ImportError:  # not POSIX: an exclusive file with our record, taken over when its process is gone
        return _acquire_exclusive(path, wait_seconds, what, busy)
    waiting = _Waiting(what, wait_seconds)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = lock_holder(path)
                if time.monotonic() - waiting.started >= wait_seconds:
                    os.close(fd)
                    raise busy(holder, wait_seconds) from None
                waiting.tick(holder, holder.pid if holder else None)
                time.sleep(POLL_SECONDS)
    finally:
        waiting.close()
    me = Holder(os.getpid(), command_summary(), dt.datetime.now().replace(microsecond=0))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me.as_json()).encode(), 0)

    def release() -> None:
        os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the lock; a crashed process drops it too

    return release


def _acquire_exclusive(
    path: Path, wait_seconds: float, what: str, busy: Callable[[Holder | None, float], UserError]
) -> Any:
    waiting = _Waiting(what, wait_seconds)
    me = Holder(os.getpid(), command_summary(), dt.datetime.now().replace(microsecond=0))
    try:
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = lock_holder(path)
                if holder is None or not alive(holder.pid):
                    path.unlink(missing_ok=True)
                    continue
                if time.monotonic() - waiting.started >= wait_seconds:
                    raise busy(holder, wait_seconds) from None
                waiting.tick(holder, holder.pid)
                time.sleep(POLL_SECONDS)
                continue
            os.write(fd, json.dumps(me.as_json()).encode())
            os.close(fd)
            return lambda: path.unlink(missing_ok=True)
    finally:
        waiting.close()


@contextmanager
def write_lock(root: Path | str, wait_seconds: float | None = None) -> Iterator[None]:
    """The workspace's write lock: writers of the canonical tables (ingest, uploads, unload) take turns, across
    processes and threads. Waits `wait_seconds` (default: `--wait`, else [workspace] wait_seconds)."""
    root = Path(root).resolve()
    if wait_seconds is None:
        wait_seconds = requested_wait()
    if wait_seconds is None:
        wait_seconds = float(load_config(root / CONFIG_FILE).workspace.wait_seconds)

    def busy(holder: Holder | None, waited: float) -> UserError:
        who = holder.describe() if holder else "another process"
        return UserError(
            f"{root}: another load into this workspace is in progress ({who}); waited {waited:g} s — try again "
            "later or pass --wait SECONDS"
        )

    with file_lock(root / WRITE_LOCK_FILE, wait_seconds, what=f"the workspace's write lock ({root})", busy=busy):
        yield
