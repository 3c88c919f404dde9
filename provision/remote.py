"""The only module that talks to hosts: Fabric/Paramiko over SSH (local.py runs on the box).

`run` raises CommandError on a non-zero exit, `probe` returns it; transport failures are
ConnectError. Every command is wrapped in `sh -c` (and sudo where needed) here and nowhere
else. Host keys are checked against known_hosts; unknown keys are refused unless the user
accepted new keys. Fabric and Paramiko are imported lazily to keep start-up fast.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provision import shell
from provision.changes import Result, Upload
from provision.errors import CommandError, ConnectError, StepError
from provision.hostkeys import AcceptNewPolicy, RejectPolicy, UnknownHostKey, known_name

BACKUP_DIR = "/var/backups/provision"
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Connection:
    """How to reach one host (from the inventory's ansible_* and provision_* vars)."""

    host: str  # inventory name, used in every message
    addr: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    local: bool = False
    known_hosts: str | None = None  # a known_hosts file instead of ~/.ssh/known_hosts
    accept_new_host_key: bool = False
    connect_timeout_s: int = 15
    sudo_password: shell.Secret | None = None
    identities_only: bool = False  # only the named key: no agent, no ~/.ssh/id_* (lockout checks)
    # "type base64" of the keys already proven for this host (same sshd, new port or address):
    # accepted and recorded in known_hosts, any other unknown key is still refused.
    trusted_keys: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return "local" if self.local else f"{user}{self.addr}:{self.port}"


class _LineSink(io.TextIOBase):
    """A stream for Invoke's out_stream that hands complete lines to a callback."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.partial = ""

    def write(self, data: str) -> int:
        if self.on_line:
            self.partial += data
            *lines, self.partial = self.partial.split("\n")
            for line in lines:
                self.on_line(line.rstrip("\r"))
        return len(data)


class Remote:
    """Commands, atomic uploads and reboots on one host. Not shared between threads."""

    def __init__(
        self,
        connection: Connection,
        log: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection
        self.host = connection.host
        self.is_root = connection.user == "root"
        self.log = log or (lambda _text: None)
        self.on_line = on_line
        self.commands = 0
        secret = connection.sudo_password
        self.secrets = [secret] if secret else []

    # --- subclasses provide these -----------------------------------------------------------

    def open(self) -> None:
        """Connect (no-op when local)."""

    def host_keys(self) -> tuple[str, ...]:
        """The server's host keys as "type base64" (none when local)."""
        return ()

    def close(self) -> None:
        """Disconnect."""

    def retarget(self, connection: Connection) -> None:
        """Talk to the host at a new address or port from now on (after a confirmed move)."""
        self.close()
        self.connection = connection

    def _exec(self, command: str, timeout_s: int | None, stdin: str | None) -> Result:
        raise NotImplementedError

    def _put_bytes(self, data: bytes, path: str) -> None:
        raise NotImplementedError

    # --- shared behaviour -------------------------------------------------------------------

    def wrap(self, command: str, sudo: bool) -> tuple[str, str | None]:
        """The command line actually sent, and what goes to its stdin (the sudo password)."""
        if sudo and not self.is_root:
            password = self.connection.sudo_password
            wrapped = shell.sudo_wrap(command, with_password=bool(password))
            return wrapped, (password + "\n") if password else None
        # sh -c even without sudo: the login shell may not be POSIX (fish, csh).
        return shell.cmd("sh", "-c", command), None

    def run(
        self,
        command: str,
        *,
        sudo: bool = True,
        timeout_s: int | None = None,
        check: bool = True,
        lock: bool = False,
    ) -> Result:
        """Run a command (as root by default); CommandError on a non-zero exit. With `lock`
        (a change, run as root), under the host-wide lock (shell.host_locked)."""
        sent = shell.host_locked(command) if lock and (sudo or self.is_root) else command
        wrapped, stdin = self.wrap(sent, sudo)
        shown = shell.mask(command, self.secrets)
        self.commands += 1
        self.log(f"$ {'sudo ' if sudo and not self.is_root else ''}{shown}")
        started = time.monotonic()
        try:
            result = self._exec(wrapped, timeout_s, stdin)
        except ConnectError as exc:
            if exc.hint != RERUN_HINT:
                raise
            self.log(f"# {exc.message}")
            raise ConnectError(
                f"{self.host}: connection lost while running `{_first_line(shown)}` (it may "
                "still be running on the host)",
                RERUN_HINT,
            ) from None
        out = shell.mask(result.stdout, self.secrets)
        err = shell.mask(result.stderr, self.secrets)
        self.log(f"# exit {result.exit_code} in {time.monotonic() - started:.2f}s")
        if out.strip():
            self.log(out.rstrip("\n"))
        if err.strip():
            self.log("stderr: " + err.rstrip("\n"))
        result = Result(result.exit_code, out, err)
        if check and not result.ok:
            raise CommandError(self.host, shown, result.exit_code, out + err, _hint(result))
        return result

    def probe(self, command: str, sudo: bool = False) -> Result:
        """Run a read-only command; a non-zero exit is returned, not raised."""
        return self.run(command, sudo=sudo, check=False)

    def put_atomic(self, upload: Upload, timeout_s: int = 120) -> None:
        """Write a file atomically: stage next to it, validate, keep a backup, rename."""
        dest = PurePosixPath(upload.dest)
        staged_src = f"/tmp/.provision-{uuid.uuid4().hex}"
        self._put_bytes(upload.content, staged_src)
        new = str(dest.parent / f".{dest.name}.provision-new")
        backup = f"{BACKUP_DIR}{dest}"
        q = shlex.quote
        lines = [
            "set -e",
            f"trap {q(shell.cmd('rm', '-f', '--', staged_src, new))} EXIT",
            shell.cmd("mkdir", "-p", "--", str(dest.parent)),
            shell.cmd(
                "install",
                "-m",
                upload.mode,
                "-o",
                upload.owner,
                "-g",
                upload.group,
                "--",
                staged_src,
                new,
            ),
            shell.cmd("sync", "--", new),
        ]
        if upload.validate:
            check = upload.validate.replace("{path}", q(new))
            lines.append(
                f"if ! {check} >&2; then echo 'provision: validation failed' >&2; exit 65; fi"
            )
        lines += [
            f"if [ -e {q(str(dest))} ]; then "
            + shell.and_(
                shell.cmd("mkdir", "-p", "--", str(PurePosixPath(backup).parent)),
                shell.cmd("cp", "-p", "--", str(dest), backup),
            )
            + "; fi",
            shell.cmd("mv", "-f", "--", new, str(dest)),
        ]
        try:
            self.run("\n".join(lines), sudo=True, timeout_s=timeout_s)
        except CommandError as exc:
            if exc.returncode == 65:
                exc.hint = f"the new {dest} failed validation; the old file is unchanged"
            raise

    def boot_id(self) -> str:
        """The kernel's boot id (changes on every boot)."""
        return self.run(BOOT_ID, sudo=False).stdout.strip()

    def reboot(self, timeout_s: int = 600, old_boot_id: str | None = None) -> None:
        """Reboot, wait for SSH to come back, and require a new boot id."""
        old = old_boot_id or self.boot_id()
        # --no-block: return before sshd is stopped, so the exit status still arrives.
        with contextlib.suppress(ConnectError):
            self.run("systemctl --no-block reboot", sudo=True, timeout_s=30)
        self.close()
        deadline = time.monotonic() + timeout_s
        delay = 2.0
        time.sleep(3)
        last_error = "no answer"
        while time.monotonic() < deadline:
            try:
                self.open()
                # A timeout: a half-dead connection during shutdown must not hang us.
                if self.run(BOOT_ID, sudo=False, timeout_s=30).stdout.strip() != old:
                    return
                last_error = "still the old boot (reboot not started yet)"
                self.close()
            except (ConnectError, CommandError) as exc:
                last_error = exc.message
                self.close()
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
        raise StepError(
            f"{self.host}: did not come back within {timeout_s}s after reboot ({last_error})",
            "check the console or BMC: is it powered on, did it boot, is sshd up and the "
            "address unchanged? Then run provision again: finished steps are skipped",
        )


RERUN_HINT = (
    "run provision again when the host is reachable: it waits for apt's lock, repairs an "
    "interrupted dpkg run and skips finished work"
)


def _first_line(command: str, limit: int = 80) -> str:
    line = command.strip().splitlines()[0] if command.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _hint(result: Result) -> str:
    text = result.stderr + result.stdout
    if "a password is required" in text:
        return "sudo needs a password here: use --ask-sudo-pass or PROVISION_SUDO_PASSWORD"
    if "incorrect password" in text or "Sorry, try again" in text:
        return "the sudo password was refused"
    if "Could not get lock" in text or "Unable to acquire the dpkg frontend lock" in text:
        return "another apt/dpkg run held the lock for the whole timeout (unattended-upgrades?)"
    if result.exit_code == shell.LOCK_BUSY and not text.strip():
        return (
            f"another provision run held {shell.HOST_LOCK} for 30 minutes (one cut off may "
            "still be working there): look at `ps -ef` on the host, then run again"
        )
    if "No space left on device" in text:
        return (
            "the filesystem is full: free space on the host (df -h) and run again; a file "
            "being replaced is left as it was"
        )
    if "dpkg was interrupted" in text:
        return "run provision again: base repairs it with `dpkg --configure -a`"
    return ""


class SSHRemote(Remote):
    """Fabric over SSH, with strict host-key checking."""

    def __init__(self, connection: Connection, **kwargs) -> None:
        super().__init__(connection, **kwargs)
        self.conn = None

    def open(self) -> None:
        if self.conn is not None:
            return
        import fabric
        import paramiko

        c = self.connection
        connect_kwargs: dict = {}
        if c.key_file:
            connect_kwargs["key_filename"] = [os.path.expanduser(c.key_file)]
            if c.identities_only:
                connect_kwargs.update(allow_agent=False, look_for_keys=False)
        conn = fabric.Connection(
            c.addr,
            user=c.user,
            port=c.port,
            connect_timeout=c.connect_timeout_s,
            connect_kwargs=connect_kwargs,
        )
        known = Path(os.path.expanduser(c.known_hosts or "~/.ssh/known_hosts"))
        for path in (Path("/etc/ssh/ssh_known_hosts"), known):
            if path.is_file():
                conn.client.load_system_host_keys(str(path))
        conn.client.set_missing_host_key_policy(
            AcceptNewPolicy(known) if c.accept_new_host_key else RejectPolicy(known, c.trusted_keys)
        )
        try:
            conn.open()
        except UnknownHostKey as exc:
            conn.close()
            port = f"-p {c.port} " if c.port != 22 else ""
            raise ConnectError(
                f"{self.host}: unknown host key for {c.target} ({exc.key_type}), refused",
                f"check the fingerprint, then `ssh-keyscan {port}{c.addr} >> {known}`, "
                "or pass --accept-new-host-key to trust it on first use",
            ) from None
        except paramiko.BadHostKeyException:
            conn.close()
            raise ConnectError(
                f"{self.host}: the host key of {c.target} does NOT match {known}",
                "if the host was reinstalled, remove the old line with "
                f"`ssh-keygen -R {shlex.quote(known_name(c.addr, c.port))} -f {known}`; "
                "otherwise this may be an attack",
            ) from None
        except paramiko.AuthenticationException as exc:
            conn.close()
            raise ConnectError(
                f"{self.host}: authentication as {c.user or 'the default user'} failed at "
                f"{c.target}: {exc}",
                "check ansible_user and ansible_ssh_private_key_file in the inventory",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            conn.close()
            raise ConnectError(
                f"{self.host}: cannot connect to {c.target}: {exc or type(exc).__name__}",
                "check the address and port, that the host is up and sshd is running",
            ) from None
        # Keepalives notice a dead peer (reboot, cut network) instead of waiting forever.
        conn.client.get_transport().set_keepalive(15)
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def forward_local(self, local_port: int, remote_port: int):
        """127.0.0.1:local_port here is 127.0.0.1:remote_port there, inside the block.

        Yields a list that, after the block, holds why connections through it failed
        (typically: nothing listened on the box's port at the time).
        """
        import invoke

        self.open()
        failures: list[str] = []
        forward = self.conn.forward_local(
            local_port, remote_port=remote_port, remote_host="127.0.0.1", local_host="127.0.0.1"
        )
        try:
            with forward:
                yield failures
        except invoke.ThreadException as exc:
            failures += sorted({repr(w.value) for w in exc.exceptions})

    def host_keys(self) -> tuple[str, ...]:
        """The keys this endpoint is known by ("type base64"): the one it showed and the
        known_hosts entries that vouched for it."""
        import paramiko

        self.open()
        shown = self.conn.transport.get_remote_server_key()
        keys = [f"{shown.get_name()} {shown.get_base64()}"]
        c = self.connection
        known = Path(os.path.expanduser(c.known_hosts or "~/.ssh/known_hosts"))
        if known.is_file():
            entry = paramiko.HostKeys(str(known)).lookup(known_name(c.addr, c.port)) or {}
            keys += [f"{k.get_name()} {k.get_base64()}" for k in entry.values()]
        return tuple(dict.fromkeys(keys))

    def _exec(self, command: str, timeout_s: int | None, stdin: str | None) -> Result:
        import invoke
        import paramiko

        self.open()
        sink_out, sink_err = _LineSink(self.on_line), _LineSink(self.on_line)
        try:
            r = self.conn.run(
                command,
                hide=False,
                warn=True,
                out_stream=sink_out,
                err_stream=sink_err,
                in_stream=io.StringIO(stdin) if stdin else False,
                timeout=timeout_s,
            )
        except invoke.CommandTimedOut as exc:
            r = exc.result
            return Result(124, r.stdout, r.stderr + f"\nprovision: timed out after {timeout_s}s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectError(
                f"{self.host}: connection lost: {exc or type(exc).__name__}", RERUN_HINT
            ) from None
        except invoke.UnexpectedExit as exc:  # not raised with warn=True; kept for safety
            r = exc.result
        if r.exited in (-1, None) and not self.conn.transport.is_active():
            # The channel closed without an exit status because the connection went away.
            self.close()
            raise ConnectError(f"{self.host}: connection lost (no exit status)", RERUN_HINT)
        return Result(r.exited if r.exited is not None else 255, r.stdout, r.stderr)

    def _put_bytes(self, data: bytes, path: str) -> None:
        import paramiko

        self.open()
        try:
            sftp = self.conn.sftp()
            with sftp.open(path, "wx") as f:  # x: refuse to follow an existing file/link
                f.chmod(0o600)
                f.write(data)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"{self.host}: upload to {path} failed: {exc}") from None


def connect(connection: Connection, **kwargs) -> Remote:
    """A Remote for the connection (local or SSH), opened."""
    if connection.local:
        from provision.local import LocalRemote

        remote: Remote = LocalRemote(connection, **kwargs)
    else:
        remote = SSHRemote(connection, **kwargs)
    remote.open()
    return remote
