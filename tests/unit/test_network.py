"""network: settings rules with file:line, refusal in containers, the Guarded change."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Guarded
from provision.config import load_hosts
from provision.errors import ConfigError, ProvisionError
from provision.facts import parse_facts
from provision.inventory import parse
from provision.step import Context
from provision.steps import network

DATA = Path(__file__).parent.parent / "data" / "facts"


def hosts(line):
    return load_hosts(parse(f"[g]\nbox {line}\n", Path("inventory.ini")), ["box"])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("network.interface=enp5s0", "network.address is needed too"),
        ("network.interface=enp5s0 network.address=192.168.1.50", "needs a prefix length"),
        ("network.interface=enp5s0 network.address=192.168.1.300/24", "not an address/prefix"),
        (
            "network.interface=enp5s0 network.address=192.168.1.50/24 network.gateway=10.0.0.1",
            "outside 192.168.1.0/24",
        ),
        (
            "network.interface=enp5s0 network.address=192.168.1.50/24 network.gateway=192.168.1.50",
            "own address",
        ),
        ("network.interface='en p5s0'", "not a network interface name"),
        (
            "network.interface=enp5s0 network.address=10.0.0.2/8 network.dns=8.8.8.x",
            "not an IP address",
        ),
        ("network.match_mac=zz", "not a MAC address"),
    ],
)
def test_network_bad_settings_name_the_line(line, words):
    with pytest.raises(ConfigError) as info:
        hosts(line)
    assert info.value.message.startswith("inventory.ini:2: ") and words in info.value.message


def ctx(facts_file, remote, address="192.168.1.50", **settings):
    f = parse_facts((DATA / facts_file).read_text())
    s = network.Settings(**settings)
    return Context(
        "box", f, {"network": s}, lambda c, sudo: remote.probe(c, sudo=sudo), address=address
    )


def test_network_refuses_to_run_in_a_container():
    c = ctx("debian-12-nspawn.txt", FakeRemote(), interface="eth0", address="10.0.0.2/24")
    with pytest.raises(ProvisionError, match="inside a container"):
        network.check(c)


def test_network_moving_the_management_address_is_guarded_and_confirmed_at_the_new_one():
    r = FakeRemote().on(r"stat -c", (1, "")).on(r"grep -l", "/etc/netplan/50-cloud-init.yaml\n")
    f = parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text())
    pkgs = dict(f.packages)
    pkgs["netplan.io"] = dataclasses.replace(next(iter(pkgs.values())), status="ii ")
    s = network.Settings(
        interface="enp5s0", address="192.168.1.60/24", gateway="192.168.1.1", dns=("192.168.1.1",)
    )
    c = Context(
        "box",
        dataclasses.replace(f, packages=pkgs),
        {"network": s},
        lambda cmd, sudo: r.probe(cmd, sudo=sudo),
        address="192.168.1.50",
    )
    (change,) = network.check(c)
    assert "give enp5s0 192.168.1.60/24 via 192.168.1.1" in change.summary
    assert "50-cloud-init.yaml also configure enp5s0; not edited" in change.summary
    assert "set ansible_host=192.168.1.60" in change.summary
    (g,) = change.actions
    assert isinstance(g, Guarded) and g.confirm_addr == "192.168.1.60" and g.rollback_after_s == 120
    upload = g.uploads[0]
    assert (upload.dest, upload.mode) == ("/etc/netplan/60-provision.yaml", "0600")
    text = upload.content.decode()
    assert (
        "routes:\n        - to: default\n          via: 192.168.1.1" in text
        and "gateway4" not in text
    )
