"""autostart.check as a table: systemctl answers in, changes out."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.errors import ProvisionError
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import autostart

DATA = Path(__file__).parent.parent / "data" / "facts"
ALL_MASKED = "multi-user.target\n" + "".join(f"{u} masked\n" for u in autostart.SLEEP_TARGETS)


def check(remote, facts_file="debian-12-nspawn.txt", **settings):
    f = parse_facts((DATA / facts_file).read_text())
    s = autostart.Settings(ignore_lid=False, **settings)
    return autostart.check(
        Context("box", f, {"autostart": s}, lambda c, sudo: remote.probe(c, sudo=sudo))
    )


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
    f = parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text())
    r = FakeRemote().on(r"get-default", ALL_MASKED)
    s = autostart.Settings(ignore_lid=False, wake_on_lan_interface="eth9")
    with pytest.raises(ProvisionError) as info:
        autostart.check(
            Context(
                "box",
                dataclasses.replace(f),
                {"autostart": s},
                lambda c, sudo: r.probe(c, sudo=sudo),
            )
        )
    assert "enp5s0" in info.value.hint
