"""base on a real kernel (qemu VM): headers for the running kernel, time sync, idempotence,
verify with nothing skipped for lack of a kernel, and a reboot through GRUB."""

from __future__ import annotations

import pytest
from common import ssh

from hostrun import reboot_boot_ids

# Minutes under TCG (most of it apt): one VM for the module, both cases in CI.
pytestmark = pytest.mark.vm


def test_base_on_vm_applies_converges_and_verifies(vm, provision):
    first = provision("all", "--host", vm.name)
    assert "changed" in first.stdout
    kernel = ssh(vm, "uname -r").stdout.strip()
    assert f"linux-headers-{kernel}" in first.stdout
    provision("all", "--host", vm.name, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", vm.name)
    lines = verify.stdout.splitlines()
    headers = next(x for x in lines if "headers for the running kernel" in x)
    time_sync = next(x for x in lines if "clock is kept in sync" in x)
    assert " passed " in headers and " passed " in time_sync, verify.stdout
    assert ssh(vm, f"test -e /lib/modules/{kernel}/build/Makefile").returncode == 0


def test_vm_reboot_through_grub_changes_the_boot_id(vm):
    before, after = reboot_boot_ids(vm, timeout_s=600)
    assert before and after and before != after
