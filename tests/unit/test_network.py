"""network: settings rules with file:line, refusal in containers, the Guarded change. Every
check runs on a strict Context: a read network does not declare fails the test."""

import dataclasses
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision.changes import Guarded
from provision.config import load_hosts
from provision.errors import ConfigError, ProvisionError
from provision.facts import Package, parse_facts
from provision.inventory import parse
from provision.steps import network
from provision.templates import render, sha256

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
    return declared.context(network.STEP, f, {"network": s}, remote, address=address)


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
    f = dataclasses.replace(f, packages=pkgs)
    c = declared.context(network.STEP, f, {"network": s}, r, address="192.168.1.50")
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


def real_box(facts_file):
    """A recorded host that is no container, with netplan.io installed, and its first NIC."""
    f = declared.recorded(facts_file)
    pkgs = {**f.packages, "netplan.io": Package("1.0", "ii ")}
    return dataclasses.replace(f, packages=pkgs), next(n for n in f.nics if n.name != "lo")


REAL_BOXES = [name for name in declared.FACT_FILES if not declared.recorded(name).in_container]


@pytest.mark.parametrize("facts_file", REAL_BOXES)
def test_network_check_reads_only_what_it_declares_on_an_empty_host(facts_file):
    """Every declared read answers `absent` (exit 1, nothing): the file is written, guarded,
    and check reads nothing it did not declare."""
    f, nic = real_box(facts_file)
    s = network.Settings(interface=nic.name, address="10.9.8.7/24", gateway="10.9.8.1")
    c = declared.answered(network.STEP, f, {"network": s}, declared.absent, address="10.0.0.1")
    (change,) = network.check(c)
    assert change.summary == f"give {nic.name} 10.9.8.7/24 via 10.9.8.1"
    assert isinstance(change.actions[0], Guarded)


@pytest.mark.parametrize("facts_file", REAL_BOXES)
def test_network_check_reads_only_what_it_declares_on_a_converged_host(facts_file):
    """Our netplan file is right (root 0600): nothing to do, and nothing undeclared read."""
    f, nic = real_box(facts_file)
    s = network.Settings(interface=nic.name, match_mac=nic.mac, address="10.9.8.7/24")
    variables = dict(
        id=f"provision-{nic.name}", interface=nic.name, mac=nic.mac, address="10.9.8.7/24",
        gateway="", dns=(), search=(), wakeonlan=False,
    )  # fmt: skip
    digest = sha256(render("network/60-provision.yaml.j2", **variables))
    r = FakeRemote().on(rf"stat -c .*{network.NETPLAN}", f"600 root root\n{digest}  x\n")
    c = declared.context(network.STEP, f, {"network": s}, r, address="10.0.0.1")
    assert network.check(c) == []


def test_network_declares_nothing_where_check_reads_nothing():
    """No interface set, or a container (check refuses): no reads in the batch."""
    f = declared.recorded("debian-12-nspawn.txt")
    s = network.Settings(interface="eth0", address="10.0.0.2/24")
    assert declared.declared(network.STEP, f, {"network": s}) == []
    f = declared.recorded("ubuntu-22.04-gpu.txt")
    assert declared.declared(network.STEP, f, {"network": network.Settings()}) == []
