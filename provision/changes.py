"""Changes and actions: what a step wants done, as plain data.

`check()` returns Changes; the runner executes their actions; `--plan` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Run:
    """One remote command, already quoted with shell.cmd()."""

    command: str
    sudo: bool = True
    timeout_s: int | None = None
    description: str = ""  # shown in progress while it runs ("apt-get install")


@dataclass(frozen=True)
class Upload:
    """An atomic write of rendered bytes, with the previous version kept as a backup."""

    dest: str
    content: bytes = field(repr=False)
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    validate: str | None = None  # run on the staged file first; "{path}" is replaced by it


@dataclass(frozen=True)
class Restart:
    """Restart a unit once at the end of the step, however many changes asked for it.

    Recorded on the host first (/var/lib/provision/pending-restarts), so a run cut off between
    writing a file and the restart still restarts the unit on the next run."""

    unit: str
    only_if_running: bool = False  # `systemctl try-restart`: never start a stopped unit


@dataclass(frozen=True)
class Reboot:
    """Reboot the host (when allowed), wait for it, and check that the boot id changed."""

    reason: str


@dataclass(frozen=True)
class Guarded:
    """Changes that can cut the connection (sshd, network), applied with a way back.

    Before: a fresh key-only login must succeed. Then a timer on the host is armed that
    restores the old files and runs `restore` after `rollback_after_s`; the uploads land,
    `activate` runs, and a fresh login (on `confirm_port`/`confirm_addr` when they change)
    must succeed before the timer is disarmed. Otherwise the host rolls itself back.
    """

    uploads: tuple[Upload, ...]
    activate: str  # e.g. "sshd -t && systemctl restart ssh"
    restore: str  # run after the old files are back
    confirm_port: int | None = None
    confirm_addr: str | None = None
    rollback_after_s: int = 90


Action = Run | Upload | Restart | Reboot | Guarded


@dataclass(frozen=True)
class Change:
    """One thing that differs on the host, with the actions that fix it."""

    summary: str  # imperative and concrete: "install 3 packages: a, b, c"
    actions: tuple[Action, ...]
    diff: str = ""


@dataclass(frozen=True)
class Result:
    """What a remote command returned."""

    exit_code: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
