"""Is a port on this machine's loopback free, and if not, who holds it.

`provision tunnel` binds 127.0.0.1:PORT here; when another program already listens there,
the user's browser would reach that program instead. The owner is read from /proc/net/tcp{,6}
(the listening socket's inode and uid) and /proc/PID/fd (which process holds the inode);
other users' processes are not visible without root, so then only the uid is named.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
from pathlib import Path

from provision.output import printable  # another program's command line is data

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def listeners(proc_net_tcp: str, port: int) -> list[tuple[int, int]]:
    """(inode, uid) of the sockets listening on `port` in a /proc/net/tcp{,6} text."""
    found = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        _addr, _, port_hex = fields[1].rpartition(":")
        try:
            if int(port_hex, 16) == port:
                found.append((int(fields[9]), int(fields[7])))
        except ValueError:
            continue
    return found


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose fds are these socket inodes (the ones we may
    look into)."""
    wanted = {f"socket:[{i}]" for i in inodes}
    owners = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) in wanted:
                    raw = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    cmd = raw.decode(errors="replace") or (pid_dir / "comm").read_text().strip()
                    owners.append((int(pid_dir.name), printable(cmd)[:120]))
                    break
    return owners


def owner_text(port: int, proc: Path = Path("/proc")) -> str:
    """Who listens on the port here: "pid 123 (python3 -m http.server 6006)", else a uid."""
    sockets: list[tuple[int, int]] = []
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            sockets += listeners((proc / "net" / name).read_text(), port)
    owners = socket_owners({inode for inode, _uid in sockets}, proc)
    if owners:
        return ", ".join(f"pid {pid} ({cmd})" for pid, cmd in owners)
    uids = sorted({uid for _inode, uid in sockets})
    if uids:
        names = []
        for uid in uids:
            try:
                names.append(f"{pwd.getpwuid(uid).pw_name} (uid {uid})")
            except KeyError:
                names.append(f"uid {uid}")
        return "a process of " + ", ".join(names) + " (not visible to this user)"
    return ""


def bind_error(port: int, host: str = "127.0.0.1") -> str:
    """'' when host:port can be bound here (the way the tunnel binds it), else why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Paramiko's forward does
        sock.bind((host, port))
        sock.listen(1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            owner = owner_text(port)
            return f"{host}:{port} is in use" + (f" by {owner}" if owner else "")
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    finally:
        sock.close()
    return ""


def free_port_near(port: int, tries: int = 20) -> int | None:
    """The first port after `port` that can be bound on 127.0.0.1 here (None if none)."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        if not bind_error(candidate):
            return candidate
    return None
