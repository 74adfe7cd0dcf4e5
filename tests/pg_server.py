"""A PostgreSQL server of the tests' own: started from Debian's PostgreSQL binaries (initdb, pg_ctl) in a temporary
folder on a free loopback port with password authentication, stopped at the end of the module using it. Without
the binaries the tests are skipped with the reason, unless TIERWISE_REQUIRE_POSTGRES=1 (set by .ci/run, which
installs them), so CI cannot pass by skipping. TIERWISE_TEST_POSTGRES_URL points the tests at a server you already
run instead. The fixture `server_url` reaches every test through tests/conftest.py (pytest_plugins)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "s3cret-Pw!"
USER = "tierwise_test"


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user Debian's package creates."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    given_url = os.environ.get("TIERWISE_TEST_POSTGRES_URL")
    if given_url:
        yield given_url
        return
    bin_dir = _binaries()
    reason = None
    if bin_dir is None:
        reason = "no PostgreSQL server binaries (initdb); Debian's postgresql package provides them"
    elif os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        reason = "running as root and there is no 'postgres' user to run the server as"
    if reason is not None:
        if os.environ.get("TIERWISE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"TIERWISE_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    assert bin_dir is not None
    home = Path(tempfile.mkdtemp(prefix="tierwise-pg-"))
    data, log, pwfile = home / "data", home / "server.log", home / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log.read_text() if log.exists() else ''}")
    try:
        yield f"postgresql://{USER}:{PASSWORD.replace('!', '%21')}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


def execute(url: str, *statements: tuple[str, Any] | str) -> None:
    """Set up the source tables (plain psycopg: the test's own side, not the code under test)."""
    import psycopg

    with psycopg.connect(url.replace("%21", "!")) as con:
        for s in statements:
            sql, params = (s, None) if isinstance(s, str) else s
            if params is not None and isinstance(params, list):
                con.cursor().executemany(sql, params)
            else:
                con.execute(sql, params)
