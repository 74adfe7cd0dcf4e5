"""Users, API tokens, browser sessions and the audit log of a workspace.

They live in a small SQLite file beside the DuckDB store (`.tierwise-auth.sqlite`), not in DuckDB: DuckDB lets one
process write at a time, and `tierwise user add` must work while `tierwise serve` is running. Passwords are hashed
with argon2; API tokens and session cookies are random 256-bit secrets of which only a SHA-256 digest is kept.
Because the CLI and the server share this file, `tierwise user passwd`, `role` and `remove` end the user's
browser sessions in a running server at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tierwise.errors import UserError

Role = Literal["admin", "analyst", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "admin")  # each can do what the ones before it can
AUTH_FILE = ".tierwise-auth.sqlite"
MIN_PASSWORD = 8
_NAME = re.compile(r"^[\w.@-]{1,64}$")
_HASHER = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY, username TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL UNIQUE, username TEXT NOT NULL,
    csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    ip TEXT, user_agent TEXT, ended_at TEXT, end_reason TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username, ended_at);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, username TEXT, action TEXT NOT NULL,
    detail TEXT, ip TEXT
);
"""


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    created_at: str


@dataclass(frozen=True)
class Session:
    """A browser's login as read back from its cookie: whose it is and the CSRF token its changes must carry."""

    session_id: str  # the public handle admins see and end it by; not the cookie's secret
    username: str
    role: Role
    csrf_token: str


# A session's "last seen" is written at most this often: a browser's every request need not queue for a write.
SEEN_EVERY = dt.timedelta(seconds=60)
# Ended and expired sessions are kept this long (who was logged in from where), then deleted.
KEEP_ENDED = dt.timedelta(days=30)
_SESSION_KEYS = ("session_id", "username", "created_at", "last_seen_at", "expires_at", "ip", "user_agent")


def role_at_least(role: str, needed: str) -> bool:
    order: tuple[str, ...] = ROLES
    return order.index(role) >= order.index(needed)


def _now() -> str:
    return _iso(_utcnow())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


class Accounts:
    """The users, tokens and audit log of one workspace folder."""

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / AUTH_FILE
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)
            # Write-ahead log: checking a token (a read) never waits for another request's write.
            db.execute("PRAGMA journal_mode=WAL")
        self.path.chmod(0o600)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The calling thread's connection (opened once per thread), in one transaction: committed on success,
        rolled back on error."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at each checkpoint, never corrupt
            self._local.db = db
        with db:
            yield db

    # -- users ----------------------------------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password: str) -> User:
        if not _NAME.match(username):
            raise UserError(f"user name '{username}': use 1–64 letters, digits, '.', '_', '-' or '@'")
        _check_role(role)
        _check_password(password)
        now = _now()
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO users VALUES (?, ?, ?, ?, ?)", (username, role, _HASHER.hash(password), now, now)
                )
        except sqlite3.IntegrityError:
            raise UserError(f"user '{username}' exists already; change it with 'tierwise user passwd'") from None
        return User(username, role, now)  # type: ignore[arg-type]

    def users(self) -> list[User]:
        with self._db() as db:
            rows = db.execute("SELECT username, role, created_at FROM users ORDER BY username").fetchall()
        return [User(*r) for r in rows]

    def get(self, username: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT username, role, created_at FROM users WHERE username = ?", (username,)).fetchone()
        return User(*row) if row else None

    def remove_user(self, username: str) -> int:
        """Remove the user, revoke its tokens and end its sessions; the number of sessions ended."""
        with self._db() as db:
            if db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount == 0:
                raise UserError(f"no user '{username}'; list them with 'tierwise user list'")
            db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL", (_now(), username)
            )
            return _end_sessions(db, username, "user_removed")

    def set_password(self, username: str, password: str, keep_session: str | None = None) -> int:
        """Set the password and end the user's sessions (all but `keep_session`: the one of a user who changed
        their own password); the number of sessions ended."""
        _check_password(password)
        with self._db() as db:
            cur = db.execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?",
                (_HASHER.hash(password), _now(), username),
            )
            if cur.rowcount == 0:
                raise UserError(f"no user '{username}'; list them with 'tierwise user list'")
            return _end_sessions(db, username, "password_changed", keep_session)

    def set_role(self, username: str, role: str) -> int:
        """Change the role; a real change ends the user's sessions. The number of sessions ended."""
        _check_role(role)
        with self._db() as db:
            row = db.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise UserError(f"no user '{username}'; list them with 'tierwise user list'")
            if row[0] == role:
                return 0
            db.execute("UPDATE users SET role = ?, updated_at = ? WHERE username = ?", (role, _now(), username))
            return _end_sessions(db, username, "role_changed")

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right, else None (in about the same time either way)."""
        with self._db() as db:
            row = db.execute(
                "SELECT username, role, created_at, password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
        stored = row[3] if row else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _HASHER.check_needs_rehash(stored):
            with self._db() as db:
                db.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_HASHER.hash(password), username))
        return User(row[0], row[1], row[2])

    # -- API tokens -----------------------------------------------------------------------------------------------

    def create_token(self, username: str) -> tuple[str, str]:
        """(token id, the token to give to a script: shown once, only its digest is kept)."""
        if self.get(username) is None:
            raise UserError(f"no user '{username}'; add it first with 'tierwise user add'")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute(
                "INSERT INTO api_tokens (token_id, username, secret_sha256, created_at) VALUES (?, ?, ?, ?)",
                (token_id, username, _digest(secret), _now()),
            )
        return token_id, f"tw_{token_id}.{secret}"

    def tokens(self, username: str | None = None) -> list[dict[str, str | None]]:
        query = "SELECT token_id, username, created_at, revoked_at, last_used_at FROM api_tokens"
        args: tuple[str, ...] = ()
        if username is not None:
            query += " WHERE username = ?"
            args = (username,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created_at", args).fetchall()
        keys = ("token_id", "username", "created_at", "revoked_at", "last_used_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        with self._db() as db:
            cur = db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (_now(), token_id)
            )
            if cur.rowcount == 0:
                raise UserError(f"no active token '{token_id}'; list them with 'tierwise user tokens'")

    def verify_token(self, token: str) -> User | None:
        if not token.startswith("tw_") or "." not in token:
            return None
        token_id, secret = token[3:].split(".", 1)
        with self._db() as db:
            row = db.execute(
                "SELECT t.secret_sha256, t.last_used_at, u.username, u.role, u.created_at FROM api_tokens t "
                "JOIN users u ON u.username = t.username WHERE t.token_id = ? AND t.revoked_at IS NULL",
                (token_id,),
            ).fetchone()
            if row is None or not hmac.compare_digest(row[0], _digest(secret)):
                return None
            now = _now()
            # "last used" to the minute: a script's every request need not queue for a write
            if row[1] is None or row[1][:16] != now[:16]:
                db.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?", (now, token_id))
        return User(row[2], row[3], row[4])

    # -- browser sessions -----------------------------------------------------------------------------------------

    def create_session(
        self, username: str, hours: float, ip: str | None, user_agent: str | None
    ) -> tuple[str, Session]:
        """A new session: (the secret for the cookie, shown only here; the session). Only its digest is kept."""
        secret = secrets.token_urlsafe(32)
        now = _utcnow()
        with self._db() as db:
            row = db.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise UserError(f"no user '{username}'; add it first with 'tierwise user add'")
            session = Session(secrets.token_hex(8), username, row[0], secrets.token_urlsafe(32))
            db.execute(
                "INSERT INTO sessions (session_id, secret_sha256, username, csrf_token, created_at, last_seen_at, "
                "expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.session_id, _digest(secret), username, session.csrf_token, _iso(now), _iso(now),
                 _iso(now + dt.timedelta(hours=hours)), ip, user_agent),
            )  # fmt: skip
            old = _iso(now - KEEP_ENDED)
            db.execute("DELETE FROM sessions WHERE ended_at < ? OR expires_at < ?", (old, old))
        return secret, session

    def session(self, secret: str, idle: dt.timedelta) -> Session | None:
        """The open session whose cookie holds `secret`, or None: unknown, ended, past its absolute end or idle
        for longer than `idle` (such a session is ended here). Its user's current role comes with it."""
        now = _utcnow()
        with self._db() as db:
            row = db.execute(
                "SELECT s.session_id, s.csrf_token, s.last_seen_at, s.expires_at, u.username, u.role "
                "FROM sessions s JOIN users u ON u.username = s.username "
                "WHERE s.secret_sha256 = ? AND s.ended_at IS NULL",
                (_digest(secret),),
            ).fetchone()
            if row is None:
                return None
            session_id, csrf, seen, expires = row[0], row[1], dt.datetime.fromisoformat(row[2]), row[3]
            reason = "expired" if _iso(now) >= expires else "idle" if now - seen >= idle else None
            if reason:
                db.execute(
                    "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE session_id = ?",
                    (_iso(now), reason, session_id),
                )
                return None
            if now - seen >= min(SEEN_EVERY, idle / 4):  # a short idle limit needs fresher marks
                db.execute("UPDATE sessions SET last_seen_at = ? WHERE session_id = ?", (_iso(now), session_id))
        return Session(session_id, row[4], row[5], csrf)

    def sessions(self, idle: dt.timedelta, username: str | None = None) -> list[dict[str, str | None]]:
        """The open sessions (of one user, or everyone's), oldest first: never their secrets."""
        now = _utcnow()
        query = f"SELECT {', '.join(_SESSION_KEYS)} FROM sessions WHERE ended_at IS NULL AND expires_at > ?"
        args: tuple[str, ...] = (_iso(now),)
        if username is not None:
            query += " AND username = ?"
            args += (username,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY username, created_at, rowid", args).fetchall()
        found = [dict(zip(_SESSION_KEYS, r, strict=True)) for r in rows]
        return [s for s in found if now - dt.datetime.fromisoformat(str(s["last_seen_at"])) < idle]

    def end_session(self, session_id: str, reason: str) -> str | None:
        """End one open session; the user it belonged to, or None if there was no such open session."""
        with self._db() as db:
            rows = db.execute(
                "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE session_id = ? AND ended_at IS NULL "
                "RETURNING username",
                (_now(), reason, session_id),
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def end_sessions(self, username: str, reason: str) -> int:
        """End every open session of a user; how many there were."""
        with self._db() as db:
            return _end_sessions(db, username, reason)

    # -- audit log ------------------------------------------------------------------------------------------------

    def audit(self, username: str | None, action: str, detail: str = "", ip: str | None = None) -> None:
        """Who did what: logins, uploads, runs, exports, settings and user changes (no customer data)."""
        with self._db() as db:
            db.execute(
                "INSERT INTO audit_log (at, username, action, detail, ip) VALUES (?, ?, ?, ?, ?)",
                (_now(), username, action, detail, ip),
            )

    def audit_entries(self, limit: int = 200) -> list[dict[str, str | None]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT at, username, action, detail, ip FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(zip(("at", "username", "action", "detail", "ip"), r, strict=True)) for r in rows]


def _end_sessions(db: sqlite3.Connection, username: str, reason: str, keep: str | None = None) -> int:
    cur = db.execute(
        "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE username = ? AND ended_at IS NULL "
        "AND session_id IS NOT ?",
        (_now(), reason, username, keep),
    )
    return int(cur.rowcount)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role '{role}': choose admin, analyst or viewer")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
