from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
