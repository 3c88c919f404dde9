"""Container tier: disposable systemd-nspawn Debian 12 hosts reached over real SSH.

Each test module gets a fresh host (a new copy of the cached rootfs); the real `provision`
CLI runs as a subprocess against it, exactly as a user would run it.
"""

from __future__ import annotations

import pytest

from hostrun import booted, provision_runner


@pytest.fixture(scope="module")
def container(require_tier):
    """A fresh container host for this module; removed afterwards."""
    yield from booted("container", require_tier)


@pytest.fixture
def provision(container, tmp_path):
    """Run the real CLI against the container: provision(*args) -> CompletedProcess."""
    return provision_runner(container, tmp_path / "logs")
