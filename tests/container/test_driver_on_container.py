"""driver on a container, the every-CI-run form of the Debian non-free path: the components
enabled, the exact headless package set really installed from Debian's mirror, nouveau
blacklisted, packages held, nvidia-persistenced off (no GPU for it to serve); verify green with the kernel checks
skipped (a container runs the host's kernel: no DKMS build, initramfs or module load here;
the VM's slow test does those), and a second run changes nothing."""

from __future__ import annotations

import pytest
from common import ssh

from hostrun import booted, provision_runner

pytestmark = pytest.mark.container
DRIVER = {
    "driver.enabled": "true",
    "driver.require_gpu": "false",
    "driver.source": "debian",
}


@pytest.fixture(scope="module")
def host(require_tier):
    yield from booted("container", require_tier, extra_vars=DRIVER)


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


def test_plan_names_the_path_without_touching_the_host(host, provision):
    plan = provision("driver", "--host", host.name, "--plan", "--diff", check_rc=None)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    out = plan.stdout
    assert "write /etc/apt/sources.list.d/provision-components.sources" in out
    assert "Components: contrib non-free non-free-firmware" in out  # --diff shows the file
    assert "nvidia-kernel-dkms" in out and "nvidia-smi" in out and "libcuda1" in out
    assert "blacklist nouveau" in out  # --diff shows the file
    gone = ssh(host, "test -e /etc/modprobe.d/provision-blacklist-nouveau.conf", check=False)
    assert gone.returncode == 1


def test_driver_installs_holds_verifies_and_converges(host, provision):
    first = provision("driver", "--host", host.name)
    assert "driver" in first.stdout and "changed" in first.stdout
    held = ssh(host, "apt-mark showhold").stdout.split()
    for name in ("nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "nvidia-persistenced"):
        assert name in held, held
    assert ssh(host, "dpkg --audit").stdout.strip() == ""
    # no GPU here: the daemon could only fail (issue 13 §2), so it is off and not failed
    enabled = ssh(host, "systemctl is-enabled nvidia-persistenced", check=False).stdout.strip()
    assert enabled != "enabled", enabled
    assert ssh(host, "systemctl is-failed --quiet nvidia-persistenced", check=False).returncode
    second = provision("driver", "--host", host.name, "--plan", "--detailed-exitcode")
    assert "driver" in second.stdout
    verify = provision("verify", "--host", host.name, "driver", check_rc=None)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    out = verify.stdout
    assert "no NVIDIA GPU on this host" in out  # the module check is skipped, with its reason
    assert "kernel and its modules belong to the host" in out
    assert "the driver packages are installed and held" in out
