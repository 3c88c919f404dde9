"""Apply a Guarded change: never lose the way into the box.

A fresh key-only login proves the way in before anything changes. A transient systemd timer
on the host restores the old files and services after a delay, so a change that cuts the
connection undoes itself without us. After the change, a fresh login (on the new port or
address) must succeed; only then is the timer disarmed.

A rollback never restarts a service with a configuration that fails its own validation: the
restored files are checked with their uploads' `validate` commands, and `restore` is expected
to validate the whole configuration first (sshd: `sshd -t`) and exit RESTORE_INVALID (4)
instead of restarting. Then the running daemon is left alone and the message says what the
operator must do.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

from provision import shell
from provision.changes import Guarded
from provision.errors import CommandError, ConnectError, StepError
from provision.remote import Connection, Remote

ROLLBACK_DIR = "/var/lib/provision/rollback"
# The exit code of a rollback whose restored configuration failed validation: nothing was
# restarted (steps' `restore` commands use it too: `if sshd -t; then ...; else exit 4; fi`).
RESTORE_INVALID = 4


def fresh_login(factory: Callable[..., Remote], connection: Connection, wait_s: float) -> str:
    """Open a new key-only connection and run `true`; '' on success, else the reason."""
    deadline = time.monotonic() + wait_s
    reason = ""
    while True:
        try:
            remote = factory(dataclasses.replace(connection, identities_only=True))
            try:
                remote.run("true", sudo=False)
                return ""
            finally:
                remote.close()
        except (ConnectError, CommandError) as exc:
            reason = exc.message
        if time.monotonic() >= deadline:
            return reason
        time.sleep(2)


def rollback_script(g: Guarded, folder: str) -> str:
    """The host-side script that puts the old files back, validates them and runs `restore`.

    Exit status: `restore`'s, or RESTORE_INVALID when a restored file fails its validation (then
    `restore` does not run). Saved in FOLDER/restore-rc, its output in FOLDER/restore.log."""
    log, rc = f"{folder}/restore.log", f"{folder}/restore-rc"
    lines = [
        "#!/bin/sh",
        "# Written by provision: undoes a change that was not confirmed.",
        shell.cmd("touch", "--", f"{folder}/fired"),  # tells disarm that the rollback ran
    ]
    for i, upload in enumerate(g.uploads):
        saved = f"{folder}/{i}"
        lines.append(
            shell.if_(
                shell.exists(saved),
                shell.cmd("cp", "-p", "--", saved, upload.dest),
                shell.cmd("rm", "-f", "--", upload.dest),
            )
        )
    checks = [
        shell.group(shell.or_(shell.absent(u.dest), shell.with_path(u.validate, u.dest)))
        for u in g.uploads
        if u.validate
    ]
    # Only a configuration that passes its own checks is ever (re)started.
    valid = shell.and_(*checks) if checks else "true"
    lines.append(
        shell.if_(
            shell.logged(valid, log),
            shell.seq(shell.logged(g.restore, log, append=True), "r=$?"),
            f"r={RESTORE_INVALID}",
        )
    )
    lines.append(shell.seq(shell.to('echo "$r"', rc), shell.cmd("cat", log), 'exit "$r"'))
    return shell.script(*lines)


def restored(rc: int | None, output: str, g: Guarded) -> tuple[str, str]:
    """(what happened, what to do) after a rollback that ran with exit status `rc`."""
    tail = " / ".join(line.strip() for line in output.strip().splitlines()[-3:] if line.strip())
    if rc == 0:
        return "the old configuration was restored", ""
    if rc == RESTORE_INVALID:
        return (
            "the old files are back, but the configuration fails its own validation"
            f"{f' ({tail})' if tail else ''}, so the running service was left alone (not "
            "restarted, it still runs the configuration it had)",
            "fix the file and line the validation names (for sshd: `sudo sshd -t` must print "
            "nothing), then rerun; do not restart the service before that, it would not start",
        )
    return (
        f"the old files are back, but restoring the service failed (`{g.restore}` exited {rc}"
        f"{f': {tail}' if tail else ''})",
        "look at the service on the host (`systemctl status`), from a console if SSH is gone",
    )


def apply(
    remote: Remote, g: Guarded, connection: Connection, factory: Callable[..., Remote]
) -> None:
    """Fresh login, arm the rollback, change, confirm with a fresh login, disarm."""
    host = connection.host
    reason = fresh_login(factory, connection, wait_s=0)
    if reason:
        raise StepError(
            f"{host}: a fresh key login failed before the change, so nothing was changed "
            f"({reason})",
            "fix key login first (ansible_ssh_private_key_file); provision never switches "
            "off a way in before another one is proven",
        )
    token = uuid.uuid4().hex[:8]
    folder = f"{ROLLBACK_DIR}/{token}"
    unit = f"provision-rollback-{token}"
    save = [shell.cmd("mkdir", "-p", "--", folder)]
    for i, upload in enumerate(g.uploads):
        dest, saved = upload.dest, f"{folder}/{i}"
        save.append(shell.if_(shell.exists(dest), shell.cmd("cp", "-p", "--", dest, saved)))
    script = f"{folder}/rollback.sh"
    save.append(shell.write_file(rollback_script(g, folder), script))
    save.append(
        shell.cmd(
            "systemd-run",
            "--quiet",
            f"--unit={unit}",
            f"--on-active={g.rollback_after_s}s",
            "--timer-property=AccuracySec=1s",
            "/bin/sh",
            script,
        )
    )
    remote.run(shell.and_(*save))
    # Exit 3: the rollback ran (the timer fired before we confirmed, or we ran it ourselves).
    restore_rc = f"{folder}/restore-rc"
    disarm = shell.seq(
        shell.quiet(shell.cmd("systemctl", "stop", "--", f"{unit}.timer")),
        shell.if_(shell.exists(f"{folder}/fired"), "rc=3", "rc=0"),
        shell.if_(
            shell.exists(restore_rc),
            shell.seq(
                f"echo @@restore {shell.file_text(restore_rc)}",
                shell.quiet(shell.cmd("cat", f"{folder}/restore.log")),
            ),
        ),
        shell.cmd("rm", "-rf", "--", folder),
        "exit $rc",
    )
    try:
        for upload in g.uploads:
            remote.put_atomic(upload)
        remote.run(g.activate, timeout_s=60)
    except (CommandError, ConnectError) as exc:
        outcome = _roll_back_now(remote, script, disarm)
        hint = exc.hint
        if outcome is not None:
            how, todo = restored(*outcome, g)
            hint = todo or hint
        else:
            how = (
                f"the session is gone; the host restores the old configuration within "
                f"{g.rollback_after_s}s by itself (and restarts only a valid one)"
            )
        raise StepError(f"{host}: the change failed ({how}): {exc.message}", hint) from None
    target = dataclasses.replace(
        connection,
        port=g.confirm_port or connection.port,
        addr=g.confirm_addr or connection.addr,
        trusted_keys=remote.host_keys(),  # the same sshd answers at the new port or address
    )
    reason = fresh_login(factory, target, wait_s=30)
    if reason:
        outcome = _roll_back_now(remote, script, disarm)
        todo = ""
        if outcome is not None:
            how, todo = restored(*outcome, g)
        else:
            how = f"the host restores the old configuration within {g.rollback_after_s}s by itself"
        raise StepError(
            f"{host}: after the change a fresh login to {target.target} failed ({reason}); {how}",
            todo or "check the settings of this step; nothing was left half-applied",
        )
    moved = (target.addr, target.port) != (connection.addr, connection.port)
    if moved:
        # The old address may be gone already: continue (and disarm) at the new one.
        remote.retarget(dataclasses.replace(target, identities_only=connection.identities_only))
    done = remote.run(disarm, check=False)
    if done.exit_code == 3:
        rc, output = _restore_result(done.stdout)
        how, todo = restored(rc, output, g) if rc is not None else ("", "")
        how = "restored the old configuration" if rc in (0, None) else f"rolled back: {how}"
        raise StepError(
            f"{host}: the change was not confirmed within {g.rollback_after_s}s, so the host "
            + how,
            todo or "rerun; if the change is slow to apply here, raise the step's rollback_after_s",
        )


def _restore_result(stdout: str) -> tuple[int | None, str]:
    """The rollback's exit status from its `@@restore N` line, and the output after it."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("@@restore ") and line[10:].strip().isdigit():
            return int(line[10:]), "\n".join(lines[i + 1 :])
    return None, stdout


def _roll_back_now(remote: Remote, script: str, disarm: str) -> tuple[int | None, str] | None:
    """Run the rollback through the open session: its (exit status, output); None when the
    session is gone or the timer had it already (the timer will, or did)."""
    try:
        result = remote.run(shell.seq(shell.cmd("sh", script), disarm), timeout_s=60, check=False)
    except (CommandError, ConnectError):
        return None
    if result.exit_code != 3:  # the rollback did not run, or the timer is still there
        return None
    return _restore_result(result.stdout)


def settle(remote: Remote, rollbacks, wait_s: float, progress: Callable[[str], None]) -> list[str]:
    """Before a new run: let the rollbacks of an interrupted run finish, then clear them.

    A change whose run was cut off (connection lost, laptop asleep) is still unconfirmed: its
    timer will put the old files back. Checking now would see the new files, plan nothing, and
    the timer would undo them afterwards. So wait for armed timers to fire (the connection may
    drop if the rollback moves the address: the caller reconnects), then remove the folders.
    A folder whose timer is gone without firing (a reboot ends transient timers) keeps the new
    configuration, which we just logged in through. Returns what happened, for the log.
    """
    notes = []
    armed = [token for token, fired, state in rollbacks if not fired and state == "active"]
    if armed:
        progress(
            f"waiting for the host to roll back {len(armed)} unconfirmed change(s) of an "
            "interrupted run"
        )
        timers = [f"provision-rollback-{t}.timer" for t in armed]
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                # exit 0 while at least one of them is still armed
                if not remote.probe(shell.cmd("systemctl", "is-active", "-q", *timers)).ok:
                    break
            except ConnectError:  # the rollback moved the address back, or restarted sshd
                remote.close()
                remote.open()
            time.sleep(2)
        else:
            raise StepError(
                f"{remote.host}: an unconfirmed change of an interrupted run has not rolled back "
                f"within {wait_s:.0f}s",
                f"look at `systemctl list-timers 'provision-rollback-*'` and {ROLLBACK_DIR} on "
                "the host",
            )
        notes.append(f"rolled back by the host: {', '.join(armed)}")
    kept = [t for t, fired, state in rollbacks if not fired and state != "active"]
    if kept:
        notes.append(f"timer gone without firing (rebooted?), kept as is: {', '.join(kept)}")
    folders = [f"{ROLLBACK_DIR}/{token}" for token, _fired, _state in rollbacks]
    # A rollback that found its restored configuration invalid left the service alone: say so.
    report = [
        shell.and_(
            shell.exists(f"{d}/restore-rc"),
            f"echo {shell.cmd(d.rsplit('/', 1)[1])} {shell.file_text(f'{d}/restore-rc')}",
        )
        for d in folders
    ]
    out = remote.run(shell.seq(*report, shell.cmd("rm", "-rf", "--", *folders))).stdout
    for line in out.splitlines():
        token, _, rc = line.partition(" ")
        if rc.strip() not in ("", "0"):
            notes.append(
                f"the host's rollback {token} exited {rc.strip()}: the restored configuration "
                "failed validation or its service did not restart; the service was left alone"
            )
    return notes
