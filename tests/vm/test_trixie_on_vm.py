"""`provision all` on a Debian 13 (trixie) VM booted on trixie's own kernel through GRUB:
twice (the second run changes nothing), verify green, apt still reads every source, and
everything back after a reboot. GPU steps off, as for the Debian 12 VM (test_base_on_vm.py).
15-18 min under TCG with the image cached (the first `provision all` alone 11-13 min): `slow`
(not in CI):

    sudo tests/run -m slow tests/vm/test_trixie_on_vm.py -s
"""

from __future__ import annotations

import re
import time

import pytest
from common import ssh

from hostrun import booted, reboot_boot_ids

pytestmark = [pytest.mark.vm, pytest.mark.slow]
ARGS = [
    "--set",
    "ssh.ufw=true",
    "--set",
    "ssh.fail2ban=true",
    "--set",
    "autostart.services=ssh.service",
]
# Debian 13 ships Linux 6.12 LTS; its kernel ABI names read `6.12.<n>+deb13-<flavour>`
# (trixie's linux-image-amd64 6.12.118-1 depends on linux-image-6.12.118+deb13-amd64).
TRIXIE_KERNEL = re.compile(r"6\.12\.\d+\+deb13-amd64")
TIMES: dict[str, float] = {}  # what each stage cost under TCG, printed with -s


@pytest.fixture(scope="module")
def vm(require_tier):
    """A fresh trixie VM for this module (the conftest's `provision` runs against it)."""
    started = time.monotonic()
    gen = booted("vm", require_tier, release="trixie")
    host = next(gen)
    TIMES["build+boot"] = time.monotonic() - started
    yield host
    yield from gen
    print(f"\n[trixie VM] stage times (s): { {k: round(v) for k, v in TIMES.items()} }")


def counts(stdout: str) -> tuple[int, int]:
    """(changed, failed) from the summary table's last row."""
    row = stdout.strip().splitlines()[-1].split()
    return int(row[2]), int(row[3])


def passed(verify_stdout: str, check: str) -> bool:
    line = next(x for x in verify_stdout.splitlines() if check in x)
    return " passed " in line


def timed(stage: str, fn, *args, **kwargs):
    started = time.monotonic()
    try:
        return fn(*args, **kwargs)
    finally:
        TIMES[stage] = time.monotonic() - started


def test_the_vm_is_trixie_on_its_own_kernel(vm):
    release = ssh(vm, ". /etc/os-release; echo $VERSION_ID $VERSION_CODENAME").stdout.split()
    assert release == ["13", "trixie"]
    kernel = ssh(vm, "uname -r").stdout.strip()
    assert TRIXIE_KERNEL.fullmatch(kernel), kernel
    status = ssh(vm, f"dpkg-query -W -f '${{Status}}' linux-image-{kernel}").stdout
    assert status == "install ok installed"  # booted from the image's own package, via GRUB
    sources = ssh(vm, "cat /etc/apt/sources.list.d/debian.sources").stdout
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp" in sources


def test_all_twice_the_second_changes_nothing(vm, provision):
    first = timed("all (first)", provision, "all", "--host", vm.name, *ARGS)
    changed, failed = counts(first.stdout)
    assert changed > 0 and failed == 0, first.stdout
    kernel = ssh(vm, "uname -r").stdout.strip()
    assert f"linux-headers-{kernel}" in first.stdout
    # linux-headers-amd64 is the meta package that brings the next kernel's headers too.
    meta = ssh(vm, "dpkg-query -W -f '${Status}' linux-headers-amd64", check=False).stdout
    assert meta == "install ok installed", first.stdout
    second = timed("all (second)", provision, "all", "--host", vm.name, *ARGS)
    assert counts(second.stdout) == (0, 0), second.stdout
    provision("all", "--host", vm.name, *ARGS, "--plan", "--detailed-exitcode", check_rc=0)
    # apt still takes every source: no "Conflicting values set for option Signed-By" between
    # trixie's debian.sources and what provision wrote for the same URI and suite.
    update = ssh(vm, "sudo apt-get update -q 2>&1; echo rc=$?", timeout=900).stdout
    assert update.rstrip().endswith("rc=0") and "Signed-By" not in update, update
    assert ssh(vm, f"test -e /lib/modules/{kernel}/build/Makefile").returncode == 0


def test_verify_is_green(vm, provision):
    verify = timed("verify", provision, "verify", "--host", vm.name, *ARGS)
    assert "0 failed" in verify.stdout, verify.stdout
    for check in (
        "headers for the running kernel",
        "clock is kept in sync",
        "ufw is active and allows SSH",
        "TensorBoard answers HTTP",
    ):
        assert passed(verify.stdout, check), verify.stdout


def test_everything_is_back_after_a_reboot(vm, provision):
    kernel = ssh(vm, "uname -r").stdout.strip()
    before, after = timed("reboot", reboot_boot_ids, vm, timeout_s=600)
    assert before and after and before != after
    assert ssh(vm, "uname -r").stdout.strip() == kernel
    verify = timed("verify after reboot", provision, "verify", "--host", vm.name, *ARGS)
    assert "0 failed" in verify.stdout, verify.stdout
    for check in (
        "never sleeps",
        "services are enabled and running",
        "TensorBoard answers HTTP",
        "ufw is active",
    ):
        assert passed(verify.stdout, check), verify.stdout
