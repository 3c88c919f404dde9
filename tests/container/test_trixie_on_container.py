"""The core steps (GPU-off settings: base, users, ssh, network, autostart, tensorboard, expose)
over real SSH on a fresh Debian 13 (trixie) container: systemd 257, OpenSSH 10.0, apt 3.0.

The host's apt sources are what a real trixie install writes (debian.sources, Signed-By
debian-archive-keyring.pgp; mmdebstrap leaves a one-line sources.list instead). One container
and one full `provision all` (plus its no-op second run) for the whole module; the drift
cases repair one step each.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from common import ssh, wait_for_ssh

pytestmark = pytest.mark.container

COMPONENTS = "/etc/apt/sources.list.d/provision-components.sources"
# What the debian-installer of Debian 13 writes (apt 3.0's deb822 format).
DEBIAN_SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp
"""
# The GPU steps on, as far as a plan goes (Debian's driver and toolkit: nothing is installed).
GPU_ON = [
    "--set", "driver.enabled=true", "--set", "driver.require_gpu=false",
    "--set", "driver.source=debian", "--set", "cuda.enabled=true", "--set", "cuda.source=distro",
]  # fmt: skip
# The components file as provision wrote it before it took Signed-By from the host.
OLD_COMPONENTS = """Types: deb
URIs: http://deb.debian.org/debian/
Suites: trixie trixie-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@pytest.fixture(scope="module")
def host(trixie_container):
    """The trixie container with a real install's apt sources."""
    write = f"cat > /etc/apt/sources.list.d/debian.sources <<'EOF'\n{DEBIAN_SOURCES}EOF\n"
    ssh(trixie_container, write + "rm -f /etc/apt/sources.list")
    release = ssh(trixie_container, ". /etc/os-release; echo $VERSION_ID $VERSION_CODENAME")
    assert release.stdout.split() == ["13", "trixie"]
    return trixie_container


@pytest.fixture
def run(host, provision_trixie):
    return provision_trixie


def summary(proc) -> list[str]:
    """host ok changed failed ... of the run's last line."""
    return proc.stdout.strip().splitlines()[-1].split()


def test_facts_say_debian_13_and_it_is_supported(host, run):
    proc = run("facts", "--host", host.name, "--json")
    assert '"os": "debian-13"' in proc.stdout and '"codename": "trixie"' in proc.stdout


def test_plan_on_a_fresh_host_lists_changes_and_changes_nothing(host, run):
    before = ssh(host, "dpkg-query -W -f '${Package}\\n' | wc -l").stdout
    proc = run("all", "--host", host.name, "--plan", "--diff", "--detailed-exitcode", check_rc=3)
    assert "planned" in proc.stdout and "build-essential" in proc.stdout
    assert ssh(host, "dpkg-query -W -f '${Package}\\n' | wc -l").stdout == before


def test_apply_then_second_run_changes_nothing(host, run):
    first = run("all", "--host", host.name)
    assert summary(first)[2] != "0" and summary(first)[3] == "0", first.stdout  # changed, failed
    second = run("all", "--host", host.name)
    assert summary(second)[2:4] == ["0", "0"], second.stdout
    run("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)
    out = ssh(host, "dpkg -s build-essential unattended-upgrades >/dev/null && echo ok").stdout
    assert out.strip() == "ok"
    assert ssh(host, "apt-get update -q").returncode == 0  # apt still reads every source


def test_verify_is_green_and_writes_junit(host, run, tmp_path):
    junit = tmp_path / "verify.xml"
    proc = run("verify", "--host", host.name, "--junitxml", str(junit))
    assert "0 failed, 0 error" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 10 and suite.get("failures") == "0"
    assert suite.get("errors") == "0"
    passed = [c.get("name") for c in suite if not len(c)]
    assert any("apt reads its sources" in name for name in passed), passed


def test_components_file_with_another_signed_by_is_seen_and_repaired(host, run):
    ssh(host, f"cat > {COMPONENTS} <<'EOF'\n{OLD_COMPONENTS}EOF")
    broken = ssh(host, "apt-get update -q 2>&1", check=False)
    assert "Conflicting values set for option Signed-By" in broken.stdout  # apt's own refusal
    proc = run("verify", "--host", host.name, "base", check_rc=1)
    assert "apt cannot read its sources" in proc.stdout and "Signed-By" in proc.stdout
    plan = run("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=3)
    assert COMPONENTS in plan.stdout and "base" in plan.stdout
    # With the GPU steps on, their plan reads apt without the refused file (what it will be
    # once base has moved it aside): it plans the rewrite naming the host's .pgp, not a failure.
    for steps in (["all"], ["cuda"]):
        gpu = run(*steps, "--host", host.name, *GPU_ON, "--plan", "--diff", "--detailed-exitcode",
                  check_rc=3)  # fmt: skip
        assert "apt cannot read its sources" not in gpu.stdout + gpu.stderr, gpu.stdout
        assert f"update {COMPONENTS}" in gpu.stdout, gpu.stdout  # it is there, refused
        assert "+Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp" in gpu.stdout
    assert ssh(host, f"grep -c keyring.gpg {COMPONENTS}").stdout.strip() == "1"  # plan: no change
    run("base", "--host", host.name)
    assert ssh(host, f"test -e {COMPONENTS}", check=False).returncode == 1
    assert ssh(host, "apt-get update -q").returncode == 0
    run("verify", "--host", host.name, "base")


def test_an_earlier_sshd_drop_in_is_seen_and_repaired(host, run):
    # A drop-in read before provision's 00-provision.conf wins (sshd keeps the first value).
    ssh(host, "printf 'X11Forwarding yes\\n' > /etc/ssh/sshd_config.d/0-drift.conf")
    ssh(host, "systemctl reload ssh")
    wait_for_ssh(host, 30)  # sshd re-executes on SIGHUP: a login at that moment is refused
    assert "x11forwarding yes" in ssh(host, "sshd -T").stdout
    run("verify", "--host", host.name, "ssh", check_rc=1)
    run("ssh", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=3)
    run("ssh", "--host", host.name)
    assert "x11forwarding no" in ssh(host, "sshd -T").stdout
    run("verify", "--host", host.name, "ssh")


def test_a_missing_unit_fails_verify_cleanly(host, run):
    # systemd 257: `systemctl is-enabled` of a unit that does not exist exits 4 ("not-found");
    # the check that asks fails with that state, it does not crash (0 error).
    state = ssh(host, "systemctl is-enabled provision-nosuch.service", check=False)
    assert (state.returncode, state.stdout.strip()) == (4, "not-found")
    proc = run(
        "verify", "--host", host.name, "autostart",
        "--set", "autostart.services=provision-nosuch.service", check_rc=1,
    )  # fmt: skip
    assert "provision-nosuch.service is not installed" in proc.stdout, proc.stdout
    assert " failed, 0 error" in proc.stdout  # a failed check, not a crashed one


def test_planned_components_file_names_the_hosts_signed_by_and_apt_accepts_it(host, run):
    # The GPU steps' components file, planned (not applied: the toolkit is gigabytes).
    proc = run(
        "cuda", "--host", host.name, "--set", "cuda.enabled=true", "--set", "cuda.source=distro",
        "--plan", "--diff", check_rc=None,
    )  # fmt: skip
    assert f"write {COMPONENTS}" in proc.stdout, proc.stdout + proc.stderr
    added = [line.strip()[1:] for line in proc.stdout.splitlines() if line.strip()[:1] == "+"]
    content = "\n".join(x for x in added if not x.startswith("++")) + "\n"
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp" in content
    assert "keyring.gpg" not in content
    # What provision would write, written by hand: apt 3.0 reads it with debian.sources.
    ssh(host, f"cat > {COMPONENTS} <<'EOF'\n{content}EOF")
    try:
        update = ssh(host, "apt-get update -q 2>&1", check=False)
        assert update.returncode == 0 and "Conflicting" not in update.stdout, update.stdout
        policy = ssh(host, "apt-cache policy | grep -c 'trixie/contrib'").stdout
        assert int(policy) >= 1
    finally:
        ssh(host, f"rm -f {COMPONENTS}", check=False)
