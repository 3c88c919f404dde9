"""Podman on a real kernel, rootful and rootless (`containers.engine=podman`): Debian 12's own
podman 4.3, an account of the users step running rootless containers with subordinate IDs the
step gave it, a second run with nothing to change, and drift of the rootless check repaired.

The expectations come from Podman and the kernel, not from the step: `podman info` (rootless,
its version), the user namespace's /proc/self/uid_map inside `podman unshare` (the account's
range from /etc/subuid), loginctl's linger file, and containers started from the local image.
"""

from __future__ import annotations

import pytest
from common import ssh

pytestmark = pytest.mark.vm
ON = [
    "--set", "containers.enabled=true", "--set", "containers.engine=podman",
    "--set", "containers.podman_users=alice", "--set", "users.accounts=alice",
]  # fmt: skip
IMAGE = "provision-check:dash"


@pytest.fixture(scope="module")
def vm(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py); Docker may be there too."""
    return shared_vm


def as_alice(vm, command: str):
    env = "XDG_RUNTIME_DIR=/run/user/$(id -u alice)"
    return ssh(vm, f"cd / && runuser -u alice -- env {env} {command}")


def test_rootful_and_rootless_podman_for_a_users_account(vm, provision):
    provision("users", "--host", vm.name, *ON)
    # An account from before subordinate IDs were handed out: its ranges taken away.
    ssh(vm, "sed -i '/^alice:/d' /etc/subuid /etc/subgid")
    first = provision("containers", "--host", vm.name, *ON, timeout_s=1800)
    assert "install 4 packages: podman, uidmap, dbus-user-session, slirp4netns" in first.stdout
    assert "give alice 65536 subordinate IDs for rootless containers" in first.stdout
    assert "daemon.json" not in first.stdout and "docker.service" not in first.stdout

    version = ssh(vm, "podman info --format '{{.Version.Version}}'").stdout.strip()
    assert version.startswith("4.3."), version  # Debian 12's podman
    rootful = ssh(vm, f"podman run --rm --network none {IMAGE} /bin/sh -c 'echo rootful'")
    assert rootful.stdout == "rootful\n", rootful.stderr

    ranges = {}
    for name in ("subuid", "subgid"):
        lines = ssh(vm, f"cat /etc/{name}").stdout.splitlines()
        entries = [line.split(":") for line in lines if line.count(":") == 2]
        mine = [e for e in entries if e[0] == "alice"]
        assert len(mine) == 1 and int(mine[0][2]) == 65536, lines
        start = int(mine[0][1])
        for other in entries:  # no overlap with another account's range
            if other[0] != "alice":
                o_start, o_count = int(other[1]), int(other[2])
                assert start + 65536 <= o_start or o_start + o_count <= start, lines
        ranges[name] = start
    assert ssh(vm, "test -e /var/lib/systemd/linger/alice && echo yes").stdout == "yes\n"
    assert as_alice(vm, "podman info --format '{{.Host.Security.Rootless}}'").stdout == "true\n"
    # The kernel's view: root in alice's namespace is alice, and 1.. map to her range.
    uid = ssh(vm, "id -u alice").stdout.strip()
    mapping = [line.split() for line in as_alice(vm, "podman unshare cat /proc/self/uid_map")
               .stdout.splitlines()]  # fmt: skip
    assert ["0", uid, "1"] in mapping and ["1", str(ranges["subuid"]), "65536"] in mapping, mapping
    rootless = as_alice(vm, f"podman run --rm --network none {IMAGE} /bin/sh -c 'echo rootless'")
    assert rootless.stdout == "rootless\n", rootless.stderr

    provision("containers", "--host", vm.name, *ON, "--plan", "--detailed-exitcode")
    verify = provision("verify", "--host", vm.name, *ON, "containers")
    assert "3 passed, 0 failed, 0 error, 4 skipped" in verify.stdout, verify.stdout
    assert "Podman has no daemon.json" in verify.stdout


def test_rootless_drift_is_planned_and_repaired(vm, provision):
    as_alice(vm, f"podman rmi {IMAGE}")
    ssh(vm, "loginctl disable-linger alice")
    verify = provision("verify", "--host", vm.name, *ON, "containers", check_rc=1)
    assert "2 passed, 1 failed, 0 error, 4 skipped" in verify.stdout, verify.stdout
    plan = provision("containers", "--host", vm.name, *ON, "--plan", "--detailed-exitcode",
                     check_rc=3)  # fmt: skip
    for change in ("let alice's user session run without a login",
                   f"make the local check image {IMAGE} for alice"):  # fmt: skip
        assert change in plan.stdout, plan.stdout
    provision("containers", "--host", vm.name, *ON)
    verify = provision("verify", "--host", vm.name, *ON, "containers")
    assert "3 passed, 0 failed, 0 error, 4 skipped" in verify.stdout, verify.stdout
