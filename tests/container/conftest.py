"""Container tier: disposable systemd-nspawn Debian 12 hosts reached over real SSH.

Each test module gets a fresh host (a new copy of the cached rootfs); the real `provision`
CLI runs as a subprocess against it, exactly as a user would run it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from hostrun import provision_runner


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
    return provision_runner(container, tmp_path / "logs")
