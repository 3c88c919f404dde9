"""Remote: the transport every command on a host goes through, whatever carries it (SSH in
remote.py, a subprocess in local.py; the subclasses provide `_exec`, `_put_bytes`, streams).

`run` raises CommandError on a non-zero exit, `probe` returns it (ProbeError when sudo refused
it or the login user may not read: no answer is no fact); transport failures are ConnectError.
Every command is wrapped in `sh -c` (and sudo where needed), in the C locale, here and nowhere
else. The sudo password is checked once and never sent again once refused (sudoers.py). An
interrupted command that is safe to stop is stopped on the host too (interrupt.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

from provision import hostlock, interrupt, shell, sudoers
from provision.changes import Result, Upload
from provision.connection import Connection
from provision.errors import CommandError, ConnectError, ProbeError, StepError
from provision.hints import command_hint as _hint

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


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
        self.use_password = True  # False once sudo is known to need none (NOPASSWD)
        self.password_refused = False  # set by the first refusal: never sent again
        self.sudo_attempts = 0  # commands that sent the password (tests count them)
        self.sudo_checked = False

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

    supports_streams = False  # SSH and local do: the run lock needs them

    def _open_stream(self, command: str) -> hostlock.Stream:
        raise NotImplementedError

    def open_stream(self, command: str, sudo: bool = True) -> hostlock.Stream:
        """Start a command we talk to while it runs (the run lock's holder)."""
        wrapped, stdin = self.wrap(command, sudo)
        self.commands += 1
        self.sudo_attempts += stdin is not None
        self.log(f"$ {'sudo ' if sudo and not self.is_root else ''}{_first_line(command)} ...")
        stream = self._open_stream(wrapped)
        if stdin:
            stream.send(stdin)
        return stream

    # --- shared behaviour -------------------------------------------------------------------

    def wrap(self, command: str, sudo: bool, tag: str = "") -> tuple[str, str | None]:
        """The command line actually sent, and what goes to its stdin (the sudo password);
        `tag` marks it so that an interrupt can stop it on the host (shell.kill_tagged)."""
        if sudo and not self.is_root:
            password = self.connection.sudo_password if self.use_password else None
            if password and self.password_refused:
                # Never a second try: under pam_faillock each one counts towards a lockout.
                raise sudoers.refused_error(self.host, self.connection.user)
            wrapped = shell.sudo_wrap(command, with_password=bool(password), tag=tag)
            return wrapped, (password + "\n") if password else None
        return shell.plain_wrap(command, tag), None

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
        shown = shell.mask(command, self.secrets)
        label = f"`{_first_line(shown)}`"
        sent = (
            shell.host_locked(command, label=label) if lock and (sudo or self.is_root) else command
        )
        tag = uuid.uuid4().hex[:12] if interrupt.stoppable(sent) else ""
        wrapped, stdin = self.wrap(sent, sudo, tag)
        self.commands += 1
        self.sudo_attempts += stdin is not None
        self.log(f"$ {'sudo ' if sudo and not self.is_root else ''}{shown}")
        started = time.monotonic()
        self.showing = shown  # what an interrupt names (masked, not the wrapped line)
        try:
            result = self._exec(wrapped, timeout_s, stdin)
        except interrupt.Interrupted:
            if tag:  # safe to stop (not apt/dpkg): stop it on the host too, then leave
                self.log(f"# interrupted: stopping `{_first_line(shown)}` on the host")
                self._stop_tagged(tag, sudo)
            raise
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
        as_sudo = sudo and not self.is_root
        if as_sudo and stdin is not None and sudoers.password_refused(result):
            self.password_refused = True
        if check and not result.ok:
            raise CommandError(self.host, shown, result.exit_code, out + err, _hint(result))
        return result

    interruptible = True  # False while stopping an interrupted command
    showing = ""  # the command being run, as shown (for the interrupt's message)

    def _stop_tagged(self, tag: str, sudo: bool) -> None:
        """Best effort: TERM the tagged command's processes on the host (new channel)."""
        self.interruptible = False
        try:
            wrapped, stdin = self.wrap(shell.kill_tagged(tag), sudo)
            self._exec(wrapped, 15, stdin)
        except Exception as exc:  # the connection may be gone: the host then sees EOF
            self.log(f"# could not stop it: {exc}")
        finally:
            self.interruptible = True

    def probe(self, command: str, sudo: bool = False) -> Result:
        """Run a read-only command; a non-zero exit is returned, not raised, unless it failed
        for another reason than its answer (sudo refused, permission denied): ProbeError."""
        result = self.run(command, sudo=sudo, check=False)
        why = sudoers.probe_failure(result, sudo=sudo and not self.is_root)
        if why:
            raise ProbeError(self.host, shell.mask(command, self.secrets), result, why)
        return result

    def read_secret(self, command: str, timeout_s: int = 60) -> str:
        """Run a read-only command (as root) whose output is a secret (the cluster's munge
        key): the transcript gets the command and its exit code, never the output, which is
        masked in everything this Remote logs afterwards."""
        wrapped, stdin = self.wrap(command, True)
        self.commands += 1
        self.log(f"$ {'sudo ' if not self.is_root else ''}{command}  # output withheld: a secret")
        result = self._exec(wrapped, timeout_s, stdin)
        self.log(f"# exit {result.exit_code}")
        if not result.ok:
            err = shell.mask(result.stderr, self.secrets)
            raise CommandError(self.host, command, result.exit_code, err, "")
        secret = result.stdout.strip()
        if secret:
            self.secrets.append(secret)
        return secret

    def read_all(self, reads, login_user: str) -> dict:
        """Answer declared reads in one command (facts.reads); a read's failure is data."""
        from provision.facts import reads as batch

        return batch.gather(
            lambda script: self.run(script, sudo=True, check=False), reads, login_user
        )

    def check_sudo(self) -> None:
        """Check the sudo password once, before any command that uses it (see sudoers)."""
        if self.is_root or not self.connection.sudo_password or not self.use_password:
            return
        if self.sudo_checked:
            return
        self.sudo_attempts += 1
        self.commands += 1
        self.log("$ sudo -S -k true  # the password, checked once")
        result = self._exec(
            shell.plain_wrap(sudoers.CHECK_SCRIPT), 60, self.connection.sudo_password + "\n"
        )
        self.log(f"# exit {result.exit_code}")
        if result.ok:
            self.sudo_checked = True
            return
        err = shell.mask(result.stderr + result.stdout, self.secrets)
        if err.strip():
            self.log("stderr: " + err.rstrip("\n"))
        self.password_refused = True
        raise sudoers.check_error(self.host, self.connection.user, result.exit_code, err)

    def put_atomic(self, upload: Upload, timeout_s: int = 120) -> None:
        """Write a file atomically: stage next to it, validate, keep a backup, rename."""
        from provision.atomic import put

        put(self, upload, timeout_s)

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
