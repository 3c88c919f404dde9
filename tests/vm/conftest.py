"""VM tier: a disposable qemu (TCG) Debian 12 VM with its own kernel, over real SSH."""

from __future__ import annotations

import uuid

import pytest
from conftest_vm import missing

from hostrun import provision_runner


@pytest.fixture(scope="module")
def vm(require_tier):
    """A fresh VM (qcow2 overlay of the cached image) for this module."""
    reason = missing()
    if reason:
        require_tier("vm", reason)
    import vm as harness

    name = f"v{uuid.uuid4().hex[:6]}"
    host = harness.up(name)
    try:
        yield host
    finally:
        harness.down(name)


@pytest.fixture
def provision(vm, tmp_path):
    """Run the real CLI against the vm: provision(*args) -> CompletedProcess."""
    return provision_runner(vm, tmp_path / "logs")
