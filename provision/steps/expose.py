"""expose: reach a box behind NAT from outside, from the box's side.

`expose.method = "reverse-tunnel"` manages: a key pair generated on the box
(`/etc/provision/expose/id_ed25519`, 0600 root, never copied off it nor replaced), the relay's
host key in `/etc/provision/expose/known_hosts` (from `expose.relay_host_key`, else the laptop's
known_hosts for an inventory relay, else ssh-keyscan at apply time, which trusts the first key
seen), and `/etc/systemd/system/provision-expose.service`: `ssh -N -R` to the relay, bound to
the relay's loopback unless `expose.bind_public`, restarted forever, enabled at boot. The
relay must hold the box's public key, restricted to this one port forward:
`authorize_on_relay` installs it (the step itself acts on the box only), or the line from
`authorized_line` goes into the relay user's authorized_keys by hand.

`expose.method = "wireguard"` manages: wireguard-tools, a key pair generated on the box
(`/etc/wireguard/private.key`, 0600; the private key is set by PostUp and never leaves the
box; an existing private key is never replaced: a missing public key is derived from it),
`/etc/wireguard/wg0.conf` (0600) and `wg-quick@wg0` enabled at boot. Refused in a
container, whose network is the machine's. `method = "none"` (default): nothing. Never reboots.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision import shell
from provision.changes import Change, Restart, Run, Upload
from provision.errors import ConfigError, ProvisionError, Skip
from provision.hostkeys import known_name
from provision.resources import file_content, packages, service, template_file
from provision.settings import each, hostname, one_of, setting, unix_name
from provision.step import Context, Step
from provision.steps import ssh

EXPOSE_DIR = "/etc/provision/expose"
KEY = f"{EXPOSE_DIR}/id_ed25519"
KNOWN_HOSTS = f"{EXPOSE_DIR}/known_hosts"
UNIT = "provision-expose.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
WG_DIR = "/etc/wireguard"
WG_CONF = f"{WG_DIR}/wg0.conf"
WG_PRIVATE = f"{WG_DIR}/private.key"
WG_PUBLIC = f"{WG_DIR}/public.key"
WG_UNIT = "wg-quick@wg0.service"
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$")
RELAY_RE = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+)(?::(?P<port>\d+))?$"
)


def tcp_port(value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{value} is out of range 1-65535")


def optional_tcp_port(value: int) -> None:
    if value:
        tcp_port(value)


def relay_port_number(value: int) -> None:
    if not 1024 <= value < 65536:
        raise ValueError(f"{value} is not an unprivileged TCP port (1024-65535) for the relay")


def relay_spec(value: str) -> None:
    """An inventory host name or [user@]host[:port]."""
    if not value:
        return
    m = RELAY_RE.match(value)
    if not m or value.startswith("-"):
        raise ValueError(f"{value!r} is not an inventory host or user@host[:port]")
    if m["user"]:
        unix_name(m["user"])
    hostname(m["host"].strip("[]"))
    if m["port"]:
        tcp_port(int(m["port"]))


def host_key_line(value: str) -> None:
    if value and not HOST_KEY_RE.match(value.strip()):
        raise ValueError(f"{value!r} is not a host key 'TYPE BASE64' (e.g. ssh-ed25519 AAAA...)")


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
    if not value:
        return
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. {value}/24")
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address/prefix (e.g. 10.8.0.2/24)") from None


def network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network (e.g. 10.8.0.0/24)") from None


def endpoint(value: str) -> None:
    if not value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. vpn.example.org:51820)")
    tcp_port(int(port))
    hostname(host.strip("[]"))


def non_negative(value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is out of range 0-65535")


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


# --- the relay ------------------------------------------------------------------------------

# Set by the CLI once it has read the inventory: an inventory host name -> its HostConfig
# (None for a name the inventory does not have). Without it, `relay` is an address.
_inventory_lookup: Callable[[str], Any] | None = None


def use_inventory(lookup: Callable[[str], Any] | None) -> None:
    """Let the step resolve `expose.relay` names through the inventory."""
    global _inventory_lookup
    _inventory_lookup = lookup


def inventory_relay(s: Settings) -> Any | None:
    """The relay's HostConfig when it is an inventory host (and the CLI gave us the inventory)."""
    return _inventory_lookup(s.relay) if _inventory_lookup and s.relay else None


@dataclass(frozen=True)
class Relay:
    """Where the tunnel goes."""

    addr: str
    port: int
    user: str
    inventory_name: str = ""  # set when the relay is an inventory host
    known_hosts: str = ""  # the laptop's known_hosts file for an inventory relay

    @property
    def target(self) -> str:
        return f"{self.user}@{self.addr}"

    @property
    def known_name(self) -> str:
        return known_name(self.addr, self.port)


def resolve_relay(s: Settings, host: str = "") -> Relay:
    """The relay of the settings: an inventory host (when the CLI gave us the inventory) or
    user@host[:port]; a ProvisionError when the account or address is missing."""
    config = inventory_relay(s)
    if config is not None:
        c = config.connection
        user = s.relay_user or c.user or ""
        relay = Relay(c.addr, s.relay_port or c.port, user, config.name, c.known_hosts or "")
    else:
        m = RELAY_RE.match(s.relay)
        if not m:
            raise ConfigError(f"expose.relay: {s.relay!r} is not user@host[:port]")
        port = int(m["port"]) if m["port"] else s.relay_port or 22
        relay = Relay(m["host"].strip("[]"), port, m["user"] or s.relay_user)
    if not relay.user:
        raise ConfigError(
            f"{host}: expose.relay {s.relay!r} names no account on the relay",
            "set expose.relay_user, or write the relay as user@host",
        )
    return relay


def listen_address(s: Settings) -> str:
    return "0.0.0.0" if s.bind_public else "127.0.0.1"


def authorized_line(public_key: str, s: Settings) -> str:
    """The relay's authorized_keys line for the box's tunnel key: this one port forward, no
    shell, no pty, no agent or X11 forwarding, no other port. `port-forwarding` re-enables
    local forwards (-L, -W) too, so permitopen limits those to the tunnel's own port: a key
    stolen from the box cannot use the relay as a proxy to anything else."""
    port = s.remote_port
    options = (
        f'restrict,port-forwarding,permitlisten="{listen_address(s)}:{port}",'
        f'permitopen="127.0.0.1:{port}",command="/bin/false"'
    )
    return f"{options} {public_key.strip()}"


def laptop_host_key(relay: Relay) -> str:
    """The relay's host keys from the laptop's known_hosts file ('' when it has none)."""
    path = Path(relay.known_hosts or "~/.ssh/known_hosts").expanduser()
    if not path.is_file():
        return ""
    try:
        found = subprocess.run(
            ["ssh-keygen", "-F", relay.known_name, "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:  # no OpenSSH client here: fall back to ssh-keyscan on the box
        return ""
    keys = []
    for line in found.stdout.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 3 or fields[0].startswith("@"):
            continue
        keys.append(f"{fields[1]} {fields[2]}")
    return "\n".join(keys)


def known_hosts_content(relay: Relay, keys: str) -> bytes:
    return "".join(f"{relay.known_name} {k.strip()}\n" for k in keys.splitlines() if k).encode()


# --- check ------------------------------------------------------------------------------------


def keygen_argv(host: str) -> list[str]:
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


def key_pair_state(ctx: Context, private: str, public: str) -> dict[str, list[str]]:
    """The files of a key pair that exist: path -> [mode, owner, size], from one `stat`."""
    probe = ctx.probe(shell.cmd("stat", "-c", "%a %U %s %n", "--", private, public), sudo=True)
    found = {}
    for line in probe.stdout.splitlines():
        fields = line.split(" ", 3)
        if len(fields) == 4:
            found[fields[3]] = fields[:3]
    return found


def keep_private_key(path: str) -> str:
    """A guard for key generation: refuses (exit 1, with why) when the private key exists, so
    that no run, however stale its plan, ever replaces it."""
    why = shell.cmd("echo", f"{path} exists: provision never replaces a private key")
    return f"{{ {shell.cmd('test', '!', '-e', path)} || {{ {why} >&2; false; }}; }}"


def derived_public_key(ctx: Context, derive: str) -> str:
    """The public key computed on the box from its private key ('' when that cannot run yet,
    e.g. before the tool is installed); the private key itself never leaves the box."""
    probe = ctx.probe(derive, sudo=True)
    return probe.stdout.strip() if probe.ok else ""


def tunnel_key_changes(ctx: Context) -> tuple[list[Change], str]:
    """The key pair (generated on the box when missing, its public half derived from the
    private key when only that is missing); returns (changes, public key or '')."""
    state = key_pair_state(ctx, KEY, f"{KEY}.pub")
    if KEY not in state:
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
    public_state = state.get(f"{KEY}.pub")
    if public_state is None or public_state[2] == "0":
        derive = shell.cmd("ssh-keygen", "-y", "-P", "", "-f", KEY)
        write = shell.and_(
            f"{derive} > {shell.cmd(KEY + '.pub.new')}",
            shell.cmd("chmod", "0644", "--", f"{KEY}.pub.new"),
            shell.cmd("mv", "-f", "--", f"{KEY}.pub.new", f"{KEY}.pub"),
        )
        summary = f"derive {KEY}.pub from the existing private key (which is kept)"
        changes.append(Change(summary, (Run(write, description="ssh-keygen -y"),)))
        public = derived_public_key(ctx, derive)
    else:
        public = ctx.probe(shell.cmd("cat", "--", f"{KEY}.pub"), sudo=True).stdout.strip()
    if state[KEY][:2] != ["600", "root"]:
        fix = shell.and_(
            shell.cmd("chown", "root:root", "--", KEY), shell.cmd("chmod", "0600", "--", KEY)
        )
        changes.append(Change(f"make {KEY} 0600 root", (Run(fix),)))
    return changes, public


def relay_known_hosts_changes(ctx: Context, s: Settings, relay: Relay) -> list[Change]:
    """The relay's host key in the tunnel's known_hosts: pinned, from the laptop, or keyscan."""
    keys = s.relay_host_key.strip() or (laptop_host_key(relay) if relay.inventory_name else "")
    if keys:
        return file_content(
            ctx, KNOWN_HOSTS, known_hosts_content(relay, keys), mode="0644", restart=UNIT
        )
    found = ctx.probe(shell.cmd("ssh-keygen", "-F", relay.known_name, "-f", KNOWN_HOSTS), sudo=True)
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


def reverse_tunnel_changes(ctx: Context, s: Settings) -> list[Change]:
    relay = resolve_relay(s, ctx.host)
    changes = packages(ctx, ["openssh-client"])
    key_changes, public = tunnel_key_changes(ctx)
    changes += key_changes
    changes += relay_known_hosts_changes(ctx, s, relay)
    variables = {
        "relay_target": relay.target,
        "relay_port": relay.port,
        "remote_port": s.remote_port,
        "listen": listen_address(s),
        "local_port": s.local_port or ctx.settings(ssh.Settings).port,
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


def wireguard_changes(ctx: Context, s: Settings) -> list[Change]:
    if ctx.facts.in_container:
        raise ProvisionError(
            f"{ctx.host}: expose.method = wireguard does not run inside a container "
            f"({ctx.facts.container})",
            "a container shares the network of the machine it runs on; wg-quick would add the "
            "interface there. Run it on the real box or a VM",
        )
    changes = packages(ctx, ["wireguard-tools"])
    state = key_pair_state(ctx, WG_PRIVATE, WG_PUBLIC)
    derive = f"wg pubkey < {shell.cmd(WG_PRIVATE)}"
    if WG_PRIVATE not in state:
        generate = shell.and_(
            shell.cmd("install", "-d", "-m", "0700", WG_DIR),
            keep_private_key(WG_PRIVATE),
            f"umask 077 && wg genkey > {shell.cmd(WG_PRIVATE + '.new')}",
            shell.cmd("mv", "-f", "--", WG_PRIVATE + ".new", WG_PRIVATE),
            f"{derive} > {shell.cmd(WG_PUBLIC)}",
            shell.cmd("chmod", "0644", "--", WG_PUBLIC),
        )
        summary = (
            f"generate the WireGuard key pair in {WG_DIR} on the box (the private key never "
            "leaves it; `provision verify expose` shows the public key)"
        )
        changes.append(Change(summary, (Run(generate, description="wg genkey"), Restart(WG_UNIT))))
        public = ""
    else:
        if state[WG_PRIVATE][:2] != ["600", "root"]:
            fix = shell.and_(
                shell.cmd("chown", "root:root", "--", WG_PRIVATE),
                shell.cmd("chmod", "0600", "--", WG_PRIVATE),
            )
            changes.append(Change(f"make {WG_PRIVATE} 0600 root", (Run(fix), Restart(WG_UNIT))))
        public_state = state.get(WG_PUBLIC)
        if public_state is None or public_state[2] == "0":
            # wg0.conf names the private key only (PostUp): the public file is for people.
            write = shell.and_(
                f"{derive} > {shell.cmd(WG_PUBLIC + '.new')}",
                shell.cmd("chmod", "0644", "--", WG_PUBLIC + ".new"),
                shell.cmd("mv", "-f", "--", WG_PUBLIC + ".new", WG_PUBLIC),
            )
            summary = f"derive {WG_PUBLIC} from the existing private key (which is kept)"
            changes.append(Change(summary, (Run(write, description="wg pubkey"),)))
            public = derived_public_key(ctx, derive)
        else:
            public = ctx.probe(shell.cmd("cat", "--", WG_PUBLIC), sudo=True).stdout.strip()
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
    changes += conf
    changes += service(ctx, WG_UNIT)
    return changes


def check(ctx: Context) -> list[Change]:
    """What expose would change on this host."""
    s: Settings = ctx.settings(Settings)
    if s.method == "reverse-tunnel":
        return reverse_tunnel_changes(ctx, s)
    if s.method == "wireguard":
        return wireguard_changes(ctx, s)
    return []


# --- the relay side: run from the laptop, with a connection to each host ---------------------


def authorize_on_relay(box, relay_config, connect=None) -> tuple[bool, str]:
    """Put the box's tunnel key into the relay user's authorized_keys, restricted to the one
    port forward; returns (changed, the line). `box` and `relay_config` are HostConfigs.

    Reads the public key from the box (it must have run the expose step), then writes
    ~USER/.ssh/authorized_keys on the relay atomically, replacing an older line for the same
    key. bind_public also needs `GatewayPorts clientspecified` for that user on the relay:
    checked with `sshd -T`, reported, never edited (sshd on someone's VPS is theirs)."""
    from provision.remote import connect as default_connect

    connect = connect or default_connect
    s: Settings = box.settings["expose"]
    if s.method != "reverse-tunnel":
        raise ConfigError(f"{box.name}: expose.method is {s.method}, not reverse-tunnel")
    relay = resolve_relay(s, box.name)
    remote = connect(box.connection)
    try:
        read = remote.probe(shell.cmd("cat", "--", f"{KEY}.pub"), sudo=True)
    finally:
        remote.close()
    public = read.stdout.strip()
    if not read.ok or not public.startswith("ssh-ed25519 "):
        raise ProvisionError(
            f"{box.name}: no tunnel key {KEY}.pub yet",
            f"run `provision expose --host {box.name}` first",
        )
    line = authorized_line(public, s)
    blob = public.split()[1]
    remote = connect(relay_config.connection)
    try:
        fields = remote.probe(shell.cmd("getent", "passwd", relay.user)).stdout.strip().split(":")
        if len(fields) < 7:
            raise ProvisionError(
                f"{relay_config.name}: no account {relay.user!r} for the tunnel",
                "create it on the relay (any account; the key can only forward one port)",
            )
        group = remote.probe(shell.cmd("id", "-gn", relay.user)).stdout.strip() or relay.user
        path = f"{fields[5]}/.ssh/authorized_keys"
        old = remote.probe(shell.cmd("cat", "--", path), sudo=True).stdout
        kept = [x for x in old.splitlines() if blob not in x.split()]
        new = "\n".join([*kept, line]) + "\n"
        changed = new != old
        if changed:
            dot_ssh = f"{fields[5]}/.ssh"
            mkdir = shell.cmd("install", "-d", "-m", "0700", "-o", relay.user, "-g", group, dot_ssh)
            remote.run(f"test -d {shell.cmd(dot_ssh)} || {mkdir}")
            remote.put_atomic(Upload(path, new.encode(), "0600", relay.user, group))
        if s.bind_public:
            query = shell.cmd("sshd", "-T", "-C", f"user={relay.user},host=box,addr=127.0.0.1")
            gateway = remote.probe(query, sudo=True).stdout
            if "gatewayports clientspecified" not in gateway.lower():
                raise ProvisionError(
                    f"{relay_config.name}: expose.bind_public needs GatewayPorts clientspecified "
                    f"for {relay.user} in the relay's sshd_config (the key is installed)",
                    f"add `Match User {relay.user}` + `GatewayPorts clientspecified` at the END "
                    "of /etc/ssh/sshd_config on the relay, then `systemctl reload ssh`",
                )
    finally:
        remote.close()
    return changed, line


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
    relay = resolve_relay(s)
    svc = host.service(UNIT)
    assert svc.is_enabled, f"{UNIT} is not enabled at boot"
    public = host.run(shell.cmd("cat", "--", f"{KEY}.pub")).stdout.strip()
    hint = f"; the relay {relay.target} needs in authorized_keys: {authorized_line(public, s)}"
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
    peers = host.run(f"ss -Htnp state established '( dport = :{relay.port} )'").stdout
    assert f"pid={pid}," in peers, f"{UNIT} (pid {pid}) has no connection to the relay{hint}"


def verify_wireguard(host, s: Settings) -> None:
    """wg0 is up, its files are 0600, and the peer answered a handshake lately"""
    _method(s, "wireguard")
    for path in (WG_CONF, WG_PRIVATE):
        f = host.file(path)
        assert f.exists and f.mode == 0o600, f"{path} is missing or not 0600"
    assert host.service(WG_UNIT).is_enabled, f"{WG_UNIT} is not enabled at boot"
    link = host.run("ip -o link show dev wg0")
    assert link.rc == 0 and ",UP" in link.stdout, "wg0 is not up"
    public = host.run(shell.cmd("cat", "--", WG_PUBLIC)).stdout.strip()
    shaken = host.run("wg show wg0 latest-handshakes").stdout.split()
    last = int(shaken[1]) if len(shaken) >= 2 and shaken[1].isdigit() else 0
    assert last, f"no handshake with the peer yet; its config needs this box's key {public}"
    age = int(host.run("date +%s").stdout.strip()) - last
    assert age < 180, f"the last handshake was {age}s ago (peer down?); this box's key {public}"


STEP = Step(
    name="expose",
    summary="reach the box from outside: reverse SSH tunnel to a relay, or WireGuard",
    settings=Settings,
    check=check,
    verify=(verify_tunnel_key, verify_tunnel_up, verify_wireguard),
)
