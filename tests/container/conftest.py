"""Container tier: disposable systemd-nspawn Debian 12 hosts reached over real SSH.

Each test module gets a fresh host (a new copy of the cached rootfs); the real `provision`
CLI runs as a subprocess against it, exactly as a user would run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn)"
    for tool in ("mmdebstrap", "systemd-nspawn", "ssh"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install mmdebstrap systemd-container openssh-client)"
    return ""


@pytest.fixture(scope="module")
def container(require_tier):
    """A fresh container host for this module; removed afterwards."""
    missing = _missing()
    if missing:
        require_tier("container", missing)
    import container as harness

    name = f"t{uuid.uuid4().hex[:6]}"
    host = harness.up(name)
    try:
        yield host
    finally:
        harness.down(name)


@pytest.fixture
def provision(container, tmp_path):
    """Run the real CLI against the container: provision(*args) -> CompletedProcess."""

    def run(*args: str, env: dict | None = None, check_rc: int | None = 0):
        cmd = [sys.executable, "-m", "provision", *args]
        if "-i" not in args and "--inventory" not in args:
            cmd += ["-i", str(container.inventory)]
        if "--log-dir" not in args and args and args[0] != "list":
            cmd += ["--log-dir", str(tmp_path / "logs")]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=1800,
            env={**os.environ, **(env or {})},
        )
        if check_rc is not None:
            assert proc.returncode == check_rc, (
                f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run
