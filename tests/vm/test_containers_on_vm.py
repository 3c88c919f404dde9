"""The containers step on a real kernel (Docker needs cgroups, overlayfs and namespaces of its
own, so not in the test containers): Docker from Debian 12's own docker.io, a daemon.json the
user wrote beforehand merged (their keys kept, as dockerd itself reports them), a container run
from the local check image, a second run with nothing to change, a broken daemon.json refused
with its line and column, and each verify check's drift planned and repaired; then NVIDIA's
container toolkit from a FIXTURE signed repository (tests/hosts/toolkitrepo.py, a stand-in:
no GPU, no NVIDIA host is reachable), with Docker 20.10's nvidia runtime.

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


def edit_daemon_json(*lines: str) -> str:
    """A shell snippet running python3 on the VM with `c` the parsed daemon.json: LINES edit
    it, then it is written back (the user's hand, which this tool must keep or repair)."""
    body = "".join(f"{line}\n" for line in lines)
    return (
        "python3 - <<'EOF'\nimport json\np = '/etc/docker/daemon.json'\n"
        f"c = json.load(open(p))\n{body}json.dump(c, open(p, 'w'))\nEOF\n"
    )


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
        edit_daemon_json("c['debug'] = True", "del c['log-opts']['max-size']")
        + "docker rmi provision-check:dash\n"
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


@pytest.fixture(scope="module")
def toolkit_repo(tmp_path_factory):
    """The FIXTURE toolkit repository (tests/hosts/toolkitrepo.py: not NVIDIA's), served on
    this machine's 127.0.0.1, which the VM reaches as 10.0.2.2 (qemu's user-mode network)."""
    import aptrepo
    import toolkitrepo
    from pkgindex import serve

    reason = aptrepo.missing_tools()
    if reason:
        pytest.skip(reason)
    root = toolkitrepo.build(tmp_path_factory.mktemp("toolkit-repo"))
    server, url = serve(root)
    yield url.replace("127.0.0.1", "10.0.2.2").rstrip("/"), aptrepo.key_fingerprint(root)
    server.shutdown()
    server.server_close()


@pytest.fixture
def toolkit_source_removed_after(vm):
    """The fixture's server stops with this module: its source must not outlive it on the
    shared VM (a later apt-get update would fail on it)."""
    yield
    ssh(vm, "rm -f /etc/apt/sources.list.d/nvidia-container-toolkit.list "
        "/etc/apt/preferences.d/nvidia-container-toolkit-pin-600")  # fmt: skip


def test_the_toolkit_from_a_fixture_repository(vm, provision, toolkit_repo,
                                               toolkit_source_removed_after):  # fmt: skip
    url, key = toolkit_repo
    tk = [*ON, "--set", "containers.nvidia=true", "--set", f"containers.toolkit_repo_url={url}",
          "--set", f"containers.toolkit_repo_key={key}"]  # fmt: skip
    # A source of NVIDIA's deprecated nvidia-docker repository, as old guides left it.
    old = "/etc/apt/sources.list.d/nvidia-docker.list"
    ssh(vm, f"echo 'deb https://nvidia.github.io/nvidia-docker/debian11/$(ARCH) /' > {old}")
    first = provision("containers", "--host", vm.name, *tk, timeout_s=1800)
    assert "GPUs through the nvidia runtime, Docker 20.10 has no CDI" in first.stdout, first.stdout

    # apt: our source with signed-by, the pin, the package from the fixture's origin.
    listed = ssh(vm, "cat /etc/apt/sources.list.d/nvidia-container-toolkit.list").stdout
    keyring = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
    assert f"deb [signed-by={keyring}] {url}/stable/deb/$(ARCH) /" in listed.splitlines()
    shown = ssh(vm, f"gpg --show-keys --with-colons {keyring} | grep ^fpr: | head -1").stdout
    assert shown.split(":")[9] == key
    policy = ssh(vm, "apt-cache policy nvidia-container-toolkit").stdout
    # The pin names the package, so apt shows 600 on the version (the source's own stays 500).
    assert re.search(r"\*\*\* 1\.18\.0-1 600\n\s+500 http://10\.0\.2\.2:", policy), policy
    status = ssh(vm, "dpkg-query -W -f '${Status}' nvidia-container-toolkit").stdout
    assert status == "install ok installed"
    assert ssh(vm, f"test -e {old} || echo gone").stdout == "gone\n"
    assert ssh(vm, f"test -e /var/backups/provision{old} && echo kept").stdout == "kept\n"

    # Docker: the nvidia runtime as dockerd reports it, the user's keys still there, and a
    # container really started through the runtime (the FIXTURE's runs runc: no GPU here).
    runtimes = json.loads(ssh(vm, "docker info --format '{{json .Runtimes}}'").stdout)
    assert runtimes["nvidia"]["path"] == "nvidia-container-runtime", runtimes
    config = daemon_json(vm)
    assert config["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert config["registry-mirrors"] == USERS["registry-mirrors"]
    through = ssh(vm, "docker run --rm --runtime nvidia provision-check:dash /bin/sh -c "
                  "'echo via-nvidia'")  # fmt: skip
    assert through.stdout == "via-nvidia\n", through.stderr
    rule = ssh(vm, "cat /etc/udev/rules.d/71-nvidia-dev-char.rules").stdout
    assert "create-dev-char-symlinks --create-all" in rule

    provision("containers", "--host", vm.name, *tk, "--plan", "--detailed-exitcode")
    verify = provision("verify", "--host", vm.name, *tk, "containers")
    assert "5 passed, 0 failed, 0 error, 2 skipped" in verify.stdout, verify.stdout
    assert "no NVIDIA GPU on this host" in verify.stdout

    # Drift: the runtime taken out of daemon.json, the rule removed, the key emptied.
    ssh(
        vm,
        edit_daemon_json("del c['runtimes']") + "systemctl restart docker\n"
        f"rm /etc/udev/rules.d/71-nvidia-dev-char.rules && : > {keyring}",
    )
    verify = provision("verify", "--host", vm.name, *tk, "containers", check_rc=1)
    assert "3 passed, 2 failed, 0 error, 2 skipped" in verify.stdout, verify.stdout
    plan = provision("containers", "--host", vm.name, *tk, "--plan", "--detailed-exitcode",
                     check_rc=3)  # fmt: skip
    for change in (
        f"install the key {key[-8:]} of NVIDIA's container toolkit repository",
        "set runtimes in /etc/docker/daemon.json",
        "/etc/udev/rules.d/71-nvidia-dev-char.rules",
    ):
        assert change in plan.stdout, plan.stdout
    provision("containers", "--host", vm.name, *tk)
    verify = provision("verify", "--host", vm.name, *tk, "containers")
    assert "5 passed, 0 failed, 0 error, 2 skipped" in verify.stdout, verify.stdout
    runtimes = json.loads(ssh(vm, "docker info --format '{{json .Runtimes}}'").stdout)
    assert "nvidia" in runtimes


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
