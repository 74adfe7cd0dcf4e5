"""`tierwise serve` (the dashboard, REST API, scheduled runs, and the command line's commands on the served
workspace) and `tierwise user` (accounts and API tokens)."""

from __future__ import annotations

import getpass
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from typer.core import TyperGroup

from tierwise.cli.common import JsonOpt, WorkspaceOpt, err, out, print_json
from tierwise.cli.history import serve as schedule_once
from tierwise.cli.remote import CommandListener, listen
from tierwise.errors import UserError

if TYPE_CHECKING:
    from tierwise.web.accounts import Accounts


PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (one line) instead of asking."),
]


def _accounts(workspace: Path) -> Accounts:
    from tierwise.config import CONFIG_FILE  # lazy: see tierwise.cli
    from tierwise.web.accounts import Accounts

    root = workspace.resolve()
    if not (root / CONFIG_FILE).is_file():
        raise UserError(f"{root}: not a tierwise workspace; run 'tierwise init {root}' first or pass --workspace DIR")
    return Accounts(root)


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise UserError('no password on standard input; pipe one line in, e.g. echo "$PW" | tierwise user add …')
        return line.rstrip("\r\n")
    first = getpass.getpass("Password / 密码: ")
    if first != getpass.getpass("Again / 再输一次: "):
        raise UserError("the two passwords differ; try again")
    return first


def add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option("--role", help="admin, analyst or viewer.")] = "viewer",
    password_stdin: PasswordStdin = False,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Add a user (the password is asked for, or read from standard input)."""
    from tierwise.web.accounts import ROLES  # lazy: see tierwise.cli

    accounts = _accounts(workspace)
    if role not in ROLES:
        raise UserError(f"role '{role}': choose admin, analyst or viewer")
    user = accounts.add_user(name, role, _read_password(password_stdin))
    accounts.audit("cli", "user_add", f"{user.username} as {user.role}")
    out.print(f"user {user.username} added as {user.role}")


def list_users(workspace: WorkspaceOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the users and their roles."""
    accounts = _accounts(workspace)
    users = [{"username": u.username, "role": u.role, "created_at": u.created_at} for u in accounts.users()]
    if as_json:
        print_json(users)
        return
    if not users:
        out.print("no users yet; add one with 'tierwise user add NAME --role admin'")
        return
    table = Table("user", "role", "created (UTC)")
    for u in users:
        table.add_row(u["username"], u["role"], u["created_at"])
    out.print(table)


def remove(name: Annotated[str, typer.Argument(help="User name.")], workspace: WorkspaceOpt = Path(".")) -> None:
    """Remove a user; their API tokens and browser sessions stop working."""
    accounts = _accounts(workspace)
    ended = accounts.remove_user(name)
    accounts.audit("cli", "user_remove", name)
    out.print(f"user {name} removed{_ended(ended)}")


def passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: PasswordStdin = False,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Set a user's password; the user's browser sessions end."""
    accounts = _accounts(workspace)
    ended = accounts.set_password(name, _read_password(password_stdin))
    accounts.audit("cli", "user_passwd", name)
    out.print(f"password of {name} changed{_ended(ended)}")


def role(
    name: Annotated[str, typer.Argument(help="User name.")],
    new_role: Annotated[str, typer.Argument(help="admin, analyst or viewer.")],
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Change a user's role; the user's browser sessions end."""
    accounts = _accounts(workspace)
    ended = accounts.set_role(name, new_role)
    accounts.audit("cli", "user_role", f"{name} → {new_role}")
    out.print(f"{name} is now {new_role}{_ended(ended)}")


def _ended(sessions: int) -> str:
    return f"; {sessions} browser session{'s' if sessions != 1 else ''} ended" if sessions else ""


def token(
    name: Annotated[str, typer.Argument(help="User name the token acts as.")],
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Make an API token for scripts (shown once; send it as 'Authorization: Bearer TOKEN')."""
    accounts = _accounts(workspace)
    token_id, secret = accounts.create_token(name)
    accounts.audit("cli", "token_create", f"{token_id} for {name}")
    if as_json:
        print_json({"token_id": token_id, "token": secret, "username": name})
        return
    out.print(f"token {token_id} for {name} (shown once; keep it secret):")
    sys.stdout.write(secret + "\n")


def tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List API tokens (ids only; the tokens themselves are not stored)."""
    rows = _accounts(workspace).tokens(name)
    if as_json:
        print_json(rows)
        return
    table = Table("token id", "user", "created (UTC)", "revoked", "last used")
    for r in rows:
        table.add_row(*(str(r[k] or "") for k in ("token_id", "username", "created_at", "revoked_at", "last_used_at")))
    out.print(table)


def revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (from 'tierwise user tokens').")],
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Revoke an API token."""
    accounts = _accounts(workspace)
    accounts.revoke_token(token_id)
    accounts.audit("cli", "token_revoke", token_id)
    out.print(f"token {token_id} revoked")


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: \\[web] host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: \\[web] port).")] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Only refresh if a scheduled slot is due, then exit (for cron and tests).")
    ] = False,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Start the dashboard and REST API; refresh on the \\[schedule] of tierwise.toml in the background."""
    from tierwise.config import CONFIG_FILE, load_config  # lazy: see tierwise.cli

    if once:
        schedule_once(once=True, workspace=workspace, as_json=as_json)
        return
    if as_json:
        raise UserError("--json goes with --once")
    root = workspace.resolve()
    if not (root / CONFIG_FILE).is_file():
        raise UserError(f"{root}: not a tierwise workspace; run 'tierwise init {root}' first or pass --workspace DIR")
    cfg = load_config(root / CONFIG_FILE)
    from tierwise.web.app import create_app  # lazy, heavy (FastAPI, the web layer), not for --once: see tierwise.cli
    from tierwise.web.server import run as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(root)
    if not app.state.accounts.users():
        err.print(
            "no users yet: only the login page is served. Add one with "
            f"'tierwise user add NAME --role admin -w {root}'",
            markup=False,
        )
    if cfg.schedule.cadence != "off":
        from tierwise.refresh.schedule import serve as schedule_loop  # lazy: see tierwise.cli

        schedule_log = logging.getLogger("tierwise.schedule")
        threading.Thread(target=schedule_loop, args=(root, schedule_log.info), daemon=True, name="schedule").start()
    address = host or cfg.web.host
    out.print(f"tierwise serving {root} on http://{address}:{port or cfg.web.port}", markup=False)
    commands = _listen_for_commands(root, ctx.find_root().command)
    try:  # stops within seconds on SIGTERM/SIGINT; the listener closes at the signal
        run_server(app, host=address, port=port or cfg.web.port, on_stop=commands.close if commands else None)
    finally:
        if commands is not None:
            commands.close()


def _listen_for_commands(root: Path, command: object) -> CommandListener | None:
    """The command line on this workspace goes through the server from now on (tierwise.cli.remote): `command` is
    the command line's command tree (the root of the one running `serve`), which runs them."""
    if not isinstance(command, TyperGroup):
        raise TypeError(f"serve runs in the command line's command tree, not in {type(command).__name__}")
    commands = listen(root, command)
    if commands is None:
        err.print(
            "commands: no Unix sockets with peer credentials here; other tierwise commands cannot reach this "
            "workspace while it is served"
        )
    else:
        out.print(f"tierwise commands on {root} run here (socket {commands.socket})", markup=False, soft_wrap=True)
    return commands


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    user_app = typer.Typer(
        help="Users of the dashboard and API: add, list, remove, passwd, role, token, revoke.", no_args_is_help=True
    )
    user_app.command("add")(add)
    user_app.command("list")(list_users)
    user_app.command("remove")(remove)
    user_app.command("passwd")(passwd)
    user_app.command("role")(role)
    user_app.command("token")(token)
    user_app.command("tokens")(tokens)
    user_app.command("revoke")(revoke)
    app.add_typer(user_app, name="user")
