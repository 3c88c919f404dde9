"""autostart.check as a table: systemctl answers in, changes out. Every check runs on a strict
Context: a read autostart does not declare fails the test."""

import dataclasses
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision.errors import ProvisionError
from provision.facts import Package, parse_facts
from provision.steps import autostart
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
ALL_MASKED = "multi-user.target\n" + "".join(f"{u} masked\n" for u in autostart.SLEEP_TARGETS)


def check(remote, facts_file="debian-12-nspawn.txt", **settings):
    f = parse_facts((DATA / facts_file).read_text())
    s = autostart.Settings(ignore_lid=False, **settings)
    return autostart.check(declared.context(autostart.STEP, f, {"autostart": s}, remote))


def test_autostart_desktop_box_is_made_headless_and_sleepless():
    r = FakeRemote().on(
        r"get-default",
        "graphical.target\nsleep.target enabled\nsuspend.target static\nhibernate.target masked\nhybrid-sleep.target\n",
    )
    changes = check(r)
    assert [c.summary for c in changes] == [
        "boot to multi-user.target (was graphical.target)",
        "mask sleep.target, suspend.target, hybrid-sleep.target",
    ]
    assert (
        changes[1].actions[0].command
        == "systemctl mask -- sleep.target suspend.target hybrid-sleep.target"
    )


def test_autostart_converged_box_has_no_changes():
    assert check(FakeRemote().on(r"get-default", ALL_MASKED)) == []


def test_autostart_enables_and_starts_listed_services():
    r = FakeRemote().on(r"get-default", ALL_MASKED)
    r.on(
        r"systemctl show .*-- nvidia-persistenced", "UnitFileState=disabled\nActiveState=inactive\n"
    )
    changes = check(r, services=("nvidia-persistenced",))
    assert [c.summary for c in changes] == [
        "enable nvidia-persistenced at boot",
        "start nvidia-persistenced",
    ]


def test_autostart_refuses_wake_on_lan_in_a_container():
    with pytest.raises(ProvisionError, match="inside a container"):
        check(FakeRemote().on(r"get-default", ALL_MASKED), wake_on_lan_interface="eth0")


def test_autostart_wake_on_lan_on_a_real_box_prints_the_mac():
    r = FakeRemote().on(r"get-default", ALL_MASKED).on(r"stat -c", (1, ""))
    r.on(r"ethtool -- enp5s0", "Settings for enp5s0:\n\tSupports Wake-on: pumbg\n\tWake-on: d\n")
    changes = check(r, "ubuntu-22.04-gpu.txt", wake_on_lan_interface="enp5s0")
    summaries = [c.summary for c in changes]
    assert "wake-on-LAN on enp5s0 at every boot (MAC a8:a1:59:3c:11:02)" in summaries
    assert "enable wake-on-LAN on enp5s0 now (MAC a8:a1:59:3c:11:02)" in summaries
    link = next(c for c in changes if "every boot" in c.summary).actions[0].content.decode()
    assert "MACAddress=a8:a1:59:3c:11:02" in link and "WakeOnLan=magic" in link


def test_autostart_unknown_interface_names_the_ones_found():
    r = FakeRemote().on(r"get-default", ALL_MASKED)
    with pytest.raises(ProvisionError) as info:
        check(r, "ubuntu-22.04-gpu.txt", wake_on_lan_interface="eth9")
    assert "enp5s0" in info.value.hint


def every_setting(f):
    """Settings that take autostart down every branch that reads the host (wake-on-LAN on
    the recorded host's first NIC, where it is no container)."""
    nic = "" if f.in_container else next(n.name for n in f.nics if n.name != "lo")
    return autostart.Settings(services=("nvidia-persistenced",), wake_on_lan_interface=nic)


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_autostart_check_reads_only_what_it_declares_on_an_empty_host(facts_file):
    """Every declared read answers `absent` (exit 1, nothing): check plans everything and
    reads nothing it did not declare."""
    f = declared.recorded(facts_file)
    s = every_setting(f)
    changes = autostart.check(
        declared.answered(autostart.STEP, f, {"autostart": s}, declared.absent)
    )
    summaries = [c.summary for c in changes]
    assert summaries[:2] == [
        "mask sleep.target, suspend.target, hibernate.target, hybrid-sleep.target",
        "write /etc/systemd/logind.conf.d/provision.conf",
    ]
    assert "enable nvidia-persistenced at boot" in summaries
    assert any(x.startswith("enable wake-on-LAN") for x in summaries) == (not f.in_container)


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_autostart_check_reads_only_what_it_declares_on_a_converged_host(facts_file):
    """Everything as autostart leaves it: no changes, and every declared read looked at."""
    f = declared.recorded(facts_file)
    s = every_setting(f)
    logind = autostart.LOGIND_CONF
    r = FakeRemote().on(r"get-default", ALL_MASKED)
    r.on(
        rf"stat -c .*{logind}", f"644 root root\n{sha256(render('autostart/logind.conf.j2'))}  x\n"
    )
    r.on(r"systemctl show .*-- nvidia-persistenced", "UnitFileState=enabled\nActiveState=active\n")
    if s.wake_on_lan_interface:
        nic = next(n for n in f.nics if n.name == s.wake_on_lan_interface)
        link = render("autostart/wol.link.j2", interface=nic.name, mac=nic.mac)
        r.on(rf"stat -c .*{autostart.LINK}", f"644 root root\n{sha256(link)}  x\n")
        r.on(rf"ethtool -- {nic.name}", f"Settings for {nic.name}:\n\tWake-on: g\n")
        f = dataclasses.replace(f, packages={**f.packages, "ethtool": Package("1:6.1", "ii ")})
    changes = autostart.check(declared.context(autostart.STEP, f, {"autostart": s}, r))
    assert changes == []
    assert len(r.ran) == len(r.batches[0])
