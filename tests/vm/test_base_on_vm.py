"""`provision all` on a real kernel (qemu VM): headers for the running kernel, time sync,
the firewall, idempotence, verify with nothing skipped for lack of a kernel, and everything
back after a reboot through GRUB."""

from __future__ import annotations

import pytest
from common import ssh

from hostrun import reboot_boot_ids

# Minutes under TCG (most of it apt): one VM for the module.
pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def vm(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py), fresh: this module converges it first."""
    return shared_vm


ARGS = [
    "--set",
    "ssh.ufw=true",
    "--set",
    "ssh.fail2ban=true",
    "--set",
    "autostart.services=ssh.service",
]


def passed(verify_stdout: str, check: str) -> bool:
    line = next(x for x in verify_stdout.splitlines() if check in x)
    return " passed " in line


def test_all_on_vm_applies_converges_and_verifies(vm, provision):
    first = provision("all", "--host", vm.name, *ARGS)
    assert "changed" in first.stdout
    kernel = ssh(vm, "uname -r").stdout.strip()
    assert f"linux-headers-{kernel}" in first.stdout
    assert "enable ufw (SSH allowed first)" in first.stdout
    provision("all", "--host", vm.name, *ARGS, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", vm.name, *ARGS)
    for check in (
        "headers for the running kernel",
        "clock is kept in sync",
        "ufw is active and allows SSH",
        "TensorBoard answers HTTP",
    ):
        assert passed(verify.stdout, check), verify.stdout
    assert ssh(vm, f"test -e /lib/modules/{kernel}/build/Makefile").returncode == 0


def test_everything_is_back_after_a_reboot_through_grub(vm, provision):
    before, after = reboot_boot_ids(vm, timeout_s=600)
    assert before and after and before != after
    verify = provision("verify", "--host", vm.name, *ARGS)
    for check in (
        "never sleeps",
        "services are enabled and running",
        "TensorBoard answers HTTP",
        "ufw is active",
    ):
        assert passed(verify.stdout, check), verify.stdout
