"""network on a VM with a second NIC whose other end lives in a network namespace the
harness made: the static address works and survives a reboot, and a configuration that cuts
our own connection rolls itself back with no manual step."""

from __future__ import annotations

import subprocess
import time

import pytest
from common import ssh

from hostrun import provision_runner, reboot_boot_ids

pytestmark = pytest.mark.vm
STATIC = ["--set", "network.interface=ens4", "--set", "network.address=192.168.77.10/24"]


@pytest.fixture(scope="module")
def vm2(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py): its second NIC's other end is in a
    namespace the harness made; base converged it (ufw on, SSH allowed)."""
    return shared_vm


def ssh_from_netns(host, tmp_path) -> subprocess.CompletedProcess:
    """Real SSH to the static address, from inside the namespace (never from this host)."""
    known = tmp_path / "known_static"
    known.write_text(
        "".join(
            line.replace(f"[127.0.0.1]:{host.port}", "192.168.77.10")
            for line in host.known_hosts.read_text().splitlines(True)
        )
    )
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            host.extras["netns"],
            "ssh",
            "-i",
            str(host.key_file),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "tester@192.168.77.10",
            "hostname",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_static_address_works_and_survives_a_reboot(vm2, tmp_path):
    provision = provision_runner(vm2, tmp_path / "logs")
    first = provision("network", "--host", vm2.name, *STATIC)
    assert "give ens4 192.168.77.10/24" in first.stdout
    provision("network", "--host", vm2.name, *STATIC, "--plan", "--detailed-exitcode")
    assert "1 passed" in provision("verify", "--host", vm2.name, *STATIC, "network").stdout
    reached = ssh_from_netns(vm2, tmp_path)
    assert reached.returncode == 0, reached.stderr
    reboot_boot_ids(vm2, timeout_s=600)
    assert ssh_from_netns(vm2, tmp_path).returncode == 0
    assert "1 passed" in provision("verify", "--host", vm2.name, *STATIC, "network").stdout


@pytest.mark.reliability("lockout")
def test_wrong_address_on_our_own_interface_rolls_back_by_itself(vm2, tmp_path):
    provision = provision_runner(vm2, tmp_path / "logs")
    wrong = [
        "--set",
        "network.interface=ens3",
        "--set",
        "network.address=10.9.9.9/24",
        "--set",
        "network.rollback_after_s=45",
    ]
    proc = provision("network", "--host", vm2.name, *wrong, check_rc=1)
    assert "restore" in proc.stderr or "undone" in proc.stderr, proc.stderr
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if ssh(vm2, "true", user="tester", check=False, timeout=20).returncode == 0:
            break
        time.sleep(5)
    assert ssh(vm2, "ip -o addr show dev ens3", user="tester").stdout.count("10.9.9.9") == 0
    assert (
        ssh(
            vm2,
            "test ! -e /etc/netplan/60-provision.yaml || ! grep -q 10.9.9.9 /etc/netplan/60-provision.yaml",
            user="tester",
        ).returncode
        == 0
    )
