"""Two VMs on one test LAN (tests/hosts/lan.py): beside its user-mode NIC (SSH through
127.0.0.1, the default route, apt) each has a tap on the LAN's bridge, and reaches the other
by name at its LAN address. What NFS between two VMs stands on. Two TCG boots side by side
(2-4 min): `slow` (not in CI):

    sudo tests/run -m slow tests/vm/test_lan_on_vm.py -s
"""

from __future__ import annotations

import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from common import ssh

from hostrun import missing_tools

pytestmark = [pytest.mark.vm, pytest.mark.slow]
ADDRS = ("10.77.0.21", "10.77.0.22")
USER_MODE_MAC = "52:54:00:12:34:56"  # vm.py's SSH NIC (slirp), the same on every VM


@pytest.fixture(scope="module")
def pair(require_tier):
    """(LAN name, [first VM, second VM]) on a fresh LAN, booted at once; all gone afterwards."""
    reason = missing_tools(
        ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "sfdisk", "mke2fs", "ssh", "ip"),
        "mmdebstrap qemu-system-x86 qemu-utils fdisk iproute2",
    )
    if reason:
        require_tier("vm", reason)
    import lan
    import vm

    tag = uuid.uuid4().hex[:4]
    name = f"vl{tag}"
    names = [f"v-{letter}-{tag}" for letter in "ab"]
    started = time.monotonic()
    try:
        lan.create(name)
        vm.build()  # once, before two boots want it
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(vm.up, n, lan=name, lan_addr=a, memory_mb=2048, boot_timeout_s=600)
                for n, a in zip(names, ADDRS, strict=True)
            ]
            hosts = [f.result() for f in futures]
        print(f"\n[lan VMs] both up in {time.monotonic() - started:.0f}s")
        yield name, hosts
    finally:
        for n in names:
            vm.down(n)
        lan.destroy(name)


def nic_of(host, mac: str) -> str:
    """The guest's interface with this MAC (names are the guest's business)."""
    out = ssh(host, f"grep -l '^{mac}$' /sys/class/net/*/address", user="tester").stdout
    return out.split("/")[-2]


def test_each_vm_has_its_name_and_resolves_the_other(pair):
    _lan, (a, b) = pair
    for me, addr, other, other_addr in ((a, ADDRS[0], b, ADDRS[1]), (b, ADDRS[1], a, ADDRS[0])):
        assert ssh(me, "hostname", user="tester").stdout.strip() == me.name
        assert ssh(me, f"getent hosts {other.name}").stdout.split() == [other_addr, other.name]
        assert ssh(me, f"getent hosts {me.name}").stdout.split() == [addr, me.name]
        assert "127.0.1.1" not in ssh(me, "cat /etc/hosts").stdout


def test_each_reaches_the_other_on_the_lan(pair):
    _lan, (a, b) = pair
    for me, other, other_addr in ((a, b, ADDRS[1]), (b, a, ADDRS[0])):
        assert ssh(me, f"ping -c1 -W5 {other.name}", timeout=30).returncode == 0
        banner = ssh(me, f"timeout 10 bash -c 'exec 3<>/dev/tcp/{other.name}/22; head -c7 <&3'")
        assert banner.stdout == "SSH-2.0"
        route = ssh(me, f"ip -o route get {other_addr}").stdout
        assert f" dev {me.extras['lan']['iface']} " in route, route


def test_the_lan_address_is_not_the_user_mode_one(pair):
    _lan, (a, _b) = pair
    lan_nic, slirp_nic = a.extras["lan"]["iface"], nic_of(a, USER_MODE_MAC)
    assert lan_nic == nic_of(a, a.extras["lan"]["mac"]) and lan_nic != slirp_nic
    assert f"inet {ADDRS[0]}/24 " in ssh(a, f"ip -o -4 addr show dev {lan_nic}").stdout
    slirp = ssh(a, f"ip -o -4 addr show dev {slirp_nic}").stdout
    assert "inet 10.0.2.15/" in slirp and ADDRS[0] not in slirp
    assert f" dev {slirp_nic} " in ssh(a, "ip -o route show default").stdout
    # The harness still reaches it as any VM: user-mode NIC, hostfwd on 127.0.0.1.
    assert f"ansible_host=127.0.0.1 ansible_port={a.port} " in a.inventory.read_text()


def test_nothing_of_the_lan_is_in_the_root_namespace(pair):
    name, (a, b) = pair
    import lan

    addrs = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "10.77." not in addrs
    bridged = subprocess.run(
        ["ip", "-n", lan.netns(name), "-o", "link", "show", "master", "br0"],
        capture_output=True,
        text=True,
    ).stdout
    for host in (a, b):
        assert f" {host.extras['lan']['tap']}" not in links
        assert f" {host.extras['lan']['tap']}:" in bridged
    assert sorted(lan._members(name)) == sorted(zip(ADDRS, (a.name, b.name), strict=True))


def test_a_vm_taken_down_leaves_the_lan(pair):
    name, (a, b) = pair
    import lan
    import vm

    vm.down(b.name)
    assert [h for _a, h in lan._members(name)] == [a.name]
    assert b.name not in ssh(a, "cat /etc/hosts").stdout
    links = subprocess.run(
        ["ip", "-n", lan.netns(name), "-o", "link", "show"], capture_output=True, text=True
    ).stdout
    assert b.extras["lan"]["tap"] not in links
