"""guard: the host-side rollback script (run here with /bin/sh on real files) never runs
`restore` for a restored file that fails its validation, and apply's messages tell a restored
configuration from one that was left alone."""

from __future__ import annotations

import subprocess

import pytest

from fakes import FakeRemote
from provision import guard
from provision.changes import Guarded, Upload
from provision.errors import StepError


def script_run(tmp_path, g: Guarded, saved: dict[int, str]):
    """Write the rollback folder as apply() leaves it (saved old files), run the script."""
    folder = tmp_path / "rollback"
    folder.mkdir()
    for i, text in saved.items():
        (folder / str(i)).write_text(text)
    script = folder / "rollback.sh"
    script.write_text(guard.rollback_script(g, str(folder)))
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    return proc, folder


def test_restored_file_failing_its_validation_is_not_restarted(tmp_path):
    dest, marker = tmp_path / "app.conf", tmp_path / "restarted"
    dest.write_text("new good\n")
    g = Guarded(
        uploads=(Upload(str(dest), b"", validate="grep -q good {path}"),),
        activate="true",
        restore=f"touch {marker}",
    )
    proc, folder = script_run(tmp_path, g, {0: "old bad\n"})
    assert proc.returncode == guard.RESTORE_INVALID
    assert dest.read_text() == "old bad\n"  # the old file is back
    assert not marker.exists()  # but nothing was restarted with it
    assert (folder / "restore-rc").read_text().strip() == "4"
    assert (folder / "fired").exists()


def test_restore_that_validates_first_refuses_and_says_so(tmp_path):
    dest = tmp_path / "app.conf"
    dest.write_text("new\n")
    g = Guarded(
        uploads=(Upload(str(dest), b""),),
        activate="true",
        restore="if false; then echo restarted; else echo 'config: line 1: bad option'; exit 4; fi",
    )
    proc, _folder = script_run(tmp_path, g, {0: "old\n"})
    assert proc.returncode == 4 and "line 1: bad option" in proc.stdout
    assert "restarted" not in proc.stdout


def test_valid_restore_runs_and_a_new_file_is_removed(tmp_path):
    dest, added, marker = tmp_path / "a.conf", tmp_path / "b.conf", tmp_path / "restarted"
    dest.write_text("new good\n")
    added.write_text("added\n")
    g = Guarded(
        uploads=(
            Upload(str(dest), b"", validate="grep -q good {path}"),
            Upload(str(added), b"", validate="false"),  # absent after the rollback: not checked
        ),
        activate="true",
        restore=f"touch {marker}",
    )
    proc, _folder = script_run(tmp_path, g, {0: "old good\n"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dest.read_text() == "old good\n" and not added.exists() and marker.exists()


def test_failed_activation_with_invalid_old_config_says_the_daemon_was_left_alone():
    remote = FakeRemote()
    remote.on(r"true", "")  # the fresh logins
    remote.on(r"systemd-run", "")  # saving the old files, arming the timer
    remote.on(r"^.*sshd -t && systemctl restart", (1, "50-typo.conf: line 1: Bad option"))
    remote.on(
        r"rollback\.sh; ",
        (3, "@@restore 4\n/etc/ssh/sshd_config.d/50-typo.conf: line 1: Bad configuration option\n"),
    )
    g = Guarded(
        uploads=(Upload("/etc/ssh/sshd_config.d/00-provision.conf", b"x\n"),),
        activate="sshd -t && systemctl restart ssh",
        restore="if sshd -t; then systemctl restart ssh; else exit 4; fi",
    )
    with pytest.raises(StepError) as err:
        guard.apply(remote, g, remote.connection, lambda c: remote)
    message = err.value.message
    assert "the old configuration was restored" not in message
    assert "left alone" in message and "50-typo.conf: line 1" in message
    assert "sshd -t" in err.value.hint


def test_restored_message_tells_the_three_outcomes():
    g = Guarded(uploads=(), activate="a", restore="r")
    assert guard.restored(0, "", g)[0] == "the old configuration was restored"
    assert "left alone" in guard.restored(4, "bad", g)[0]
    assert "exited 1" in guard.restored(1, "", g)[0]
