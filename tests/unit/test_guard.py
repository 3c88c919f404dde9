"""guard: the host-side rollback script (run here with /bin/sh on real files) never runs
`restore` for a restored file that fails its validation, and apply's messages tell a restored
configuration from one that was left alone."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess

import pytest

from fakes import FakeRemote
from provision import guard
from provision.changes import Guarded, Result, Upload
from provision.errors import ConnectError, StepError


def script_run(tmp_path, g: Guarded, saved: dict[int, str]):
    """Write the rollback folder as apply() leaves it (saved old files), run the script."""
    folder = tmp_path / "rollback"
    folder.mkdir()
    for i, text in saved.items():
        (folder / str(i)).write_text(text)
    script = folder / "rollback.sh"
    script.write_text(guard.rollback_script(g, str(folder)))
    cwd = tmp_path / "cwd"  # the script leaves nothing in its working folder
    cwd.mkdir()
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd=cwd)
    assert list(cwd.iterdir()) == []
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


# apply() and settle() on a host that is this machine: their commands really run in /bin/sh on
# temp files; systemd-run and systemctl are shims that record their arguments, and what the
# rollback folder held when the timer was armed.


class Clock:
    """guard's clock: sleep() moves it on at once, so a 30 s wait takes no time."""

    def __init__(self):
        self.now = 0.0
        self.slept = []
        self.reads = 0

    def monotonic(self):
        self.reads += 1
        if self.reads > 10_000:  # a wait that never ends fails here instead of hanging
            raise AssertionError("guard's clock was read 10000 times: a loop without an end")
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


class LocalHost(FakeRemote):
    """A FakeRemote whose commands run here (as root: plain `sh -c`)."""

    def __init__(self, tmp_path, active_polls: int = 0):
        super().__init__()
        self.tmp = tmp_path
        shims = tmp_path / "bin"
        shims.mkdir()
        log = tmp_path / "log"
        log.mkdir()
        self.logdir = log
        # systemd-run: record argv and copy the rollback folder as it was armed
        (shims / "systemd-run").write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {log}/systemd-run\n'
            'for a; do last="$a"; done\n'
            f'cp -r "$(dirname "$last")" {log}/armed\n'
        )
        # systemctl: record argv; `is-active` says active for the first N polls
        (tmp_path / "polls").write_text(str(active_polls))
        (shims / "systemctl").write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {log}/systemctl\n'
            'if [ "$1" = is-active ]; then\n'
            f"  n=$(cat {tmp_path}/polls); echo $((n - 1)) > {tmp_path}/polls\n"
            '  [ "$n" -gt 0 ]; exit $?\n'
            "fi\n"
        )
        for shim in shims.iterdir():
            shim.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
        self.retargeted = []
        self.reopened = self.closed = 0
        self.cwd = tmp_path / "cwd"  # every command runs here; it must stay empty
        self.cwd.mkdir()
        self.cut = ""  # a command matching this finds the connection gone

    def _exec(self, command, timeout_s, stdin):
        self.ran.append(command)
        if self.cut and self.cut in command:
            self.cut = ""
            raise ConnectError("fake: connection lost")
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=30,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def put_atomic(self, upload, timeout_s=120):
        self.uploads.append(upload)
        with open(upload.dest, "wb") as f:
            f.write(upload.content)

    def host_keys(self):
        return ("ssh-ed25519 AAAAC3Nz",)

    def retarget(self, connection):
        self.retargeted.append(connection)

    def open(self):
        self.reopened += 1

    def close(self):
        self.closed += 1

    def logged(self, name):
        path = self.logdir / name
        return path.read_text().splitlines() if path.exists() else []


class Logins:
    """The factory of fresh logins: each answer is '' (it works) or the reason it fails."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.tried = []

    def __call__(self, connection):
        self.tried.append(connection)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        logins = self

        class Login:
            def run(self, command, sudo=True):
                assert command == "true" and sudo is False
                if answer:
                    raise ConnectError(answer)

            def close(self):
                logins.closed = getattr(logins, "closed", 0) + 1

        return Login()


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "ROLLBACK_DIR", str(tmp_path / "rollback"))
    monkeypatch.setattr(guard, "time", Clock())
    local = LocalHost(tmp_path)
    yield local
    assert list(local.cwd.iterdir()) == []  # nothing written outside the named paths


def change(tmp_path, **kw):
    dest = tmp_path / "sshd.conf"
    dest.write_text("old good\n")
    marker = tmp_path / "restored"
    g = Guarded(
        uploads=(Upload(str(dest), b"new good\n", validate="grep -q good {path}"),),
        activate=kw.pop("activate", "true"),
        restore=f"touch {marker}",
        rollback_after_s=kw.pop("rollback_after_s", 90),
        **kw,
    )
    return g, dest, marker


def test_a_confirmed_change_arms_a_timer_with_the_old_files_then_disarms_it(tmp_path, host):
    g, dest, marker = change(tmp_path, rollback_after_s=77, confirm_port=2222)
    logins = Logins("")
    guard.apply(host, g, host.connection, logins)
    assert dest.read_text() == "new good\n" and not marker.exists()
    (armed,) = host.logged("systemd-run")
    argv = armed.split()
    token = argv[1].removeprefix("--unit=provision-rollback-")
    folder = f"{tmp_path}/rollback/{token}"
    # systemd-run(1): a transient timer that starts the rollback 77 s later, to the second
    assert argv == [
        "--quiet", f"--unit=provision-rollback-{token}", "--on-active=77s",
        "--timer-property=AccuracySec=1s", "/bin/sh", f"{folder}/rollback.sh",
    ]  # fmt: skip
    assert len(token) == 8
    assert (host.logdir / "armed" / "0").read_text() == "old good\n"  # the old file, saved
    assert (host.logdir / "armed" / "rollback.sh").read_text() == guard.rollback_script(g, folder)
    assert host.logged("systemctl") == [f"stop -- provision-rollback-{token}.timer"]
    assert not os.path.exists(folder)  # disarmed and cleaned
    # fresh key-only logins: before, then at the new port, trusting the same host keys
    before, after = logins.tried
    assert before.identities_only and before.port == host.connection.port
    assert after.identities_only and after.port == 2222
    assert after.trusted_keys == host.host_keys()
    assert logins.closed == 2
    assert host.retargeted[0].port == 2222 and not host.retargeted[0].identities_only


def test_no_fresh_login_before_means_nothing_changes(tmp_path, host):
    g, dest, _marker = change(tmp_path)
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins("Permission denied (publickey)"))
    assert "nothing was changed" in err.value.message and "publickey" in err.value.message
    assert "ansible_ssh_private_key_file" in err.value.hint
    assert host.ran == [] and dest.read_text() == "old good\n"


def test_a_failed_login_after_the_change_rolls_back_at_once(tmp_path, host):
    g, dest, marker = change(tmp_path, confirm_addr="192.0.2.9")
    logins = Logins("", "Connection refused")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, logins)
    assert dest.read_text() == "old good\n" and marker.exists()  # restored and restarted
    assert "192.0.2.9" in err.value.message and "Connection refused" in err.value.message
    assert "the old configuration was restored" in err.value.message
    assert "check the settings of this step" in err.value.hint
    assert len(logins.tried) >= 15 and guard.time.now >= 30  # retried for 30 s, every 2 s
    assert set(guard.time.slept) == {2}
    assert os.listdir(tmp_path / "rollback") == [] and host.retargeted == []


def test_a_failed_activation_restores_the_old_files_and_restarts_them(tmp_path, host):
    g, dest, marker = change(tmp_path, activate="echo boom >&2; exit 1")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert dest.read_text() == "old good\n" and marker.exists()
    assert "the change failed (the old configuration was restored)" in err.value.message
    assert "boom" in err.value.message
    assert os.listdir(tmp_path / "rollback") == []


def test_a_timer_that_fired_before_the_confirmation_is_reported(tmp_path, host):
    # The activation is slow: the host's timer runs the rollback before we confirm.
    g, dest, marker = change(tmp_path, activate=f"sh {tmp_path}/rollback/*/rollback.sh; true")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert dest.read_text() == "old good\n" and marker.exists()
    assert "was not confirmed within 90s, so the host restored the old configuration" in (
        err.value.message
    )
    assert "rollback_after_s" in err.value.hint
    assert os.listdir(tmp_path / "rollback") == []


def test_a_timer_that_fired_with_an_invalid_old_config_says_so(tmp_path, host):
    g, dest, marker = change(tmp_path, activate=f"sh {tmp_path}/rollback/*/rollback.sh; true")
    dest.write_text("old bad\n")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert dest.read_text() == "old bad\n" and not marker.exists()
    assert "rolled back: " in err.value.message and "left alone" in err.value.message
    assert "sshd -t" in err.value.hint


def test_fresh_login_retries_until_it_works(monkeypatch):
    monkeypatch.setattr(guard, "time", Clock())
    logins = Logins("refused", "refused", "")
    assert guard.fresh_login(logins, FakeRemote().connection, wait_s=30) == ""
    assert len(logins.tried) == 3 and guard.time.slept == [2, 2]
    logins = Logins("refused")
    assert guard.fresh_login(logins, FakeRemote().connection, wait_s=0) == "refused"
    assert len(logins.tried) == 1


def test_settle_waits_for_armed_rollbacks_then_clears_every_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "ROLLBACK_DIR", str(tmp_path / "rollback"))
    monkeypatch.setattr(guard, "time", Clock())
    host = LocalHost(tmp_path, active_polls=2)
    host.cut = "is-active"  # the first poll finds the connection gone (the rollback moved it)
    saved = {"aa11": "0\n", "bb22": "4\n", "dd44": ""}  # restore-rc, where one was written
    for token in ("aa11", "bb22", "cc33", "dd44", "ee55", "ff66"):
        rc = saved.get(token)
        folder = tmp_path / "rollback" / token
        folder.mkdir(parents=True)
        if rc is not None:
            (folder / "restore-rc").write_text(rc)  # "": cut off while writing it
    said = []
    rollbacks = [
        ("aa11", False, "active"), ("bb22", True, "inactive"), ("cc33", False, ""),
        ("dd44", True, "inactive"), ("ee55", False, "active"), ("ff66", False, "inactive"),
    ]  # fmt: skip
    notes = guard.settle(host, rollbacks, 60, said.append)
    assert "roll back 2 unconfirmed change" in said[0]
    assert (host.closed, host.reopened) == (1, 1)  # reconnected after the lost poll
    # polled while `systemctl is-active` said active (twice), then once more
    polled = "is-active -q provision-rollback-aa11.timer provision-rollback-ee55.timer"
    assert host.logged("systemctl") == [polled] * 3
    assert notes[0] == "rolled back by the host: aa11, ee55"
    assert notes[1] == "timer gone without firing (rebooted?), kept as is: cc33, ff66"
    assert "rollback bb22 exited 4" in notes[2] and len(notes) == 3  # dd44's "" is no status
    assert os.listdir(tmp_path / "rollback") == []


def test_settle_gives_up_on_a_rollback_that_never_fires(tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "ROLLBACK_DIR", str(tmp_path / "rollback"))
    monkeypatch.setattr(guard, "time", Clock())
    host = LocalHost(tmp_path, active_polls=1000)
    with pytest.raises(StepError) as err:
        guard.settle(host, [("aa11", False, "active")], 10, lambda _: None)
    assert "has not rolled back within 10s" in err.value.message
    assert "provision-rollback-*" in err.value.hint
    assert len(host.logged("systemctl")) == 5  # every 2 s for 10 s


def test_a_rollback_cut_off_before_it_wrote_its_status_still_counts_as_restored(tmp_path, host):
    # The timer started the rollback (it marks `fired` first) but it never wrote restore-rc.
    g, _dest, _marker = change(
        tmp_path, activate=f'for d in {tmp_path}/rollback/*/; do touch "$d/fired"; done'
    )
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert err.value.message.endswith(
        "was not confirmed within 90s, so the host restored the old configuration"
    )
    assert "raise the step's rollback_after_s" in err.value.hint


def test_a_rollback_folder_gone_at_failure_leaves_it_to_the_host(tmp_path, host):
    # The activation fails after something else removed the folder: nothing here ran the
    # rollback, so the message says the host's timer will.
    g, _dest, marker = change(tmp_path, activate=f"rm -rf {tmp_path}/rollback/*; exit 1")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert "the host restores the old configuration within 90s by itself" in err.value.message
    assert not marker.exists()


def test_rollbacks_live_where_the_host_facts_look_for_them():
    from provision.facts import host as host_facts

    assert guard.ROLLBACK_DIR == "/var/lib/provision/rollback"
    assert f"for d in {guard.ROLLBACK_DIR}/*/" in host_facts.GATHER_SCRIPT


def test_a_rollback_restores_the_old_file_s_mode_and_time(tmp_path, host):
    g, dest, marker = change(tmp_path)
    os.chmod(dest, 0o666)  # a mode the umask would cut, an old time: cp -p keeps both
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    with pytest.raises(StepError):
        guard.apply(host, g, host.connection, Logins("", "Connection refused"))
    assert dest.read_text() == "old good\n" and marker.exists()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666
    assert dest.stat().st_mtime == 1_000_000_000


def test_the_validation_s_own_words_reach_the_message(tmp_path, host):
    g, dest, marker = change(tmp_path, activate=f"sh {tmp_path}/rollback/*/rollback.sh; true")
    bad = "grep -q good {path} || { printf 'app.conf: line 1: bad\\nline 2: worse\\n'; false; }"
    g = dataclasses.replace(g, uploads=(dataclasses.replace(g.uploads[0], validate=bad),))
    dest.write_text("old bad\n")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert "(app.conf: line 1: bad / line 2: worse)" in err.value.message  # its last lines
    assert "@@restore" not in err.value.message and not marker.exists()


def test_restore_output_that_looks_like_a_status_is_not_taken_for_one(tmp_path, host):
    g, _dest, marker = change(tmp_path, activate="exit 1")
    g = dataclasses.replace(g, restore=f"echo 'restarted 3'; touch {marker}")
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins(""))
    assert "(the old configuration was restored)" in err.value.message


def test_a_connection_lost_at_the_rollback_leaves_it_to_the_host_s_timer(tmp_path, host):
    g, dest, marker = change(tmp_path)
    host.cut = "rollback.sh; "  # the confirmation failed and now the session is gone too
    with pytest.raises(StepError) as err:
        guard.apply(host, g, host.connection, Logins("", "Connection refused"))
    assert err.value.message.endswith(
        "the host restores the old configuration within 90s by itself"
    )
    assert err.value.hint.startswith("check the settings of this step")
    assert dest.read_text() == "new good\n" and not marker.exists()  # the timer's job, later


def test_the_log_keeps_the_validation_s_output_then_restore_s(tmp_path):
    dest = tmp_path / "app.conf"
    dest.write_text("new good\n")
    g = Guarded(
        uploads=(Upload(str(dest), b"", validate="echo 'checked {path}'"),),
        activate="true",
        restore="echo restarted",
    )
    proc, folder = script_run(tmp_path, g, {0: "old good\n"})
    assert proc.returncode == 0
    assert (folder / "restore.log").read_text() == f"checked {dest}\nrestarted\n"
    assert proc.stdout == f"checked {dest}\nrestarted\n"  # the log, for disarm to pass on


def test_restored_messages_without_output_have_no_empty_parentheses():
    g = Guarded(uploads=(), activate="a", restore="r")
    assert "fails its own validation, so the running service" in guard.restored(4, "", g)[0]
    assert "fails its own validation (x), so the running" in guard.restored(4, "x\n", g)[0]
    assert guard.restored(1, "\n", g)[0].endswith("(`r` exited 1)")
    assert guard.restored(1, "a\nb\nc\nd\n", g)[0].endswith("(`r` exited 1: b / c / d)")
