"""One provision run at a time per host: a lock held on the host for the whole run.

A process on its own channel holds `flock` on RUN_LOCK from before the facts to the last
re-check (the per-command lock, shell.HOST_LOCK, still guards a command that a cut run left
running). It writes who holds it to RUN_HOLDER (the client's pid, user and host, since when),
which a waiting run shows. It lets go when the client does: its stdin closes (the client
exited, even by a signal: the kernel closes the socket) or no heartbeat came for HEARTBEAT_DEAD_S
(a cut cable: sshd alone would notice only hours later). A waiter writes a line every 2 s, so
a closed channel ends it at once (SIGPIPE): no waiter outlives its client.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from provision import interrupt, shell, sudoers
from provision.changes import Result
from provision.errors import ConnectError, StepError

RUN_LOCK = "/run/lock/provision.run.lock"
RUN_HOLDER = "/run/lock/provision.run.holder"
HEARTBEAT_S = 10
HEARTBEAT_DEAD_S = 60
WAIT_S = 3600

# $1: who we are (the holder line). Lines out: "busy WHO" (another run holds the box),
# "running WHAT" (an earlier run's command still runs under HOST_LOCK), "locked".
SCRIPT = f"""exec 9>>{RUN_LOCK} || exit 70
if ! flock -n 9; then
  while :; do
    printf 'busy %s\\n' "$(cat {RUN_HOLDER} 2>/dev/null)" || exit 71
    flock -w 2 9 && break
  done
fi
printf '%s (host pid %s)\\n' "$1" "$$" >{RUN_HOLDER}
exec 8>>{shell.HOST_LOCK} || exit 70
if ! flock -n 8; then
  while :; do
    printf 'running %s\\n' "$(cat {shell.HOST_LOCK_HOLDER} 2>/dev/null)" || exit 71
    flock -w 2 8 && break
  done
fi
exec 8>&-
echo locked
while c=$(timeout {HEARTBEAT_DEAD_S} head -c 1) && [ -n "$c" ]; do :; done
"""


class Stream(Protocol):
    """A remote command we talk to while it runs (Remote.open_stream)."""

    def readline(self, timeout_s: float) -> str | None:
        """The next line without its newline; None: none yet; '' at the end."""

    def send(self, text: str) -> None:
        """Write to its stdin."""

    def close(self) -> str:
        """End it (closes its stdin and the channel); what it wrote to stderr."""

    def alive(self) -> bool:
        """Still connected (a reboot or a new address closes the connection it ran on)."""


def who() -> str:
    """This run, as a waiting run sees it: pid, user@client, since when."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"provision pid {os.getpid()} of {user}@{socket.gethostname()}, since {since}"


def lock_command() -> str:
    """The command that takes and holds the run lock (run as root)."""
    return shell.cmd("sh", "-c", SCRIPT, "provision-run-lock", who())


class HostLock:
    """The held lock: heartbeats keep it; release() lets go."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.stream.send(".")
            except Exception:  # the connection is gone: the host lets go by itself
                return

    def alive(self) -> bool:
        """Still held (the channel it runs on is open)."""
        return not self.stop.is_set() and self.stream.alive()

    def release(self) -> None:
        """Let go of the lock (the holder sees EOF and exits)."""
        self.stop.set()
        with contextlib.suppress(Exception):
            self.stream.close()


def acquire(
    host: str,
    open_stream: Callable[[str], Stream],
    note: Callable[[str], None],
    wait_s: int = WAIT_S,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[HostLock, bool]:
    """Take the host's run lock, saying who holds it while we wait; (lock, whether we waited).
    Ctrl-C while waiting closes the channel: the waiter on the host ends within 2 s."""
    stream = open_stream(lock_command())
    started = clock()
    shown = ("", 0.0)
    waited = False
    try:
        while True:
            interrupt.check()  # a worker thread's wait (the reads run beside it) stops too
            line = stream.readline(0.5)
            if line is None:
                if clock() - started > wait_s:
                    raise StepError(
                        f"{host}: another provision run held the host for {wait_s}s",
                        f"see who in {RUN_HOLDER} on the host; run again when it is done",
                    )
                continue
            if line == "":
                break
            if line == "locked":
                return HostLock(stream), waited
            kind, _, text = line.partition(" ")
            if kind not in ("busy", "running"):
                continue
            waited = True
            elapsed = clock() - started
            if text != shown[0] or elapsed - shown[1] >= 30:
                shown = (text, elapsed)
                note(_waiting(kind, text or "a provision run (no holder recorded)", elapsed))
    except BaseException:
        stream.close()
        raise
    err = stream.close().strip()
    refused = sudoers.probe_failure(Result(1, "", err), sudo=True)
    if refused:
        raise ConnectError(
            f"{host}: cannot take the host's run lock: {refused}",
            "sudo must work without a prompt for every command: pass --ask-sudo-pass or "
            "PROVISION_SUDO_PASSWORD, or give the user NOPASSWD sudo",
        )
    raise ConnectError(
        f"{host}: could not take the host's run lock {RUN_LOCK}"
        + (f": {err.splitlines()[-1]}" if err else ""),
        "the transcript has the command; check that sudo works for the login user",
    )


def _waiting(kind: str, text: str, elapsed: float) -> str:
    after = f" (waiting {elapsed:.0f}s)" if elapsed >= 1 else ""
    if kind == "busy":
        return f"another run holds the box: {text}; waiting for it to finish{after}"
    return (
        f"a command of an earlier run is still running on the host: {text}; waiting for it "
        f"to end{after}"
    )
