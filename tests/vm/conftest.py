"""VM tier: a disposable qemu (TCG) Debian 12 VM with its own kernel, over real SSH."""

from __future__ import annotations

import pytest

from hostrun import booted, provision_runner


@pytest.fixture(scope="module")
def vm(require_tier):
    """A fresh VM (qcow2 overlay of the cached image) for this module."""
    yield from booted("vm", require_tier)


@pytest.fixture
def provision(vm, tmp_path):
    """Run the real CLI against the VM."""
    return provision_runner(vm, tmp_path / "logs")
