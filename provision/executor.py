"""Do: carry out the Changes that `check` decided, on one host. The only place actions run.

Plan and apply are the two executors: `Plan` carries out nothing (the plan is the checks'
Changes themselves), `Apply` runs each Change's actions in order, restarts each unit once at
the end (noted on the host first, so a run cut off between a file and its restart leaves the
restart to the next run: `resume_changes`), daemon-reloads after unit files changed, and
reboots when a Change asks for it and reboots are allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provision import guard, shell
from provision.changes import Change, Guarded, Reboot, Restart, Run, Upload
from provision.errors import StepError
from provision.facts import Facts
from provision.hostconfig import HostConfig
from provision.output import Reporter
from provision.remote import Remote, connect

PENDING_RESTARTS = "/var/lib/provision/pending-restarts"


def restart_marker(action: Restart) -> str:
    """The pending-restart file's name: the unit, `~try` for a try-restart."""
    return action.unit + ("~try" if action.only_if_running else "")


def resume_changes(facts: Facts) -> list[Change]:
    """The restarts an interrupted run left pending (its files are written already). A unit
    that does not exist (its package never got installed) only loses its marker."""
    changes = []
    for marker in facts.pending_restarts:
        unit, _, flag = marker.partition("~")
        verb = "try-restart" if flag == "try" else "restart"
        unit_exists = shell.to(shell.cmd("systemctl", "cat", "--", unit), "/dev/null", stderr=True)
        restart = shell.and_(
            shell.cmd("systemctl", "daemon-reload"), shell.cmd("systemctl", verb, "--", unit)
        )
        command = shell.and_(
            shell.if_(unit_exists, restart),
            shell.cmd("rm", "-f", "--", f"{PENDING_RESTARTS}/{marker}"),
        )
        summary = f"restart {unit} (an interrupted run changed its files, not restarted yet)"
        changes.append(Change(summary, (Run(command, description=f"restart {unit}"),)))
    return changes


def execute(
    remote: Remote,
    changes: list[Change],
    reporter: Reporter,
    hc: HostConfig,
    boot_id: str,
    remote_factory: Callable[..., Remote] = connect,
    prefetch=None,
) -> None:
    """Run the actions of the changes; restarts once each at the end; then a reboot if asked.
    With a running fetcher (prefetch.Fetcher), a command that uses what it fetches waits for
    it first."""
    restarts: dict[str, Restart] = {}
    reboots: list[Reboot] = []
    units_changed = False
    for change in changes:
        wanted = [a for a in change.actions if isinstance(a, Restart) and a.unit not in restarts]
        if wanted:
            # Noted on the host before the change: a run cut off after it but before the
            # restarts at the end leaves them to the next run (resume_changes).
            markers = [f"{PENDING_RESTARTS}/{restart_marker(a)}" for a in wanted]
            remote.run(
                shell.and_(
                    shell.cmd("mkdir", "-p", "--", PENDING_RESTARTS),
                    shell.cmd("touch", "--", *markers),
                )
            )
        for action in change.actions:
            if isinstance(action, Run):
                command = action.command
                if prefetch is not None:
                    command = prefetch.before(
                        command, lambda text: reporter.step_line(hc.name, "prefetch", "wait", text)
                    )
                reporter.started(hc.name, action.description or change.summary)
                try:
                    remote.run(command, sudo=action.sudo, timeout_s=action.timeout_s, lock=True)
                finally:
                    reporter.finished(hc.name)
            elif isinstance(action, Upload):
                remote.put_atomic(action)
                units_changed |= action.dest.startswith(("/etc/systemd/", "/lib/systemd/"))
            elif isinstance(action, Restart):
                restarts.setdefault(action.unit, action)
            elif isinstance(action, Reboot):
                reboots.append(action)
            elif isinstance(action, Guarded):
                reporter.started(hc.name, change.summary)
                try:
                    guard.apply(remote, action, hc.connection, remote_factory)
                finally:
                    reporter.finished(hc.name)
    if units_changed:
        remote.run("systemctl daemon-reload")
    for unit, action in restarts.items():
        verb = "try-restart" if action.only_if_running else "restart"
        marker = f"{PENDING_RESTARTS}/{restart_marker(action)}"
        remote.run(
            shell.and_(
                shell.cmd("systemctl", verb, "--", unit), shell.cmd("rm", "-f", "--", marker)
            )
        )
    if reboots:
        reasons = "; ".join(r.reason for r in reboots)
        if not hc.allow_reboot:
            raise StepError(
                f"{hc.name}: a reboot is required ({reasons})",
                "rerun with --allow-reboot, or reboot by hand and rerun",
            )
        reporter.started(hc.name, f"reboot ({reasons})")
        try:
            remote.reboot(hc.reboot_timeout_s, old_boot_id=boot_id)
        finally:
            reporter.finished(hc.name)


@dataclass
class Plan:
    """The plan executor: the Changes are the result; nothing reaches the host."""

    applies = False

    def carry_out(self, changes: list[Change], boot_id: str) -> None:
        """Nothing: a plan only reports."""


@dataclass
class Apply:
    """The apply executor: runs the Changes on the host (see `execute`)."""

    remote: Remote
    reporter: Reporter
    hc: HostConfig
    remote_factory: Callable[..., Remote] = connect
    prefetch: object = None  # the run's background fetcher (prefetch.Fetcher), if any
    applies = True

    def carry_out(self, changes: list[Change], boot_id: str) -> None:
        """Run the changes' actions, restarts and reboot."""
        execute(
            self.remote, changes, self.reporter, self.hc, boot_id, self.remote_factory,
            self.prefetch,
        )  # fmt: skip
