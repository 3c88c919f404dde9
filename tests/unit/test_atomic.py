"""atomic.put: the script it builds, run here with /bin/sh on real files in a temp folder.

What an atomic replace must do comes from outside the code: the new data reaches the disk
(fsync) before the rename (rename(2) alone leaves an empty or partial file after a crash on
ext4/xfs, see the ext4 `auto_da_alloc` notes), the rename is one syscall from a file in the
same folder, the old file is kept, and nothing staged is left behind, whatever fails.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from provision import atomic
from provision.changes import Upload
from provision.errors import CommandError

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


class LocalRemote:
    """The three Remote methods put() uses, on this machine: each command runs in /bin/sh."""

    host = "local"

    def __init__(self, cwd: Path, env=None, refuse_sudo=False, refused_before=False):
        self.cwd = cwd  # an empty folder: the script must leave nothing in its working dir
        self.cwd.mkdir(exist_ok=True)
        self.env = env
        self.refuse_sudo = refuse_sudo
        self.refused_before = refused_before
        self.staged: list[str] = []
        self.runs: list[tuple[str, bool]] = []

    def wrap(self, command: str, sudo: bool = True) -> str:
        # Remote.wrap: once sudo has refused the password, it refuses to try again.
        if sudo and self.refused_before:
            raise CommandError(self.host, command, 1, "sudo: the password was refused before")
        return command

    def _put_bytes(self, content: bytes, path: str) -> None:
        Path(path).write_bytes(content)
        self.staged.append(path)

    def run(self, command: str, sudo: bool = True, timeout_s: int = 60, check: bool = True):
        self.runs.append((command, sudo))
        if sudo and self.refuse_sudo:  # sudo said no: nothing of the command ran
            raise CommandError(self.host, command, 1, "sudo: a password is required")
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=30,
        )
        if check and proc.returncode != 0:
            raise CommandError(self.host, command, proc.returncode, proc.stdout + proc.stderr)
        return proc


@pytest.fixture
def backups(tmp_path, monkeypatch):
    """Backups go under the temp folder instead of /var/backups/provision."""
    folder = tmp_path / "backups"
    monkeypatch.setattr(atomic, "BACKUP_DIR", str(folder))
    return folder


def upload(dest: Path, content: bytes, **kw) -> Upload:
    return Upload(str(dest), content, owner=ME, group=MY_GROUP, **kw)


def leftovers(remote: LocalRemote, folder: Path) -> list[str]:
    """Staged copies still on disk (the /tmp upload, any .provision-new next to dest) and
    anything left in the script's working folder."""
    return (
        [p for p in remote.staged if os.path.exists(p)]
        + sorted(p.name for p in folder.iterdir() if p.name.endswith(".provision-new"))
        + sorted(p.name for p in remote.cwd.iterdir())
    )


def test_a_new_file_lands_with_its_mode_and_nothing_staged_is_left(tmp_path, backups):
    dest = tmp_path / "sub dir" / "it's.conf"  # a folder that does not exist yet, odd name
    remote = LocalRemote(tmp_path / "cwd")
    atomic.put(remote, upload(dest, b"a = 1\n", mode="0640"))
    assert dest.read_bytes() == b"a = 1\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert leftovers(remote, dest.parent) == []
    assert not backups.exists()  # nothing to back up


def test_the_old_file_is_kept_as_a_backup_under_its_own_path(tmp_path, backups):
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old\n")
    os.chmod(dest, 0o666)  # a mode the umask would cut, an old time: cp -p keeps both
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    remote = LocalRemote(tmp_path / "cwd")
    atomic.put(remote, upload(dest, b"new\n"))
    assert dest.read_bytes() == b"new\n"
    kept = Path(f"{backups}{dest}")
    assert kept.read_bytes() == b"old\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o666
    assert kept.stat().st_mtime == 1_000_000_000
    assert leftovers(remote, tmp_path) == []


def test_backups_go_where_the_readme_says():
    assert atomic.BACKUP_DIR == "/var/backups/provision"  # README: "kept under /var/backups/..."


def test_a_password_refused_before_uploads_nothing(tmp_path, backups):
    remote = LocalRemote(tmp_path / "cwd", refused_before=True)
    with pytest.raises(CommandError):
        atomic.put(remote, upload(tmp_path / "app.conf", b"x\n"))
    assert remote.staged == [] and remote.runs == []


def test_a_file_that_fails_validation_leaves_the_old_one_and_no_staged_copy(tmp_path, backups):
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"good old\n")
    remote = LocalRemote(tmp_path / "cwd")
    with pytest.raises(CommandError) as err:
        atomic.put(remote, upload(dest, b"bad\n", validate="grep -q good {path}"))
    assert err.value.returncode == 65  # EX_DATAERR, what the hint keys on
    assert "failed validation" in err.value.hint and "unchanged" in err.value.hint
    assert "provision: validation failed" in err.value.output
    assert dest.read_bytes() == b"good old\n"
    assert leftovers(remote, tmp_path) == [] and not backups.exists()


def test_validation_runs_on_the_new_content_and_passes(tmp_path, backups):
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old\n")
    seen = tmp_path / "seen"
    check = f"cp {{path}} {seen} && grep -q good {{path}}"  # the staged file, not dest
    atomic.put(LocalRemote(tmp_path / "cwd"), upload(dest, b"good new\n", validate=check))
    assert seen.read_bytes() == b"good new\n" and dest.read_bytes() == b"good new\n"


def test_a_failing_install_stops_the_script_before_any_backup_or_rename(tmp_path, backups):
    """`set -e`: an owner that does not exist fails `install`; nothing after it runs."""
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old\n")
    remote = LocalRemote(tmp_path / "cwd")
    bad = Upload(str(dest), b"new\n", owner="no-such-user-h8", group=MY_GROUP)
    with pytest.raises(CommandError) as err:
        atomic.put(remote, bad)
    assert err.value.returncode not in (0, 65) and not err.value.hint
    assert "no-such-user-h8" in err.value.output  # install's own message
    assert dest.read_bytes() == b"old\n" and not backups.exists()
    assert leftovers(remote, tmp_path) == []


def test_a_refused_sudo_still_removes_the_staged_upload_as_the_login_user(tmp_path, backups):
    dest = tmp_path / "app.conf"
    remote = LocalRemote(tmp_path / "cwd", refuse_sudo=True)
    with pytest.raises(CommandError):
        atomic.put(remote, upload(dest, b"x\n"))
    assert remote.staged and leftovers(remote, tmp_path) == []
    assert remote.runs[-1][1] is False  # the clean-up did not ask sudo again
    assert not dest.exists()


def sync_shim(tmp_path: Path, dest: Path) -> tuple[dict[str, str], Path]:
    """A `sync` first on PATH that records its arguments and what dest held at that moment,
    then does the real sync."""
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "sync.log"
    (shim / "sync").write_text(
        "#!/bin/sh\n"
        f'printf "args: %s\\n" "$*" >> {log}\n'
        f'for f in "$@"; do [ "$f" = -- ] || printf "new: %s\\n" "$(cat "$f")" >> {log}; done\n'
        f'printf "dest: %s\\n" "$(cat {dest} 2>/dev/null || echo absent)" >> {log}\n'
        f'exec {shutil.which("sync")} "$@"\n'
    )
    (shim / "sync").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}, log


def test_the_new_data_is_synced_to_disk_before_it_is_renamed_into_place(tmp_path, backups):
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old\n")
    env, log = sync_shim(tmp_path, dest)
    atomic.put(LocalRemote(tmp_path / "cwd", env=env), upload(dest, b"new\n"))
    lines = log.read_text().splitlines()
    assert lines == [
        f"args: -- {tmp_path}/.app.conf.provision-new",  # the staged file next to dest
        "new: new",  # complete when synced
        "dest: old",  # and not yet renamed into place
    ]
    assert dest.read_bytes() == b"new\n"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_kernel_sees_fsync_of_the_staged_file_then_one_rename_onto_dest(tmp_path, backups):
    """The same order at the syscall level: fsync(new) comes before rename(new, dest)."""
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old\n")
    trace = tmp_path / "trace"

    class Traced(LocalRemote):
        def run(self, command, sudo=True, timeout_s=60, check=True):
            if sudo:  # the install script: under strace
                syscalls = "fsync,fdatasync,rename,renameat,renameat2"
                strace = ["strace", "-f", "-y", "-qq", "-e", "signal=none", "-o", str(trace)]
                command = shlex.join([*strace, "-e", f"trace={syscalls}", "/bin/sh", "-c", command])
            return super().run(command, sudo, timeout_s, check)

    try:
        atomic.put(Traced(tmp_path / "cwd"), upload(dest, b"new\n"))
    except CommandError as exc:
        if "ptrace" in exc.output or "Operation not permitted" in exc.output:
            pytest.skip(f"strace cannot trace here: {exc.output.strip()}")
        raise
    new = f"{tmp_path}/.app.conf.provision-new"
    calls = [line.split(None, 1)[-1] for line in trace.read_text().splitlines()]
    synced = [i for i, c in enumerate(calls) if c.startswith(("fsync(", "fdatasync(")) and new in c]
    renamed = [
        i for i, c in enumerate(calls) if c.startswith("rename") and f'"{new}"' in c and " = 0" in c
    ]
    assert synced and renamed, calls
    assert f'"{dest}"' in calls[renamed[0]]
    assert max(synced) < renamed[0], calls
    assert dest.read_bytes() == b"new\n"
