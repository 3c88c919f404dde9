"""Boxes on a LAN (tests/hosts/lan.py): two containers with a network of their own, 10.77.0.11
and .12 on one bridge, reached from here only through relays on 127.0.0.1; nothing of the LAN
in this machine's own namespace; apt through the LAN's (stand-in, forwarding) proxy.

What a Slurm cluster test needs from the harness: every box its own name, resolvable by the
others, and the same fixed ports on each box without collisions.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from common import ssh

from hostrun import provision_runner, require_lan_tier

pytestmark = pytest.mark.container
ADDRS = ("10.77.0.11", "10.77.0.12")


@pytest.fixture(scope="module")
def pair(require_tier):
    """(LAN name, [first host, second host]) on a fresh LAN; all taken down afterwards."""
    require_lan_tier(require_tier)
    import container
    import lan

    tag = uuid.uuid4().hex[:4]
    name = f"tl{tag}"
    hosts = []
    try:
        lan.create(name)
        for letter, addr in zip("ab", ADDRS, strict=True):
            hosts.append(container.up(f"c-{letter}-{tag}", lan=name, lan_addr=addr))
        yield name, hosts
    finally:
        for host in hosts:
            container.down(host.name)
        lan.destroy(name)


def test_each_box_has_its_name_and_resolves_the_other(pair):
    _lan, (a, b) = pair
    assert ssh(a, "hostname").stdout.strip() == a.name
    assert ssh(b, "hostname").stdout.strip() == b.name
    # b joined after a was running: a got b's line too.
    assert ssh(a, f"getent hosts {b.name}").stdout.split() == [ADDRS[1], b.name]
    assert ssh(b, f"getent hosts {a.name}").stdout.split() == [ADDRS[0], a.name]
    assert ssh(a, f"getent hosts {a.name}").stdout.split() == [ADDRS[0], a.name]
    # No DNS on the LAN, and a lookup says so at once (not after a resolver's timeouts).
    assert ssh(a, "getent hosts no-such-box", check=False, timeout=4).returncode == 2


def test_harness_reaches_sshd_on_port_22_through_the_relay(pair):
    _lan, (a, _b) = pair
    assert a.addr == "127.0.0.1" and a.port != 22
    assert ssh(a, "id -un", user="tester").stdout.strip() == "tester"
    listening = ssh(a, "ss -Htln 'sport = :22'").stdout
    assert f"{ADDRS[0]}:22" in listening
    assert f"ansible_host=127.0.0.1 ansible_port={a.port} " in a.inventory.read_text()
    assert "ssh.port=22\n" in a.inventory.read_text()
    assert a.known_hosts.read_text().startswith(f"[127.0.0.1]:{a.port} ")


def test_one_box_connects_to_the_other(pair):
    _lan, (a, b) = pair
    probe = f"import socket; print(socket.create_connection(('{b.name}', 22), 5).recv(64))"
    assert "SSH-2.0-OpenSSH" in ssh(a, f'python3 -c "{probe}"').stdout


def test_nothing_of_the_lan_is_in_the_root_namespace(pair):
    _lan, (a, b) = pair
    addrs = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "10.77." not in addrs
    import lan

    for host in (a, b):
        assert f" {lan.veth(host.name)}" not in links
    assert " host0" not in links
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    assert "10.77." not in routes


def test_apt_works_through_the_lan_proxy(pair):
    name, (_a, b) = pair
    import lan

    url = lan.info(name)["proxy"]
    assert url == "http://10.77.0.1:3142"
    assert f"base.apt_proxy={url}\n" in b.inventory.read_text()
    before = len(lan.requests(name))
    proc = ssh(b, f"apt-get -q -o Acquire::http::Proxy={url} update", timeout=300)
    assert "Reading package lists" in proc.stdout
    seen = lan.requests(name)[before:]
    assert any("deb.debian.org" in u and u.endswith("InRelease") for _m, u in seen), seen


def test_provision_ssh_keeps_sshd_reachable_on_the_lan(pair, tmp_path):
    _lan, (a, _b) = pair
    provision_runner(a, tmp_path / "logs")("ssh", "--host", a.name)
    assert ssh(a, "true", user="tester").returncode == 0
    assert "Port 22" in ssh(a, "cat /etc/ssh/sshd_config.d/00-provision.conf").stdout
