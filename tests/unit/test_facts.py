"""Fact parsers on recorded outputs of the gather script."""

from pathlib import Path

import pytest

from provision.errors import ProvisionError
from provision.facts import check_supported, parse_facts

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
