"""The command line on a served workspace: `tierwise serve` runs the CLI's commands on its own database.

While `tierwise serve` runs, its process holds the workspace's DuckDB file, and DuckDB lets no other process
open it. So the server also listens for commands (`CommandListener`, started by `tierwise serve` in
tierwise.cli.web) on a Unix socket in a private folder, and writes where to SERVE_FILE in the workspace;
`tierwise.cli.main` calls `forward` first, which finds that file, sends the command line there and relays what
comes back: standard output and error as they are written, then the exit code. The server runs each command in a
thread of its own through the same Typer commands, with its own connection to the open database, its output
routed to the client by tierwise.console (docs/architecture.md, "The command line on a served workspace").

Everything here is imported by every `tierwise` command, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import io
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
import traceback
import typing
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

import typer
from rich.console import Console
from typer.core import TyperGroup

from tierwise import console
from tierwise.access import alive
from tierwise.cli.common import err, handle_errors, out
from tierwise.errors import UserError

if TYPE_CHECKING:
    from ibis.backends.duckdb import Backend as DuckDBBackend

log = logging.getLogger("tierwise.remote")  # the name its log lines have always carried (filters name it)

SERVE_FILE = ".tierwise-serve.json"
# Commands that run where they are typed: `serve` itself, `init` (makes a workspace), `demo`, and `user …`, whose
# accounts are in SQLite beside the server and whose `passwd` asks on the terminal.
LOCAL_COMMANDS = frozenset({"serve", "init", "demo", "user"})

# A frame: one byte of kind, four of length, then the payload.
_FRAME = struct.Struct("!cI")
REQUEST, STDOUT, STDERR, EXIT = b"q", b"o", b"e", b"x"
MAX_REQUEST = 1 << 20
INTERRUPT_SECONDS = 0.05  # how often a cancelled command's queries are interrupted
CHECK_SECONDS = 60  # how often the server checks that its socket and server file are still there
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


# --- the client ---------------------------------------------------------------------------------------------


def forward(app: typer.Typer, argv: Sequence[str]) -> None:
    """Run the command on the server holding its workspace, if one does, and exit with the command's exit code;
    return when the command runs here (no server, or a command that never goes to one)."""
    found = command_workspace(app, argv)
    if found is None:
        return
    names, workspace = found
    server = find_server(workspace)
    if server is None:
        return
    sock = _connect(server)
    if sock is None:
        return
    sys.exit(_send(sock, server, names, workspace, list(argv)))


def command_workspace(app: typer.Typer, argv: Sequence[str]) -> tuple[list[str], Path] | None:
    """The command's names (e.g. ["campaign", "plan"]) and the workspace it names, parsed as Typer will parse
    it; None for commands that run here, and for command lines with a usage error, which the local run reports
    exactly as it always does (nothing is printed here)."""
    args = list(argv)
    if not args or "--help" in (args[: args.index("--")] if "--" in args else args):
        return None  # help, which parsing would print here
    try:
        command = typer.main.get_command(app)
        ctx = command.make_context("tierwise", args)
        names: list[str] = []
        while isinstance(command, TyperGroup):
            # Click keeps the subcommand's name apart from the rest of the line (private in Typer's copy of click).
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                return None
            name, sub, rest = command.resolve_command(ctx, rest)
            if name is None or sub is None or (isinstance(sub, TyperGroup) and not rest):
                return None
            names.append(name)
            command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    except Exception:
        return None
    workspace = ctx.params.get("workspace")
    if not names or names[0] in LOCAL_COMMANDS or not isinstance(workspace, PurePath):
        return None
    return names, Path(workspace)


def find_server(workspace: Path) -> dict[str, Any] | None:
    """What SERVE_FILE of the workspace says (socket, pid, workspace), if a live server of this user wrote it.
    A file left by a server of this user that died is removed. Another user's server (its file is readable by
    that user only) is none: the database itself then says whether it is held."""
    root = workspace.resolve()
    path = root / SERVE_FILE
    try:
        text = path.read_text(encoding="utf-8")
        owner = path.stat().st_uid
    except OSError:
        return None
    if owner != os.getuid():
        return None
    try:
        info = json.loads(text)
        pid, sock = int(info["pid"]), str(info["socket"])
        same = Path(str(info["workspace"])) == root
    except (ValueError, KeyError, TypeError):
        info, pid, sock, same = {}, 0, "", False
    if not same or not sock or not alive(pid, other_users=False):
        _remove_if_unchanged(path, text)
        return None
    return {**info, "file": str(path), "text": text}


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _connect(server: dict[str, Any]) -> socket.socket | None:
    """A connection to the server, checked to be of this user; None when it cannot be reached, and then the
    server file is removed if nothing listens on its socket any more (the server was killed and its process
    number taken by another program)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(server["socket"]))
    except ConnectionRefusedError:
        sock.close()
        _remove_if_unchanged(Path(server["file"]), str(server["text"]))
        with contextlib.suppress(OSError):
            Path(server["socket"]).unlink()  # nobody listens on it; a new server would remove it too
        return None
    except FileNotFoundError:
        # Not a dead server's (its socket stays behind): the socket is out of sight (a service's private /tmp)
        # or was cleaned away, which the server repairs. The database says whether it is held.
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise UserError(
            f"{Path(server['file']).parent} is being served by process {server.get('pid')}, which cannot be reached "
            f"at {server['socket']} ({exc.strerror or exc}); run the command as the user running 'tierwise serve'"
        ) from exc
    _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    if uid != os.getuid():
        sock.close()
        raise UserError(f"{server['socket']} belongs to another user; the command was not sent there")
    return sock


def _remove_if_unchanged(path: Path, text: str) -> None:
    """Remove a stale server file, unless a server that started meanwhile has written a new one."""
    try:
        if path.read_text(encoding="utf-8") == text:
            path.unlink()
    except OSError:
        pass


def _terminal(stream: Any, stderr: bool) -> dict[str, Any]:
    """How Rich would write to this stream here, so the server renders the command's output the same way."""
    console = Console(stderr=stderr)
    size = console.size
    try:
        isatty = bool(stream.isatty())
    except (AttributeError, ValueError):
        isatty = False
    return {
        "terminal": console.is_terminal,
        "isatty": isatty,
        "width": size.width,
        "height": size.height,
        "color_system": console.color_system,
        "no_color": console.no_color,
        "interactive": console.is_interactive,
        "term": os.environ.get("TERM", ""),
        "encoding": str(getattr(stream, "encoding", None) or "utf-8"),
    }


def _program_name() -> str:
    try:
        # lazy: a private helper of Typer's copy of click, imported where a Typer without it falls back
        from typer._click.utils import _detect_program_name

        return str(_detect_program_name())
    except Exception:
        return "tierwise"


def _send(sock: socket.socket, server: dict[str, Any], names: list[str], workspace: Path, argv: list[str]) -> int:
    """Send the command line, write what comes back as it comes; the command's exit code. Leaving early (Ctrl-C)
    closes the connection, which cancels the command on the server."""
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "command": names,
        "workspace": str(workspace.resolve()),
        "prog": _program_name(),
        "stdout": _terminal(sys.stdout, stderr=False),
        "stderr": _terminal(sys.stderr, stderr=True),
        "debug": bool(os.environ.get("TIERWISE_DEBUG")),
    }
    with sock:
        payload = json.dumps(request).encode("utf-8")
        sock.sendall(_FRAME.pack(REQUEST, len(payload)) + payload)
        while True:
            kind, data = _read_frame(sock)
            if kind == EXIT:
                return int(data)
            if kind == b"":
                raise UserError(
                    f"the server of {request['workspace']} (process {server.get('pid')}) closed the connection "
                    "before the command finished; see its log"
                )
            stream = sys.stdout if kind == STDOUT else sys.stderr
            try:
                stream.write(data.decode("utf-8", "surrogateescape"))
                stream.flush()
            except BrokenPipeError:
                # The reader has gone (`… | head`): stop the command, and exit as click does then.
                sock.close()
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
                return 1


def _read_frame(sock: socket.socket, limit: int | None = None) -> tuple[bytes, bytes]:
    """The next frame's kind and payload; (b"", b"") when the other side has closed the connection."""
    head = _read_exactly(sock, _FRAME.size)
    if len(head) < _FRAME.size:
        return b"", b""
    kind, length = _FRAME.unpack(head)
    if limit is not None and length > limit:
        raise ValueError(f"a frame of {length} bytes is larger than {limit}")
    data = _read_exactly(sock, length)
    if len(data) < length:
        return b"", b""
    return kind, data


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 16))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


# --- the server: a command's output goes to its client (tierwise.console routes each thread's) --------------

_client_cwd: contextvars.ContextVar[str | None] = contextvars.ContextVar("tierwise_client_cwd", default=None)


class _FrameStream(io.TextIOBase):
    """A command's standard output or error: each write goes to the client as one frame."""

    def __init__(self, job: _Job, kind: bytes, settings: dict[str, Any]) -> None:
        super().__init__()
        self._job = job
        self._kind = kind
        self._isatty = bool(settings.get("isatty"))
        # The client's: Rich draws tables with ASCII for a stream that cannot take box characters.
        self._encoding = str(settings.get("encoding") or "utf-8")

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._isatty

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes streams with write(b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._job.send(self._kind, text.encode("utf-8", "surrogateescape"))
        return len(text)


class _NoInput(io.TextIOBase):
    """A served command's standard input: there is none, and no terminal to ask on."""

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def _none(self) -> NoReturn:
        raise UserError(
            "this command runs inside 'tierwise serve', which has no standard input or terminal to ask on; "
            "give the value as an option instead"
        )

    def read(self, size: int | None = -1) -> str:
        self._none()

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        self._none()


class _Job:
    """One command from one client: its output streams and consoles (a tierwise.console capture), and the
    database connections it opened (interrupted when the client goes away)."""

    def __init__(self, sock: socket.socket, request: dict[str, Any], defaults: dict[bool, Console]) -> None:
        self.sock = sock
        self.request = request
        self.argv = [str(a) for a in request["argv"]]
        self.cwd = str(request["cwd"])
        self.prog = str(request.get("prog") or "tierwise")
        self.gone = threading.Event()
        self.done = threading.Event()
        self._send_lock = threading.Lock()
        self._connections: list[DuckDBBackend] = []
        self.stdout = _FrameStream(self, STDOUT, request["stdout"])
        self.stderr = _FrameStream(self, STDERR, request["stderr"])
        self.stdin = _NoInput()
        self._consoles = {
            False: _client_console(request["stdout"], self.stdout, defaults[False]),
            True: _client_console(request["stderr"], self.stderr, defaults[True]),
        }

    def console(self, stderr: bool) -> Console:
        return self._consoles[bool(stderr)]

    def send(self, kind: bytes, data: bytes) -> None:
        if self.gone.is_set():
            return
        with self._send_lock:
            try:
                self.sock.sendall(_FRAME.pack(kind, len(data)) + data)
            except OSError:
                self.cancel()

    def opened(self, con: DuckDBBackend) -> None:
        if self.gone.is_set():
            con.disconnect()
            raise UserError("cancelled: the command's client went away")
        self._connections.append(con)

    def cancel(self) -> None:
        """The client has gone (Ctrl-C, or it died): stop the command's queries; its output goes nowhere."""
        if self.done.is_set() or self.gone.is_set():
            self.gone.set()
            return
        self.gone.set()
        threading.Thread(target=self._interrupt, name="tierwise-command-cancel", daemon=True).start()

    def _interrupt(self) -> None:
        # DuckDB forgets an interrupt when the next query starts, and between queries a command computes in Python
        # (models, clustering): so the connections are interrupted until the command has ended.
        while not self.done.wait(INTERRUPT_SECONDS):
            for con in list(self._connections):
                with contextlib.suppress(Exception):  # closed already
                    con.con.interrupt()


def _client_console(settings: dict[str, Any], stream: _FrameStream, like: Console) -> Console:
    """A console that renders as the client's would (terminal or not, width, colours), with the settings of the
    server's console it stands in for (`out` or `err` of tierwise.cli.common)."""
    term = str(settings.get("term") or "")
    return Console(
        file=cast(IO[str], stream),
        force_terminal=bool(settings.get("terminal")),
        force_interactive=bool(settings.get("interactive")),
        force_jupyter=False,
        width=int(settings.get("width") or 80),
        height=int(settings.get("height") or 25),
        color_system=settings.get("color_system"),
        no_color=bool(settings.get("no_color")),
        legacy_windows=False,
        markup=bool(getattr(like, "_markup", True)),
        emoji=bool(getattr(like, "_emoji", True)),
        highlight=bool(getattr(like, "_highlight", True)),
        soft_wrap=like.soft_wrap,
        tab_size=like.tab_size,
        _environ={"TERM": term} if term else {},
    )


def _track_connection(con: DuckDBBackend) -> None:
    """engine.connect's hook: a connection opened by a command is that command's."""
    job = console.current()
    if isinstance(job, _Job):
        job.opened(con)


# --- the server: paths relative to the client's folder --------------------------------------------------------


def _names_a_path(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:
        return False
    inner = typing.get_args(annotation) or (annotation,)
    return any(isinstance(a, type) and issubclass(a, PurePath) for a in inner)


def _against_client_cwd(value: Any) -> Any:
    cwd = _client_cwd.get()
    if cwd is None:
        return value
    if isinstance(value, PurePath):
        return value if value.is_absolute() else Path(cwd) / value
    if isinstance(value, list | tuple):
        return type(value)(_against_client_cwd(v) for v in value)
    return value


def _resolving(process_value: Callable[..., Any]) -> Callable[..., Any]:
    def process(ctx: Any, value: Any) -> Any:
        return _against_client_cwd(process_value(ctx, value))

    return process


def served_command(command: TyperGroup) -> TyperGroup:
    """The command line's command tree (`command`, its root), its every path option and argument now read
    relative to the client's folder in a served command (the server's own folder is another, and a process has
    one; elsewhere a path is read as it always is)."""
    stack: list[Any] = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            if _names_a_path(param):
                param.process_value = _resolving(param.process_value)
    return command


# --- the server: the listener ---------------------------------------------------------------------------------


def socket_dir() -> Path:
    """A folder only this user can enter: $XDG_RUNTIME_DIR/tierwise, else /tmp/tierwise-UID. Socket paths are
    short there (at most ~107 bytes; a workspace's own path can be longer)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.getuid()
    if runtime and Path(runtime).is_dir() and os.stat(runtime).st_uid == uid:
        folder = Path(runtime) / "tierwise"
    else:
        folder = Path("/tmp") / f"tierwise-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as exc:
        raise UserError(f"{folder}: cannot make the folder for the command socket ({exc.strerror or exc})") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
        raise UserError(
            f"{folder} is not a folder of this user; remove it (or set XDG_RUNTIME_DIR) and start the server again"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


def socket_path(root: Path) -> Path:
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return socket_dir() / f"{digest}.sock"


class CommandListener:
    """Takes command lines for one workspace on a Unix socket and runs each in a thread of its own."""

    def __init__(self, root: Path, command: TyperGroup) -> None:
        from tierwise import engine  # lazy: ibis and DuckDB (0.5 s), here, not on every command line's start

        self.root = Path(root).resolve()
        self.command = served_command(command)
        self.socket = socket_path(self.root)
        self.serve_file = self.root / SERVE_FILE
        self._closed = threading.Event()
        self._lock = threading.Lock()  # repairing and closing, one at a time
        if _listening(str(self.socket)):
            raise UserError(f"{self.socket}: another server takes commands for {self.root} already")
        self._server = self._bind()
        console.install((out, err))
        if _track_connection not in engine.connect_hooks:
            engine.connect_hooks.append(_track_connection)
        self._info = {
            "socket": str(self.socket),
            "pid": os.getpid(),
            "workspace": str(self.root),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self._write_serve_file()
        self._thread = threading.Thread(target=self._accept, name="tierwise-commands", daemon=True)
        self._thread.start()

    def _bind(self) -> socket.socket:
        self.socket.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(self.socket))
            self.socket.chmod(0o600)  # the folder is closed already; this says so on the socket too
            server.listen(16)
        except OSError as exc:
            server.close()
            raise UserError(f"{self.socket}: cannot listen for commands ({exc.strerror or exc})") from exc
        server.settimeout(CHECK_SECONDS)
        return server

    def _write_serve_file(self) -> None:
        temporary = self.serve_file.with_name(f"{SERVE_FILE}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._info, fh)
        os.replace(temporary, self.serve_file)

    def _repair(self) -> None:
        """A server runs for months: a cleaner of /tmp may remove its socket, a mistaken hand its server file."""
        with self._lock:
            if not self._closed.is_set():
                self._repair_now()

    def _repair_now(self) -> None:
        try:
            if not stat.S_ISSOCK(os.lstat(self.socket).st_mode):
                raise FileNotFoundError(self.socket)
        except FileNotFoundError:
            socket_dir()
            old, self._server = self._server, self._bind()
            old.close()
            log.warning("the command socket was gone; listening again on %s", self.socket)
        try:
            ours = json.loads(self.serve_file.read_text(encoding="utf-8")) == self._info
        except (OSError, ValueError):
            ours = False
        if not ours:
            self._write_serve_file()

    def close(self) -> None:
        """Stop taking commands; remove the socket and the server file (if they are still this server's)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self.socket.unlink(missing_ok=True)
            try:
                if json.loads(self.serve_file.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    self.serve_file.unlink()
            except (OSError, ValueError):
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                with contextlib.suppress(OSError, UserError):
                    self._repair()
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), name="tierwise-command", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                _, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
                if uid != os.getuid():
                    return  # only the user running the server sends it commands
                kind, data = _read_frame(conn, MAX_REQUEST)
                if kind != REQUEST:
                    return  # a client checking whether anyone listens
                request = json.loads(data)
                job = _Job(conn, request, {False: out, True: err})
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                return
            watcher = threading.Thread(target=self._watch, args=(job,), name="tierwise-command-watch", daemon=True)
            # The command's names only: its arguments can hold customer ids and file names.
            names = " ".join(str(n) for n in request.get("command") or [])
            log.info("command %s: started", names)
            watcher.start()
            started = time.monotonic()
            code = self._run(job)
            job.done.set()
            seconds = time.monotonic() - started
            if job.gone.is_set():
                log.info("command %s cancelled after %.1fs: its client went away", names, seconds)
            else:
                log.info("command %s: exit %d in %.1fs", names, code, seconds)
            job.send(EXIT, str(code).encode())
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            watcher.join(timeout=5)
        command = request.get("command") or [None]
        if code == 0 and command[0] in ("run", "backfill"):
            threading.Thread(target=_warm, args=(self.root,), name="tierwise-warm", daemon=True).start()

    @staticmethod
    def _watch(job: _Job) -> None:
        """The client sends nothing after its request: the end of the stream means it has gone."""
        try:
            while job.sock.recv(1 << 12):
                pass
        except OSError:
            pass
        job.cancel()

    def _run(self, job: _Job) -> int:
        request = job.request
        if Path(str(request.get("workspace"))) != self.root:
            job.send(STDERR, f"error: this server serves {self.root}, not {request.get('workspace')}\n".encode())
            return 2
        token = _client_cwd.set(job.cwd)
        try:
            with console.capturing(job):
                try:
                    codes: list[object] = []
                    handle_errors(
                        lambda: codes.append(
                            self.command.main(args=job.argv, prog_name=job.prog, standalone_mode=False)
                        ),
                        debug=bool(request.get("debug")),
                    )
                    # Click returns a `typer.Exit(n)`'s code instead of raising it outside standalone mode.
                    return codes[0] if codes and isinstance(codes[0], int) else 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        return int(exc.code or 0)
                    print(exc.code, file=sys.stderr)  # what Python does with sys.exit("message")
                    return 1
                except BaseException:  # TIERWISE_DEBUG asked for the traceback, as Python prints it
                    traceback.print_exc(file=sys.stderr)
                    return 1
        finally:
            _client_cwd.reset(token)


def _warm(root: Path) -> None:
    """After a run: its cross-sell suggestions, as the dashboard's own runs do (web.services.runs.warm)."""
    try:
        from tierwise.web.services.runs import warm  # lazy: the web layer (1 s), only in a server after a run

        warm(root)
    except Exception:
        log.warning("preparing the cross-sell suggestions failed", exc_info=True)


def listen(root: Path, command: TyperGroup) -> CommandListener | None:
    """Start taking command lines for the workspace (`tierwise serve`), run by `command`, the root of the command
    line's command tree; None where there are no Unix sockets with peer credentials (the command line then cannot
    reach the server)."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "SO_PEERCRED"):
        return None
    return CommandListener(root, command)
