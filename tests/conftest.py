from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg_server"]  # the PostgreSQL server fixture, server_url

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CDNOW_MASTER = SHARED_DATA / "cdnow" / "CDNOW_master.txt"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail_sample.csv"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def run_cli(*args: str | Path, cwd: Path | None = None) -> CliResult:
    """Run the real command line in a child process, as a user would (no terminal, no stdin)."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TIERWISE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise.cli", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    ws: Path,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 90,
    ready: Callable[[], bool] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """The real `tierwise serve` on a free loopback port, in a child process, once it answers /health (and
    `ready()` holds); its output goes to `log`. Returns the process and the base URL; stop it with stop_serve."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("TIERWISE_DEBUG", "FORWARDED_ALLOW_IPS")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tierwise.cli", "serve", "-w", str(ws), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**base, **(env or {})}, cwd=cwd,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tierwise serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200 and (ready is None or ready()):
                    time.sleep(0.2)  # another program on the port would answer too: ours must still be alive
                    if proc.poll() is None:
                        return proc, url
        except OSError:
            pass
        time.sleep(0.1)
    stop_serve(proc)
    pytest.fail(f"tierwise serve did not answer /health within {timeout:.0f} s:\n{log.read_text(errors='replace')}")


def stop_serve(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, as a service manager stops it; killed if it has not ended within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


@pytest.fixture
def ws_dir(tmp_path: Path) -> Path:
    from tierwise.workspace import Workspace

    d = tmp_path / "ws"
    Workspace.init(d).close()
    return d


@pytest.fixture
def ws(ws_dir: Path):
    from tierwise.workspace import Workspace

    w = Workspace.open(ws_dir)
    yield w
    w.close()
