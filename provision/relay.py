"""The relay of `expose.method = reverse-tunnel`: where the box's tunnel goes, and the relay
side, which puts the box's public key into the relay account's authorized_keys.

The relay is an inventory host or `user@host[:port]`. config.load_hosts resolves an inventory
name once (`attach`): the box's HostConfig then carries the relay's HostConfig under
RELAY_HOST, so the expose step and `provision expose-relay` read it from there, with no
global. The relay side is a Step of its own (`grant_step`, not one of the STEPS): its check
returns the Changes for the relay host, and `authorize_on_relay` runs it through the runner
like any step, so `--plan` shows them, the relay's transcript records them, and the runner
checks again after applying them.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision import shell
from provision.changes import Change, Run, Upload
from provision.errors import ConfigError, ProvisionError
from provision.facts.reads import Read
from provision.hostkeys import known_name
from provision.settings import hostname, unix_name
from provision.step import Context, Step
from provision.templates import unified_diff

# The key under which a box's HostConfig.settings holds its relay's HostConfig: a dotted name,
# so that it can never be a step's key.
RELAY_HOST = "expose.relay_host"
TUNNEL_KEY = "/etc/provision/expose/id_ed25519"
RELAY_RE = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+)(?::(?P<port>\d+))?$"
)
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$")


# --- settings checks --------------------------------------------------------------------------


def tcp_port(value: int) -> None:
    """A TCP port, 1-65535."""
    if not 0 < value < 65536:
        raise ValueError(f"{value} is out of range 1-65535")


def optional_tcp_port(value: int) -> None:
    """A TCP port, or 0 for the default."""
    if value:
        tcp_port(value)


def relay_port_number(value: int) -> None:
    """An unprivileged TCP port on the relay (the tunnel's account is no root)."""
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
    """A host key 'TYPE BASE64' (empty: not pinned)."""
    if value and not HOST_KEY_RE.match(value.strip()):
        raise ValueError(f"{value!r} is not a host key 'TYPE BASE64' (e.g. ssh-ed25519 AAAA...)")


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
        """user@address, as ssh takes it."""
        return f"{self.user}@{self.addr}"

    @property
    def known_name(self) -> str:
        """The relay's name in a known_hosts file."""
        return known_name(self.addr, self.port)


def attach(configs: list, lookup: Callable[[str], Any]) -> list:
    """The configs, each box whose expose.relay names an inventory host carrying that host's
    HostConfig (`lookup(name)`: the HostConfig, or None for a name the inventory lacks)."""
    out = []
    for hc in configs:
        s = hc.settings.get("expose")
        found = lookup(s.relay) if s and s.method == "reverse-tunnel" and s.relay else None
        if found is not None:
            hc = dataclasses.replace(hc, settings={**hc.settings, RELAY_HOST: found})
        out.append(hc)
    return out


def inventory_relay(settings: Mapping[str, Any]) -> Any | None:
    """The relay's HostConfig from a box's settings (None: the relay is an address)."""
    return settings.get(RELAY_HOST)


def resolve_relay(s: Any, config: Any | None, host: str = "") -> Relay:
    """The relay of expose Settings `s`: the inventory host `config` (its HostConfig) or
    user@host[:port]; a ConfigError when the account or address is missing."""
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


def listen_address(bind_public: bool) -> str:
    """Where the relay binds the tunnel's port: its loopback unless bind_public."""
    return "0.0.0.0" if bind_public else "127.0.0.1"


def authorized_line(public_key: str, remote_port: int, bind_public: bool) -> str:
    """The relay's authorized_keys line for the box's tunnel key: this one port forward, no
    shell, no pty, no agent or X11 forwarding, no other port. `port-forwarding` re-enables
    local forwards (-L, -W) too, so permitopen limits those to the tunnel's own port: a key
    stolen from the box cannot use the relay as a proxy to anything else."""
    options = (
        f'restrict,port-forwarding,permitlisten="{listen_address(bind_public)}:{remote_port}",'
        f'permitopen="127.0.0.1:{remote_port}",command="/bin/false"'
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
    """A known_hosts file naming the relay with each of `keys` ('TYPE BASE64' lines)."""
    return "".join(f"{relay.known_name} {k.strip()}\n" for k in keys.splitlines() if k).encode()


# --- the relay side: the box's key in the relay account's authorized_keys -------------------


@dataclass(frozen=True)
class Grant:
    """What one box needs on its relay: its tunnel key's line in `user`'s authorized_keys."""

    box: str
    relay: str  # the relay's inventory name
    user: str  # the relay account the tunnel logs in as
    public_key: str  # the box's tunnel key, "ssh-ed25519 BASE64 COMMENT"
    remote_port: int
    bind_public: bool

    @property
    def line(self) -> str:
        """The restricted authorized_keys line."""
        return authorized_line(self.public_key, self.remote_port, self.bind_public)


def account_read(user: str) -> Read:
    """The relay account's passwd entry (home directory)."""
    return Read(shell.cmd("getent", "passwd", user))


def group_read(user: str) -> Read:
    """The relay account's primary group."""
    return Read(shell.cmd("id", "-gn", user))


def keys_read(user: str) -> Read:
    """The account's authorized_keys (public keys; empty when there is none), its path found
    from the home directory on the host, in the same read."""
    home = f"h=$({shell.cmd('getent', 'passwd', user)} | cut -d: -f6)"
    return Read(f'{home} && [ -n "$h" ] && cat -- "$h/.ssh/authorized_keys"', sudo=True)


def gateway_read(user: str) -> Read:
    """sshd's effective config for a tunnel login of `user` (GatewayPorts)."""
    query = shell.cmd("sshd", "-T", "-C", f"user={user},host=box,addr=127.0.0.1")
    return Read(query, sudo=True)


def grant_reads(grant: Grant) -> list[Read]:
    """Every read grant_changes makes."""
    reads = [account_read(grant.user), group_read(grant.user), keys_read(grant.user)]
    return reads + ([gateway_read(grant.user)] if grant.bind_public else [])


def gateway_error(grant: Grant) -> ProvisionError:
    """bind_public without `GatewayPorts clientspecified` for the account on the relay."""
    return ProvisionError(
        f"{grant.relay}: expose.bind_public needs GatewayPorts clientspecified "
        f"for {grant.user} in the relay's sshd_config (the key is installed)",
        f"add `Match User {grant.user}` + `GatewayPorts clientspecified` at the END "
        "of /etc/ssh/sshd_config on the relay, then `systemctl reload ssh`",
    )


def grant_changes(ctx: Context, grant: Grant) -> list[Change]:
    """The relay's authorized_keys gets the box's line, replacing an older line for the same
    key, keeping every other; bind_public also needs GatewayPorts clientspecified for the
    account: checked with `sshd -T`, reported, never edited (sshd on someone's VPS is theirs).
    """
    user = grant.user
    fields = ctx.read(account_read(user).command).stdout.strip().split(":")
    if len(fields) < 7:
        raise ProvisionError(
            f"{grant.relay}: no account {user!r} for the tunnel",
            "create it on the relay (any account; the key can only forward one port)",
        )
    group = ctx.read(group_read(user).command).stdout.strip() or user
    dot_ssh = f"{fields[5]}/.ssh"
    path = f"{dot_ssh}/authorized_keys"
    old = ctx.read(keys_read(user).command, sudo=True).stdout
    blob = grant.public_key.split()[1]
    kept = [x for x in old.splitlines() if blob not in x.split()]
    new = "\n".join([*kept, grant.line]) + "\n"
    gateway_ok = True
    if grant.bind_public:
        gateway = ctx.read(gateway_read(user).command, sudo=True).stdout
        gateway_ok = "gatewayports clientspecified" in gateway.lower()
    if new == old:
        if not gateway_ok:
            raise gateway_error(grant)
        return []
    mkdir = shell.cmd("install", "-d", "-m", "0700", "-o", user, "-g", group, dot_ssh)
    summary = f"authorize {grant.box}'s tunnel key in {path} (its one port forward only)"
    if not gateway_ok:
        summary += "; expose.bind_public also needs GatewayPorts clientspecified for " + user
    actions = (
        Run(f"test -d {shell.cmd(dot_ssh)} || {mkdir}", description=f"mkdir {dot_ssh}"),
        Upload(path, new.encode(), "0600", user, group),
    )
    return [Change(summary, actions, unified_diff(old, new, path))]


def grant_step(grant: Grant) -> Step:
    """The relay side as a step for the relay host (run by authorize_on_relay, never listed
    in STEPS: it has no settings of its own, the grant carries what it needs)."""
    return Step(
        name="expose-relay",
        summary=f"the tunnel key of {grant.box} in the relay's authorized_keys",
        settings=Grant,
        check=lambda ctx: grant_changes(ctx, grant),
        verify=(),
        reads=lambda ctx: grant_reads(grant),
    )


def box_public_key(box: Any, connect: Callable[..., Any]) -> str:
    """The tunnel's public key, read from the box (it must have run the expose step)."""
    remote = connect(box.connection)
    try:
        read = remote.probe(shell.cmd("cat", "--", f"{TUNNEL_KEY}.pub"), sudo=True)
    finally:
        remote.close()
    public = read.stdout.strip()
    if not read.ok or not public.startswith("ssh-ed25519 "):
        raise ProvisionError(
            f"{box.name}: no tunnel key {TUNNEL_KEY}.pub yet",
            f"run `provision expose --host {box.name}` first",
        )
    return public


def authorize_on_relay(
    box: Any,
    relay_config: Any,
    connect: Callable[..., Any] | None = None,
    *,
    plan: bool = False,
    reporter: Any = None,
    log_dir: Path = Path(".provision/logs"),
) -> tuple[bool, str]:
    """Put the box's tunnel key into the relay user's authorized_keys, restricted to the one
    port forward, through the runner on the relay host (plan: only show it); returns
    (changed or would change, the line). `box` and `relay_config` are HostConfigs. A failure
    on the relay is raised."""
    from provision.output import Reporter
    from provision.remote import connect as default_connect
    from provision.runner import run_hosts

    connect = connect or default_connect
    s = box.settings["expose"]
    if s.method != "reverse-tunnel":
        raise ConfigError(f"{box.name}: expose.method is {s.method}, not reverse-tunnel")
    relay = resolve_relay(s, inventory_relay(box.settings), box.name)
    public = box_public_key(box, connect)
    grant = Grant(box.name, relay_config.name, relay.user, public, s.remote_port, s.bind_public)
    (result,) = run_hosts(
        [relay_config],
        (grant_step(grant),),
        plan=plan,
        reporter=reporter or Reporter(),
        log_dir=log_dir,
        remote_factory=connect,
    )
    if result.error is not None:
        raise result.error
    return bool(result.steps and result.steps[-1].changes), grant.line
