"""Ctrl-C and SIGTERM: say at once what happens next, stop what is safe to stop, leave.

The first signal prints what happens to the command running on the host and raises
Interrupted (a KeyboardInterrupt) in the main thread; worker threads see `requested()` before
each command and in their wait loops. A command that is safe to stop (a lock wait, a
download, pip) is stopped on the host; apt and dpkg are never killed mid-run: provision waits
for them and says so. A second signal leaves at once. Exit status 130 (SIGINT), 143 (SIGTERM).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading

from provision.shell import redact


class Interrupted(KeyboardInterrupt):
    """The run was interrupted by SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    def __init__(self) -> None:
        self.signum = 0
        self.lock = threading.Lock()
        self.running: dict[int, tuple[str, str, bool]] = {}  # thread -> (host, command, safe)


state = _State()

# Killing these mid-run leaves dpkg's database half-configured: they are waited for.
_UNSAFE = re.compile(r"\b(dpkg|apt-get|apt|aptitude|unattended-upgrade)\b(?![^;&|]*\bupdate\b)")


def stoppable(command: str) -> bool:
    """May this command be stopped on the host (not apt/dpkg, except `apt-get update`)?"""
    return not _UNSAFE.search(command)


def requested() -> bool:
    """A signal came in: stop before the next command."""
    return state.signum != 0


def check() -> None:
    """Raise Interrupted when a signal came in (worker threads call this between commands)."""
    if state.signum:
        raise Interrupted(state.signum)


def running(host: str, command: str, safe: bool) -> None:
    """This thread now waits for `command` on `host` (what the first signal reports)."""
    with state.lock:
        state.running[threading.get_ident()] = (host, redact(command), safe)


def done() -> None:
    """This thread's command ended."""
    with state.lock:
        state.running.pop(threading.get_ident(), None)


def message(signum: int) -> str:
    """What the first signal prints: what happens next, host by host."""
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    lines = [f"provision: {name}: stopping."]
    with state.lock:
        jobs = list(state.running.values())
    for host, command, safe in jobs:
        first = command.strip().splitlines()[0][:70] if command.strip() else ""
        if safe:
            lines.append(f"  {host}: stopping `{first}` on the host.")
        else:
            lines.append(
                f"  {host}: `{first}` keeps running on the host (stopping apt/dpkg mid-run "
                "breaks the package database); waiting for it to end."
            )
    if any(not safe for _h, _c, safe in jobs):
        lines.append("  Press Ctrl-C again to leave at once (apt/dpkg keeps running there).")
    else:
        lines.append("  Press Ctrl-C again to leave at once.")
    return "\n".join(lines) + "\n"


def _handler(signum: int, _frame) -> None:
    if state.signum:
        sys.stderr.write("provision: leaving now.\n")
        sys.stderr.flush()
        os._exit(128 + state.signum)
    state.signum = signum
    sys.stderr.write(message(signum))
    sys.stderr.flush()
    raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as above (main thread only)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def exit_code() -> int:
    """128 + the signal when one came in, else 0."""
    return 128 + state.signum if state.signum else 0
