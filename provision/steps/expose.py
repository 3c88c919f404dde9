"""expose: reach a box behind NAT from outside, from the box's side.

`expose.method = "reverse-tunnel"` manages: a key pair generated on the box
(`/etc/provision/expose/id_ed25519`, 0600 root, never copied off it nor replaced), the relay's
host key in `/etc/provision/expose/known_hosts` (from `expose.relay_host_key`, else the laptop's
known_hosts for an inventory relay, else ssh-keyscan at apply time, which trusts the first key
seen), and `/etc/systemd/system/provision-expose.service`: `ssh -N -R` to the relay, bound to
the relay's loopback unless `expose.bind_public`, restarted forever, enabled at boot. The
relay must hold the box's public key, restricted to this one port forward:
`provision expose-relay` installs it (the step itself acts on the box only), or the line from
`authorized_line` goes into the relay user's authorized_keys by hand.

`expose.method = "wireguard"` manages wg0 to one peer, its key pair made on the box
(provision/wireguard.py). `method = "none"` (default): nothing. Never reboots.

Every read is declared (`reads`): each key pair is one read that stats it and returns its
public key (derived on the box when only the private key is there), so no private key is ever
read off the box; the relay's host key, the unit file and the service are the usual reads.
The relay side (provision/relay.py) acts on the relay host, as its own runner step.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from provision import keypair, resources, shell, wireguard
from provision import relay as relay_mod
from provision.changes import Change, Restart, Run
from provision.errors import Skip
from provision.facts.reads import Read
from provision.keypair import keep_private_key
from provision.relay import (
    RELAY_RE,
    Relay,
    authorize_on_relay,  # noqa: F401 (the relay side, kept reachable from the step)
    host_key_line,
    inventory_relay,
    known_hosts_content,
    laptop_host_key,
    listen_address,
    optional_tcp_port,
    relay_port_number,
    relay_spec,
    resolve_relay,
)
from provision.resources import file_content, packages, service, template_file
from provision.settings import each, one_of, setting, unix_name
from provision.step import Context, Step
from provision.unitstate import enabled_state, not_enabled_message
from provision.wireguard import (  # noqa: F401 (the paths, as the step's own)
    WG_CONF,
    WG_PRIVATE,
    WG_PUBLIC,
    WG_UNIT,
    endpoint,
    network,
    non_negative,
    verify_wireguard,
    wg_address,
    wg_key,
)

EXPOSE_DIR = "/etc/provision/expose"
KEY = f"{EXPOSE_DIR}/id_ed25519"
KNOWN_HOSTS = f"{EXPOSE_DIR}/known_hosts"
UNIT = "provision-expose.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"


@dataclass(frozen=True)
class Settings:
    """Settings of the expose step (inventory keys `expose.<field>`)."""

    method: str = setting(
        "none",
        "how the box is reached from outside: none, reverse-tunnel or wireguard",
        one_of("none", "reverse-tunnel", "wireguard"),
    )
    relay: str = setting(
        "", "reverse-tunnel: the relay, an inventory host or user@host[:port]", relay_spec
    )
    relay_user: str = setting(
        "",
        "reverse-tunnel: the relay account the tunnel logs in as (empty: from relay, or the "
        "inventory relay's ansible_user)",
        lambda v: v and unix_name(v),
    )
    relay_port: int = setting(
        0,
        "reverse-tunnel: the relay's sshd port (0: from relay, the inventory relay's "
        "ansible_port, else 22)",
        optional_tcp_port,
    )
    remote_port: int = setting(
        2222, "reverse-tunnel: the port on the relay that leads to this box", relay_port_number
    )
    bind_public: bool = setting(
        False,
        "reverse-tunnel: bind the relay port on every address (default: the relay's loopback; "
        "needs GatewayPorts clientspecified on the relay)",
    )
    relay_host_key: str = setting(
        "",
        "reverse-tunnel: the relay's host key 'TYPE BASE64' (empty: the laptop's known_hosts "
        "for an inventory relay, else ssh-keyscan, which trusts the first key seen)",
        host_key_line,
    )
    local_port: int = setting(
        0, "reverse-tunnel: this box's sshd port to expose (0: ssh.port)", optional_tcp_port
    )
    address: str = setting("", "wireguard: this box's address/prefix, e.g. 10.8.0.2/24", wg_address)
    listen_port: int = setting(0, "wireguard: UDP port to listen on (0: none)", non_negative)
    peer_public_key: str = setting("", "wireguard: the peer's public key", wg_key)
    peer_endpoint: str = setting("", "wireguard: the peer's host:port", endpoint)
    peer_allowed_ips: tuple[str, ...] = setting(
        (), "wireguard: networks routed to the peer, e.g. 10.8.0.0/24", each(network)
    )
    persistent_keepalive: int = setting(
        25, "wireguard: keepalive seconds through NAT (0: off)", non_negative
    )

    def problems(self) -> list[tuple[str, str]]:
        """Rules between fields, as (field, message)."""
        if self.method == "reverse-tunnel":
            if not self.relay:
                return [("method", "reverse-tunnel needs expose.relay (a host or user@host)")]
            m = RELAY_RE.match(self.relay)
            if m and m["port"] and self.relay_port and int(m["port"]) != self.relay_port:
                return [("relay_port", f"{self.relay_port} contradicts the port in {self.relay}")]
            if m and m["user"] and self.relay_user and m["user"] != self.relay_user:
                return [("relay_user", f"{self.relay_user} contradicts the user in {self.relay}")]
        if self.method == "wireguard":
            for name in ("address", "peer_public_key"):
                if not getattr(self, name):
                    return [("method", f"wireguard needs expose.{name}")]
            if not self.peer_allowed_ips:
                return [("method", "wireguard needs expose.peer_allowed_ips (e.g. 10.8.0.0/24)")]
        return []


# --- reads ----------------------------------------------------------------------------------


def tunnel_pair_read() -> Read:
    """The tunnel key pair: stat, and its public key (derived on the box when missing)."""
    derive = shell.cmd("ssh-keygen", "-y", "-P", "", "-f", KEY)
    return keypair.pair_read(KEY, f"{KEY}.pub", derive)


def known_host_read(relay: Relay) -> Read:
    """Whether the tunnel's known_hosts names the relay (what ssh-keyscan recorded)."""
    return Read(shell.cmd("ssh-keygen", "-F", relay.known_name, "-f", KNOWN_HOSTS), sudo=True)


def the_relay(ctx: Context, s: Settings) -> Relay:
    """The relay of this box: its inventory host (config attached it) or user@host[:port]."""
    return resolve_relay(s, inventory_relay(ctx.settings_by_key), ctx.host)


def reads(ctx: Context) -> list[Read]:
    """Every read check makes, from the settings alone."""
    s: Settings = ctx.settings(Settings)
    if s.method == "reverse-tunnel":
        found = [tunnel_pair_read(), resources.file_read(ctx, KNOWN_HOSTS)]
        if not s.relay_host_key.strip():  # the laptop's key, else what keyscan recorded
            found.append(known_host_read(the_relay(ctx, s)))
        return [*found, resources.file_read(ctx, UNIT_PATH), resources.service_read(UNIT)]
    if s.method == "wireguard":
        return wireguard.reads(ctx)
    return []


# --- check ------------------------------------------------------------------------------------


def keygen_argv(host: str) -> list[str]:
    """ssh-keygen's argv for the tunnel key (no passphrase: a service uses it)."""
    return [
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        KEY,
        "-C",
        f"provision-expose@{host}",
    ]


def tunnel_key_changes(ctx: Context) -> tuple[list[Change], str]:
    """The key pair (generated on the box when missing, its public half derived from the
    private key when only that is missing); returns (changes, public key or '')."""
    pair = keypair.state(ctx, tunnel_pair_read())
    if KEY not in pair.found:
        generate = shell.and_(
            shell.cmd("install", "-d", "-m", "0700", "-o", "root", "-g", "root", EXPOSE_DIR),
            keep_private_key(KEY),
            shell.cmd("rm", "-f", "--", f"{KEY}.pub"),
            shell.cmd(*keygen_argv(ctx.host)),
            shell.cmd("chmod", "0600", "--", KEY),
        )
        summary = (
            f"generate the tunnel key {KEY} on the box (its public key goes to the relay: "
            "`provision verify expose` shows the line)"
        )
        return [Change(summary, (Run(generate, description="ssh-keygen"), Restart(UNIT)))], ""
    changes = []
    if pair.public_missing(f"{KEY}.pub"):
        derive = shell.cmd("ssh-keygen", "-y", "-P", "", "-f", KEY)
        write = shell.and_(
            f"{derive} > {shell.cmd(KEY + '.pub.new')}",
            shell.cmd("chmod", "0644", "--", f"{KEY}.pub.new"),
            shell.cmd("mv", "-f", "--", f"{KEY}.pub.new", f"{KEY}.pub"),
        )
        summary = f"derive {KEY}.pub from the existing private key (which is kept)"
        changes.append(Change(summary, (Run(write, description="ssh-keygen -y"),)))
    if pair.found[KEY][:2] != ["600", "root"]:
        fix = shell.and_(
            shell.cmd("chown", "root:root", "--", KEY), shell.cmd("chmod", "0600", "--", KEY)
        )
        changes.append(Change(f"make {KEY} 0600 root", (Run(fix),)))
    return changes, pair.public


def relay_known_hosts_changes(ctx: Context, s: Settings, relay: Relay) -> list[Change]:
    """The relay's host key in the tunnel's known_hosts: pinned, from the laptop, or keyscan."""
    keys = s.relay_host_key.strip() or (laptop_host_key(relay) if relay.inventory_name else "")
    if keys:
        return file_content(
            ctx, KNOWN_HOSTS, known_hosts_content(relay, keys), mode="0644", restart=UNIT
        )
    found = ctx.read(known_host_read(relay).command, sudo=True)
    if found.ok and found.stdout.strip():
        return []
    tmp = f"{KNOWN_HOSTS}.scan"
    scan = shell.and_(
        shell.cmd("install", "-d", "-m", "0700", EXPOSE_DIR),
        shell.cmd("ssh-keyscan", "-T", "10", "-p", relay.port, "--", relay.addr)
        + f" > {shell.cmd(tmp)}",
        shell.cmd("test", "-s", tmp),
        shell.cmd("mv", "-f", "--", tmp, KNOWN_HOSTS),
    )
    summary = (
        f"record the relay's host key with ssh-keyscan {relay.known_name} (trusts the first key "
        "seen: set expose.relay_host_key to pin it)"
    )
    return [Change(summary, (Run(scan, timeout_s=60, description="ssh-keyscan"), Restart(UNIT)))]


def authorized_line(public_key: str, s: Settings) -> str:
    """The relay's authorized_keys line for this box's tunnel key (see relay.authorized_line)."""
    return relay_mod.authorized_line(public_key, s.remote_port, s.bind_public)


def reverse_tunnel_changes(ctx: Context, s: Settings) -> list[Change]:
    relay = the_relay(ctx, s)
    changes = packages(ctx, ["openssh-client"])
    key_changes, public = tunnel_key_changes(ctx)
    changes += key_changes
    changes += relay_known_hosts_changes(ctx, s, relay)
    variables = {
        "relay_target": relay.target,
        "relay_port": relay.port,
        "remote_port": s.remote_port,
        "listen": listen_address(s.bind_public),
        "local_port": s.local_port or ctx.of("ssh").port,
        "bind_public": s.bind_public,
        "known_hosts": KNOWN_HOSTS,
        "key": KEY,
    }
    unit = template_file(
        ctx, "expose/provision-expose.service.j2", UNIT_PATH, variables, restart=UNIT
    )
    if unit and public:
        # Say what the relay must hold whenever the tunnel changes.
        first = unit[0]
        line = authorized_line(public, s)
        unit[0] = Change(
            f"{first.summary} (the relay {relay.target} needs in authorized_keys: {line})",
            first.actions,
            first.diff,
        )
    changes += unit
    changes += service(ctx, UNIT)
    return changes


def check(ctx: Context) -> list[Change]:
    """What expose would change on this host."""
    s: Settings = ctx.settings(Settings)
    if s.method == "reverse-tunnel":
        return reverse_tunnel_changes(ctx, s)
    if s.method == "wireguard":
        return wireguard.changes(ctx, s)
    return []


# --- verify -----------------------------------------------------------------------------------


def _method(s: Settings, wanted: str) -> None:
    if s.method != wanted:
        raise Skip(f"expose.method is {s.method}")


def verify_tunnel_key(host, s: Settings) -> None:
    """the tunnel key is 0600 root, in a 0700 directory"""
    _method(s, "reverse-tunnel")
    key = host.file(KEY)
    assert key.exists, f"{KEY} is missing"
    assert key.mode == 0o600 and key.user == "root", f"{KEY} is {oct(key.mode)} {key.user}"
    folder = host.file(EXPOSE_DIR)
    assert folder.mode == 0o700, f"{EXPOSE_DIR} is {oct(folder.mode)}"


def verify_tunnel_up(host, s: Settings) -> None:
    """the tunnel service is enabled, running and connected to the relay"""
    _method(s, "reverse-tunnel")
    enabled, state = enabled_state(host, UNIT)
    assert enabled, not_enabled_message(UNIT, state)
    public = host.run(shell.cmd("cat", "--", f"{KEY}.pub")).stdout.strip()
    hint = f"; the relay {s.relay} needs in authorized_keys: {authorized_line(public, s)}"
    # The relay's port as the unit has it (an inventory relay's port is in the inventory,
    # which verify does not see).
    argv = host.run(shell.cmd("systemctl", "show", "-p", "ExecStart", "--value", UNIT)).stdout
    port = re.search(r" -p (\d+) ", argv)
    assert port, f"{UNIT} runs no ssh -p PORT: {argv.strip()[:200]}"
    # ExitOnForwardFailure: ssh only stays up once the relay granted the forward; up for 10 s
    # with a connection to the relay means the tunnel is there.
    deadline = time.monotonic() + 45
    while True:
        pid = host.run(shell.cmd("systemctl", "show", "-p", "MainPID", "--value", UNIT)).stdout
        pid = pid.strip()
        age = host.run(f"ps -o etimes= -p {shell.cmd(pid)}").stdout.strip() if pid != "0" else ""
        if age.isdigit() and int(age) >= 10:
            break
        assert time.monotonic() < deadline, f"{UNIT} does not stay connected{hint}"
        time.sleep(3)
    peers = host.run(f"ss -Htnp state established '( dport = :{port[1]} )'").stdout
    assert f"pid={pid}," in peers, f"{UNIT} (pid {pid}) has no connection to the relay{hint}"


STEP = Step(
    name="expose",
    summary="reach the box from outside: reverse SSH tunnel to a relay, or WireGuard",
    settings=Settings,
    check=check,
    reads=reads,
    verify=(verify_tunnel_key, verify_tunnel_up, verify_wireguard),
)
