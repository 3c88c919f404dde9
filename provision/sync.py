"""`provision push` / `provision pull`: rsync over the same SSH settings as every other command.

The address, port, user, key file, known_hosts file and host-key policy of the inventory go
into rsync's `-e "ssh ..."` (quoted by shell.cmd, whose single quotes rsync's own splitter
reads the same way). Transfers are resumable (`--partial-dir`: an interrupted file is kept
and used as the basis next time), `-s` sends the paths inside the rsync protocol so spaces,
quotes, `$()` and non-ASCII names stay data, local paths are made unambiguous (`./-x`,
`./a:b`), and `--delete` happens only when asked. Argument building is pure; `run` executes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace

from provision import hostkeys, shell
from provision.errors import ConfigError, ProvisionError
from provision.remote import Connection

PARTIAL_DIR = ".rsync-partial"
MIN_LOCAL_VERSION = (3, 1, 0)  # --info=progress2 and --info=stats2
MKPATH_VERSION = (3, 2, 3)  # --mkpath (every supported host OS ships 3.2.7)


@dataclass(frozen=True)
class SyncOptions:
    """What the user asked for besides the paths."""

    delete: bool = False
    dry_run: bool = False
    progress: bool = True  # --info=progress2 (a terminal), else --info=stats2
    excludes: tuple[str, ...] = ()
    mkpath: bool = True  # create the destination's missing parents (rsync >= 3.2.3 here)


class SyncError(ProvisionError):
    """rsync failed (exit code kept)."""


def ssh_argv(conn: Connection) -> list[str]:
    """The OpenSSH client command rsync runs: the Connection's settings, strict host keys."""
    argv = ["ssh", "-p", str(conn.port)]
    if conn.user:
        argv += ["-l", conn.user]
    if conn.key_file:
        argv += ["-i", os.path.expanduser(conn.key_file), "-o", "IdentitiesOnly=yes"]
    if conn.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(conn.known_hosts)}"]
    policy = "accept-new" if conn.accept_new_host_key else "yes"
    argv += [
        "-o",
        f"StrictHostKeyChecking={policy}",
        "-o",
        "BatchMode=yes",  # never a password prompt in the middle of a transfer
        "-o",
        f"ConnectTimeout={conn.connect_timeout_s}",
        "-o",
        "ServerAliveInterval=15",  # like the keepalives of every other command
    ]
    return argv


def remote_spec(conn: Connection, path: str) -> str:
    """HOST:PATH for rsync (the user is in ssh's -l); an IPv6 address in brackets."""
    if conn.local:
        return local_path(path)
    host = f"[{conn.addr}]" if ":" in conn.addr else conn.addr
    return f"{host}:{path}"


def local_path(path: str) -> str:
    """A local path rsync cannot take for an option (-x) or a remote (a:b): ./ in front."""
    if path.startswith(("/", "./", "../")) or path in (".", ".."):
        return path
    return "./" + path


def check_remote_path(path: str, where: str) -> None:
    if not path.startswith("/"):
        raise ConfigError(
            f"remote path {path!r} is not absolute",
            "give the full path on the host, e.g. /data/project",
            where=where,
        )
    if "\n" in path or "\0" in path:
        raise ConfigError(f"remote path {path!r} contains a newline or NUL", where=where)


def rsync_argv(conn: Connection, sources: list[str], dest: str, options: SyncOptions) -> list[str]:
    """The rsync command line (sources and dest already in rsync's form)."""
    argv = ["rsync", "-a", "-s", f"--partial-dir={PARTIAL_DIR}", "-h"]
    if options.mkpath:
        argv.append("--mkpath")
    argv.append("--info=progress2" if options.progress else "--info=stats2")
    if options.delete:
        argv.append("--delete")
    if options.dry_run:
        argv += ["--dry-run", "--itemize-changes"]
    argv += [f"--exclude={pattern}" for pattern in options.excludes]
    if not conn.local:
        argv += ["-e", shell.cmd(*ssh_argv(conn))]
    return [*argv, "--", *sources, dest]


def push_argv(
    conn: Connection, local_sources: list[str], remote_dest: str, options: SyncOptions
) -> list[str]:
    """rsync argv for push: local files → the host."""
    for src in local_sources:
        if not os.path.lexists(src):
            raise ConfigError(f"local source {src!r} does not exist", where="push")
    check_remote_path(remote_dest, "push")
    sources = [local_path(s) for s in local_sources]
    return rsync_argv(conn, sources, remote_spec(conn, remote_dest), options)


def pull_argv(
    conn: Connection, remote_sources: list[str], local_dest: str, options: SyncOptions
) -> list[str]:
    """rsync argv for pull: files on the host → here."""
    for src in remote_sources:
        check_remote_path(src, "pull")
    sources = [remote_spec(conn, s) for s in remote_sources]
    return rsync_argv(conn, sources, local_path(local_dest), options)


def local_rsync_version(version_text: str) -> tuple[int, ...] | None:
    """From `rsync --version`: (3, 2, 7); None when it is not rsync's (openrsync says 2.6.9)."""
    match = re.search(r"rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)", version_text)
    return tuple(int(x) for x in match.groups()) if match else None


def check_local_rsync() -> tuple[int, ...]:
    """rsync >= 3.1 here (its version), or a ConfigError that says how to get it."""
    path = shutil.which("rsync")
    hint = "install rsync >= 3.1 (Debian/Ubuntu: apt-get install rsync; macOS: brew install rsync)"
    if not path:
        raise ConfigError("rsync is not installed on this machine", hint)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    version = local_rsync_version(out.stdout + out.stderr)
    if version is None or version < MIN_LOCAL_VERSION:
        shown = ".".join(map(str, version)) if version else (out.stdout.splitlines() or ["?"])[0]
        raise ConfigError(f"rsync here is too old or not GNU rsync ({shown})", hint)
    return version


def with_local_rsync(options: SyncOptions) -> SyncOptions:
    """The options for the rsync found here (ConfigError when it is missing or too old)."""
    return replace(options, mkpath=options.mkpath and check_local_rsync() >= MKPATH_VERSION)


def failure_hint(host: str, conn: Connection, stderr: str) -> str:
    """What to do about a failed transfer, from rsync's and ssh's messages."""
    if re.search(r"rsync: (command )?not found|rsync: No such file or directory", stderr):
        return (
            f"rsync is not installed on {host}: run `provision base --host {host}` "
            "(rsync is one of its essentials) or `sudo apt-get install rsync` there"
        )
    if "Host key verification failed" in stderr:
        known = conn.known_hosts or "~/.ssh/known_hosts"
        # A changed key: accept-new would not replace it (OpenSSH refuses it as well), so the
        # hint is the whole fix with both fingerprints, never --accept-new-host-key.
        changed = hostkeys.openssh_changed_key_hint(stderr, conn.addr, conn.port, known)
        if changed:
            return changed
        return (
            f"the host key of {conn.target} is not in {known}: check its fingerprint, then pass "
            "--accept-new-host-key to trust a key seen for the first time"
        )
    if "Permission denied (publickey" in stderr:
        return "check ansible_user and ansible_ssh_private_key_file in the inventory"
    if "Permission denied" in stderr:
        return f"{conn.user or 'the SSH user'} may not write there; choose a path it owns"
    if "connection unexpectedly closed" in stderr or "Connection refused" in stderr:
        return "check the address and port, that the host is up and sshd is running"
    return ""


def run(host: str, conn: Connection, argv: list[str], echo=None) -> None:
    """Run rsync: stdout (progress) goes straight to ours, stderr is shown and kept for the
    hint. SyncError on failure."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        echo(line.rstrip("\n"))
        tail = [*tail[-49:], line]
    rc = proc.wait()
    if rc != 0:
        err = "".join(tail)
        raise SyncError(f"{host}: rsync exited {rc}", failure_hint(host, conn, err))
