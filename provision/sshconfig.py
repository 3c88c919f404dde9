"""`provision ssh-config`: a `Host` entry for ~/.ssh/config, so plain ssh, scp, rsync and
editors' remote modes reach the box with the inventory's settings. Port forwards (TensorBoard)
are in a separate `Host NAME-tunnel` entry (`ssh -N NAME-tunnel` opens them), never in the plain
one. Written between marker lines, idempotently, atomically, with the previous file kept as
config.provision-bak.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from provision.hostconfig import HostConfig

TUNNEL_SUFFIX = "-tunnel"


def markers(name: str) -> tuple[str, str]:
    return f"# >>> provision {name} >>>", f"# <<< provision {name} <<<"


def entry(hc: HostConfig, forwards: list[tuple[int, int]] = ()) -> str:
    """The Host blocks for one host, marker lines included: `Host NAME` (no forwards),
    `Host NAME-tunnel` with the LocalForwards when there are any, `Host NAME-via-relay`."""
    start, end = markers(hc.name)
    lines = [start, f"Host {hc.name}", *connection_lines(hc)]
    if forwards:
        # Forwards live in their own entry: in the plain one, every ssh/scp/rsync to the box
        # would try to bind them ("bind ... Address already in use" once one is open).
        lines += [f"Host {hc.name}{TUNNEL_SUFFIX}", *connection_lines(hc)]
        # 127.0.0.1 only, like `provision tunnel`: an IPv6 [::1] bind that works while the IPv4
        # one fails would keep ExitOnForwardFailure quiet.
        lines += [
            f"    LocalForward 127.0.0.1:{local} 127.0.0.1:{remote}" for local, remote in forwards
        ]
        lines.append("    ExitOnForwardFailure yes")  # a taken local port fails, never half-works
    lines += via_relay(hc)
    lines.append(end)
    return "\n".join(lines) + "\n"


def connection_lines(hc: HostConfig) -> list[str]:
    """HostName, User, Port, key and known_hosts lines of the host's own connection."""
    c = hc.connection
    lines = [f"    HostName {c.addr}"]
    if c.user:
        lines.append(f"    User {c.user}")
    lines.append(f"    Port {c.port}")
    if c.key_file:
        lines += [f"    IdentityFile {c.key_file}", "    IdentitiesOnly yes"]
    if c.known_hosts:
        lines.append(f"    UserKnownHostsFile {c.known_hosts}")
    return lines


def via_relay(hc: HostConfig) -> list[str]:
    """`Host NAME-via-relay` for a box exposed through a reverse tunnel: ProxyJump to the relay
    (its own inventory entry when it has one), then the relay's loopback port; HostKeyAlias
    keeps checking the box's usual host key. Empty for other boxes."""
    from provision.hostkeys import known_name

    s = hc.settings.get("expose")
    if s is None or s.method != "reverse-tunnel" or not s.relay:
        return []
    jump = s.relay  # the laptop's own login on the relay, not the tunnel's restricted key
    if s.relay_port and ":" not in jump.rsplit("]", 1)[-1]:
        jump = f"{jump}:{s.relay_port}"
    c = hc.connection
    lines = [f"Host {hc.name}-via-relay", "    HostName 127.0.0.1", f"    Port {s.remote_port}"]
    lines += [f"    ProxyJump {jump}", f"    HostKeyAlias {known_name(c.addr, c.port)}"]
    if c.user:
        lines.append(f"    User {c.user}")
    if c.key_file:
        lines += [f"    IdentityFile {c.key_file}", "    IdentitiesOnly yes"]
    if c.known_hosts:
        lines.append(f"    UserKnownHostsFile {c.known_hosts}")
    return lines


def merge(text: str, name: str, block: str) -> str:
    """Replace the host's block in the config text, or append it."""
    start, end = markers(name)
    pattern = re.compile(rf"^{re.escape(start)}\n.*?^{re.escape(end)}\n?", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text, count=1)
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block


def write(path: Path, blocks: dict[str, str]) -> bool:
    """Merge the blocks into the file; True when it changed."""
    old = path.read_text() if path.exists() else ""
    new = old
    for name, block in blocks.items():
        new = merge(new, name, block)
    if new == old:
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        backup = path.with_name(path.name + ".provision-bak")
        backup.write_text(old)
        os.chmod(backup, 0o600)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True
