"""The containers step on a real kernel (Docker needs cgroups, overlayfs and namespaces of its
own, so not in the test containers): Docker from Debian 12's own docker.io, a daemon.json the
user wrote beforehand merged (their keys kept, as dockerd itself reports them), a container run
from the local check image, a second run with nothing to change, a broken daemon.json refused
with its line and column, and each verify check's drift planned and repaired.

The expectations come from dockerd (`docker info`, `docker inspect` of a container it started)
and the files on the host, not from the step's own code.
"""

from __future__ import annotations

import json
import re

import pytest
from common import ssh

pytestmark = pytest.mark.vm
ON = ["--set", "containers.enabled=true", "--set", "containers.docker_users=tester"]
USERS = {
    "registry-mirrors": ["https://mirror.example.invalid"],
    "log-opts": {"labels": "team"},
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}},
}


@pytest.fixture(scope="module")
def vm(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py), converged by base."""
    return shared_vm


def daemon_json(vm) -> dict:
    return json.loads(ssh(vm, "cat /etc/docker/daemon.json").stdout)


def test_docker_from_the_distribution_keeps_the_users_daemon_json(vm, provision):
    ssh(vm, f"mkdir -p /etc/docker && printf '%s' '{json.dumps(USERS)}' > /etc/docker/daemon.json")
    first = provision("containers", "--host", vm.name, *ON, timeout_s=2400)
    assert re.search(r"install \d packages?: docker\.io\b", first.stdout), first.stdout
    for package in ("docker.io", "apparmor"):
        status = ssh(vm, f"dpkg-query -W -f '${{Status}}' {package}").stdout
        assert status == "install ok installed", (package, status)
    assert "set log-opts.max-size, log-opts.max-file in /etc/docker/daemon.json" in first.stdout
    assert "add tester to group docker (root-equivalent" in first.stdout

    config = daemon_json(vm)
    assert config["registry-mirrors"] == USERS["registry-mirrors"]
    assert config["default-ulimits"] == USERS["default-ulimits"]
    assert config["log-opts"] == {"labels": "team", "max-size": "10m", "max-file": "3"}
    kept = ssh(vm, "cat /var/lib/provision/containers/daemon.json.before-provision").stdout
    assert json.loads(kept) == USERS

    # What dockerd itself read from the merged file.
    info = json.loads(ssh(vm, "docker info --format '{{json .}}'").stdout)
    assert info["RegistryConfig"]["Mirrors"] == ["https://mirror.example.invalid/"]
    assert info["LoggingDriver"] == "json-file"
    assert info["ServerVersion"].startswith("20.10."), info["ServerVersion"]  # Debian 12
    # The image has a shell only: the container exits at once, and dockerd still reports it.
    started = ssh(vm, "docker run -d --network none provision-check:dash /bin/sh -c true").stdout
    started = started.strip()
    log_config = json.loads(
        ssh(vm, f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {started}").stdout
    )
    ssh(vm, f"docker rm -f {started}")
    # The daemon's log-opts reach the container: ours and the user's label option alike.
    assert log_config == {
        "Type": "json-file",
        "Config": {"labels": "team", "max-file": "3", "max-size": "10m"},
    }
    groups = ssh(vm, "id -nG tester").stdout.split()
    assert "docker" in groups

    provision("containers", "--host", vm.name, *ON, "--plan", "--detailed-exitcode")
    verify = provision("verify", "--host", vm.name, *ON, "containers")
    assert "4 passed" in verify.stdout, verify.stdout
    assert ssh(vm, "docker run --rm provision-check:dash /bin/sh -c 'echo hi'").stdout == "hi\n"


def test_drift_is_planned_and_repaired(vm, provision):
    # A key the user adds later stays; our rotation key, the check image, the running engine
    # and the docker group membership are each taken away.
    ssh(
        vm,
        "python3 - <<'EOF'\n"
        "import json\n"
        "p = '/etc/docker/daemon.json'\n"
        "c = json.load(open(p))\n"
        "c['debug'] = True\n"
        "del c['log-opts']['max-size']\n"
        "json.dump(c, open(p, 'w'))\n"
        "EOF\n"
        "docker rmi provision-check:dash\n"
        "systemctl disable --now docker.service\n"
        "systemctl disable --now docker.socket 2>/dev/null || true\n"
        "gpasswd -d tester docker",
    )
    verify = provision("verify", "--host", vm.name, *ON, "containers", check_rc=1)
    assert "0 passed, 4 failed" in verify.stdout, verify.stdout
    plan = provision("containers", "--host", vm.name, *ON, "--plan", "--detailed-exitcode",
                     check_rc=3)  # fmt: skip
    for change in (
        "set log-opts.max-size in /etc/docker/daemon.json",
        "enable docker.service at boot",
        "make the local check image provision-check:dash",
        "add tester to group docker",
    ):
        assert change in plan.stdout, plan.stdout
    provision("containers", "--host", vm.name, *ON)
    assert "4 passed" in provision("verify", "--host", vm.name, *ON, "containers").stdout
    config = daemon_json(vm)
    assert config["debug"] is True and config["log-opts"]["max-size"] == "10m"
    assert config["registry-mirrors"] == USERS["registry-mirrors"]


def test_a_broken_daemon_json_is_refused_with_its_line_and_untouched(vm, provision):
    broken = '{\n  "debug": true,\n  "log-opts": {"max-size": "10m",}\n}\n'
    ssh(vm, f"cp /etc/docker/daemon.json /root/daemon.json.good && printf '%s' '{broken}' "
        "> /etc/docker/daemon.json")  # fmt: skip
    try:
        proc = provision("containers", "--host", vm.name, *ON, check_rc=1)
        assert "/etc/docker/daemon.json:3:" in proc.stderr and "not valid JSON" in proc.stderr, (
            proc.stderr
        )
        assert ssh(vm, "cat /etc/docker/daemon.json").stdout == broken
    finally:
        ssh(vm, "mv /root/daemon.json.good /etc/docker/daemon.json")
