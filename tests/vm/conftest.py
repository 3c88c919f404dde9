"""VM tier: disposable qemu (TCG) Debian 12 VMs with their own kernel, over real SSH.

Booting and shutting down a VM under TCG takes minutes, so the default (CI) modules share one,
`shared_vm`, in file order: base converges it and reboots it, doctor and status read it,
network gives its second NIC (whose other end is a namespace the harness made) a static
address and reboots it, containers adds Docker (and NVIDIA's toolkit from a fixture) to it,
podman adds Podman beside it with a rootless account, and status_sync pushes and pulls.
Each of those modules says what it expects to find. The slow modules (by hand, -m slow) take
a fresh VM of their own (`vm`, or their own fixture).
"""

from __future__ import annotations

import pytest

from hostrun import booted, provision_runner


@pytest.fixture(scope="session")
def shared_vm(require_tier):
    """The one VM of the default VM modules (see the module docstring)."""
    yield from booted("vm", require_tier, nic2="netns")


@pytest.fixture(scope="module")
def vm(require_tier):
    """A fresh VM (qcow2 overlay of the cached image) for this module."""
    yield from booted("vm", require_tier)


@pytest.fixture
def provision(vm, tmp_path):
    """Run the real CLI against the VM."""
    return provision_runner(vm, tmp_path / "logs")
