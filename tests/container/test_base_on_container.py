"""base over real SSH on a fresh Debian 12 container: plan, apply, idempotence, verify."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from common import SUDO_PASSWORD, ssh

from hostrun import reboot_boot_ids

pytestmark = pytest.mark.container

MIRROR = [
    "--set",
    "base.apt_mirror=http://deb.debian.org/debian",
    "--set",
    "base.apt_security_mirror=http://deb.debian.org/debian-security",
]


def test_plan_on_a_fresh_host_lists_changes_and_changes_nothing(container, provision):
    before = ssh(container, "dpkg-query -W -f '${Package}\\n' | wc -l").stdout
    proc = provision(
        "all", "--host", container.name, "--plan", "--diff", "--detailed-exitcode", check_rc=3
    )
    assert "planned" in proc.stdout
    assert "install" in proc.stdout and "build-essential" in proc.stdout
    assert '+    "nvidia-";' in proc.stdout  # the diff of the unattended-upgrades file
    assert ssh(container, "dpkg-query -W -f '${Package}\\n' | wc -l").stdout == before


def test_apply_then_second_run_changes_nothing(container, provision):
    first = provision("all", "--host", container.name)
    assert "changed" in first.stdout
    second = provision("all", "--host", container.name)
    assert "changed " not in second.stdout.split("host ")[0]
    summary = second.stdout.strip().splitlines()[-1].split()
    assert summary[2:4] == ["0", "0"], second.stdout  # changed, failed
    provision("all", "--host", container.name, "--plan", "--detailed-exitcode", check_rc=0)
    # The host really has what base promised.
    out = ssh(container, "dpkg -s build-essential unattended-upgrades >/dev/null && echo ok").stdout
    assert out.strip() == "ok"
    blocklist = ssh(container, "apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    assert '"nvidia-"' in blocklist and '"cuda-"' in blocklist


def test_verify_is_green_and_writes_junit(container, provision, tmp_path):
    junit = tmp_path / "verify.xml"
    proc = provision("verify", "--host", container.name, "--junitxml", str(junit))
    assert "0 failed" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 5 and suite.get("failures") == "0"
    skipped = [c for c in suite if c.find("skipped") is not None]
    assert any("container" in c.find("skipped").get("message") for c in skipped)


def test_mirror_setting_replaces_sources_and_converges(container, provision):
    provision("base", "--host", container.name, *MIRROR)
    sources = ssh(container, "cat /etc/apt/sources.list.d/provision.sources").stdout
    assert "URIs: http://deb.debian.org/debian\n" in sources
    assert ssh(container, "apt-get update -q").returncode == 0
    provision("base", "--host", container.name, *MIRROR, "--plan", "--detailed-exitcode")
    provision("verify", "--host", container.name, *MIRROR, "base")


def test_verify_fails_when_the_host_drifts(container, provision):
    ssh(container, "rm /etc/apt/apt.conf.d/51provision-unattended-upgrades")
    proc = provision("verify", "--host", container.name, check_rc=1)
    assert "failed" in proc.stdout and "nvidia-" in proc.stdout
    provision("base", "--host", container.name, "--plan", "--detailed-exitcode", check_rc=3)
    provision("base", "--host", container.name)
    provision("verify", "--host", container.name)


def test_sudo_password_is_used_but_never_shown(container, provision, tmp_path):
    inventory = tmp_path / "pw.ini"
    inventory.write_text(
        container.inventory.read_text().replace("ansible_user=tester", "ansible_user=pwtester")
    )
    refused = provision(
        "verify", "-i", str(inventory), "--host", container.name, "base", check_rc=1
    )
    assert "needs a password for sudo" in refused.stderr
    proc = provision(
        "verify",
        "-i",
        str(inventory),
        "--host",
        container.name,
        "base",
        "-vv",
        env={"PROVISION_SUDO_PASSWORD": SUDO_PASSWORD},
    )
    assert "0 failed" in proc.stdout
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "sudo " in logs  # the commands really went through sudo
    for text in (proc.stdout, proc.stderr, logs):
        assert SUDO_PASSWORD not in text
    journal = ssh(container, "journalctl --no-pager -q _COMM=sudo | tail -n 200").stdout
    assert "pwtester" in journal and SUDO_PASSWORD not in journal


def test_unknown_host_key_is_refused(container, provision, tmp_path):
    inventory = tmp_path / "strange.ini"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory.write_text(
        container.inventory.read_text().replace(str(container.known_hosts), str(empty))
    )
    proc = provision("facts", "-i", str(inventory), "--host", container.name, check_rc=1)
    assert "unknown host key" in proc.stderr and "ssh-keyscan" in proc.stderr
    accepted = provision(
        "facts", "-i", str(inventory), "--host", container.name, "--accept-new-host-key", "--json"
    )
    assert '"os": "debian-12"' in accepted.stdout
    assert f"[127.0.0.1]:{container.port}" in empty.read_text()


def test_reboot_waits_for_a_new_boot_id(container):
    before, after = reboot_boot_ids(container, timeout_s=120)
    assert before and after and before != after


def test_verify_checks_also_run_under_plain_pytest(container, provision):
    provision("all", "--host", container.name)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "infra",
            str(root / "tests" / "infra"),
            f"--hosts=paramiko://tester@127.0.0.1:{container.port}",
            f"--ssh-identity-file={container.key_file}",
            "--sudo",
            f"--provision-inventory={container.inventory}",
            f"--provision-host={container.name}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]  # "11 passed, 36 skipped, ... in 2.8s"
    assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"\b\d+ failed\b", summary)
