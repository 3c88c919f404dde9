"""Container tier: disposable systemd-nspawn hosts reached over real SSH, Debian 12 (bookworm)
by default, Debian 13 (trixie) through `trixie_container`.

Each test module gets a fresh host (a new copy of the cached rootfs of its release); the real
`provision` CLI runs as a subprocess against it, exactly as a user would run it.
"""

from __future__ import annotations

import pytest

from hostrun import booted, provision_runner


@pytest.fixture(scope="module")
def container(require_tier):
    """A fresh Debian 12 container host for this module; removed afterwards."""
    yield from booted("container", require_tier)


@pytest.fixture(scope="module")
def trixie_container(require_tier):
    """A fresh Debian 13 (trixie) container host for this module; removed afterwards."""
    yield from booted("container", require_tier, release="trixie")


@pytest.fixture
def provision(container, tmp_path):
    """Run the real CLI against the container: provision(*args) -> CompletedProcess."""
    return provision_runner(container, tmp_path / "logs")


@pytest.fixture
def provision_trixie(trixie_container, tmp_path):
    """Run the real CLI against the trixie container."""
    return provision_runner(trixie_container, tmp_path / "logs")
