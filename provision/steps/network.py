"""network: a static address through netplan, applied so that a mistake undoes itself.

Manages: `/etc/netplan/60-provision.yaml` (mode 0600): one interface (by name, or matched by
MAC), address/prefix, `routes: - to: default` (not the deprecated gateway4), DNS servers and
search domains, optional wake-on-LAN. Other netplan files that configure the same interface
are reported, never edited. Applied as a Guarded change: a timer on the host restores the
old file and re-applies unless a fresh login (at the new address when ours changes) works.
Refused inside a container, whose interfaces are the host's. Never reboots.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from provision import shell
from provision.changes import Change, Guarded, Upload
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.resources import file_read, packages, template_file
from provision.settings import (
    each,
    hostname,
    interface_name,
    ip_address,
    ip_interface,
    positive,
    setting,
)
from provision.step import Context, Step
from provision.wol import MAC_RE

NETPLAN = "/etc/netplan/60-provision.yaml"


def optional(check):
    return lambda value: value and check(value)


def mac_address(value: str) -> None:
    if value and (not MAC_RE.match(value) or ":" not in value):
        raise ValueError(f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")


@dataclass(frozen=True)
class Settings:
    """Settings of the network step (inventory keys `network.<field>`)."""

    interface: str = setting(
        "", "interface to give a static address (empty: leave the network)", interface_name
    )
    match_mac: str = setting("", "match the interface by this MAC instead of its name", mac_address)
    address: str = setting("", "address/prefix, e.g. 192.168.1.50/24", optional(ip_interface))
    gateway: str = setting("", "default gateway (inside the subnet)", optional(ip_address))
    dns: tuple[str, ...] = setting((), "DNS servers", each(ip_address))
    search: tuple[str, ...] = setting((), "DNS search domains", each(hostname))
    wakeonlan: bool = setting(False, "wake-on-LAN on this interface (netplan wakeonlan)")
    rollback_after_s: int = setting(120, "undo an unconfirmed change after this long", positive)

    def problems(self) -> list[tuple[str, str]]:
        """Rules between fields, as (field, message)."""
        if not self.interface:
            return []
        if not self.address:
            return [("interface", "network.address is needed too (e.g. 192.168.1.50/24)")]
        net = ipaddress.ip_interface(self.address).network
        if self.gateway and ipaddress.ip_address(self.gateway) not in net:
            return [("gateway", f"{self.gateway} is outside {net} (network.address)")]
        if (
            self.gateway
            and ipaddress.ip_address(self.gateway) == ipaddress.ip_interface(self.address).ip
        ):
            return [("gateway", "is the box's own address")]
        return []


def others_read(s: Settings) -> Read:
    """The other netplan files that name the interface (one path a line)."""
    grep = f"grep -l -- {shell.cmd(s.interface)} /etc/netplan/*.yaml 2>/dev/null"
    return Read(f"{grep} | grep -v -x -- {NETPLAN}; true", sudo=True)


def reads(ctx: Context) -> list[Read]:
    """Every read network's check makes, from the facts and settings alone. The other netplan
    files are read even when ours is right already (check only looks when it is not)."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    if not s.interface or f.in_container:
        return []  # check reads nothing: it has nothing to do, or refuses
    if not s.match_mac and not any(n.name == s.interface for n in f.nics):
        return []  # check refuses: no such interface
    return [file_read(ctx, NETPLAN), others_read(s)]


def check(ctx: Context) -> list[Change]:
    """What network would change on this host."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    if not s.interface:
        return []
    if f.in_container:
        raise ProvisionError(
            f"{ctx.host}: the network step does not run inside a container ({f.container})",
            "a container shares the interfaces of the machine it runs on; netplan would "
            "reconfigure that machine. Run it on the real box or a VM",
        )
    nic = next((n for n in f.nics if n.name == s.interface), None)
    if nic is None and not s.match_mac:
        raise ProvisionError(
            f"{ctx.host}: no network interface {s.interface!r}",
            "interfaces found: " + ", ".join(n.name for n in f.nics if n.name != "lo"),
        )
    changes = packages(ctx, ["netplan.io"])
    variables = {
        "id": f"provision-{s.interface}" if s.match_mac else s.interface,
        "interface": s.interface,
        "mac": s.match_mac,
        "address": s.address,
        "gateway": s.gateway,
        "dns": s.dns,
        "search": s.search,
        "wakeonlan": s.wakeonlan,
    }
    written = template_file(ctx, "network/60-provision.yaml.j2", NETPLAN, variables, mode="0600")
    if not written:
        return changes
    others = ctx.read(others_read(s).command, sudo=True).stdout.split()
    new_ip = str(ipaddress.ip_interface(s.address).ip)
    ours = nic is not None and any(a.split("/")[0] == ctx.address for a in nic.addresses)
    moving = ours and new_ip != ctx.address
    summary = f"give {s.interface} {s.address}" + (f" via {s.gateway}" if s.gateway else "")
    if others:
        summary += f" (note: {', '.join(others)} also configure {s.interface}; not edited)"
    if moving:
        summary += f"; the box moves to {new_ip}: set ansible_host={new_ip} in the inventory"
    uploads = tuple(a for c in written for a in c.actions if isinstance(a, Upload))
    guarded = Guarded(
        uploads=uploads,
        activate="netplan generate && netplan apply",
        # Never applied when the restored files do not generate (4: guard.RESTORE_INVALID).
        restore="if netplan generate; then netplan apply; else exit 4; fi",
        confirm_addr=new_ip if moving else None,
        rollback_after_s=s.rollback_after_s,
    )
    changes.append(Change(summary, (guarded,), written[0].diff))
    return changes


def verify_address(host, s: Settings) -> None:
    """the interface has the static address (and the default route)"""
    if not s.interface:
        raise Skip("no network.interface set")
    out = host.check_output(f"ip -o addr show dev {shell.cmd(s.interface)}")
    assert s.address in out.split(), f"{s.interface} lacks {s.address}: {out}"
    if s.gateway:
        route = host.check_output("ip route show default")
        assert f"via {s.gateway}" in route, f"default route: {route or 'none'}"
    f = host.file(NETPLAN)
    assert f.mode == 0o600, f"{NETPLAN} has mode {oct(f.mode)}, netplan wants 0600"
    assert f.user == "root", f"{NETPLAN} belongs to {f.user}, not root"


STEP = Step(
    name="network",
    summary="static address via netplan (routes: to default), self-rollback, wake-on-LAN",
    settings=Settings,
    check=check,
    reads=reads,
    verify=(verify_address,),
)
