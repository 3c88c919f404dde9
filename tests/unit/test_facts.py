"""Fact parsers on recorded outputs of the gather script."""

from pathlib import Path

import pytest

from provision.errors import ProvisionError
from provision.facts import check_supported, parse_facts
from provision.facts import warnings as facts_warnings

DATA = Path(__file__).parent.parent / "data" / "facts"


def load(name):
    return parse_facts((DATA / name).read_text())


def test_facts_debian_12_machine():
    f = load("debian-12-docker.txt")
    assert (f.os_id, f.os_version, f.codename) == ("debian", "12", "bookworm")
    assert f.arch == "amd64"
    assert f.installed("dpkg") and f.installed("apt")
    assert f.sudo == "root" and f.uid == 0
    assert f.in_container and f.container == "docker"
    assert f.gpus == ()
    assert f.mem_total_kb > 1_000_000
    assert any(n.name == "lo" and "127.0.0.1/8" in n.addresses for n in f.nics)
    check_supported("h", f)


def test_facts_ubuntu_22_04_with_a_gpu():
    f = load("ubuntu-22.04-gpu.txt")
    assert f.os_key == "ubuntu-22.04" and f.codename == "jammy"
    assert [g.device_id for g in f.gpus] == ["1b06"]
    assert "GeForce GTX 1080 Ti" in f.gpus[0].name
    assert len(f.nvidia_pci) == 2  # the HDMI audio function is not a GPU
    assert f.nvidia_driver.startswith("NVRM version")
    assert f.packages["nvidia-driver-550-server"].held
    assert not f.installed("popularity-contest")  # "rc": removed, config files left
    assert f.secure_boot == "enabled"
    assert f.apt_cache_age_s == 3600
    root = next(d for d in f.disks if d.mountpoint == "/")
    assert not root.rotational
    assert next(d for d in f.disks if d.mountpoint == "/data").rotational
    assert not f.in_container


def test_facts_fresh_ubuntu_24_04():
    f = load("ubuntu-24.04-fresh.txt")
    assert f.os_key == "ubuntu-24.04"
    assert f.cloud_init == "running"
    assert f.apt_cache_age_s is None
    assert "half configured" in f.dpkg_audit
    assert f.sudo == "password"


def test_facts_unsupported_os_is_named():
    text = (DATA / "debian-12-docker.txt").read_text().replace('VERSION_ID="12"', 'VERSION_ID="11"')
    text = text.replace("Debian GNU/Linux 12 (bookworm)", "Debian GNU/Linux 11 (bullseye)")
    with pytest.raises(ProvisionError) as info:
        check_supported("oldbox", parse_facts(text))
    assert "Debian GNU/Linux 11 (bullseye) is not supported" in info.value.message


def test_facts_cut_short_is_an_error():
    with pytest.raises(ProvisionError):
        parse_facts("@@os-release\nID=debian\n")


# --- the clock: the host's against this machine's (issue 13 §8) ------------------------------


def test_clock_skew_from_the_recorded_now():
    text = (DATA / "debian-12-nspawn.txt").read_text()
    host_now = 1795716140  # the recorded `@@now` (date +%s on the host)
    behind = parse_facts(text, local_now=host_now + 3 * 86400 + 2 * 3600)
    assert behind.clock_skew_s == -(3 * 86400 + 2 * 3600)
    assert behind.summary()["clock_skew_s"] == -266400
    (warning,) = facts_warnings("box", behind)
    assert "the host's clock is 3d 2h behind this machine's" in warning
    assert "timedatectl set-ntp true" in warning and "not valid yet" in warning
    ahead = parse_facts(text, local_now=host_now - 600)
    assert "10min ahead of this machine's" in facts_warnings("box", ahead)[0]


def test_no_clock_warning_within_two_minutes_or_when_unknown():
    text = (DATA / "debian-12-nspawn.txt").read_text()
    assert facts_warnings("box", parse_facts(text, local_now=1795716140 + 90)) == []
    no_now = text.replace("@@now\n1795716140\n", "@@now\n\n")
    assert parse_facts(no_now, local_now=1795716140).clock_skew_s is None


# --- os-release against the package system (issue 13 §8) -------------------------------------

UBUNTU_2404_OS_RELEASE = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
"""


def with_os_release(name: str, os_release: str, base_files: str | None = None) -> str:
    """A recorded gather output with another /etc/os-release (and base-files version)."""
    text = (DATA / name).read_text()
    start = text.index("@@os-release\n") + len("@@os-release\n")
    text = text[:start] + os_release + text[text.index("@@kernel\n") :]
    if base_files is not None:
        text = text.replace("@@packages\n", f"@@packages\nbase-files\t{base_files}\tii \n", 1)
    return text


def test_debian_packages_under_an_ubuntu_os_release_are_refused_naming_both():
    # debian-12-nspawn.txt was recorded on Debian 12: base-files 12.4+deb12u15.
    f = parse_facts(with_os_release("debian-12-nspawn.txt", UBUNTU_2404_OS_RELEASE))
    assert f.os_key == "ubuntu-24.04"
    with pytest.raises(ProvisionError) as exc:
        check_supported("box", f)
    message = exc.value.message
    assert "/etc/os-release says Ubuntu 24.04.1 LTS (ID=ubuntu VERSION_ID=24.04)" in message
    assert "the package system is Debian 12 (base-files 12.4+deb12u15)" in message
    assert "--reinstall base-files" in exc.value.hint


@pytest.mark.parametrize(
    ("base_files", "os_release", "refused"),
    [
        ("13ubuntu10", UBUNTU_2404_OS_RELEASE, False),  # Ubuntu 24.04's own base-files
        ("12ubuntu4.6", UBUNTU_2404_OS_RELEASE, True),  # 22.04's packages, 24.04's os-release
        ("12.4+deb12u5", UBUNTU_2404_OS_RELEASE, True),
    ],
)
def test_base_files_versions_of_each_distribution(base_files, os_release, refused):
    f = parse_facts(with_os_release("ubuntu-24.04-fresh.txt", os_release, base_files))
    if refused:
        with pytest.raises(ProvisionError, match="the package system is"):
            check_supported("box", f)
    else:
        check_supported("box", f)


def test_debian_version_is_the_fallback_without_base_files():
    text = with_os_release("ubuntu-24.04-fresh.txt", UBUNTU_2404_OS_RELEASE)
    debian = text.replace("@@end", "@@debian-version\n12.8\n@@end")
    with pytest.raises(ProvisionError, match=r"Debian 12 \(/etc/debian_version 12.8\)"):
        check_supported("box", parse_facts(debian))
    ubuntu = text.replace("@@end", "@@debian-version\ntrixie/sid\n@@end")  # what Ubuntu has
    check_supported("box", parse_facts(ubuntu))


def test_every_recorded_host_is_consistent():
    for name in ("debian-12-docker.txt", "debian-12-nspawn.txt", "ubuntu-22.04-gpu.txt"):
        check_supported("box", load(name))
