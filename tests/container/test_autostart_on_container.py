"""autostart over real SSH on a fresh container, checked again after a reboot."""

from __future__ import annotations

import pytest
from common import ssh

from hostrun import reboot_boot_ids

pytestmark = pytest.mark.container

ARGS = ["--set", "autostart.services=ssh.service"]


def test_autostart_applies_converges_and_survives_a_reboot(container, provision):
    first = provision("autostart", "--host", container.name, *ARGS)
    assert "mask sleep.target" in first.stdout
    provision("autostart", "--host", container.name, *ARGS, "--plan", "--detailed-exitcode")
    before, after = reboot_boot_ids(container, timeout_s=120)
    assert before != after
    verify = provision("verify", "--host", container.name, *ARGS, "autostart")
    assert "2 passed" in verify.stdout and "manual: only the firmware" in verify.stdout
    assert (
        ssh(container, "systemctl is-enabled suspend.target", check=False).stdout.strip()
        == "masked"
    )
    provision("autostart", "--host", container.name, *ARGS, "--plan", "--detailed-exitcode")


def test_autostart_refuses_wake_on_lan_in_a_container(container, provision):
    proc = provision(
        "autostart",
        "--host",
        container.name,
        "--set",
        "autostart.wake_on_lan_interface=eth0",
        check_rc=1,
    )
    assert "inside a container" in proc.stderr
