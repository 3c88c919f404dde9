"""expose.method = wireguard brought up for real on the VM (its own kernel has the module).

Inside the VM the test creates a network namespace `wgpeer` joined to the box by a veth
pair and runs a WireGuard peer there (its key pair made here with X25519, the public half
given to provision as expose.peer_public_key). provision installs wireguard-tools, makes the
box's key pair on the box, writes wg0.conf and starts wg-quick@wg0; then the tunnel carries a
ping, verify sees the handshake, and the second run changes nothing.

Marked slow, so CI does not run it (it passed in 2 min 47 s under TCG on 2026-11-27):
`python3 -m pytest -m slow tests/vm/test_wireguard_on_vm.py`.
"""

from __future__ import annotations

import base64

import pytest
from common import ssh

pytestmark = [pytest.mark.vm, pytest.mark.slow]

PEER_SETUP = """
set -e
ip netns add wgpeer
ip link add veth-box type veth peer name veth-peer netns wgpeer
ip addr add 192.168.200.1/24 dev veth-box
ip link set veth-box up
ip netns exec wgpeer ip link set lo up
ip netns exec wgpeer ip addr add 192.168.200.2/24 dev veth-peer
ip netns exec wgpeer ip link set veth-peer up
"""


def key_pair() -> tuple[str, str]:
    """A WireGuard key pair (Curve25519, base64), as `wg genkey | wg pubkey` makes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    priv = private.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = private.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def test_wireguard_interface_comes_up_and_handshakes_with_a_peer(vm, provision):
    peer_private, peer_public = key_pair()
    ssh(vm, PEER_SETUP)
    settings = [
        "--set", "expose.method=wireguard",
        "--set", "expose.address=10.8.0.2/24",
        "--set", f"expose.peer_public_key={peer_public}",
        "--set", "expose.peer_endpoint=192.168.200.2:51820",
        "--set", "expose.peer_allowed_ips=10.8.0.0/24",
    ]  # fmt: skip
    first = provision("expose", "--host", vm.name, *settings, timeout_s=2400)
    assert "generate the WireGuard key pair" in first.stdout, first.stdout
    box_public = ssh(vm, "cat /etc/wireguard/public.key").stdout.strip()
    assert len(base64.b64decode(box_public)) == 32
    conf = ssh(vm, "stat -c '%a %U' /etc/wireguard/wg0.conf /etc/wireguard/private.key").stdout
    assert conf.split() == ["600", "root", "600", "root"], conf
    assert "PrivateKey" not in ssh(vm, "cat /etc/wireguard/wg0.conf").stdout
    ssh(
        vm,
        "set -e; umask 077; "
        f"echo '{peer_private}' > /root/peer.key\n"
        "ip netns exec wgpeer ip link add wg1 type wireguard\n"
        "ip netns exec wgpeer wg set wg1 private-key /root/peer.key listen-port 51820 "
        f"peer '{box_public}' allowed-ips 10.8.0.2/32\n"
        "ip netns exec wgpeer ip addr add 10.8.0.1/24 dev wg1\n"
        "ip netns exec wgpeer ip link set wg1 up",
    )
    ping = ssh(vm, "ping -c 3 -W 5 10.8.0.1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr  # through the tunnel
    shown = ssh(vm, "ip netns exec wgpeer wg show wg1 latest-handshakes").stdout.split()
    assert shown[0] == box_public and int(shown[1]) > 0, shown
    verify = provision("verify", "--host", vm.name, *settings, "expose")
    assert "wg0 is up" in verify.stdout and "1 passed" in verify.stdout, verify.stdout
    provision("expose", "--host", vm.name, *settings, "--plan", "--detailed-exitcode", check_rc=0)
