"""Fault injection into a container test host, from this machine (root), without SSH.

The processes of a systemd-nspawn host are visible in this machine's /proc: those whose root
is the host's rootfs are inside it. A watcher thread polls them every few milliseconds and,
when a command line matches, injects the fault: it kills the SSH sessions of the provisioning
user (the connection is cut from the host's side, as a dropped link or a sleeping laptop does),
kills a process (power lost under dpkg or a file write), or reboots the host.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path


class Inside:
    """The processes of one container host, seen from this machine."""

    def __init__(self, rootfs: str | Path) -> None:
        st = os.stat(rootfs)
        self.root = (st.st_dev, st.st_ino)
        self.outside: set[int] = set()

    def processes(self):
        """(pid, command line) of each process inside, now."""
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in self.outside:
                continue
            pid = int(name)
            try:
                st = os.stat(f"/proc/{pid}/root")
                if (st.st_dev, st.st_ino) != self.root:
                    self.outside.add(pid)
                    continue
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            yield pid, raw.replace(b"\0", b" ").decode(errors="replace").strip()

    def matching(self, pattern: str) -> list[int]:
        rx = re.compile(pattern)
        return [pid for pid, cmd in self.processes() if rx.search(cmd)]

    def kill(self, pattern: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal every process inside whose command line matches."""
        pids = self.matching(pattern)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def cut_ssh(self, user: str) -> list[int]:
        """Kill the user's sshd session processes: every connection of that user drops."""
        return self.kill(rf"^sshd: {re.escape(user)}\b")

    def init_pid(self) -> int:
        """systemd (PID 1 inside), by its namespaced pid."""
        for pid, _cmd in self.processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1":
                        return pid
        raise RuntimeError("no PID 1 inside the container")

    def power_cycle(self) -> None:
        """Reboot at once (systemd's SIGRTMIN+15: `systemctl reboot --force`)."""
        os.kill(self.init_pid(), signal.SIGRTMIN + 15)


class When:
    """Inject `action(pid, command)` once, when a process inside matches `pattern`.

    Use as a context manager around the provision run; `fired` holds the command line that
    triggered it ('' if nothing matched: the case then proves nothing and must fail).
    """

    def __init__(self, inside: Inside, pattern: str, action: Callable[[int, str], None]) -> None:
        self.inside = inside
        self.rx = re.compile(pattern)
        self.action = action
        self.fired = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.is_set():
            for pid, cmd in self.inside.processes():
                if self.rx.search(cmd):
                    self.fired = cmd
                    self.action(pid, cmd)
                    return
            time.sleep(0.003)

    def __enter__(self) -> When:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
