"""Apply a Guarded change: never lose the way into the box.

A fresh key-only login proves the way in before anything changes. A transient systemd timer
on the host restores the old files and services after a delay, so a change that cuts the
connection undoes itself without us. After the change, a fresh login (on the new port or
address) must succeed; only then is the timer disarmed.
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
    """The host-side script that puts the old files back and runs `restore`."""
    lines = [
        "#!/bin/sh",
        "# Written by provision: undoes a change that was not confirmed.",
        shell.cmd("touch", "--", f"{folder}/fired"),  # tells disarm that the rollback ran
    ]
    for i, upload in enumerate(g.uploads):
        saved = f"{folder}/{i}"
        lines.append(
            f"if [ -e {shell.cmd(saved)} ]; then {shell.cmd('cp', '-p', '--', saved, upload.dest)};"
            f" else {shell.cmd('rm', '-f', '--', upload.dest)}; fi"
        )
    lines.append(g.restore)
    return "\n".join(lines) + "\n"


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
        save.append(
            f"if [ -e {shell.cmd(dest)} ]; then {shell.cmd('cp', '-p', '--', dest, saved)}; fi"
        )
    script = f"{folder}/rollback.sh"
    save.append(f"printf '%s' {shell.cmd(rollback_script(g, folder))} > {shell.cmd(script)}")
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
    fired = shell.cmd(f"{folder}/fired")
    disarm = (
        f"{shell.cmd('systemctl', 'stop', '--', f'{unit}.timer')} 2>/dev/null; "
        f"if [ -e {fired} ]; then rc=3; else rc=0; fi; "
        f"{shell.cmd('rm', '-rf', '--', folder)}; exit $rc"
    )
    try:
        for upload in g.uploads:
            remote.put_atomic(upload)
        remote.run(g.activate, timeout_s=60)
    except (CommandError, ConnectError) as exc:
        if _roll_back_now(remote, script, disarm):
            how = "the old configuration was restored"
        else:
            how = (
                f"the session is gone; the host restores the old configuration within "
                f"{g.rollback_after_s}s by itself"
            )
        raise StepError(f"{host}: the change failed ({how}): {exc.message}", exc.hint) from None
    target = dataclasses.replace(
        connection,
        port=g.confirm_port or connection.port,
        addr=g.confirm_addr or connection.addr,
        trusted_keys=remote.host_keys(),  # the same sshd answers at the new port or address
    )
    reason = fresh_login(factory, target, wait_s=30)
    if reason:
        undone = _roll_back_now(remote, script, disarm)
        how = (
            "the old configuration was restored"
            if undone
            else (f"the host restores the old configuration within {g.rollback_after_s}s by itself")
        )
        raise StepError(
            f"{host}: after the change a fresh login to {target.target} failed ({reason}); {how}",
            "check the settings of this step; nothing was left half-applied",
        )
    moved = (target.addr, target.port) != (connection.addr, connection.port)
    if moved:
        # The old address may be gone already: continue (and disarm) at the new one.
        remote.retarget(dataclasses.replace(target, identities_only=connection.identities_only))
    if remote.run(disarm, check=False).exit_code == 3:
        raise StepError(
            f"{host}: the change was not confirmed within {g.rollback_after_s}s, so the host "
            "restored the old configuration",
            "rerun; if the change is slow to apply here, raise the step's rollback_after_s",
        )


def _roll_back_now(remote: Remote, script: str, disarm: str) -> bool:
    """Run the rollback through the open session; False when that is gone (the timer will)."""
    try:
        result = remote.run(f"{shell.cmd('sh', script)}; {disarm}", timeout_s=60, check=False)
    except (CommandError, ConnectError):
        return False
    return result.exit_code == 3  # the rollback ran and the timer is gone


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
        states = " ".join(shell.cmd(f"provision-rollback-{t}.timer") for t in armed)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                # exit 0 while at least one of them is still armed
                if not remote.probe(f"systemctl is-active -q {states}").ok:
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
    remote.run(shell.cmd("rm", "-rf", "--", *folders))
    return notes
