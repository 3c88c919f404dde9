"""expose.method = wireguard: a WireGuard interface wg0 to one peer, its key pair made on the box.

Manages wireguard-tools, a key pair generated on the box (`/etc/wireguard/private.key`, 0600;
the private key is set by PostUp and never leaves the box; an existing private key is never
replaced: a missing public key is derived from it), `/etc/wireguard/wg0.conf` (0600) and
`wg-quick@wg0` enabled at boot. Refused in a container, whose network is the machine's. The
expose step (provision/steps/expose.py) holds the settings and calls in here.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any

from provision import keypair, resources, shell
from provision.changes import Change, Restart, Run
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.keypair import keep_private_key
from provision.relay import tcp_port
from provision.resources import packages, service, template_file
from provision.settings import hostname
from provision.step import Context
from provision.unitstate import enabled_state, not_enabled_message

WG_DIR = "/etc/wireguard"
WG_CONF = f"{WG_DIR}/wg0.conf"
WG_PRIVATE = f"{WG_DIR}/private.key"
WG_PUBLIC = f"{WG_DIR}/public.key"
WG_UNIT = "wg-quick@wg0.service"
WG_DERIVE = f"wg pubkey < {shell.cmd(WG_PRIVATE)}"


# --- settings checks --------------------------------------------------------------------------


def wg_key(value: str) -> None:
    """A WireGuard public key: 32 bytes, base64."""
    if not value:
        return
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{value!r} is not a WireGuard key (44 characters of base64)")


def wg_address(value: str) -> None:
    """This box's address with its prefix length (empty: not set)."""
    if not value:
        return
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. {value}/24")
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address/prefix (e.g. 10.8.0.2/24)") from None


def network(value: str) -> None:
    """An address or network (AllowedIPs)."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network (e.g. 10.8.0.0/24)") from None


def endpoint(value: str) -> None:
    """The peer's host:port (empty: the peer connects to us)."""
    if not value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. vpn.example.org:51820)")
    tcp_port(int(port))
    hostname(host.strip("[]"))


def non_negative(value: int) -> None:
    """0-65535 (0: off)."""
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is out of range 0-65535")


# --- reads ------------------------------------------------------------------------------------


def pair_read() -> Read:
    """WireGuard's key pair: stat, and its public key (derived on the box when missing)."""
    return keypair.pair_read(WG_PRIVATE, WG_PUBLIC, WG_DERIVE)


def reads(ctx: Context) -> list[Read]:
    """Every read changes() makes (none in a container: it is refused there)."""
    if ctx.facts.in_container:
        return []
    return [pair_read(), resources.file_read(ctx, WG_CONF), resources.service_read(WG_UNIT)]


# --- check ------------------------------------------------------------------------------------


def key_changes(ctx: Context) -> tuple[list[Change], str]:
    """The key pair (generated on the box when missing, its public half derived from the
    private key when only that is missing): (changes, public key or '')."""
    pair = keypair.state(ctx, pair_read())
    if WG_PRIVATE not in pair.found:
        generate = shell.and_(
            shell.cmd("install", "-d", "-m", "0700", WG_DIR),
            keep_private_key(WG_PRIVATE),
            f"umask 077 && wg genkey > {shell.cmd(WG_PRIVATE + '.new')}",
            shell.cmd("mv", "-f", "--", WG_PRIVATE + ".new", WG_PRIVATE),
            f"{WG_DERIVE} > {shell.cmd(WG_PUBLIC)}",
            shell.cmd("chmod", "0644", "--", WG_PUBLIC),
        )
        summary = (
            f"generate the WireGuard key pair in {WG_DIR} on the box (the private key never "
            "leaves it; `provision verify expose` shows the public key)"
        )
        return [Change(summary, (Run(generate, description="wg genkey"), Restart(WG_UNIT)))], ""
    todo = []
    if pair.found[WG_PRIVATE][:2] != ["600", "root"]:
        fix = shell.and_(
            shell.cmd("chown", "root:root", "--", WG_PRIVATE),
            shell.cmd("chmod", "0600", "--", WG_PRIVATE),
        )
        todo.append(Change(f"make {WG_PRIVATE} 0600 root", (Run(fix), Restart(WG_UNIT))))
    if pair.public_missing(WG_PUBLIC):
        # wg0.conf names the private key only (PostUp): the public file is for people.
        write = shell.and_(
            f"{WG_DERIVE} > {shell.cmd(WG_PUBLIC + '.new')}",
            shell.cmd("chmod", "0644", "--", WG_PUBLIC + ".new"),
            shell.cmd("mv", "-f", "--", WG_PUBLIC + ".new", WG_PUBLIC),
        )
        summary = f"derive {WG_PUBLIC} from the existing private key (which is kept)"
        todo.append(Change(summary, (Run(write, description="wg pubkey"),)))
    return todo, pair.public


def changes(ctx: Context, s: Any) -> list[Change]:
    """What wireguard changes on the box for expose Settings `s`."""
    if ctx.facts.in_container:
        raise ProvisionError(
            f"{ctx.host}: expose.method = wireguard does not run inside a container "
            f"({ctx.facts.container})",
            "a container shares the network of the machine it runs on; wg-quick would add the "
            "interface there. Run it on the real box or a VM",
        )
    found = packages(ctx, ["wireguard-tools"])
    keys, public = key_changes(ctx)
    found += keys
    variables = {
        "address": s.address,
        "listen_port": s.listen_port,
        "private_key": WG_PRIVATE,
        "peer_public_key": s.peer_public_key,
        "peer_endpoint": s.peer_endpoint,
        "peer_allowed_ips": list(s.peer_allowed_ips),
        "persistent_keepalive": s.persistent_keepalive,
    }
    conf = template_file(
        ctx, "expose/wg0.conf.j2", WG_CONF, variables, mode="0600", restart=WG_UNIT
    )
    if conf and public:
        first = conf[0]
        conf[0] = Change(
            f"{first.summary} (this box's public key for the peer: {public})",
            first.actions,
            first.diff,
        )
    found += conf
    found += service(ctx, WG_UNIT)
    return found


# --- verify -----------------------------------------------------------------------------------


def verify_wireguard(host, s: Any) -> None:
    """wg0 is up, its files are 0600, and the peer answered a handshake lately"""
    if s.method != "wireguard":
        raise Skip(f"expose.method is {s.method}")
    for path in (WG_CONF, WG_PRIVATE):
        f = host.file(path)
        assert f.exists and f.mode == 0o600, f"{path} is missing or not 0600"
    enabled, state = enabled_state(host, WG_UNIT)  # a missing unit: exit 4 on systemd 257
    assert enabled, not_enabled_message(WG_UNIT, state)
    link = host.run("ip -o link show dev wg0")
    assert link.rc == 0 and ",UP" in link.stdout, "wg0 is not up"
    public = host.run(shell.cmd("cat", "--", WG_PUBLIC)).stdout.strip()
    shaken = host.run("wg show wg0 latest-handshakes").stdout.split()
    last = int(shaken[1]) if len(shaken) >= 2 and shaken[1].isdigit() else 0
    assert last, f"no handshake with the peer yet; its config needs this box's key {public}"
    age = int(host.run("date +%s").stdout.strip()) - last
    assert age < 180, f"the last handshake was {age}s ago (peer down?); this box's key {public}"
